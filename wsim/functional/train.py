"""``wsim.train``: really train a model (any family of ``models/registry.py``) by weight streaming
through the engine, on the CPU.

The engine runs with tensors on its events (``TrainingPayload``) and every CS-2 simulated
separately; the order of streaming, compute, reduction and update is the engine's event order.
The report's ``simulated_step_time_s`` is the hardware time of one step of the same job from the
timing engine: the caller's cluster and systems, the functional run's plan (micro-batches) and the
caller's ``SimOptions`` (gradient clipping's global update included), at the engine's usual chunk
grain (the functional run moves whole layers, which changes no tensor but would change the time).

``density``/``mask_seed``: sparse weight streaming (``wsim/functional/sparse.py``): fixed random masks
of that density on the weight matrices ``wsim/cluster/sparsity.py`` names; the timing job gets the same
density. At density 1 nothing is masked: the dense run, bit for bit.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from models.decoder import DecoderConfig
from models.spec import ModelSpec
from wsim.cluster import hardware
from wsim.cluster import generations
from wsim.cluster import sparsity
from wsim.engine.run import SimOptions, Simulation
from wsim.errors import ConfigError, non_negative, positive, require
from wsim.functional import sparse
from wsim.functional.executor import TrainingPayload
from wsim.cluster.job import TrainingJob

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class TrainReport:
    losses: list
    systems: int
    steps: int
    batch: int
    seq: int
    micro_batches: int
    simulated_step_time_s: float
    simulated_tokens_per_s: float
    functional_events: int
    wall_s: float
    # weight tensors still alive at a layer's backward, or copies of weights its graph saved: must be 0
    weights_held_between_passes: int
    weight_bytes_held_between_passes: int  # the bytes of those saved copies: must be 0
    peak_weight_bytes_per_cs2: float
    weight_buffer_bytes: float
    density: dict = field(default_factory=dict)  # per layer kind, as asked (wsim/cluster/sparsity.py)
    mask_seed: int = 0
    # per layer kind, the kept fraction of its weight-matrix entries: round(d * n) per tensor over n
    nonzero_fraction: dict = field(default_factory=dict)
    final_weights: dict = field(repr=False, compare=False, default_factory=dict)
    optimizer_state: dict = field(repr=False, compare=False, default_factory=dict)
    event_log: list = field(repr=False, compare=False, default_factory=list)

    def to_dict(self) -> dict:
        skip = {"final_weights", "optimizer_state", "event_log"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def spec_from_config(cfg: DecoderConfig, name: str | None = None) -> ModelSpec:
    """The cost model's view of a functional model (its family's shape), named after its architecture."""
    return cfg.spec(name or cfg.ARCHITECTURE)


def check_data(data: Tensor, cfg: DecoderConfig, steps: int, batch: int, first_step: int = 0) -> None:
    require(isinstance(data, Tensor) and data.dim() == 2 and not data.is_floating_point(),
            "data must be an integer array of shape (rows, seq+1)")
    rows, width = data.shape
    require(width >= 2, f"data rows hold {width} tokens; need at least 2 (seq+1)")
    require(width - 1 <= cfg.max_positions,
            f"data rows give seq {width - 1}, more than the model's {cfg.max_positions} positions")
    need = (first_step + steps) * batch
    require(rows >= need, f"data has {rows} rows; steps {first_step}..{first_step + steps - 1} "
                          f"of batch {batch} need {need}")
    lo, hi = int(data.min()), int(data.max())
    require(lo >= 0 and hi < cfg.vocab_size,
            f"data token ids span [{lo}, {hi}], outside the vocabulary [0, {cfg.vocab_size})")


def train(cfg: DecoderConfig, weights: dict[str, Tensor], data: Tensor, *, systems: int = 1,
          steps: int = 1, batch: int = 1, lr: float = 6e-4, betas=(0.9, 0.95), eps: float = 1e-8,
          weight_decay: float = 0.1, dtype: str | torch.dtype = "float32",
          micro_batches: int | str = "auto", grad_clip: float | None = None,
          cluster: hardware.ClusterSpec | None = None, options: SimOptions | None = None,
          first_step: int = 0, optimizer_state: dict | None = None,
          density: float | dict | sparsity.Density = 1.0, mask_seed: int = 0,
          progress: bool = False) -> TrainReport:
    """Train ``steps`` AdamW steps by weight streaming on ``systems`` simulated CS-2s.

    Step k uses rows k*batch .. (k+1)*batch-1 of ``data`` (rows of seq+1 token ids); CS-2 i takes
    the i-th contiguous slice of those rows. Defaults follow Cerebras-GPT (Dey et al. 2023):
    betas (0.9, 0.95), weight decay 0.1. ``first_step``/``optimizer_state`` resume a run.
    ``density`` (one number in (0, 1], ``{kind: d}`` or a ``Density``) and ``mask_seed`` (an integer)
    train the masked model of ``wsim/functional/sparse.py``."""
    torch_dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    require(torch_dtype in DTYPES.values(), f"dtype must be float32 or float64, got {dtype!r}")
    positive("lr", lr)
    positive("eps", eps)
    non_negative("weight_decay", weight_decay)
    require(len(betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas),
            f"betas must be two numbers in [0, 1), got {betas!r}")
    if grad_clip is not None:
        positive("grad_clip", grad_clip)
    positive("steps", steps, integer=True)
    positive("batch", batch, integer=True)
    check_data(data, cfg, steps, batch, first_step)
    density = sparsity.Density.of(density)
    sparse.check_mask_seed(mask_seed)
    spec = spec_from_config(cfg)
    sparsity.check_tied(density, spec)
    masks = sparse.masks(cfg, density, mask_seed)
    cluster = cluster or generations.preset("cs2", systems)
    if cluster.systems != systems:
        cluster = cluster.with_systems(systems)
    seq = data.size(1) - 1
    job = TrainingJob(spec, seq=seq, batch_seqs=batch, micro_batches=micro_batches, steps=steps,
                      density=density)  # the simulated hardware streams 16-bit whatever the CPU dtype
    options = options or SimOptions()
    if grad_clip is not None:
        options = SimOptions(**{**options.__dict__, "global_update": True})
    t0 = time.perf_counter()
    sim = Simulation(job, cluster, options, payload=_Deferred())
    if sim.plan.recompute:
        raise ConfigError("functional mode keeps every activation: this batch needs activation "
                          "recompute on the wafer; use more --micro-batches or a shorter seq")
    payload = TrainingPayload(cfg, weights, data, batch, systems, sim.plan.micro_batch_seqs, lr, betas,
                              eps, weight_decay, torch_dtype, grad_clip, first_step, optimizer_state,
                              masks=masks)
    sim.payload = payload
    if progress:
        print(f"wsim: training a {cfg.n_layers}-layer {cfg.MODEL_TYPE} model on {systems} simulated CS-2, {steps} "
              f"steps of {batch} x {seq} tokens, {sim.plan.micro_batches} micro-batch(es)",
              file=sys.stderr, flush=True)

        def report_step(step: int, loss: float) -> None:
            print(f"wsim: step {first_step + step + 1}/{first_step + steps}  loss {loss:.4f}  "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

        payload.on_step_end = report_step
    sim.run()
    wall = time.perf_counter() - t0
    # one step of the same job, plan and options, timed at the engine's own chunk grain
    timing = Simulation(TrainingJob(job.model, seq=seq, batch_seqs=batch, micro_batches=micro_batches,
                                    density=density), cluster, options, plan=sim.plan).run()
    return TrainReport(
        losses=payload.step_losses(), systems=systems, steps=steps, batch=batch, seq=seq,
        micro_batches=sim.plan.micro_batches, simulated_step_time_s=timing.step_time_s,
        simulated_tokens_per_s=timing.tokens_per_s, functional_events=sim.events, wall_s=wall,
        weights_held_between_passes=payload.weights_held_between_passes,
        weight_bytes_held_between_passes=payload.weight_bytes_held_between_passes,
        peak_weight_bytes_per_cs2=max(c.peak_held_bytes for c in sim.cs2s),
        weight_buffer_bytes=cluster.cs2.weight_buffer_bytes,
        density=density.to_dict(), mask_seed=mask_seed, nonzero_fraction=sparse.nonzero_fraction(cfg, masks),
        final_weights=payload.weights(), optimizer_state=payload.optimizer_state(),
        event_log=payload.log,
    )


class _Deferred:
    """Placeholder payload while the plan is checked; replaced before the run."""
