"""The same model and token budget on a CS-2 cluster and on GPU plans, side by side.

``compare(model, phases=..., gpu=("a100-80gb", "h100-80gb")) -> CompareReport``.

Accounting (stated in every report):
- a training run is one or more *phases* (global batch, CS-2 count, steps); Cerebras-GPT's are the
  published ones (docs/sources.md table; Dey et al. 2023, arXiv 2304.03208); 13B switched batch 720 -> 1080
  and 8 -> 12 CS-2 at a point the paper does not give (``published_phases``' ``switch_fraction``);
- time to train = sum over phases of steps x step time; the GPU cluster trains the same batches for
  the same steps (same tokens, same optimisation trajectory), each phase with its fastest plan
  (``wsim.gpu.search``);
- CS-2 micro-batching: ``best`` (the simulator's default) chooses the micro-batch count and
  activation recompute jointly for the shortest step by the closed form
  (``wsim.engine.closed_form.choose_plan``); ``fit`` takes the fewest micro-batches without recompute. The
  GPU side searches recompute too, so ``best`` is the like-for-like choice;
- matching: the smallest GPU count in a geometric grid whose best plan reaches the CS-2 time to
  train; ``complexity`` counts the plan's parallelism dimensions and non-default knobs (a CS-2
  cluster is data parallel only: 1 dimension, no knobs);
- energy = power x time: a CS cluster's systems, MemoryX/SwarmX/input servers and network
  (``wsim.cluster.power``), the GPUs' DGX nodes (``wsim.gpu`` node power, no switches); cost = energy at
  an electricity price, plus hardware hours where the price table has a rate (``wsim.studies.cost``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

from models import zoo
from models.spec import ModelSpec
from wsim.engine import closed_form
from wsim.cluster import generations
from wsim.studies.cost import PriceTable, cost
from wsim.errors import ConfigError, positive, require
from wsim.cluster.hardware import ClusterSpec
from wsim.cluster.job import MICRO_BATCH_POLICIES, TrainingJob

# Powers of 2 and 1.5 x powers of 2 (multiples of 8 from 8 up): the GPU counts tried when matching.
GPU_GRID = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
            3072, 4096, 6144, 8192)
GPUS_DEFAULT = ("a100-80gb", "h100-80gb")
# The module docstring's accounting paragraph, carried in every report.
ACCOUNTING = " ".join(__doc__.split("Accounting (stated in every report):")[1].split())
METHODS = ("engine", "analytic")
POLICIES = MICRO_BATCH_POLICIES


@dataclass(frozen=True)
class Phase:
    """A stretch of training at one global batch (sequences) on one CS-2 count."""

    batch_seqs: int
    systems: int
    steps: int

    def __post_init__(self) -> None:
        positive("phase.batch_seqs", self.batch_seqs, integer=True)
        positive("phase.systems", self.systems, integer=True)
        positive("phase.steps", self.steps, integer=True)


def published_phases(name: str, switch_fraction: float = 0.5) -> list[Phase]:
    """Cerebras-GPT's published batch, CS-2 count and steps (docs/sources.md table).

    13B: batch 720 on 8 CS-2, then 1080 on 12 (modelzoo README). The paper does not say when; we
    assume the switch after ``switch_fraction`` of the published steps (an *assumption*; the step
    time is the same in both phases, 90 sequences per CS-2, so the split moves only the tokens)."""
    t = zoo.CEREBRAS_GPT_TRAINING.get(name.lower())
    if t is None:
        raise ConfigError(f"no published training run for {name!r}; published: "
                          f"{', '.join(zoo.CEREBRAS_GPT_TRAINING)} (give --batch, --systems, --steps)")
    require(0.0 <= switch_fraction <= 1.0, f"switch_fraction must be in [0, 1], got {switch_fraction!r}")
    if not t.batch_seqs_start:
        return [Phase(t.batch_seqs, t.cs2_systems, t.steps)]
    first = round(t.steps * switch_fraction)
    phases = [Phase(t.batch_seqs_start, t.cs2_systems_start, first)] if first else []
    if t.steps - first:
        phases.append(Phase(t.batch_seqs, t.cs2_systems, t.steps - first))
    return phases


def cluster_for(cluster: ClusterSpec | str, systems: int) -> ClusterSpec:
    if isinstance(cluster, str):
        return generations.load(cluster, systems)
    if not isinstance(cluster, ClusterSpec):
        raise ConfigError(f"cluster must be a preset name, a .json path or a ClusterSpec, got {cluster!r}")
    return cluster.with_systems(systems)


def choose_job(model: ModelSpec, *, seq: int, batch: int, cluster: ClusterSpec,
               micro_batching: str | int = "best",
               attention_tile_seqs: int = 0) -> tuple[TrainingJob, closed_form.AnalyticReport]:
    """The job under the micro-batch policy (``best``, ``fit`` or a count) and its closed-form step;
    the engine, given the job, makes the same choice (``wsim.engine.closed_form.choose_plan``)."""
    job = TrainingJob(model, seq=seq, batch_seqs=batch, micro_batches=micro_batching,
                      attention_tile_seqs=attention_tile_seqs)
    return job, closed_form.step_time(job, cluster)


def _analytic_bottleneck(rep: closed_form.AnalyticReport) -> str:
    parts = {"cs2_compute": rep.compute_s, "weight_stream": rep.stream_s, "gradient_stream": rep.gradient_s}
    return max(parts, key=parts.get)


def cs2_step(model: ModelSpec, *, seq: int = 2048, batch: int, systems: int,
             cluster: ClusterSpec | str = "cs2", micro_batching: str | int = "best", attention_tile_seqs: int = 0,
             method: str = "engine") -> dict:
    """One step on ``systems`` CS-2: the engine (``method='engine'``) or the closed form."""
    require(method in METHODS, f"method must be one of {', '.join(METHODS)}, got {method!r}")
    spec = cluster_for(cluster, systems)
    job, rep = choose_job(model, seq=seq, batch=batch, cluster=spec, micro_batching=micro_batching,
                          attention_tile_seqs=attention_tile_seqs)
    out = {
        "systems": systems, "batch_seqs": batch, "seq": seq, "method": method,
        "balance_tokens_per_system": rep.balance_tokens_per_system,
        "tokens_per_micro_batch": rep.tokens_per_micro_batch,
        "memoryx_bytes": model.params * spec.memoryx.bytes_per_param,
    }
    if method == "engine":
        from wsim.engine.run import simulate

        r = simulate(job, spec)
        out |= {"step_time_s": r.step_time_s, "tokens_per_s": r.tokens_per_s,
                "compute_utilization": r.compute_utilization, "bottleneck": r.bottleneck,
                "micro_batches": r.micro_batches, "recompute": r.recompute,
                "wafer_memory_bytes": r.wafer_memory_bytes, "breakdown": dict(r.breakdown)}
    else:
        out |= {"step_time_s": rep.step_time_s, "tokens_per_s": rep.tokens_per_s,
                "compute_utilization": rep.compute_utilization,
                "bottleneck": _analytic_bottleneck(rep), "micro_batches": rep.micro_batches,
                "recompute": rep.recompute, "wafer_memory_bytes": None,
                "breakdown": {"compute_s": rep.compute_s, "stream_s": rep.stream_s,
                              "gradient_s": rep.gradient_s, "bubble_s": rep.bubble_s}}
    return out


def cs2_time_to_train(model: ModelSpec, phases: list[Phase], *, seq: int = 2048,
                      cluster: ClusterSpec | str = "cs2", micro_batching: str | int = "best",
                      attention_tile_seqs: int = 0, method: str = "engine") -> dict:
    from wsim.cluster.power import cluster_power_w

    rows = []
    for ph in phases:
        step = cs2_step(model, seq=seq, batch=ph.batch_seqs, systems=ph.systems, cluster=cluster,
                        micro_batching=micro_batching, attention_tile_seqs=attention_tile_seqs, method=method)
        spec = cluster_for(cluster, ph.systems)
        power = cluster_power_w(spec)
        rows.append(step | {"steps": ph.steps, "time_s": ph.steps * step["step_time_s"], "power_w": power,
                            "energy_j": power * ph.steps * step["step_time_s"],
                            "generation": spec.generation})
    total = sum(r["time_s"] for r in rows)
    tokens = sum(ph.steps * ph.batch_seqs * seq for ph in phases)
    return {"time_to_train_s": total, "tokens": tokens, "tokens_per_s": tokens / total,
            "systems": max(ph.systems for ph in phases), "generation": rows[-1]["generation"],
            "energy_j": sum(r["energy_j"] for r in rows),
            "system_hours": sum(r["time_s"] * r["systems"] for r in rows) / 3600, "phases": rows}


def complexity(plan: dict) -> dict:
    """How much a GPU plan asks of its user: dimensions > 1 and knobs away from plain DP."""
    cp = plan.get("cp", 1)  # context parallelism (wsim.gpu plans since issue 12)
    dims = sum(plan[k] > 1 for k in ("tp", "pp", "dp")) + (cp > 1)
    knobs = sum([plan["tp"] > 1, plan["pp"] > 1, plan["dp"] > 1, plan["interleave"] > 1, cp > 1,
                 plan["recompute"] != "none", bool(plan["sequence_parallel"]), plan["zero"] > 0])
    return {"parallel_dims": dims, "model_parallel": plan["tp"] * cp * plan["pp"], "knobs": knobs}


def gpu_time_to_train(model: ModelSpec, phases: list[Phase], *, gpus: int, gpu: str,
                      seq: int = 2048) -> dict | None:
    """Every phase on ``gpus`` GPUs with its fastest plan; None if some phase has no plan.
    Pure in its inputs: the same question (e.g. the same grid count for another study, or
    compare called again) is answered from a cache of ``CACHE_SIZE`` answers, a copy each time."""
    key = (model, tuple(phases), gpus, gpu, seq)
    hit = _CACHE.get(key, _MISS)
    if hit is _MISS:
        hit = _gpu_time_to_train(model, phases, gpus=gpus, gpu=gpu, seq=seq)
        if len(_CACHE) >= CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))  # the oldest
        _CACHE[key] = hit
    return copy.deepcopy(hit)


CACHE_SIZE = 4096
_CACHE: dict = {}
_MISS = object()


def _gpu_time_to_train(model: ModelSpec, phases: list[Phase], *, gpus: int, gpu: str,
                       seq: int = 2048) -> dict | None:
    from wsim.gpu import search

    rows = []
    for ph in phases:
        try:
            r = search(model, seq=seq, batch=ph.batch_seqs, gpus=gpus, gpu=gpu)
        except ConfigError:
            return None
        plan = r.plan.to_dict()
        alt = (r.search or {}).get("validated_alternative")
        if r.regime.get("validated"):
            vplan, vstep, vtflops = plan, r.step_time_s, r.model_tflops_per_gpu
            vmem = r.memory.total_bytes
        elif alt:
            vplan, vstep, vtflops = alt["plan"], alt["step_time_s"], alt["model_tflops_per_gpu"]
            vmem = alt["memory_per_gpu_bytes"]
        else:
            vplan = vstep = vtflops = vmem = None
        rows.append({"batch_seqs": ph.batch_seqs, "steps": ph.steps, "step_time_s": r.step_time_s,
                     "time_s": ph.steps * r.step_time_s, "plan": plan, "mfu": r.mfu,
                     "model_tflops_per_gpu": r.model_tflops_per_gpu,
                     "memory_per_gpu_bytes": r.memory.total_bytes, "complexity": complexity(plan),
                     "regime": r.regime.get("status"),
                     # the fastest plan inside a validated regime, when the fastest is not in one
                     "validated_step_time_s": vstep, "validated_plan": vplan,
                     "validated_memory_per_gpu_bytes": vmem,
                     "validated_mfu": None if vtflops is None else r.mfu * vtflops / r.model_tflops_per_gpu,
                     "power_w": r.power_w, "energy_j": ph.steps * r.energy_per_step_j})
    total = sum(r["time_s"] for r in rows)
    tokens = sum(ph.steps * ph.batch_seqs * seq for ph in phases)
    main = max(rows, key=lambda r: r["time_s"])  # the phase that dominates names the plan
    return {"gpu": gpu, "gpus": gpus, "time_to_train_s": total, "tokens_per_s": tokens / total,
            "plan": main["plan"], "complexity": main["complexity"], "mfu": main["mfu"],
            "model_tflops_per_gpu": main["model_tflops_per_gpu"],
            "memory_per_gpu_bytes": main["memory_per_gpu_bytes"], "regime": main["regime"],
            "power_w": main["power_w"], "energy_j": sum(r["energy_j"] for r in rows),
            "device_hours": gpus * total / 3600,
            "validated_time_to_train_s": None if any(r["validated_step_time_s"] is None for r in rows)
            else sum(r["steps"] * r["validated_step_time_s"] for r in rows),
            "phases": rows}


def validated_view(r: dict) -> dict:
    """``r`` (a ``gpu_time_to_train`` result) as its plans inside validated regimes run it: the time,
    plan, MFU and energy of each phase's fastest validated plan (None if a phase has none)."""
    if r.get("validated_time_to_train_s") is None:
        return None
    main = max(r["phases"], key=lambda p: p["steps"] * p["validated_step_time_s"])
    t = r["validated_time_to_train_s"]
    plan = main["validated_plan"]
    return r | {"time_to_train_s": t, "tokens_per_s": r["tokens_per_s"] * r["time_to_train_s"] / t,
                "plan": plan, "complexity": complexity(plan), "mfu": main["validated_mfu"],
                "model_tflops_per_gpu": main["model_tflops_per_gpu"] * main["validated_mfu"]
                / main["mfu"], "regime": "validated",
                "memory_per_gpu_bytes": main["validated_memory_per_gpu_bytes"],
                "energy_j": r["energy_j"] * t / r["time_to_train_s"],
                "device_hours": r["gpus"] * t / 3600}


