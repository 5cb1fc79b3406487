"""``estimate``: one plan's step time and memory, choosing the options the caller left open."""

from __future__ import annotations

from models.spec import ModelSpec
from wsim.errors import ConfigError, positive, require
from wsim.gpu.memory import MemoryBreakdown
from wsim.gpu.plan import Plan, check_plan, divisors
from wsim.gpu.report import GpuReport, build_report
from wsim.gpu.specs import Efficiency, efficiency_for, gpu_spec
from wsim.gpu.step import Consts, evaluate

GIB = 2**30


MAX_GPUS = 2**20
MAX_BATCH_SEQS = 2**24


def make_consts(model: ModelSpec, *, seq: int, batch: int, gpus: int, gpu,
                efficiency: Efficiency | None) -> Consts:
    if not isinstance(model, ModelSpec):
        raise ConfigError(f"model must be a models.spec.ModelSpec, got {type(model).__name__}")
    positive("seq", seq, integer=True)
    positive("batch", batch, integer=True)
    positive("gpus", gpus, integer=True)
    # Plans are enumerated over divisors (trial division, O(sqrt n)): bound the counts so that a
    # search ends in seconds. Both limits are far beyond any published run (FACTS.md: 4,096 GPUs,
    # batches of a few thousand sequences).
    require(gpus <= MAX_GPUS, f"gpus {gpus} exceeds {MAX_GPUS:,}, the largest cluster the planner enumerates")
    require(batch <= MAX_BATCH_SEQS,
            f"batch {batch} exceeds {MAX_BATCH_SEQS:,} sequences, the largest the planner enumerates")
    try:
        model.check_seq(seq)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    spec = gpu_spec(gpu)
    return Consts(model, spec, efficiency_for(spec, efficiency), seq=seq, batch=batch, gpus=gpus)


def estimate(model: ModelSpec, *, seq: int = 2048, batch: int, gpus: int, gpu="a100-80gb",
             tp: int = 1, pp: int = 1, micro_batch: int | str | None = "auto",
             interleave: int | None = None, recompute: str = "full",
             sequence_parallel: bool = False, zero: int = 0, efficiency: Efficiency | None = None,
             allow_oom: bool = False) -> GpuReport:
    """Step time, throughput and memory per GPU of ``model`` on ``gpus`` GPUs with plan tp x pp.

    ``micro_batch`` ("auto"/None) and ``interleave`` (None) left open take the fastest value that
    fits; the report's ``chosen`` names them. A plan that cannot fit raises ``ConfigError`` unless
    ``allow_oom`` (then the report has ``fits`` False).
    """
    c = make_consts(model, seq=seq, batch=batch, gpus=gpus, gpu=gpu, efficiency=efficiency)
    positive("tp", tp, integer=True)
    positive("pp", pp, integer=True)
    if gpus % (tp * pp):
        raise ConfigError(f"gpus {gpus} is not divisible by tp x pp = {tp} x {pp} = {tp * pp}; "
                          "gpus must equal tp x pp x dp")
    dp = gpus // (tp * pp)
    auto_mb = micro_batch is None or micro_batch == "auto"
    if not auto_mb and (isinstance(micro_batch, bool) or not isinstance(micro_batch, int)):
        raise ConfigError(f"micro_batch must be a positive integer or 'auto', got {micro_batch!r}")
    auto_v = interleave is None
    base = Plan(tp=tp, pp=pp, dp=dp, micro_batch=1 if auto_mb else micro_batch,
                interleave=1 if auto_v else interleave, recompute=recompute,
                sequence_parallel=sequence_parallel, zero=zero)
    check_plan(base, model, batch=batch, gpus=gpus)

    local = batch // dp
    mbs = divisors(local) if auto_mb else [micro_batch]
    vs = divisors(model.layers // pp) if (auto_v and pp > 1) else [base.interleave]
    best = smallest = None
    for b in mbs:
        m = local // b
        for v in vs:
            if v > 1 and m % pp:
                continue
            ev = evaluate(c, tp, pp, dp, b, v, recompute, sequence_parallel, zero)
            key = (ev.step_s, b, v)
            if ev.memory.fits and (best is None or key < best[0]):
                best = (key, b, v, ev)
            mkey = (ev.memory.total_bytes, -b, v)
            if smallest is None or mkey < smallest[0]:
                smallest = (mkey, b, v, ev)
    chosen = [name for name, auto in (("micro_batch", auto_mb), ("interleave", auto_v and pp > 1))
              if auto]
    if best is None:
        if smallest is None:  # only when interleave was given and no micro-batch count allows it
            raise ConfigError(f"interleave {base.interleave} needs a micro-batch count that is a "
                              f"multiple of pp {pp}; no micro_batch dividing {local} gives one")
        _, b, v, ev = smallest
        if not allow_oom:
            raise ConfigError(_does_not_fit(ev.memory, base, b, v, auto_mb or auto_v))
        best = smallest
    _, b, v, ev = best
    plan = Plan(tp=tp, pp=pp, dp=dp, micro_batch=b, interleave=v, recompute=recompute,
                sequence_parallel=sequence_parallel, zero=zero)
    return build_report(c, plan, ev, chosen=chosen)


def _does_not_fit(mem: MemoryBreakdown, plan: Plan, b: int, v: int, searched: bool) -> str:
    what = "with any micro_batch/interleave" if searched else f"(micro_batch {b}, interleave {v})"
    return (f"plan tp {plan.tp} x pp {plan.pp} x dp {plan.dp} does not fit {what}: needs at least "
            f"{mem.total_bytes / GIB:.1f} GiB per GPU of {mem.capacity_bytes / GIB:.0f} GiB "
            f"(weights {mem.weights_bytes / GIB:.1f}, gradients {mem.gradients_bytes / GIB:.1f}, "
            f"optimizer {mem.optimizer_bytes / GIB:.1f}, activations {mem.activations_bytes / GIB:.1f}, "
            f"reserved {mem.reserved_bytes / GIB:.1f} GiB on stage {mem.stage}); try more tp or pp, "
            "--zero 1..3, --recompute full, --sequence-parallel, or --search")
