"""How long one CS-2 takes for a layer pass: the wafer compute model.

A layer pass (forward, recomputed forward or backward of one layer for one micro-batch) costs

    t = sum over matrix products   tokens x FLOPs / (peak x eta(k, n))
      + sum over element-wise ops   tokens x operations / (cores x clock x r_ew)
      + pass_overhead_cycles / clock

- ``eta(k, n) = matmul_peak_fraction x k / (k + n_half) x n / (n + n_half)``: Hockney's
  (r_inf, n_1/2) model of a pipelined vector machine (Hockney & Jesshope, "Parallel Computers 2",
  1988) applied to both dimensions of a (1 x k) @ (k x n) product spread over the wafer's 2-D core
  grid: a large product runs at ``matmul_peak_fraction`` of the FP16 peak, and a dimension as short
  as ``n_half`` halves it. ``n_half`` is the side of the core grid, sqrt(cores) = 922 on the WSE-2
  (structure, not fitted): a dimension laid along an axis shorter than the axis leaves cores idle,
  a longer one folds over it. Attention's per-head activation products (scores: k = head dim,
  n = sequence; values: k = sequence, n = head dim) lie side by side along their shorter dimension
  (heads x head dim = hidden). So utilisation depends on hidden size, FFN width, sequence and
  vocabulary. (Fitted freely, n_half comes out at 910 on the development set: the structural value
  is what the data say; ``experiments/wafer_validation.py`` reports it.)
- Element-wise work (LayerNorm, GeLU, softmax, bias and residual adds; ``models.spec.ElementwiseOp``)
  runs at ``r_ew`` operations per core per cycle, or at the rate SRAM bandwidth allows if lower
  (4 bytes per operation: a 16-bit read and a 16-bit write).
- Backward passes cost twice the forward, matrix products and element-wise alike (the weight and
  the input gradient; the element-wise derivatives read the saved input and the incoming gradient).
- ``pass_overhead_cycles``: filling and draining the wafer once per pass, so a pass of few tokens
  (decoding, tiny micro-batches) runs below the large-pass rate.

The time is linear in tokens: ``t = tokens x seconds_per_token + overhead``. ``CS2Spec.compute_
efficiency``, when set, replaces all of this with FLOPs / (peak x efficiency) (the pre-model what-if).

Calibration (``experiments/wafer_validation.py`` regenerates every figure): one parameter,
``matmul_peak_fraction``, is fitted, by least squares on the log of samples/s, on one CS-2
measurements of
Zhang, Parikh, Zhang, Prasanna, "Benchmarking the Performance of Large Language Models on the
Cerebras Wafer Scale Engine", IEEE HPEC 2024 (arXiv 2409.00287), Table V, batch 256 (development
set), with ``wsim``'s own default micro-batching choosing each plan; batch 128 and leave-one-out
errors are reported as validation. The rest is structure (sourced) or assumption (named).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.spec import LayerSpec, MatmulOp
from wsim.cluster import moe
from wsim.cluster.hardware import CS2Spec

BWD_FACTOR = 2.0  # backward = 2 x forward (weight and input gradients), models.spec's convention
BYTES_PER_ELEMENTWISE_OP = 4.0  # a 16-bit operand read and a 16-bit result written


def half_dim(cs2: CS2Spec) -> float:
    """n_1/2: ``cs2.matmul_half_dim``, or by default the side of the core grid, sqrt(cores)."""
    return cs2.matmul_half_dim if cs2.matmul_half_dim is not None else math.sqrt(cs2.cores)


def product_dims(op: MatmulOp) -> tuple[int, int]:
    """The two dimensions a product spreads over the core grid: (k, n) for one product; ``count``
    independent products (attention heads) lie side by side along the shorter one."""
    if op.k <= op.n:
        return op.k * op.count, op.n
    return op.k, op.n * op.count


def matmul_efficiency(op: MatmulOp, cs2: CS2Spec) -> float:
    """Fraction of the FP16 peak a (1 x k) @ (k x n) product sustains on the wafer."""
    half = half_dim(cs2)
    a, b = product_dims(op)
    return cs2.matmul_peak_fraction * (a / (a + half)) * (b / (b + half))


def elementwise_ops_per_s(cs2: CS2Spec) -> float:
    """Element-wise operations per second over the wafer: issue rate, or SRAM bandwidth if lower."""
    issue = cs2.cores * cs2.clock_hz * cs2.elementwise_ops_per_core_per_cycle
    return min(issue, cs2.sram_bytes_per_s / BYTES_PER_ELEMENTWISE_OP)


@dataclass(frozen=True)
class LayerCost:
    """One layer's forward cost per token, split by kind of work (seconds per token)."""

    matmul_s: float
    elementwise_s: float

    @property
    def forward_s(self) -> float:
        return self.matmul_s + self.elementwise_s