def match_gpus(model: ModelSpec, phases: list[Phase], target_s: float, *, gpu: str, seq: int = 2048,
               grid=GPU_GRID, max_gpus: int | None = None, basis: str = "validated") -> dict:
    """The smallest GPU count in ``grid`` whose plans train within ``target_s``.

    ``basis`` "validated" (the headline, issue 19): only plans inside a validated regime count
    (``wsim.gpu.regimes``); the smallest count that the fastest plan of any regime would need is
    given beside it as ``fastest_extrapolated`` (labelled with its regime). "fastest": any plan."""
    require(basis in ("validated", "fastest"), f"basis {basis!r} is not 'validated' or 'fastest'")
    curve = []
    fastest = None
    for g in grid:
        if max_gpus is not None and g > max_gpus:
            break
        r = gpu_time_to_train(model, phases, gpus=g, gpu=gpu, seq=seq)
        if r is None:
            continue
        curve.append({"gpus": g, "time_to_train_s": r["time_to_train_s"],
                      "validated_time_to_train_s": r["validated_time_to_train_s"]})
        if fastest is None and r["time_to_train_s"] <= target_s:
            fastest = {"gpus": g, "time_to_train_s": r["time_to_train_s"], "plan": r["plan"],
                       "regime": r["regime"], "mfu": r["mfu"]}
            if basis == "fastest":
                return r | {"matched": True, "curve": curve, "basis": basis,
                            "fastest_extrapolated": fastest}
        v = validated_view(r) if basis == "validated" else None
        if v is not None and v["time_to_train_s"] <= target_s:
            return v | {"matched": True, "curve": curve, "basis": basis,
                        "fastest_extrapolated": fastest}
    best = min(curve, key=lambda c: c["time_to_train_s"]) if curve else None
    out = {"gpu": gpu, "gpus": None, "matched": False, "curve": curve, "basis": basis,
           "fastest_tried": best, "fastest_extrapolated": fastest}
    return out


