"""Closed-form weight streaming: the engine's cross-check, and fast enough for large sweeps.

With no contention a step is a three-stage pipeline over the step's layer passes (weights stream
down, the CS-2 computes, gradients stream up), each pass taking S, C and G on the three stages:

    T_step = flow_shop(S, C, G over the passes) + bubble   (<= sum of per-pass max(C, S, G) + bubble)
    C = the pass's time on one CS-2 by the wafer compute model (wsim/cluster/wafer.py)
    S = weight bytes / B_down  (0 for an embedding's backward)
    G = gradient bytes / B_up  (backward only)
    B_down, B_up = the slowest link from MemoryX to a CS-2 (cut-through at line rate)
    bubble = 2 x depth x hop latency (weights down, gradients up) + the last layer's update

(the glossary "MemoryX": streaming pipelines across layers, except at the step boundary, where the
first layer's update gates the next forward). The engine should agree within 1% when the
optimizer keeps up and nothing else is shared; ``tests/engine/test_analytic.py`` checks it, and
shows where they part: a slow optimizer (updates queue), a half-duplex MemoryX, a small buffer.

``balance_tokens_per_system``: the tokens per micro-batch at which a block's compute equals its
weight stream. Below it a CS-2 waits for weights, so adding systems at a fixed global batch (fewer
tokens each) stops scaling linearly: the point the scaling study looks for.

The closed form also *chooses* the plan (``choose_plan``): with the default policy ``best`` the
micro-batch count and activation recompute are chosen jointly for the shortest step. For either
recompute setting the step time does not fall with more micro-batches than the fewest that fit
(each adds a full weight stream and a pass overhead per layer and removes no compute; a test checks
it on a grid), so the candidates are the fewest micro-batches without recompute and the fewest with
it; the faster wins, and the report says which and why.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from wsim.cluster import memory
from wsim.engine.schedule import BWD, FWD, RECOMPUTE, check_work, chunk_passes
from wsim.errors import ConfigError
from wsim.cluster.hardware import ClusterSpec
from wsim.cluster.job import TrainingJob
from wsim.cluster.memory import WaferPlan, check_memoryx
from wsim.cluster.wafer import PassTimer


# The closed form lists every layer pass of a step (about 1 us each): refuse more than this.
MAX_LAYER_PASSES = 2_000_000


@dataclass(frozen=True)
class AnalyticReport:
    step_time_s: float
    compute_s: float  # sum of C over the step
    stream_s: float  # sum of S
    gradient_s: float  # sum of G
    bubble_s: float
    no_overlap_step_time_s: float  # sum of per-pass max(S, C, G) + bubble: no cross-layer overlap
    tokens_per_s: float
    compute_utilization: float
    micro_batches: int
    recompute: bool
    balance_tokens_per_system: float
    tokens_per_micro_batch: int
    compute_bound: bool

    def to_dict(self) -> dict:
        return self.__dict__.copy()


@functools.lru_cache(maxsize=256)
def bandwidths(cluster: ClusterSpec) -> tuple[float, float, int]:
    """(B_down, B_up, hops): the slowest link each way and the hops from MemoryX to a CS-2 (cached:
    the plan chooser asks for every candidate plan; a ClusterSpec is frozen)."""
    from wsim.cluster import topology

    sx = cluster.swarmx.link_bytes_per_s
    leaf = min(sx, cluster.cs2.io_bytes_per_s)
    mx = cluster.memoryx
    down = min(mx.stream_bytes_per_s, sx, leaf)
    up = min(mx.ingest_bytes_per_s, sx, leaf)
    return down, up, topology.swarmx_levels(cluster.systems, cluster.swarmx.fanout) + 1


def balance_tokens(job: TrainingJob, cluster: ClusterSpec) -> float:
    """Tokens per CS-2 per micro-batch where a block's forward compute equals its weight stream."""
    down, _, _ = bandwidths(cluster)
    layers = job.layers()
    i = next(i for i, l in enumerate(layers) if l.kind == "block")
    timer = PassTimer.for_job(job, cluster.cs2, i, i + 1)
    stream_s = job.traffic(cluster.memoryx)[i].weight_bytes / down
    return max(0.0, stream_s - timer.overhead[0]) / timer.per_token[0][FWD]


