"""``search``: the fastest plan that fits, over every TP/PP/DP/micro-batch/interleave/recompute/
sequence-parallel/ZeRO combination the model, batch and GPU count allow.

Exhaustive, pruned only with bounds that cannot discard the optimum:
- memory: model states (weights + gradients + optimizer) of the fullest stage are a lower bound on
  any plan's memory for that (tp, pp, ZeRO); if it exceeds HBM, no micro-batch or recompute fits;
- compute: the bubble-free, communication-free model-FLOPs time at the best GEMM efficiency
  (per tp/pp), and then, per micro-batch size, the work every recompute/SP/ZeRO/interleave choice
  still has to do (forward + backward GEMMs and element-wise kernels at their real shapes, with
  sequence parallelism, and the 4 tensor-parallel all-reduces per layer) bound the step time from
  below; a subtree whose bound is no better than the best plan found is skipped.
With ``dp == 1`` ZeRO stages are the same plan as ZeRO-0 (nothing to shard) and are evaluated once.
"""

from __future__ import annotations

import time

from models.spec import ModelSpec
from wsim.errors import ConfigError
from wsim.gpu.estimate import make_consts
from wsim.gpu.memory import states_lower_bound
from wsim.gpu.plan import RECOMPUTE, Plan, divisors
from wsim.gpu.report import GpuReport, build_report
from wsim.gpu.specs import Efficiency
from wsim.gpu.step import compute_lower_bound_s, evaluate, step_lower_bound_s

GIB = 2**30


def _choices(value, allowed, name):
    if value is None:
        return tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(map(str, allowed))}")
    return (value,)


def search(model: ModelSpec, *, seq: int = 2048, batch: int, gpus: int, gpu="a100-80gb",
           tp: int | None = None, pp: int | None = None, recompute: str | None = None,
           sequence_parallel: bool | None = None, zero: int | None = None,
           efficiency: Efficiency | None = None) -> GpuReport:
    """The fastest plan that fits. Arguments left ``None`` are searched; given ones are fixed."""
    c = make_consts(model, seq=seq, batch=batch, gpus=gpus, gpu=gpu, efficiency=efficiency)
    recomputes = _choices(recompute, RECOMPUTE, "recompute")
    sps = _choices(sequence_parallel, (False, True), "sequence_parallel")
    zeros = _choices(zero, (0, 1, 2, 3), "zero")
    t0 = time.perf_counter()
    stats = {"evaluations": 0, "pruned_memory": 0, "pruned_compute": 0, "parallel_layouts": 0}
    best = None  # (step_s, plan, evaluation)
    smallest = None  # (bytes, plan) of the least memory seen, to explain a failure
    cap = c.capacity_bytes
    tps = [t for t in divisors(gpus) if model.heads % t == 0 and model.ffn % t == 0]
    if tp is not None:
        tps = [t for t in tps if t == tp]
    for t in tps:
        pps = [p for p in divisors(gpus // t) if model.layers % p == 0 and batch % (gpus // t // p) == 0]
        if pp is not None:
            pps = [p for p in pps if p == pp]
        for p in pps:
            d = gpus // (t * p)
            stats["parallel_layouts"] += 1
            if best is not None and compute_lower_bound_s(c, t, p, d) >= best[0]:
                stats["pruned_compute"] += 1
                continue
            L = model.layers // p
            local = batch // d
            zs = [z for z in zeros if z < 2 or p == 1]
            if d == 1:
                zs = zs[:1]  # nothing to shard: every ZeRO stage is the same plan
            for z in zs:
                lb = states_lower_bound(c, t, p, d, z)
                if lb > cap:
                    stats["pruned_memory"] += 1
                    if smallest is None or lb < smallest[0]:
                        smallest = (lb, Plan(tp=t, pp=p, dp=d, zero=z))
                    continue
                for b in divisors(local):
                    m = local // b
                    if best is not None and step_lower_bound_s(c, t, p, d, b) >= best[0]:
                        stats["pruned_compute"] += 1
                        continue
                    vs = [v for v in divisors(L) if v == 1 or m % p == 0] if p > 1 else [1]
                    for rc in recomputes:
                        for sp in (sps if t > 1 else (False,)):
                            for v in vs:
                                ev = evaluate(c, t, p, d, b, v, rc, sp, z)
                                stats["evaluations"] += 1
                                mem = ev.memory.total_bytes
                                if mem > cap:
                                    if smallest is None or mem < smallest[0]:
                                        smallest = (mem, Plan(t, p, d, b, v, rc, sp, z))
                                    continue
                                if best is None or ev.step_s < best[0]:
                                    best = (ev.step_s, Plan(t, p, d, b, v, rc, sp, z), ev)
    stats["wall_s"] = time.perf_counter() - t0
    if best is None:
        raise ConfigError(_nothing_fits(model, c, stats, smallest, gpus, batch))
    stats["evaluations_per_s"] = stats["evaluations"] / stats["wall_s"] if stats["wall_s"] else 0.0
    chosen = ["tp", "pp", "dp", "micro_batch", "interleave"] + [
        n for n, v in (("recompute", recompute), ("sequence_parallel", sequence_parallel),
                       ("zero", zero)) if v is None]
    return build_report(c, best[1], best[2], chosen=chosen, search=stats)


def _nothing_fits(model, c, stats, smallest, gpus, batch) -> str:
    if stats["parallel_layouts"] == 0:
        return (f"search: no tp x pp x dp = {gpus} layout is possible for {model.name}: tp must divide "
                f"{model.heads} heads, pp the {model.layers} layers, and dp = gpus/(tp x pp) the "
                f"batch {batch}; change --gpus or --batch")
    need = f"{smallest[0] / GIB:.1f} GiB" if smallest else "more"
    where = (f" (least: tp {smallest[1].tp} x pp {smallest[1].pp} x dp {smallest[1].dp}, "
             f"zero {smallest[1].zero})") if smallest else ""
    return (f"search: no plan of {model.name} fits in {c.capacity_bytes / GIB:.0f} GiB per "
            f"{c.gpu.name} on {gpus} GPUs with batch {batch}: the smallest needs {need} per GPU{where}; "
            "use more GPUs, a GPU with more memory, a smaller batch or allow ZeRO/recompute")