def match_cs2(model: ModelSpec, batch: int, target_s_per_step: float, *, seq: int = 2048,
              cluster: ClusterSpec | str = "cs2", micro_batching: str | int = "best", attention_tile_seqs: int = 0,
              method: str = "engine") -> dict | None:
    """The fewest CS-2 (dividing ``batch``, within the cluster's max) as fast as a GPU step."""
    limit = cluster_for(cluster, 1).max_systems
    for n in range(1, min(batch, limit) + 1):
        if batch % n:
            continue
        quick = cs2_step(model, seq=seq, batch=batch, systems=n, cluster=cluster,
                         micro_batching=micro_batching, attention_tile_seqs=attention_tile_seqs, method="analytic")
        if quick["step_time_s"] <= target_s_per_step * 1.01:  # closed form within 1% of the engine
            step = quick if method == "analytic" else cs2_step(
                model, seq=seq, batch=batch, systems=n, cluster=cluster,
                micro_batching=micro_batching, attention_tile_seqs=attention_tile_seqs, method=method)
            return step
    return None


@dataclass(frozen=True)
class CompareReport:
    model: str
    params: int
    seq: int
    tokens: int
    model_flops: float
    micro_batching: str
    method: str
    cs2: dict
    gpu: list
    accounting: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def compare(model: ModelSpec | str, *, phases: list[Phase] | None = None, seq: int = 2048,
            cluster: ClusterSpec | str = "cs2", gpu=GPUS_DEFAULT, gpus: int | None = None,
            micro_batching: str | int = "best", attention_tile_seqs: int = 0, method: str = "engine", grid=GPU_GRID,
            max_gpus: int | None = None, switch_fraction: float = 0.5,
            prices: PriceTable | None = None, basis: str = "validated") -> CompareReport:
    """CS-2 cluster vs GPUs for the same batches and steps.

    ``gpus=None``: for each GPU type, the smallest count in ``grid`` matching the CS-2 time to
    train (``basis`` "validated": with plans inside a validated regime of the GPU model, the fastest
    plan of any regime beside it as ``fastest_extrapolated``; "fastest": any plan). ``gpus=G``: that
    many GPUs, and the fewest CS-2 that match them (``cs2.match``)."""
    if isinstance(model, str):
        try:
            model = zoo.get(model)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if phases is None:
        phases = published_phases(model.name, switch_fraction)
    require(len(phases) > 0, "compare needs at least one training phase")
    gpu = (gpu,) if isinstance(gpu, str) else tuple(gpu)
    require(len(gpu) > 0, "compare needs at least one GPU type")
    if gpus is not None:
        positive("gpus", gpus, integer=True)
    cs2 = cs2_time_to_train(model, phases, seq=seq, cluster=cluster, micro_batching=micro_batching,
                            attention_tile_seqs=attention_tile_seqs,
                            method=method)
    rows = []
    for g in gpu:
        if gpus is None:
            r = match_gpus(model, phases, cs2["time_to_train_s"], gpu=g, seq=seq, grid=grid,
                           max_gpus=max_gpus, basis=basis)
        else:
            r = gpu_time_to_train(model, phases, gpus=gpus, gpu=g, seq=seq)
            if r is None:
                raise ConfigError(f"no GPU plan runs {model.name} with batch "
                                  f"{', '.join(str(p.batch_seqs) for p in phases)} on {gpus} GPUs: "
                                  "tp must divide the heads, pp the layers, dp the batch")
            r = r | {"matched": None}
            if len(phases) == 1:
                per_step = r["phases"][0]["step_time_s"]
                r["cs2_match"] = match_cs2(model, phases[0].batch_seqs, per_step, seq=seq,
                                           cluster=cluster, micro_batching=micro_batching,
                                           attention_tile_seqs=attention_tile_seqs, method=method)
        if r.get("time_to_train_s"):
            r["time_ratio_gpu_over_cs2"] = r["time_to_train_s"] / cs2["time_to_train_s"]
        rows.append(r)
    prices = prices if prices is not None else PriceTable()
    cs2["cost"] = cost(cs2["energy_j"], cs2["generation"], cs2["system_hours"], prices)
    for r in rows:
        if r.get("energy_j") is not None:
            r["cost"] = cost(r["energy_j"], r["gpu"], r["device_hours"], prices)
    tokens = cs2["tokens"]
    return CompareReport(model=model.name, params=model.params, seq=seq, tokens=tokens,
                         model_flops=model.flops_per_token(seq) * tokens,
                         micro_batching=str(micro_batching), method=method, cs2=cs2, gpu=rows,
                         accounting=ACCOUNTING, extra={"prices": prices.to_dict()})


def phases_from(batch: int, systems: int, *, steps: int | None = None, tokens: float | None = None,
                seq: int = 2048, model: ModelSpec | None = None) -> list[Phase]:
    """One phase; steps from ``steps``, else ``tokens``, else 20 tokens per parameter (Chinchilla,
    docs/sources.md "Transformer Math 101")."""
    positive("batch", batch, integer=True)
    positive("seq", seq, integer=True)
    if steps is None:
        if tokens is None:
            require(model is not None, "give steps, tokens or a model")
            tokens = 20 * model.params
        positive("tokens", tokens)
        steps = max(1, math.ceil(tokens / (batch * seq)))
    return [Phase(batch, systems, steps)]


__all__ = ["Phase", "CompareReport", "compare", "published_phases", "phases_from", "cs2_step",
           "cs2_time_to_train", "gpu_time_to_train", "match_gpus", "match_cs2", "complexity",
           "choose_job", "GPU_GRID"]