def passes(job: TrainingJob, cluster: ClusterSpec, plan: WaferPlan) -> list[tuple[float, float, float]]:
    """(S, C, G) seconds of every layer pass of one step, in stream order."""
    check_work(chunk_passes(job, plan, float("inf"), 1, cluster), MAX_LAYER_PASSES,
               f"{job.model.name}: {plan.micro_batches} micro-batch(es) x {job.model.layers + 2} layers",
               unit="layer passes", limit_name="the closed form's MAX_LAYER_PASSES",
               hint="use fewer sequences per system")
    down, up, _ = bandwidths(cluster)
    layers = job.layers()
    traffic = job.traffic(cluster.memoryx)
    timer = PassTimer.for_job(job, cluster.cs2)
    out = []
    for seqs in plan.micro_batch_seqs:
        tokens = seqs * job.seq
        for i, layer in enumerate(layers):
            out.append((traffic[i].weight_bytes / down, timer.seconds(i, FWD, tokens), 0.0))
        for i in reversed(range(len(layers))):
            layer = layers[i]
            s = traffic[i].weight_bytes / down
            if plan.recompute and layer.kind == "block":
                out.append((s, timer.seconds(i, RECOMPUTE, tokens), 0.0))
            out.append((s if layer.needs_weights_in_backward else 0.0,
                        timer.seconds(i, BWD, tokens),
                        traffic[i].grad_bytes / up))
    return out


def flow_shop_s(work: list[tuple[float, float, float]]) -> float:
    """Makespan of a three-stage fluid flow shop (stream -> compute -> gradient out).

    Each stage serves the passes in order, a pass may start on a stage as soon as its first bytes
    come off the previous one (cut-through), buffers are unbounded. The makespan is the longest
    path through the 3 x n grid (Johnson 1954; for fluid passes the corners are at pass
    boundaries):  max over 0 <= k1 <= k2 <= n of  S[:k1] + C[k1:k2] + G[k2:].
    With one pass this is max(S, C, G): the per-layer max; over many passes it credits MemoryX
    for streaming layer l+1 while layer l computes."""
    best_sc = float("-inf")  # max over k1 <= k of (S_k1 - C_k1)
    best = float("-inf")
    a = b = d = 0.0
    prefix = [(0.0, 0.0, 0.0)]
    for s, c, g in work:
        a, b, d = a + s, b + c, d + g
        prefix.append((a, b, d))
    total_g = d
    for a_k, b_k, d_k in prefix:
        best_sc = max(best_sc, a_k - b_k)
        best = max(best, best_sc + b_k - d_k)
    return best + total_g


def step_time(job: TrainingJob, cluster: ClusterSpec, plan: WaferPlan | None = None) -> AnalyticReport:
    """The closed-form step of ``job`` on ``cluster``, with ``plan`` or the one the job's policy
    chooses (``choose_plan``)."""
    check_memoryx(job, cluster)
    if plan is None:
        return choose_plan(job, cluster).report
    return _step_time(job, cluster, plan)


def _step_time(job: TrainingJob, cluster: ClusterSpec, plan: WaferPlan) -> AnalyticReport:
    _, _, hops = bandwidths(cluster)
    work = passes(job, cluster, plan)
    flow = flow_shop_s(work)
    owned = job.traffic(cluster.memoryx)[0].update_params  # the embedding: last gradient in, first weights out
    bubble = 2 * hops * cluster.swarmx.hop_latency_s + owned / cluster.memoryx.optimizer_params_per_s
    t = flow + bubble
    model_flops = job.model_flops_per_step()
    balance = balance_tokens(job, cluster)
    return AnalyticReport(
        step_time_s=t,
        compute_s=sum(w[1] for w in work),
        stream_s=sum(w[0] for w in work),
        gradient_s=sum(w[2] for w in work),
        bubble_s=bubble,
        no_overlap_step_time_s=sum(max(w) for w in work) + bubble,
        tokens_per_s=job.tokens_per_step / t,
        compute_utilization=model_flops / t / (cluster.systems * cluster.cs2.peak_flops_per_s),
        micro_batches=plan.micro_batches,
        recompute=plan.recompute,
        balance_tokens_per_system=balance,
        tokens_per_micro_batch=plan.seqs_per_micro_batch * job.seq,
        compute_bound=plan.seqs_per_micro_batch * job.seq >= balance,
    )