def sparse_time_factor(cs2: CS2Spec, density: float) -> float:
    """What a weight product's time becomes at ``density``: 1 - e (1 - d), e the realised share
    of the FLOP saving (``cs2.sparse_flop_efficiency``; wsim/cluster/sparsity.py)."""
    return 1.0 - cs2.sparse_flop_efficiency * (1.0 - density) if density != 1 else 1.0


def is_expert(op: MatmulOp) -> bool:
    """A routed expert's product (``MatmulOp.stored`` set: every expert streamed, k computed)."""
    return op.weight and op.stored > 0


def _matmul_s(ops, cs2: CS2Spec, sparse: float) -> float:
    peak = cs2.peak_flops_per_s
    return sum(op.flops_per_token / (peak * matmul_efficiency(op, cs2)) * (sparse if op.weight else 1.0)
               for op in ops)


def layer_cost(layer: LayerSpec, cs2: CS2Spec, density: float = 1.0) -> LayerCost:
    """Seconds per token of ``layer``'s forward on one CS-2, its weight matrices at ``density``
    (an MoE block's experts as ``count`` = k products side by side; ``PassTimer`` times them one
    expert after another instead, ``expert_seconds_per_token``)."""
    sparse = sparse_time_factor(cs2, density)
    if cs2.compute_efficiency is not None:
        flops = layer.fwd_flops_per_token
        if sparse != 1.0:
            flops -= (1.0 - sparse) * sum(op.flops_per_token for op in layer.matmuls if op.weight)
        return LayerCost(flops / (cs2.peak_flops_per_s * cs2.compute_efficiency), 0.0)
    peak = cs2.peak_flops_per_s
    mm = _matmul_s(layer.matmuls, cs2, sparse)
    ops = sum(op.ops_per_token for op in layer.elementwise)
    if not layer.matmuls and not layer.elementwise:  # a layer that lists no ops: its FLOPs at peak
        mm = layer.fwd_flops_per_token / (peak * cs2.matmul_peak_fraction)
    return LayerCost(mm, ops / elementwise_ops_per_s(cs2))


def expert_seconds_per_token(layer: LayerSpec, cs2: CS2Spec, density: float = 1.0) -> tuple[float, float]:
    """(forward seconds per token of the layer's expert products as ``layer_cost`` times them,
    forward seconds per token that *one* expert takes for one of its tokens, its products alone on
    the wafer: (k x n), not (k x count n))."""
    sparse = sparse_time_factor(cs2, density)
    experts = [op for op in layer.matmuls if is_expert(op)]
    one = [MatmulOp(op.name, op.k, op.n) for op in experts]
    return _matmul_s(experts, cs2, sparse), _matmul_s(one, cs2, sparse)


def attention_core_seconds_per_token(layer: LayerSpec, cs2: CS2Spec) -> float:
    """Forward seconds per token of attention's activation products and softmax (what Batch Tiling
    on Attention recomputes in the backward, wsim/cluster/moe.py)."""
    mm = _matmul_s([op for op in layer.matmuls if not op.weight], cs2, 1.0)
    ew = sum(op.ops_per_token for op in layer.elementwise if op.name == "softmax")
    return mm + ew / elementwise_ops_per_s(cs2)


def pass_overhead_s(cs2: CS2Spec) -> float:
    return 0.0 if cs2.compute_efficiency is not None else cs2.pass_overhead_cycles / cs2.clock_hz


def seconds_per_token(layer: LayerSpec, phase: str, cs2: CS2Spec, density: float = 1.0) -> float:
    """Seconds per token of one pass of ``layer``: ``fwd``, ``recompute`` or ``bwd``."""
    fwd = layer_cost(layer, cs2, density).forward_s
    if phase == "bwd":
        if cs2.compute_efficiency is not None:
            flops = layer.bwd_flops_per_token
            sparse = sparse_time_factor(cs2, density)
            if sparse != 1.0:  # the backward's weight products are twice the forward's
                flops -= BWD_FACTOR * (1.0 - sparse) * sum(op.flops_per_token for op in layer.matmuls
                                                           if op.weight)
            return flops / (cs2.peak_flops_per_s * cs2.compute_efficiency)
        return BWD_FACTOR * fwd
    return fwd


