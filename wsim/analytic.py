"""Closed-form weight streaming: the engine's cross-check, and fast enough for large sweeps.

With no contention a step is a three-stage pipeline over the step's layer passes (weights stream
down, the CS-2 computes, gradients stream up), each pass taking S, C and G on the three stages:

    T_step = flow_shop(S, C, G over the passes) + bubble   (<= sum of per-pass max(C, S, G) + bubble)
    C = FLOPs of the pass on one CS-2 / (peak x efficiency)
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
"""

from __future__ import annotations

from dataclasses import dataclass

from wsim.engine.schedule import BWD, FWD, RECOMPUTE, check_work, chunk_passes
from wsim.hardware import ClusterSpec
from wsim.job import TrainingJob
from wsim.memory import WaferPlan, check_memoryx, plan as plan_wafer


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


def bandwidths(cluster: ClusterSpec) -> tuple[float, float, int]:
    """(B_down, B_up, hops): the slowest link each way and the hops from MemoryX to a CS-2."""
    from wsim import topology

    g = topology.build(cluster)
    sx = cluster.swarmx.link_bytes_per_s
    leaf = min(sx, cluster.cs2.io_bytes_per_s)
    mx = cluster.memoryx
    down = min(mx.stream_bytes_per_s, sx, leaf)
    up = min(mx.ingest_bytes_per_s, sx, leaf)
    return down, up, topology.depth(g)


def balance_tokens(job: TrainingJob, cluster: ClusterSpec) -> float:
    """Tokens per CS-2 per micro-batch where a block's forward compute equals its weight stream."""
    down, _, _ = bandwidths(cluster)
    block = next(l for l in job.layers() if l.kind == "block")
    stream_s = block.params * job.bytes_per_element / down
    return stream_s * cluster.cs2.sustained_flops_per_s / block.fwd_flops_per_token


def passes(job: TrainingJob, cluster: ClusterSpec, plan: WaferPlan) -> list[tuple[float, float, float]]:
    """(S, C, G) seconds of every layer pass of one step, in stream order."""
    check_work(chunk_passes(job, plan, float("inf"), 1), MAX_LAYER_PASSES,
               f"{job.model.name}: {plan.micro_batches} micro-batch(es) x {job.model.layers + 2} layers",
               unit="layer passes", limit_name="the closed form's MAX_LAYER_PASSES",
               hint="use fewer sequences per system")
    down, up, _ = bandwidths(cluster)
    rate = cluster.cs2.sustained_flops_per_s
    layers = job.layers()
    out = []
    for seqs in plan.micro_batch_seqs:
        tokens = seqs * job.seq
        for layer in layers:
            out.append((layer.params * job.bytes_per_element / down,
                        layer.fwd_flops_per_token * tokens / rate, 0.0))
        for layer in reversed(layers):
            s = layer.params * job.bytes_per_element / down
            if plan.recompute and layer.kind == "block":
                out.append((s, layer.fwd_flops_per_token * tokens / rate, 0.0))
            out.append((s if layer.needs_weights_in_backward else 0.0,
                        layer.bwd_flops_per_token * tokens / rate,
                        layer.params * job.grad_bytes_per_param / up))
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
    check_memoryx(job, cluster)
    plan = plan or plan_wafer(job, cluster)
    _, _, hops = bandwidths(cluster)
    work = passes(job, cluster, plan)
    flow = flow_shop_s(work)
    owned = job.layers()[0].owned_params  # the embedding: the last gradient in, the first weights out
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


__all__ = ["AnalyticReport", "step_time", "balance_tokens", "bandwidths", "FWD", "BWD", "RECOMPUTE"]