@dataclass(frozen=True)
class PlanChoice:
    """The plan a policy chose, its closed-form step, the alternatives weighed and why."""

    policy: str
    plan: WaferPlan
    report: AnalyticReport
    alternatives: tuple  # ((micro_batches, recompute, closed-form step s or None, note), ...)
    reason: str

    def to_dict(self) -> dict:
        return {"policy": self.policy, "micro_batches": self.plan.micro_batches,
                "recompute": self.plan.recompute, "seqs_per_micro_batch": self.plan.seqs_per_micro_batch,
                "closed_form_step_time_s": self.report.step_time_s,
                "alternatives": [{"micro_batches": m, "recompute": r, "closed_form_step_time_s": t,
                                  "note": note} for m, r, t, note in self.alternatives],
                "reason": self.reason}


def _bound(rep: AnalyticReport) -> str:
    parts = {"compute": rep.compute_s, "weight-stream": rep.stream_s, "gradient-stream": rep.gradient_s}
    return max(parts, key=parts.get) + "-bound"


def _describe(plan: WaferPlan) -> str:
    mb = "micro-batch" if plan.micro_batches == 1 else "micro-batches"
    return (f"{plan.micro_batches} {mb} of {plan.seqs_per_micro_batch} sequence(s) "
            f"{'with' if plan.recompute else 'without'} activation recompute")


def choose_plan(job: TrainingJob, cluster: ClusterSpec) -> PlanChoice:
    """The job's plan under its policy (``TrainingJob.micro_batches``), with the closed-form step.

    ``best``: the shortest closed-form step over the fewest micro-batches that fit without
    recompute and the fewest that fit with it. ``fit`` (alias ``auto``): the fewest that fit
    without recompute, recompute only when one sequence does not fit. An integer M: M micro-batches,
    recompute only if they do not fit without."""
    policy = job.micro_batches
    if policy != "best":
        plan = memory.plan(job, cluster)
        rep = _step_time(job, cluster, plan)
        why = ("the policy 'fit': the fewest micro-batches that fit the wafer" if policy in ("fit", "auto")
               else f"{policy} micro-batch(es) as asked")
        return PlanChoice(str(policy), plan, rep, (), f"{_describe(plan)}: {why}")
    tried = []
    for recompute in (False, True):
        try:
            plan = memory.fewest(job, cluster, recompute)
        except ConfigError as exc:
            tried.append((None, recompute, None, str(exc)))
            continue
        tried.append((plan, recompute, _step_time(job, cluster, plan), ""))
    ok = [t for t in tried if t[2] is not None]
    if not ok:
        raise ConfigError(tried[-1][3])
    plan, _, rep, _ = min(ok, key=lambda t: t[2].step_time_s)
    alternatives = tuple(
        (p.micro_batches if p else None, r, rp.step_time_s if rp else None,
         note or (f"{_bound(rp)}" + (f", {rp.step_time_s / rep.step_time_s - 1:+.1%}" if p is not plan else "")))
        for p, r, rp, note in tried)
    others = [f"{_describe(p)} takes {rp.step_time_s:.4g} s ({_bound(rp)})" for p, _, rp, _ in ok
              if p is not plan]
    reason = f"{_describe(plan)}: {rep.step_time_s:.4g} s per step by the closed form ({_bound(rep)})"
    if others:
        reason += "; " + "; ".join(others)
    else:
        reason += "; " + "; ".join(t[3] for t in tried if t[2] is None)
    return PlanChoice("best", plan, rep, alternatives, reason)


__all__ = ["AnalyticReport", "PlanChoice", "step_time", "choose_plan", "balance_tokens", "bandwidths",
           "FWD", "BWD", "RECOMPUTE"]
