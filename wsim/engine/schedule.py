"""The order of work in weight streaming: which layer's weights stream when, and how they are chunked.

For each step and micro-batch: forward over layers 0..L-1, then backward over L-1..0. Under
activation checkpointing the backward of a layer is preceded by its recomputed forward, and its
weights stream twice (once per pass: the recompute runs the layer forwards, the backward runs it
backwards, and the wafer keeps no weights between them). An embedding's backward needs no weights.

Chunks are the simulation's grain: a layer's weights are cut into equal chunks; the CS-2 computes a
chunk's share of the layer when the chunk has arrived. ``auto`` chunking keeps the event count near
a budget (aggregation that changes the answer by well under 1%: tests check convergence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.spec import LayerSpec
from wsim.cluster import sparsity
from wsim.errors import ConfigError
from wsim.cluster.hardware import ClusterSpec
from wsim.cluster.job import TrainingJob
from wsim.cluster.memory import WaferPlan
from wsim.cluster.wafer import PassTimer

FWD, RECOMPUTE, BWD = "fwd", "recompute", "bwd"


@dataclass(frozen=True)
class Pass:
    """One layer's work for one micro-batch in one direction."""

    step: int
    micro_batch: int
    phase: str  # fwd | recompute | bwd
    layer: int
    chunks: int
    streams_weights: bool
    weight_chunk_bytes: float
    grad_chunk_bytes: float  # bwd only
    flops_per_system: float  # for this pass, this micro-batch, one CS-2
    compute_s: float  # the pass on one CS-2, by the wafer compute model (wsim/cluster/wafer.py)


@dataclass(frozen=True)
class Schedule:
    passes: list[Pass]
    layers: list[LayerSpec]
    update_deps: list[tuple[int, ...]]  # layer l's forward needs these layers' updates
    grad_sources: list[tuple[int, ...]]  # layer l's update waits for these layers' gradients
    chunk_bytes: float
    micro_batches: int
    steps: int
    training: bool = True  # False: forward passes only, no gradients, no updates, no gating
    update_params: list | None = None  # per layer, what the optimizer updates (None: owned_params)


def update_dependencies(layers: list[LayerSpec], tied: bool) -> tuple[list, list]:
    """Tied embeddings: the head streams the embedding matrix, so its forward needs the embedding's
    update, and the embedding's update needs the head's gradient too (both gradients accumulate)."""
    n = len(layers)
    deps = [(l,) for l in range(n)]
    sources = [(l,) for l in range(n)]
    if tied:
        head, emb = n - 1, 0
        deps[head] = (head, emb)
        sources[emb] = (emb, head)
    return deps, sources


def choose_chunk_bytes(job: TrainingJob, cluster: ClusterSpec, plan: WaferPlan,
                       max_chunks_per_layer: int, target_chunk_passes: int) -> float:
    """Chunks no larger than a layer / ``max_chunks_per_layer`` and few enough that one simulated
    step has about ``target_chunk_passes`` chunk passes, but never over a quarter of the wafer's
    weight buffer (so that at least four chunks can be in flight and the stream never idles on a
    grain the hardware does not have)."""
    weight_bytes = [t.weight_bytes for t in job.traffic(cluster.memoryx)]
    passes = (3 if plan.recompute else 2) * plan.micro_batches
    total = sum(weight_bytes) * passes
    chunk = max(max(weight_bytes) / max_chunks_per_layer, total / target_chunk_passes)
    return min(chunk, cluster.cs2.weight_buffer_bytes / 4)


def layer_chunks(weight_bytes: float, chunk_bytes: float) -> int:
    """Chunks of a layer of ``weight_bytes`` at grain ``chunk_bytes`` (the last one may be short)."""
    return max(1, math.ceil(weight_bytes / chunk_bytes - 1e-9))


def chunk_passes(job: TrainingJob, plan: WaferPlan, chunk_bytes: float, steps: int,
                 cluster: ClusterSpec | None = None) -> int:
    """How many chunk passes ``build`` would make, counted without building them: every layer's
    chunks once forward and once backward (plus once recomputed, for blocks under checkpointing),
    per micro-batch, per step. The engine's work and memory grow with this count. (A sparse job's
    streamed bytes depend on the cluster's sparse format: pass ``cluster``.)"""
    per_mb = 0
    traffic = job.traffic(cluster.memoryx if cluster is not None else None)
    for layer, t in zip(job.layers(), traffic):
        passes = 3 if plan.recompute and layer.kind == "block" else 2
        per_mb += passes * layer_chunks(t.weight_bytes, chunk_bytes)
    return steps * plan.micro_batches * per_mb


def check_work(count: int, limit: int, what: str, *, unit: str = "chunk passes",
               limit_name: str = "max_chunk_passes (--max-chunk-passes)",
               hint: str = "simulate fewer steps or sequences per system, or use a larger --chunk-bytes") -> None:
    """Refuse, before building anything, work of more than ``limit`` passes."""
    if count > limit:
        raise ConfigError(f"{what} needs {count:.3g} {unit}, over {limit_name} {limit:,}: {hint}")


def build(job: TrainingJob, cluster: ClusterSpec, plan: WaferPlan, chunk_bytes: float,
          steps: int, max_chunk_passes: int | None = None) -> Schedule:
    """The step's passes in execution order. ``max_chunk_passes``: refuse (ConfigError) a schedule
    with more chunk passes than this before building it."""
    if not chunk_bytes > 0:
        raise ConfigError(f"chunk_bytes must be positive, got {chunk_bytes!r}")
    if max_chunk_passes is not None:
        check_work(chunk_passes(job, plan, chunk_bytes, steps, cluster), max_chunk_passes,
                   f"{job.model.name}: {steps} step(s) x {plan.micro_batches} micro-batch(es) x "
                   f"{job.model.layers + 2} layers at {chunk_bytes:.3g}-byte chunks")
    layers = job.layers()
    density = job.layer_densities()
    traffic = job.traffic(cluster.memoryx)
    timer = PassTimer.for_job(job, cluster.cs2)
    mb_tokens = [n * job.seq for n in plan.micro_batch_seqs]
    passes: list[Pass] = []

    def add(step: int, mb: int, phase: str, li: int) -> None:
        tokens = mb_tokens[mb]
        layer, t = layers[li], traffic[li]
        wbytes = t.weight_bytes
        chunks = layer_chunks(wbytes, chunk_bytes)
        streams = phase != BWD or layer.needs_weights_in_backward
        flops = sparsity.flops_per_token(layer, density[li], phase)
        passes.append(Pass(
            step=step, micro_batch=mb, phase=phase, layer=li, chunks=chunks, streams_weights=streams,
            weight_chunk_bytes=wbytes / chunks,
            grad_chunk_bytes=t.grad_bytes / chunks if phase == BWD else 0.0,
            flops_per_system=flops * tokens, compute_s=timer.seconds(li, phase, tokens),
        ))

    for step in range(steps):
        for mb in range(plan.micro_batches):
            for li in range(len(layers)):
                add(step, mb, FWD, li)
            for li in reversed(range(len(layers))):
                if plan.recompute and layers[li].kind == "block":
                    add(step, mb, RECOMPUTE, li)
                add(step, mb, BWD, li)
    deps, sources = update_dependencies(layers, job.model.tied_embeddings)
    return Schedule(passes, layers, deps, sources, chunk_bytes, plan.micro_batches, steps,
                    update_params=[t.update_params for t in traffic])
