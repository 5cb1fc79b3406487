"""The records a ``models.spec.ModelSpec`` lists for each streamed layer: its matrix products
(``MatmulOp``), its element-wise operations (``ElementwiseOp``, with the operations per element of each
kind in ``ELEMENTWISE_OPS``), a block's stored activations (``BlockActivations``) and the layer itself
(``LayerSpec``). What goes into them, and the conventions they follow, is ``models/per_layer.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LayerKind = Literal["embedding", "block", "head"]


@dataclass(frozen=True)
class MatmulOp:
    """A matrix product of one layer's forward, per token: ``count`` products (1 x k) @ (k x n).

    ``weight``: the (k x n) operand is a streamed weight matrix (QKV, projections, MLP, LM head);
    otherwise both operands are activations (attention: scores Q K^T with k = head dim and n = seq,
    the value product with k = seq and n = head dim, ``count`` = heads)."""

    name: str
    k: int  # reduction (inner) dimension
    n: int  # output features
    count: int = 1
    weight: bool = True
    stored: int = 0  # weight matrices streamed for it; 0 means count (MoE experts: all E, count = k)

    @property
    def weight_entries(self) -> int:
        """Entries of the streamed (k x n) weight matrices this product draws on (0 for activations)."""
        return self.k * self.n * (self.stored or self.count) if self.weight else 0

    @property
    def flops_per_token(self) -> float:
        return 2.0 * self.k * self.n * self.count


@dataclass(frozen=True)
class ElementwiseOp:
    """An element-wise operation of one layer's forward: elements touched per token and arithmetic
    operations per element (counted from the formula; the backward is taken as twice the forward)."""

    name: str
    elements_per_token: float
    ops_per_element: float

    @property
    def ops_per_token(self) -> float:
        return self.elements_per_token * self.ops_per_element


# Arithmetic operations per element in the forward, counted from each formula (an assumption of the
# count, not a measurement): LayerNorm (x - mean) / sqrt(var + eps) * g + b: mean, subtract, square,
# sum, scale by the reciprocal root, gain, bias = 7; RMSNorm x / sqrt(mean(x^2) + eps) * g (Zhang &
# Sennrich 2019, arXiv 1910.07467): square, sum, scale by the reciprocal root, gain = 4; softmax:
# max, subtract, exp, sum, scale = 5; GeLU (tanh form, Hendrycks & Gimpel 2016): cube, 2 multiply-adds,
# tanh, add, 2 multiplies = 7 (the erf and "fast" forms likewise); SiLU x * sigmoid(x): exp, add,
# reciprocal, multiply = 4; the gate of a gated MLP (Shazeer 2020, arXiv 2002.05202) multiplies the
# activation by the up projection: 1; rotary (Su et al. 2021, arXiv 2104.09864, eq. 34) x cos +
# rotate(x) sin on each rotated element of q and k: 2 multiplies and an add = 3 (the cos/sin tables
# are per position, shared by the batch and every layer: not counted); ReLU 1; a residual or bias
# add 1; cross-entropy over the vocabulary is a softmax (5) plus the target pick.
ELEMENTWISE_OPS = {"layernorm": 7.0, "rmsnorm": 4.0, "softmax": 5.0, "gelu": 7.0, "gelu_new": 7.0,
                   "gelu_fast": 7.0, "silu": 4.0, "relu": 1.0, "gate": 1.0, "rotary": 3.0,
                   "residual": 1.0, "bias": 1.0, "position": 1.0, "cross_entropy": 5.0,
                   "combine": 2.0, "sigmoid": 4.0}
# (MoE: the router's top-k picks k of E scores per token, counted as log2(k) comparisons per score
# (a partial selection through a k-entry heap; an assumption of the count, at least 1);
# each chosen expert's output is scaled by its router weight and added, a multiply and an add =
# 2 per element ("combine"); Qwen2-MoE's shared-expert gate is a sigmoid: exp, add, reciprocal and the
# multiply = 4; the router's softmax over the experts counts as "softmax".)


@dataclass(frozen=True)
class BlockActivations:
    """Bytes per token one block stores for its backward, at 16-bit, split as tensor parallelism
    splits them (Korthikanti et al. 2022, sec. 4.2): ``replicated`` on every tensor rank (norm inputs
    and outputs, residual dropout masks; split only by sequence parallelism), ``tensor_parallel``
    (Q, K, V, the output-projection input, the MLP's inner activations) and ``attention`` (the s x s
    part, per token: softmax output and attention dropout; what selective recompute drops)."""

    replicated: float
    tensor_parallel: float
    attention: float

    @property
    def total(self) -> float:
        return self.replicated + self.tensor_parallel + self.attention


@dataclass(frozen=True)
class LayerSpec:
    """One streamed layer. ``params`` is what MemoryX streams for it (a tied head streams the
    embedding matrix again); ``owned_params`` is what it adds to the model's unique count."""

    name: str
    kind: LayerKind
    params: int
    owned_params: int
    fwd_flops_per_token: float
    bwd_flops_per_token: float
    act_bytes_per_token: float  # stored for backward, at the job's element size
    input_bytes_per_token: float  # the layer input: what activation checkpointing keeps
    needs_weights_in_backward: bool = True  # an embedding's gradient needs no weights
    matmuls: tuple[MatmulOp, ...] = ()  # the forward's matrix products, per token
    elementwise: tuple[ElementwiseOp, ...] = ()  # the forward's element-wise operations, per token

    @property
    def recompute_flops_per_token(self) -> float:
        return self.fwd_flops_per_token