class PassTimer:
    """Pass times of a job's layers, computed once per distinct layer shape (blocks repeat).
    ``densities``: each layer's weight density (wsim/cluster/sparsity.py); None: dense.

    A pass takes ``tokens x per_token[i][phase] + overhead[i]`` seconds: affine in the tokens.
    An MoE block (wsim/cluster/moe.py) runs its experts one after another, each over the whole
    wafer as its own sub-pass: ``experts_run`` sub-passes of ``tokens x k x max share`` tokens each
    (every expert's product padded to the most loaded one's), each with its fill and drain.
    ``attention_recompute``: Batch Tiling on Attention, the backward of a block recomputes its
    attention core (scores, softmax, values)."""

    def __init__(self, layers: list[LayerSpec], cs2: CS2Spec, densities: list[float] | None = None,
                 *, expert_shares: tuple[float, ...] | None = None, attention_recompute: bool = False):
        self.cs2 = cs2
        self.overhead_s = pass_overhead_s(cs2)
        cache: dict = {}
        self.per_token: list[dict[str, float]] = []
        self.overhead: list[float] = []
        # per MoE layer: (experts that run, k) so that a pass of fewer than E / k tokens pays only
        # the sub-passes of the experts it can reach (decoding); None for other layers
        self.expert_runs: list[tuple[int, int] | None] = []
        for i, layer in enumerate(layers):
            d = 1.0 if densities is None else densities[i]
            # by identity: a model's blocks share one tuple of products (equal tuples that are not the
            # same object are timed again, to the same result); hashing their contents costs more
            key = (layer.kind, id(layer.matmuls), id(layer.elementwise), layer.fwd_flops_per_token,
                   layer.bwd_flops_per_token, d)
            if key not in cache:
                per = {ph: seconds_per_token(layer, ph, cs2, d) for ph in ("fwd", "recompute", "bwd")}
                over, runs = self.overhead_s, None
                experts = [op for op in layer.matmuls if is_expert(op)]
                if experts and cs2.compute_efficiency is None:
                    side_by_side, one = expert_seconds_per_token(layer, cs2, d)
                    run, slots = moe.expert_sub_passes(experts[0].stored, experts[0].count, expert_shares)
                    for ph, f in (("fwd", 1.0), ("recompute", 1.0), ("bwd", BWD_FACTOR)):
                        per[ph] += f * (slots * one - side_by_side)
                    over += run * self.overhead_s
                    runs = (run, experts[0].count)
                if attention_recompute and layer.kind == "block" and cs2.compute_efficiency is None:
                    per["bwd"] += attention_core_seconds_per_token(layer, cs2)
                cache[key] = (per, over, runs)
            per, over, runs = cache[key]
            self.expert_runs.append(runs)
            self.per_token.append(per)
            self.overhead.append(over)

    @classmethod
    def for_job(cls, job, cs2: CS2Spec, first: int = 0, stop: int | None = None) -> "PassTimer":
        """The timer of a ``TrainingJob``'s layers [first:stop] (its densities, routing and BTA)."""
        return cls(job.layers()[first:stop], cs2, job.layer_densities()[first:stop],
                   expert_shares=job.expert_shares, attention_recompute=job.attention_tile_seqs > 0)

    def seconds(self, layer_index: int, phase: str, tokens: float) -> float:
        t = tokens * self.per_token[layer_index][phase] + self.overhead[layer_index]
        runs = self.expert_runs[layer_index]
        if runs is not None and tokens * runs[1] < runs[0]:  # fewer (token, expert) pairs than experts
            t -= (runs[0] - math.ceil(tokens * runs[1])) * self.overhead_s
        return t


def tokens_per_s(layers: list[LayerSpec], cs2: CS2Spec, *, training: bool = True) -> float:
    """Large-batch tokens per second of one CS-2 (forward + backward, or forward only): the
    compute bound, ignoring weight streaming and per-pass overheads."""
    phases = ("fwd", "bwd") if training else ("fwd",)
    return 1.0 / sum(seconds_per_token(l, ph, cs2) for l in layers for ph in phases)
