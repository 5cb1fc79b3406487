"""What a model *is*: dimensions, and per-layer parameters, FLOPs and activation bytes.

A ``ModelSpec`` is split into the layers that weight streaming moves one at a time: the embedding,
``layers`` transformer blocks, and the head (final LayerNorm + LM head, tied to the embedding when
``tied_embeddings``). Everything here is per token so that the caller chooses batch and sequence.

Conventions (stated once, used everywhere):
- FLOPs count a multiply-add as 2 FLOPs and count attention as non-causal (the full s x s score
  matrix), as Megatron-LM does (Narayanan et al., SC21, arXiv 2104.04473, eq. (3)). Backward costs
  2x forward for every matmul. Element-wise work (LayerNorm, GeLU, softmax) is not counted in FLOPs.
- What a layer *does* is listed too, for cost models that care about shapes (the wafer compute
  model, ``wsim/wafer.py``): its matrix products (``MatmulOp``: the (1 x k) @ (k x n) product per
  token, weight or activation operand) and its element-wise operations (``ElementwiseOp``: elements
  per token and arithmetic operations per element). A layer's forward FLOPs are the sum of its
  matrix products (plus the embedding's position add).
- Activation bytes follow Korthikanti et al. 2022 (arXiv 2205.05198, section 4.1), derived for a
  general FFN width ``f``: with dropout 18h + 4f + 5as bytes per token per block at 16-bit (the
  paper's 34h + 5as when f = 4h), without dropout (Cerebras-GPT uses none) 16h + 4f + 2as: the two
  h-sized dropout masks, the a*s attention-dropout mask and the 2a*s dropout output go away, the
  softmax output feeds the value product directly. Other element sizes scale the 16-bit numbers.

This module never imports ``wsim`` (rule of the house): it raises plain ``ValueError``; ``wsim``
wraps it in its ``ConfigError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

LayerKind = Literal["embedding", "block", "head"]
ACTIVATIONS = ("gelu", "gelu_new", "relu")
POSITIONALS = ("learned", "rotary")


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
# sum, scale by the reciprocal root, gain, bias = 7; softmax: max, subtract, exp, sum, scale = 5;
# GeLU (tanh form, Hendrycks & Gimpel 2016): cube, 2 multiply-adds, tanh, add, 2 multiplies = 7 (the
# erf form likewise); ReLU 1; a residual or bias add 1; cross-entropy over the vocabulary is a
# softmax (5) plus the target pick.
ELEMENTWISE_OPS = {"layernorm": 7.0, "softmax": 5.0, "gelu": 7.0, "gelu_new": 7.0, "relu": 1.0,
                   "residual": 1.0, "bias": 1.0, "position": 1.0, "cross_entropy": 5.0}


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


# A bound on the work a spec asks for, not a property of any real model: per-layer specs and
# schedules are lists with an entry per layer, so 10^5 layers already make 2 x 10^5 passes per
# simulated step (seconds), and 3 x 10^7 layers exhausted memory before this bound.
MAX_LAYERS = 100_000


@dataclass(frozen=True)
class ModelSpec:
    """A GPT-style decoder. Names follow Hugging Face GPT-2 (n_layer, n_embd, n_head, n_inner)."""

    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int = 0  # 0 means 4 * hidden
    vocab: int = 50257
    positions: int = 2048  # learned position table size (n_positions)
    tied_embeddings: bool = True
    activation: str = "gelu"
    dropout: bool = False
    positional: str = "learned"
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "vocab", "positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"model {name} must be a positive integer, got {value!r}")
        if self.layers > MAX_LAYERS:
            raise ValueError(f"model layers {self.layers} exceeds {MAX_LAYERS:,}: the simulator keeps "
                             f"one LayerSpec per layer (the largest model in the zoo has 128)")
        if not isinstance(self.ffn, int) or self.ffn < 0:
            raise ValueError(f"model ffn must be a positive integer (or 0 for 4*hidden), got {self.ffn!r}")
        if self.ffn == 0:
            object.__setattr__(self, "ffn", 4 * self.hidden)
        if self.hidden % self.heads:
            raise ValueError(
                f"model hidden ({self.hidden}) must be divisible by heads ({self.heads})"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"model activation {self.activation!r} is not one of {ACTIVATIONS}")
        if self.positional not in POSITIONALS:
            raise ValueError(f"model positional {self.positional!r} is not one of {POSITIONALS}")

    # ---- parameter counts -------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def block_params(self) -> int:
        """qkv (h*3h + 3h), attn proj (h*h + h), fc (h*f + f), proj (f*h + h), 2 LayerNorms (4h)."""
        h, f = self.hidden, self.ffn
        return 4 * h * h + 2 * h * f + f + 9 * h

    @property
    def embedding_params(self) -> int:
        pos = self.positions * self.hidden if self.positional == "learned" else 0
        return self.vocab * self.hidden + pos

    @property
    def head_params(self) -> int:
        """Streamed by the head layer: final LayerNorm plus the LM head matrix (tied or not)."""
        return 2 * self.hidden + self.vocab * self.hidden

    @property
    def params(self) -> int:
        """Unique parameters (a tied LM head counted once)."""
        return sum(layer.owned_params for layer in self.layer_specs(seq=1))

    # ---- per-layer view ---------------------------------------------------------------------
    def check_seq(self, seq: int) -> None:
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
            raise ValueError(f"seq must be a positive integer, got {seq!r}")
        if self.positional == "learned" and seq > self.positions:
            raise ValueError(
                f"seq {seq} exceeds the model's {self.positions} learned positions (n_positions)"
            )

    def layer_specs(self, seq: int, bytes_per_element: int = 2) -> list[LayerSpec]:
        """Embedding, ``layers`` blocks, head: FLOPs and activation bytes per token at ``seq``."""
        self.check_seq(seq)
        h, f, a, v = self.hidden, self.ffn, self.heads, self.vocab
        scale = bytes_per_element / 2.0  # the activation formulas are written for 16-bit
        if self.dropout:  # Korthikanti et al. 2022, sec. 4.1, generalised to ffn width f
            block_act = 18 * h + 4 * f + 5 * a * seq
        else:
            block_act = 16 * h + 4 * f + 2 * a * seq
        head_owned = 2 * h + (0 if self.tied_embeddings else v * h)
        d = self.head_dim
        ew = ELEMENTWISE_OPS
        block_mm = (
            MatmulOp("qkv", h, 3 * h), MatmulOp("attn_scores", d, seq, a, weight=False),
            MatmulOp("attn_values", seq, d, a, weight=False), MatmulOp("attn_proj", h, h),
            MatmulOp("mlp_fc", h, f), MatmulOp("mlp_proj", f, h),
        )
        # Megatron (SC21, eq. 3): 24 h^2 per token for f = 4h is 6h^2 (QKV) + 2h^2 (proj) + 4hf (MLP);
        # attention scores and the value product add 4 s h per token.
        block_fwd = sum(m.flops_per_token for m in block_mm)
        block_ew = (
            ElementwiseOp("layernorm", 2.0 * h, ew["layernorm"]),
            ElementwiseOp("bias", 5.0 * h + f, ew["bias"]),  # qkv 3h, proj h, fc f, proj h
            ElementwiseOp("softmax", float(a * seq), ew["softmax"]),
            ElementwiseOp("activation", float(f), ew[self.activation]),
            ElementwiseOp("residual", 2.0 * h, ew["residual"]),
        )
        specs = [
            LayerSpec(
                name="embedding",
                kind="embedding",
                params=self.embedding_params,
                owned_params=self.embedding_params,
                fwd_flops_per_token=float(h),  # adding the position vector
                bwd_flops_per_token=float(h),  # scatter-adding the gradient rows
                act_bytes_per_token=0.0,  # token ids only
                input_bytes_per_token=0.0,
                needs_weights_in_backward=False,
                elementwise=(ElementwiseOp("position", float(h), ew["position"]),),
            )
        ]
        for i in range(self.layers):
            specs.append(
                LayerSpec(
                    name=f"block{i}",
                    kind="block",
                    params=self.block_params,
                    owned_params=self.block_params,
                    fwd_flops_per_token=block_fwd,
                    bwd_flops_per_token=2.0 * block_fwd,
                    act_bytes_per_token=block_act * scale,
                    input_bytes_per_token=2 * h * scale,
                    matmuls=block_mm,
                    elementwise=block_ew,
                )
            )
        specs.append(
            LayerSpec(
                name="head",
                kind="head",
                params=self.head_params,
                owned_params=head_owned,
                fwd_flops_per_token=2.0 * v * h,
                bwd_flops_per_token=4.0 * v * h,
                # final LayerNorm input and LM head input (2h each) plus the softmax over V
                act_bytes_per_token=(4 * h + 2 * v) * scale,
                input_bytes_per_token=2 * h * scale,
                matmuls=(MatmulOp("lm_head", h, v),),
                elementwise=(ElementwiseOp("layernorm", float(h), ew["layernorm"]),
                             ElementwiseOp("cross_entropy", float(v), ew["cross_entropy"])),
            )
        )
        return specs

    def flops_per_token(self, seq: int) -> float:
        """Model FLOPs per token for forward + backward, no recompute (3x forward for matmuls)."""
        return sum(l.fwd_flops_per_token + l.bwd_flops_per_token for l in self.layer_specs(seq))

    def describe(self) -> str:
        return (
            f"{self.name}: {self.params / 1e9:.3g}B params, {self.layers} layers, d_model "
            f"{self.hidden}, {self.heads} heads, d_ffn {self.ffn}, vocab {self.vocab}"
        )
