"""``estimate``: one plan's step time and memory, choosing the options the caller left open."""

from __future__ import annotations

import dataclasses

from models.spec import ModelSpec
from wsim.errors import ConfigError, positive, require
from wsim.gpu.calibration import STACKS, Efficiency, efficiency_for
from wsim.gpu.memory import MemoryBreakdown
from wsim.gpu.plan import Plan, check_plan, divisors
from wsim.gpu.report import GpuReport, build_report
from wsim.gpu.specs import gpu_spec, with_network
from wsim.gpu.step import ATTENTION, PRECISION, Consts, evaluate

GIB = 2**30


MAX_GPUS = 2**20
MAX_BATCH_SEQS = 2**24


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(map(str, allowed))}")


def _bandwidth(name: str, value) -> float | None:
    if value is None:
        return None
    positive(name, value)
    return float(value)


def with_dropout(model: ModelSpec, dropout: float | None) -> ModelSpec:
    """``model`` with dropout on (p > 0) or off (p = 0); None keeps the model's own setting."""
    if dropout is None:
        return model
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    return dataclasses.replace(model, dropout=dropout > 0)


def make_consts(model: ModelSpec, *, seq: int, batch: int, gpus: int, gpu,
                efficiency: Efficiency | None, attention: str = "eager", precision: str = "bf16",
                dropout: float | None = None, nic_bytes_per_s: float | None = None,
                nvlink_bytes_per_s: float | None = None) -> Consts:
    if not isinstance(model, ModelSpec):
        raise ConfigError(f"model must be a models.spec.ModelSpec, got {type(model).__name__}")
    positive("seq", seq, integer=True)
    positive("batch", batch, integer=True)
    positive("gpus", gpus, integer=True)
    # Plans are enumerated over divisors (trial division, O(sqrt n)): bound the counts so that a
    # search ends in seconds. Both limits are far beyond any published run.
    require(gpus <= MAX_GPUS, f"gpus {gpus} exceeds {MAX_GPUS:,}, the largest cluster the planner enumerates")
    require(batch <= MAX_BATCH_SEQS,
            f"batch {batch} exceeds {MAX_BATCH_SEQS:,} sequences, the largest the planner enumerates")
    _choice("attention", attention, ATTENTION)
    _choice("precision", precision, PRECISION)
    model = with_dropout(model, dropout)
    try:
        model.check_seq(seq)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    spec = with_network(gpu_spec(gpu), nic_bytes_per_s=_bandwidth("nic_bytes_per_s", nic_bytes_per_s),
                        nvlink_bytes_per_s=_bandwidth("nvlink_bytes_per_s", nvlink_bytes_per_s))
    spec.peak_for(precision)  # refuses fp8 on a GPU without FP8 tensor cores
    return Consts(model, spec, efficiency_for(spec, efficiency), seq=seq, batch=batch, gpus=gpus,
                  attention=attention, precision=precision)


def stacks_for(c: Consts, stack: str | None, *, zero=None, pp=None, cp=None,
               interleave=None) -> list:
    """The stacks to try: the one given, else every stack that can run these options."""
    if stack is not None:
        _choice("stack", stack, tuple(STACKS))
        st = STACKS[stack]
        if c.fp8 and not st.fp8:
            raise ConfigError(f"stack {stack} has no FP8 training; use --precision bf16 or stack "
                              "megatron-core or fsdp")
        return [st]
    out = [st for st in STACKS.values()
           if (not c.fp8 or st.fp8) and (zero is None or zero in st.zero_stages)
           and (pp is None or pp == 1 or st.pipeline) and (cp is None or cp == 1 or st.context_parallel)
           and (interleave is None or interleave == 1 or st.interleave)]
    if not out:
        raise ConfigError("no software stack runs these options together (zero "
                          f"{zero}, pp {pp}, cp {cp}, interleave {interleave}, precision "
                          f"{c.precision}); see --stack")
    return out


def estimate(model: ModelSpec, *, seq: int = 2048, batch: int, gpus: int, gpu="a100-80gb",
             tp: int = 1, pp: int = 1, cp: int = 1, micro_batch: int | str | None = "auto",
             interleave: int | None = None, recompute: str = "full",
             sequence_parallel: bool = False, zero: int = 0, stack: str | None = None,
             attention: str = "eager", precision: str = "bf16", dropout: float | None = None,
             nic_bytes_per_s: float | None = None, nvlink_bytes_per_s: float | None = None,
             efficiency: Efficiency | None = None, allow_oom: bool = False) -> GpuReport:
    """Step time, throughput and memory per GPU of ``model`` on ``gpus`` GPUs with plan
    tp x cp x pp (x dp, the rest).

    ``micro_batch`` ("auto"/None), ``interleave`` (None) and ``stack`` (None) left open take the
    fastest value that fits; the report's ``chosen`` names them. A plan that cannot fit raises
    ``ConfigError`` unless ``allow_oom`` (then the report has ``fits`` False).
    """
    c = make_consts(model, seq=seq, batch=batch, gpus=gpus, gpu=gpu, efficiency=efficiency,
                    attention=attention, precision=precision, dropout=dropout,
                    nic_bytes_per_s=nic_bytes_per_s, nvlink_bytes_per_s=nvlink_bytes_per_s)
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
    base = None
    for st in stacks:  # validate once with a stack that runs the options (or the given one)
        base = Plan(tp=tp, pp=pp, dp=dp, micro_batch=1 if auto_mb else micro_batch,
                    interleave=1 if auto_v else interleave, recompute=recompute,
                    sequence_parallel=sequence_parallel, zero=zero, cp=cp, stack=st.name)
        check_plan(base, model, batch=batch, gpus=gpus, seq=seq)

    local = batch // dp
    mbs = divisors(local) if auto_mb else [micro_batch]
    best = smallest = None
    for st in stacks:
        vs = divisors(model.layers // pp) if (auto_v and pp > 1 and st.interleave) else [base.interleave]
        for b in mbs:
            m = local // b
            for v in vs:
                if v > 1 and m % pp:
                    continue
                ev = evaluate(c, tp, pp, dp, b, v, recompute, sequence_parallel, zero, cp, st)
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
                sequence_parallel=sequence_parallel, zero=zero, cp=cp, stack=st.name)
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
