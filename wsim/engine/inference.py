"""Weight-streamed inference on the engine: every forward pass streams every layer's weights again.

A generation is a list of forward calls (the prompt's prefill, then one call per decoded token,
``ForwardCall``). The engine runs them back to back as forward-only passes: no gradients, no
updates, so MemoryX streams continuously and prefetches the next call's layers while the CS-2s
compute. The KV cache stays on the wafer (it is the activation that inference keeps), so its size
bounds the batch. With few tokens per call a CS-2 waits for weights: the stream bound is

    tokens/s <= rows per call x B_down / (weight bytes)      (one full stream per decoding step)

and the compute bound is N x the wafer compute model's tokens per second (wsim/cluster/wafer.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.spec import ModelSpec
from wsim.engine import closed_form
from wsim.engine import schedule as sched
from wsim.engine.run import SimOptions, Simulation
from wsim.errors import ConfigError, positive, require
from wsim.cluster.hardware import ClusterSpec
from wsim.cluster.wafer import PassTimer, tokens_per_s as wafer_tokens_per_s


@dataclass(frozen=True)
class ForwardCall:
    rows: int  # sequences in this pass, over all systems
    new_tokens: int  # tokens per row computed now (the prompt for prefill, 1 when decoding)
    context: int  # tokens per row in the KV cache after this pass

    def __post_init__(self) -> None:
        positive("rows", self.rows, integer=True)
        positive("new_tokens", self.new_tokens, integer=True)
        require(isinstance(self.context, int) and self.context >= self.new_tokens,
                f"context ({self.context!r}) must be at least new_tokens ({self.new_tokens})")


def calls_for(rows: int, prompt_tokens: int, new_tokens: int) -> list[ForwardCall]:
    """A prefill of the prompt then one call per further token (the first new token comes from
    the prefill's logits), as ``generate`` does."""
    calls = [ForwardCall(rows, prompt_tokens, prompt_tokens)]
    for k in range(1, new_tokens):
        calls.append(ForwardCall(rows, 1, prompt_tokens + k))
    return calls


def kv_cache_bytes(model: ModelSpec, rows_per_system: int, context: int, bytes_per_element: int = 2) -> float:
    """Keys and values of every block for every cached token, on one CS-2: kv_heads x head_dim
    per token per block each (grouped-query attention caches fewer heads than it queries)."""
    return model.kv_cache_bytes_per_token(bytes_per_element) * context * rows_per_system


def check_kv_cache(model: ModelSpec, rows_per_system: int, context: int, cluster: ClusterSpec,
                   bytes_per_element: int = 2) -> None:
    """Refuse a KV cache that does not fit the wafer's SRAM beside the weight buffer."""
    kv = kv_cache_bytes(model, rows_per_system, context, bytes_per_element)
    usable = cluster.cs2.usable_sram_bytes - cluster.cs2.weight_buffer_bytes
    if kv > usable:
        raise ConfigError(f"the KV cache needs {kv / 1e9:.3g} GB per CS-2 ({rows_per_system} sequences of "
                          f"{context} tokens), over the wafer's {usable / 1e9:.3g} GB: "
                          f"use fewer rows per system or more systems")


@dataclass(frozen=True)
class InferenceReport:
    model: str
    systems: int
    calls: int
    latency_s: float  # the whole generation
    call_times_s: list
    tokens_generated: int  # rows x new tokens of the decode, counted once per row
    tokens_per_s: float
    stream_bound_tokens_per_s: float  # decode calls at the stream bound
    compute_bound_tokens_per_s: float
    kv_cache_bytes: float  # peak per CS-2
    weight_bytes_per_call: float
    events: int
    bottleneck: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def build_schedule(model: ModelSpec, calls: list[ForwardCall], cluster: ClusterSpec,
                   bytes_per_element: int = 2, chunk_bytes: float | None = None,
                   options: SimOptions = SimOptions()) -> sched.Schedule:
    n = cluster.systems
    for c in calls:
        require(c.rows % n == 0, f"rows {c.rows} are not divisible by systems {n}: every CS-2 "
                                 f"takes whole sequences")
        try:
            model.check_seq(c.context)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    check_kv_cache(model, max(c.rows for c in calls) // n, max(c.context for c in calls), cluster,
                   bytes_per_element)
    weight_bytes = model.params * bytes_per_element
    require(weight_bytes <= cluster.memoryx.capacity_bytes,
            f"model weights ({weight_bytes / 1e12:.3g} TB) exceed memoryx.capacity_bytes")
    layers = model.layer_specs(seq=1, bytes_per_element=bytes_per_element)
    layer_bytes = [l.params * bytes_per_element for l in layers]
    if chunk_bytes is None:
        total = sum(layer_bytes) * len(calls)
        chunk_bytes = max(max(layer_bytes) / options.max_chunks_per_layer,
                          total / options.target_chunk_passes)
        chunk_bytes = min(chunk_bytes, cluster.cs2.weight_buffer_bytes / 4)
    per_call = sum(sched.layer_chunks(b, chunk_bytes) for b in layer_bytes)
    sched.check_work(per_call * len(calls), options.max_chunk_passes,
                     f"{model.name}: {len(calls)} forward call(s) x {len(layers)} layers at "
                     f"{chunk_bytes:.3g}-byte chunks")
    passes = []
    for k, c in enumerate(calls):
        at_context = model.layer_specs(seq=c.context, bytes_per_element=bytes_per_element)
        timer = PassTimer(at_context, cluster.cs2)
        tokens = c.rows // n * c.new_tokens
        for li, layer in enumerate(at_context):
            chunks = sched.layer_chunks(layer_bytes[li], chunk_bytes)
            passes.append(sched.Pass(step=k, micro_batch=0, phase=sched.FWD, layer=li, chunks=chunks,
                                     streams_weights=True, weight_chunk_bytes=layer_bytes[li] / chunks,
                                     grad_chunk_bytes=0.0,
                                     flops_per_system=layer.fwd_flops_per_token * tokens,
                                     compute_s=timer.seconds(li, sched.FWD, tokens)))
    deps, sources = sched.update_dependencies(layers, model.tied_embeddings)
    return sched.Schedule(passes, layers, deps, sources, chunk_bytes, 1, len(calls), training=False)


def simulate_inference(model: ModelSpec, calls: list[ForwardCall], cluster: ClusterSpec,
                       options: SimOptions = SimOptions(), bytes_per_element: int = 2) -> InferenceReport:
    require(len(calls) > 0, "a generation needs at least one forward call")
    schedule = build_schedule(model, calls, cluster, bytes_per_element, options.chunk_bytes, options)
    sim = Simulation(None, cluster, options, schedule=schedule)
    sim.run()
    return _report(sim, model, calls, cluster, bytes_per_element)


def _report(sim: Simulation, model: ModelSpec, calls: list[ForwardCall], cluster: ClusterSpec,
            bytes_per_element: int) -> InferenceReport:
    cs2 = max(sim.cs2s, key=lambda c: max(c.last_end.values()))
    ends = [cs2.last_end[k] for k in range(len(calls))]
    times = [ends[0]] + [ends[k] - ends[k - 1] for k in range(1, len(calls))]
    latency = ends[-1]
    rows = calls[0].rows
    generated = rows * len(calls)  # the prefill yields the first token, each later call one more
    streamed = sum(l.params for l in sim.schedule.layers) * bytes_per_element  # tied head: wte twice
    down, _, _ = closed_form.bandwidths(cluster)
    stream_bound = rows * down / streamed
    compute_bound = cluster.systems * wafer_tokens_per_s(model.layer_specs(seq=calls[-1].context),
                                                         cluster.cs2, training=False)
    busy = cs2.busy_by_phase["fwd"]
    stream_busy = sim.memoryx.egress.busy_s
    return InferenceReport(
        model=model.name, systems=cluster.systems, calls=len(calls), latency_s=latency,
        call_times_s=times, tokens_generated=generated, tokens_per_s=generated / latency,
        stream_bound_tokens_per_s=stream_bound, compute_bound_tokens_per_s=compute_bound,
        kv_cache_bytes=kv_cache_bytes(model, max(c.rows for c in calls) // cluster.systems,
                                      max(c.context for c in calls), bytes_per_element),
        weight_bytes_per_call=streamed, events=sim.events,
        bottleneck="weight_stream" if stream_busy >= busy else "cs2_compute",
    )
