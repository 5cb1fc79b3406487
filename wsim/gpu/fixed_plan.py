"""One given plan (tp x cp x pp x dp) evaluated, choosing the options the caller left open
(micro-batch, interleave, stack). The regime the plan falls in is added above this module
(``wsim.gpu.estimate``), so that the validation (``wsim.gpu.validation``) and the regimes it feeds
(``wsim.gpu.regimes``) can use the cost model without a circle."""

from __future__ import annotations

from models.spec import ModelSpec
from wsim.errors import ConfigError, positive
from wsim.gpu.calibration import Efficiency
from wsim.gpu.inputs import make_consts, stacks_for
from wsim.gpu.knobs import check_names, resolve
from wsim.gpu.memory import MemoryBreakdown
from wsim.gpu.moe import Dispatch, load as moe_load
from wsim.gpu.plan import Plan, check_plan, divisors
from wsim.gpu.report import GpuReport, build_report
from wsim.gpu.consts import Consts
from wsim.gpu.step import Evaluation, evaluate

GIB = 2**30


def best_for_plan(model: ModelSpec, *, seq: int = 2048, batch: int, gpus: int, gpu="a100-80gb",
             tp: int = 1, pp: int = 1, cp: int = 1, micro_batch: int | str | None = "auto",
             interleave: int | None = None, recompute: str = "full",
             sequence_parallel: bool = False, zero: int = 0, stack: str | None = None,
             attention: str = "eager", precision: str = "bf16", dropout: float | None = None,
             nic_bytes_per_s: float | None = None, nvlink_bytes_per_s: float | None = None,
             fabric: str | None = None,
             efficiency: Efficiency | None = None, allow_oom: bool = False,
             ep: int = 1, etp: int | None = None, moe_capacity_factor: float | None = None,
             moe_imbalance: float = 1.0, moe_ep_overlap: bool = False,
             moe_max_nodes: int | None = None, moe_fp8_dispatch: bool = False,
             moe_pad_to_capacity: bool = False, moe_dispatcher: str = "alltoall",
             moe_router_graphs: bool = False, mtp_layers: int | None = 0,
             last_stage_layers: int | None = None,
             **knobs) -> tuple[Consts, Plan, Evaluation, list]:
    """Step time, throughput and memory per GPU of ``model`` on ``gpus`` GPUs with plan
    tp x cp x pp (x dp, the rest).

    ``micro_batch`` ("auto"/None), ``interleave`` (None) and ``stack`` (None) left open take the
    fastest value that fits; the report's ``chosen`` names them. A plan that cannot fit raises
    ``ConfigError`` unless ``allow_oom`` (then the report has ``fits`` False). ``knobs``: the
    options of ``wsim.gpu.knobs`` (None or absent: the stack's default). A mixture of experts:
    ``ep``, ``etp`` (None: tp), ``moe_capacity_factor``, ``moe_imbalance``, ``moe_ep_overlap``,
    ``moe_max_nodes``, ``moe_fp8_dispatch``, ``moe_pad_to_capacity``, ``moe_dispatcher``,
    ``moe_router_graphs`` (``wsim.gpu.plan``). ``mtp_layers``, ``last_stage_layers``: multi-token
    prediction and the last stage's layers (``wsim.gpu.mtp``).
    """
    check_names(knobs)
    # carried with the knobs (wsim.gpu.knobs.LAYOUT); absent at their defaults, checked by the plan
    knobs = dict(knobs)
    if mtp_layers is not None and not (type(mtp_layers) is int and mtp_layers == 0):
        knobs["mtp_layers"] = mtp_layers
    if last_stage_layers is not None:
        knobs["last_stage_layers"] = last_stage_layers
    c = make_consts(model, seq=seq, batch=batch, gpus=gpus, gpu=gpu, efficiency=efficiency,
                    attention=attention, precision=precision, dropout=dropout,
                    nic_bytes_per_s=nic_bytes_per_s, nvlink_bytes_per_s=nvlink_bytes_per_s, fabric=fabric)
    model = c.model
    positive("tp", tp, integer=True)
    positive("pp", pp, integer=True)
    positive("cp", cp, integer=True)
    if gpus % (tp * cp * pp):
        raise ConfigError(f"gpus {gpus} is not divisible by tp x cp x pp = {tp} x {cp} x {pp} = "
                          f"{tp * cp * pp}; gpus must equal tp x cp x pp x dp")
    dp = gpus // (tp * cp * pp)
    auto_mb = micro_batch is None or micro_batch == "auto"
    if not auto_mb and (isinstance(micro_batch, bool) or not isinstance(micro_batch, int)):
        raise ConfigError(f"micro_batch must be a positive integer or 'auto', got {micro_batch!r}")
    auto_v = interleave is None
    stacks = stacks_for(c, stack, zero=zero, pp=pp, cp=cp, interleave=interleave)
    moe = dict(ep=ep, etp=etp, moe_capacity_factor=moe_capacity_factor, moe_imbalance=moe_imbalance,
               moe_ep_overlap=moe_ep_overlap, moe_max_nodes=moe_max_nodes,
               moe_fp8_dispatch=moe_fp8_dispatch, moe_pad_to_capacity=moe_pad_to_capacity,
               moe_dispatcher=moe_dispatcher, moe_router_graphs=moe_router_graphs)
    if stack is None and any(v is not None for v in knobs.values()):
        stacks = [st for st in stacks if _runs(st, c, sequence_parallel, zero, knobs)] or stacks
    base = None
    for st in stacks:  # validate once with a stack that runs the options (or the given one)
        base = Plan(tp=tp, pp=pp, dp=dp, micro_batch=1 if auto_mb else micro_batch,
                    interleave=1 if auto_v else interleave, recompute=recompute,
                    sequence_parallel=sequence_parallel, zero=zero, cp=cp, stack=st.name, **knobs,
                    **moe)
        check_plan(base, model, batch=batch, gpus=gpus, seq=seq)
        base.knobs(c.fp8)

    local = batch // dp
    mbs = divisors(local) if auto_mb else [micro_batch]
    sparse = None
    if c.moe is not None:  # (ep, etp, load) as wsim.gpu.step.evaluate takes them
        etp = base.expert_tp
        if moe_fp8_dispatch and not c.fp8:
            raise ConfigError("plan.moe_fp8_dispatch needs --precision fp8 (DeepSeek-V3 quantizes the "
                              "dispatched activations of an FP8 run)")
        sparse = (ep, etp, moe_load(moe_imbalance, moe_capacity_factor, moe_pad_to_capacity),
                  Dispatch(moe_ep_overlap, moe_max_nodes, moe_fp8_dispatch, moe_pad_to_capacity,
                           moe_dispatcher == "flex", moe_router_graphs))
        moe["etp"] = etp
    best = smallest = None
    for st in stacks:
        kn = resolve(st, fp8=c.fp8, sp=sequence_parallel, zero=zero, given=knobs)
        # interleaves that divide the fullest stage's layers (check_plan's rule; the search's)
        vs = divisors(-(-model.layers // pp)) if (auto_v and pp > 1 and st.interleave) \
            else [base.interleave]
        for b in mbs:
            m = local // b
            for v in vs:
                if v > 1 and m % pp:
                    continue
                ev = evaluate(c, tp, pp, dp, b, v, recompute, sequence_parallel, zero, cp, st, kn,
                              sparse)
                key = (ev.step_s, b, v)
                if ev.memory.fits and (best is None or key < best[0]):
                    best = (key, b, v, ev, st)
                mkey = (ev.memory.total_bytes, -b, v)
                if smallest is None or mkey < smallest[0]:
                    smallest = (mkey, b, v, ev, st)
    chosen = [name for name, auto in (("micro_batch", auto_mb), ("interleave", auto_v and pp > 1),
                                      ("stack", stack is None)) if auto]
    if best is None:
        if smallest is None:  # only when interleave was given and no micro-batch count allows it
            raise ConfigError(f"interleave {base.interleave} needs a micro-batch count that is a "
                              f"multiple of pp {pp}; no micro_batch dividing {local} gives one")
        _, b, v, ev, st = smallest
        if not allow_oom:
            raise ConfigError(_does_not_fit(ev.memory, base, b, v, auto_mb or auto_v))
        best = smallest
    _, b, v, ev, st = best
    plan = Plan(tp=tp, pp=pp, dp=dp, micro_batch=b, interleave=v, recompute=recompute,
                sequence_parallel=sequence_parallel, zero=zero, cp=cp, stack=st.name,
                **ev.knobs._asdict(), **moe)
    return c, plan, ev, chosen


def _runs(st, c, sp, zero, knobs) -> bool:
    try:
        resolve(st, fp8=c.fp8, sp=sp, zero=zero, given=knobs)
    except ConfigError:
        return False
    return True


def estimate_unclassified(model: ModelSpec, **kwargs) -> GpuReport:
    """``wsim.gpu.estimate`` without the regime (the validation's own predictions)."""
    c, plan, ev, chosen = best_for_plan(model, **kwargs)
    return build_report(c, plan, ev, chosen=chosen)


def _does_not_fit(mem: MemoryBreakdown, plan: Plan, b: int, v: int, searched: bool) -> str:
    what = "with any micro_batch/interleave" if searched else f"(micro_batch {b}, interleave {v})"
    return (f"plan tp {plan.tp} x cp {plan.cp} x pp {plan.pp} x dp {plan.dp} does not fit {what}: "
            f"needs at least {mem.total_bytes / GIB:.1f} GiB per GPU of "
            f"{mem.capacity_bytes / GIB:.0f} GiB (weights {mem.weights_bytes / GIB:.1f}, gradients "
            f"{mem.gradients_bytes / GIB:.1f}, optimizer {mem.optimizer_bytes / GIB:.1f}, "
            f"activations {mem.activations_bytes / GIB:.1f}, reserved {mem.reserved_bytes / GIB:.1f} "
            f"GiB on stage {mem.stage}); try more tp or pp, --zero 1..3, --recompute full, "
            "--sequence-parallel, --attention flash, or --search")
