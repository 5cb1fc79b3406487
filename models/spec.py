"""What a model *is*: dimensions, and per-layer parameters, FLOPs and activation bytes.

A ``ModelSpec`` is split into the layers that weight streaming moves one at a time: the embedding,
``layers`` transformer blocks, and the head (final norm + LM head, tied to the embedding when
``tied_embeddings``). Everything here is per token so that the caller chooses batch and sequence.
One spec describes every family the functional mode implements (``family``, a Hugging Face
``model_type``): GPT-2 (and the GPT-3/OPT/Megatron rows, which share its block), Llama, GPT-J and
GPT-NeoX, through the fields that change cost: key/value heads (grouped-query attention), a gated
MLP (SwiGLU: three matrices), the norm kind (LayerNorm or RMSNorm), biases, parallel residual (one
or two norms), rotary positions on a fraction of each head, and a tied or untied head.

Conventions (stated once, used everywhere):
- FLOPs count a multiply-add as 2 FLOPs and count attention as non-causal (the full s x s score
  matrix), as Megatron-LM does (Narayanan et al., SC21, arXiv 2104.04473, eq. (3)). Backward costs
  2x forward for every matmul. Element-wise work (norms, activations, softmax, rotary) is not
  counted in FLOPs.
- What a layer *does* is listed too, for cost models that care about shapes (the wafer compute
  model, ``wsim/cluster/wafer.py``): its matrix products (``MatmulOp``: the (1 x k) @ (k x n) product per
  token, weight or activation operand) and its element-wise operations (``ElementwiseOp``: elements
  per token and arithmetic operations per element). A layer's forward FLOPs are the sum of its
  matrix products (plus the embedding's position add). With grouped-query attention the query
  projection is h -> h and the key/value projection h -> 2 kv d (kv = ``kv_heads``, d the head
  dimension); families that store Q, K and V in one matrix (GPT-2, GPT-NeoX) list one ``qkv``
  product h -> h + 2 kv d. A gated MLP lists gate and up (h -> f each) and down (f -> h).
- Activation bytes follow Korthikanti et al. 2022 (arXiv 2205.05198, sec. 4.1), per token per
  block at 16-bit, generalised term by term (``ModelSpec.block_activations``). Their 34h + 5as for
  a GPT block with f = 4h is: LayerNorm inputs 4h, QKV input 2h, Q and K 4h, softmax output 2as,
  its dropout mask as, dropout output 2as, V 2h, output-projection input 2h, MLP input 2h, GeLU
  input 2f and output 2f, two residual dropout masks 2h. Generalised:
    norm inputs       4h sequential; 2h with a parallel residual (both norms read the block input)
    norm outputs      2h per distinct norm feeding matrices: 4h, or 2h when one norm feeds
                      attention and MLP (GPT-J)
    attention         Q 2h, K and V 4 kv d, output-projection input 2h, softmax output 2as;
                      rotary adds nothing (its backward needs only the position's cos/sin)
    MLP               GeLU input and output 4f; SwiGLU 6f (gate and up outputs, which Megatron-LM's
                      fused ``bias_swiglu`` saves, and the down-projection input)
    dropout           2h of residual masks and 3as of attention dropout (mask and output), only
                      with ``dropout`` (Cerebras-GPT, Llama, GPT-J and GPT-NeoX train without)
  A GPT-2 block without dropout gives 16h + 4f + 2as, with dropout 18h + 4f + 5as (the paper's
  34h + 5as when f = 4h). Other element sizes scale the 16-bit numbers.

This module never imports ``wsim`` (rule of the house): it raises plain ``ValueError``; ``wsim``
wraps it in its ``ConfigError``.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Literal

LayerKind = Literal["embedding", "block", "head"]
ACTIVATIONS = ("gelu", "gelu_new", "gelu_fast", "relu", "silu")
POSITIONALS = ("learned", "rotary")
NORMS = ("layernorm", "rmsnorm")
# Hugging Face model_type of the functional model that computes each shape (models/registry.py)
FAMILIES = ("gpt2", "llama", "gptj", "gpt_neox", "mixtral", "qwen2_moe", "qwen3_moe")


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


# A bound on the work a spec asks for, not a property of any real model: per-layer specs and
# schedules are lists with an entry per layer, so 10^5 layers already make 2 x 10^5 passes per
# simulated step (seconds), and 3 x 10^7 layers exhausted memory before this bound.
MAX_LAYERS = 100_000


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer. The defaults are GPT-2's block (Radford et al. 2019): multi-head
    attention, a two-matrix MLP, two LayerNorms, biases everywhere, sequential residual, learned
    positions, tied head."""

    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int = 0  # 0 means 4 * hidden
    vocab: int = 50257
    positions: int = 2048  # learned table size (n_positions), or the rotary context limit
    tied_embeddings: bool = True
    activation: str = "gelu"
    dropout: bool = False
    positional: str = "learned"
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    family: str = "gpt2"  # the Hugging Face model_type whose layer functions compute this shape
    kv_heads: int = 0  # key/value heads; 0 means heads (multi-head), fewer is grouped-query attention
    gated_mlp: bool = False  # SwiGLU-style MLP: down(act(gate x) * up x), three matrices
    norm: str = "layernorm"
    block_norms: int = 2  # norms per block: 2, or 1 shared by attention and MLP (GPT-J)
    parallel_residual: bool = False  # x + attn(norm x) + mlp(norm x) (GPT-J, GPT-NeoX)
    rotary_fraction: float = 1.0  # share of each head's dimensions that rotary rotates
    attention_bias: bool = True  # biases on the Q, K, V and output projections
    mlp_bias: bool = True
    head_bias: bool = False  # a bias on the LM head (GPT-J)
    head_width: int = 0  # each head's dimensions; 0 means hidden / heads (Llama's config may give more or fewer)
    attention_out_bias: bool = True  # with attention_bias: the output projection's too (Qwen2-MoE: Q, K, V only)
    qk_norm: bool = False  # an RMSNorm on each query and key head (Qwen3): 2 x head_dim gains
    # mixture of experts (models/moe.py): in the blocks of moe_layers (None: every block when experts > 0)
    # the MLP is a router (experts x hidden), `experts` SwiGLU experts of width expert_ffn of which
    # experts_per_token run per token, and a shared expert of width shared_expert_ffn with a 1 x hidden gate
    experts: int = 0
    experts_per_token: int = 0
    expert_ffn: int = 0
    shared_expert_ffn: int = 0
    moe_layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "vocab", "positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"model {name} must be a positive integer, got {value!r}")
        if self.layers > MAX_LAYERS:
            raise ValueError(f"model layers {self.layers} exceeds {MAX_LAYERS:,}: the simulator keeps "
                             f"one LayerSpec per layer (the largest model in the zoo has 128)")
        if not isinstance(self.ffn, int) or isinstance(self.ffn, bool) or self.ffn < 0:
            raise ValueError(f"model ffn must be a positive integer (or 0 for 4*hidden), got {self.ffn!r}")
        if self.ffn == 0:
            object.__setattr__(self, "ffn", 4 * self.hidden)
        if self.hidden % self.heads:
            raise ValueError(
                f"model hidden ({self.hidden}) must be divisible by heads ({self.heads})"
            )
        for name, allowed in (("activation", ACTIVATIONS), ("positional", POSITIONALS), ("norm", NORMS),
                              ("family", FAMILIES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"model {name} {getattr(self, name)!r} is not one of {allowed}")
        for name in ("tied_embeddings", "dropout", "gated_mlp", "parallel_residual", "attention_bias",
                     "mlp_bias", "head_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model {name} must be a bool, got {getattr(self, name)!r}")
        # specs written before these fields existed carried them in ``extra`` (wsim.gpu's adapter
        # reads either): take them from there when the field was not given
        legacy = self.extra if isinstance(self.extra, dict) else {}
        if self.kv_heads == 0 and legacy.get("kv_heads") is not None:
            object.__setattr__(self, "kv_heads", legacy["kv_heads"])
        if not self.gated_mlp and (legacy.get("gated_mlp") is True or
                                   str(legacy.get("mlp", "")).lower() in ("swiglu", "geglu", "gated")):
            object.__setattr__(self, "gated_mlp", True)
        kv = self.kv_heads
        if not isinstance(kv, int) or isinstance(kv, bool) or kv < 0:
            raise ValueError(f"model kv_heads must be a positive integer (or 0 for heads), got {kv!r}")
        if kv == 0:
            object.__setattr__(self, "kv_heads", self.heads)
        elif self.heads % kv:
            raise ValueError(f"model kv_heads ({kv}) must divide heads ({self.heads}): in grouped-query "
                             f"attention each key/value head serves heads/kv_heads query heads")
        if self.block_norms not in (1, 2) or isinstance(self.block_norms, bool):
            raise ValueError(f"model block_norms must be 1 or 2, got {self.block_norms!r}")
        if self.block_norms == 1 and not self.parallel_residual:
            raise ValueError("model block_norms 1 (one norm shared by attention and MLP) needs "
                             "parallel_residual: a sequential block normalises the MLP's own input")
        self._check_moe()
        hw = self.head_width
        if not isinstance(hw, int) or isinstance(hw, bool) or hw < 0:
            raise ValueError(f"model head_width must be a positive integer (or 0 for hidden/heads), got {hw!r}")
        f = self.rotary_fraction
        # 0 rotates nothing (GPT-NeoX with int(head_dim x rotary_pct) = 0 runs so in transformers)
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 1:
            raise ValueError(f"model rotary_fraction must be in [0, 1], got {f!r}")
        if self.positional == "rotary" and self.rotary_dims % 2:
            raise ValueError(f"model rotary_fraction {f!r} of head_dim {self.head_dim} gives "
                             f"{self.rotary_dims} rotary dimensions; rotary rotates pairs: need an even number")

    # ---- shapes and parameter counts --------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.head_width or self.hidden // self.heads

    def _check_moe(self) -> None:
        for name in ("experts", "experts_per_token", "expert_ffn", "shared_expert_ffn"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"model {name} must be an integer >= 0, got {v!r}")
        for name in ("attention_out_bias", "qk_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model {name} must be a bool, got {getattr(self, name)!r}")
        if not self.experts:
            if self.experts_per_token or self.expert_ffn or self.shared_expert_ffn or self.moe_layers:
                raise ValueError("model experts_per_token, expert_ffn, shared_expert_ffn and moe_layers "
                                 "need experts > 0")
            object.__setattr__(self, "moe_layers", ())
            return
        if not 0 < self.experts_per_token <= self.experts:
            raise ValueError(f"model experts_per_token must be in 1..experts ({self.experts}), "
                             f"got {self.experts_per_token!r}")
        if self.expert_ffn <= 0:
            raise ValueError(f"model expert_ffn must be a positive integer, got {self.expert_ffn!r}")
        layers = tuple(range(self.layers)) if self.moe_layers is None else self.moe_layers
        if not isinstance(layers, (tuple, list)) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.layers for i in layers):
            raise ValueError(f"model moe_layers must list block indices below {self.layers}, got {layers!r}")
        object.__setattr__(self, "moe_layers", tuple(sorted(set(layers))))

    @property
    def sparse_layers(self) -> frozenset[int]:
        """The blocks whose MLP is a mixture of experts."""
        return frozenset(self.moe_layers)

    def moe_params(self, active: bool = False) -> int:
        """A sparse block's MLP: router, experts (all, or the experts_per_token a token runs when
        ``active``), shared expert and its gate."""
        h, fs = self.hidden, self.shared_expert_ffn
        n = self.experts_per_token if active else self.experts
        return self.experts * h + n * 3 * h * self.expert_ffn + (3 * h * fs + h if fs else 0)

    def block_params_at(self, i: int) -> int:
        mlp = self.moe_params() if i in self.moe_layers else self.mlp_params  # a short sorted tuple
        return self.attention_params + mlp + self.norm_params(self.block_norms)

    @property
    def active_params(self) -> int:
        """Parameters one token computes with (the k chosen experts of every sparse block, not all)."""
        return self.params - len(self.sparse_layers) * (self.moe_params() - self.moe_params(active=True))

    @property
    def q_dim(self) -> int:
        """Width of the queries (and of the attention output): heads x head_dim (= hidden unless a
        config gives head_dim)."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the keys (and of the values): kv_heads x head_dim."""
        return self.kv_heads * self.head_dim

    @property
    def rotary_dims(self) -> int:
        """Rotated dimensions of each head (transformers: int(head_dim x partial_rotary_factor))."""
        # (+1e-9: a fraction given as rotary_dim / head_dim must give rotary_dim back, not one less)
        return int(self.head_dim * self.rotary_fraction + 1e-9) if self.positional == "rotary" else 0

    @property
    def mlp_matrices(self) -> int:
        return 3 if self.gated_mlp else 2

    @property
    def fused_qkv(self) -> bool:
        """Q, K and V are one stored matrix (GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``)."""
        return self.family in ("gpt2", "gpt_neox")

    def norm_params(self, count: int = 1) -> int:
        """A LayerNorm has a gain and a bias per feature, an RMSNorm a gain only."""
        return count * self.hidden * (2 if self.norm == "layernorm" else 1)

    @property
    def attention_params(self) -> int:
        """Q (h x q), K and V (h x kv d each), output (q x h), and their biases when present (q = heads d)."""
        h, q, kvd = self.hidden, self.q_dim, self.kv_dim
        bias = (q + 2 * kvd + (h if self.attention_out_bias else 0)) if self.attention_bias else 0
        return 2 * h * q + 2 * h * kvd + bias + (2 * self.head_dim if self.qk_norm else 0)

    @property
    def mlp_params(self) -> int:
        h, f = self.hidden, self.ffn
        bias = ((2 * f if self.gated_mlp else f) + h) if self.mlp_bias else 0
        return self.mlp_matrices * h * f + bias

    @property
    def block_params(self) -> int:
        """Attention, MLP and the block's norms. GPT-2: 4h^2 + 2hf + f + 9h. With dense and MoE
        blocks both: the mean block (``block_params_at`` for each)."""
        if not self.experts:
            return self.attention_params + self.mlp_params + self.norm_params(self.block_norms)
        n = len(self.moe_layers)
        dense = self.attention_params + self.mlp_params + self.norm_params(self.block_norms)
        sparse = dense - self.mlp_params + self.moe_params()
        return round((n * sparse + (self.layers - n) * dense) / self.layers)

    @property
    def embedding_params(self) -> int:
        pos = self.positions * self.hidden if self.positional == "learned" else 0
        return self.vocab * self.hidden + pos

    @property
    def head_params(self) -> int:
        """Streamed by the head layer: final norm, the LM head matrix (tied or not), its bias."""
        return self.norm_params() + self.vocab * self.hidden + (self.vocab if self.head_bias else 0)

    @property
    def params(self) -> int:
        """Unique parameters (a tied LM head counted once)."""
        return sum(layer.owned_params for layer in self.layer_specs(seq=1))

    def kv_cache_bytes_per_token(self, bytes_per_element: int = 2) -> float:
        """Keys and values of every block for one cached token (kv_heads, not heads, are cached)."""
        return 2.0 * self.layers * self.kv_dim * bytes_per_element

    # ---- per-layer view ---------------------------------------------------------------------
    def check_seq(self, seq: int) -> None:
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
            raise ValueError(f"seq must be a positive integer, got {seq!r}")
        if self.positional == "learned" and seq > self.positions:
            raise ValueError(
                f"seq {seq} exceeds the model's {self.positions} learned positions (n_positions)"
            )

    def mlp_width(self, sparse: bool = False) -> int:
        """The MLP's inner width one token computes: ffn, or in a sparse block its k experts' and
        the shared expert's (what its activations and element-wise work scale with)."""
        return self.experts_per_token * self.expert_ffn + self.shared_expert_ffn if sparse else self.ffn

    def block_activations(self, seq: int, sparse: bool | None = None) -> BlockActivations:
        """Korthikanti et al. 2022 generalised (module docstring), bytes per token at 16-bit; a
        sparse block stores its k experts' inner activations (and the shared expert's) and the
        router's logits. ``sparse`` None: a sparse block when the model has experts."""
        sparse = bool(self.experts) if sparse is None else sparse
        h, f, a, kvd = self.hidden, self.mlp_width(sparse), self.heads, self.kv_dim
        norm_inputs = 2 * h if self.parallel_residual else 4 * h
        norm_outputs = 2 * h * self.block_norms
        replicated = norm_inputs + norm_outputs + (2 * h if self.dropout else 0)
        mlp = (6 if self.gated_mlp else 4) * f + (2 * self.experts if sparse else 0)
        tensor_parallel = 4 * self.q_dim + 4 * kvd + mlp  # Q, K and V, projection input, MLP
        attention = (5 if self.dropout else 2) * a * seq
        return BlockActivations(float(replicated), float(tensor_parallel), float(attention))

    def block_matmuls(self, seq: int, sparse: bool = False) -> tuple[MatmulOp, ...]:
        """A block's forward matrix products per token (module docstring). A sparse block's experts
        are ``count`` = experts_per_token products of one expert's matrices (the active FLOPs)."""
        h, f, a, d, kvd, q = self.hidden, self.ffn, self.heads, self.head_dim, self.kv_dim, self.q_dim
        if self.fused_qkv:
            qkv: tuple[MatmulOp, ...] = (MatmulOp("qkv", h, q + 2 * kvd),)
        else:
            qkv = (MatmulOp("q", h, q), MatmulOp("kv", h, 2 * kvd))
        # every query head scores against seq keys and mixes seq values, whatever kv_heads is
        attention = (MatmulOp("attn_scores", d, seq, a, weight=False),
                     MatmulOp("attn_values", seq, d, a, weight=False), MatmulOp("attn_proj", q, h))
        if sparse:
            k, fe, fs = self.experts_per_token, self.expert_ffn, self.shared_expert_ffn
            e = self.experts
            mlp = (MatmulOp("router", h, e), MatmulOp("expert_gate", h, fe, k, stored=e),
                   MatmulOp("expert_up", h, fe, k, stored=e), MatmulOp("expert_down", fe, h, k, stored=e))
            if fs:
                mlp += (MatmulOp("shared_gate", h, fs), MatmulOp("shared_up", h, fs),
                        MatmulOp("shared_down", fs, h), MatmulOp("shared_expert_gate", h, 1))
        elif self.gated_mlp:
            mlp = (MatmulOp("mlp_gate", h, f), MatmulOp("mlp_up", h, f), MatmulOp("mlp_down", f, h))
        else:
            mlp = (MatmulOp("mlp_fc", h, f), MatmulOp("mlp_proj", f, h))
        return qkv + attention + mlp

    def block_elementwise(self, seq: int, sparse: bool = False) -> tuple[ElementwiseOp, ...]:
        h, f, a, ew = self.hidden, self.mlp_width(sparse), self.heads, ELEMENTWISE_OPS
        attn_bias = self.q_dim + 2 * self.kv_dim + (h if self.attention_out_bias else 0)
        biases = (attn_bias if self.attention_bias else 0) + (
            ((2 * f if self.gated_mlp else f) + h) if self.mlp_bias else 0)
        ops = [ElementwiseOp(self.norm, float(self.block_norms * h), ew[self.norm])]
        if self.qk_norm:  # every query and key head
            ops.append(ElementwiseOp("qk_norm", float(self.head_dim * (a + self.kv_heads)), ew["rmsnorm"]))
        if biases:
            ops.append(ElementwiseOp("bias", float(biases), ew["bias"]))
        if self.positional == "rotary":  # on the rotated dims of every query and key head
            ops.append(ElementwiseOp("rotary", float(self.rotary_dims * (a + self.kv_heads)), ew["rotary"]))
        ops.append(ElementwiseOp("softmax", float(a * seq), ew["softmax"]))
        if sparse:  # the router's softmax, then k weighted expert outputs (and the gated shared one)
            ops.append(ElementwiseOp("router_softmax", float(self.experts), ew["softmax"]))
            ops.append(ElementwiseOp("router_topk", float(self.experts),
                                     max(1.0, math.log2(self.experts_per_token))))
            shared = 1 if self.shared_expert_ffn else 0
            ops.append(ElementwiseOp("combine", float((self.experts_per_token + shared) * h), ew["combine"]))
            if shared:
                ops.append(ElementwiseOp("shared_expert_gate", 1.0, ew["sigmoid"]))
        ops.append(ElementwiseOp("activation", float(f), ew[self.activation]))
        if self.gated_mlp:
            ops.append(ElementwiseOp("gate", float(f), ew["gate"]))
        # two adds per element either way: x + attn, then + mlp (sequential) or x + attn + mlp
        ops.append(ElementwiseOp("residual", 2.0 * h, ew["residual"]))
        return tuple(ops)

    def layer_specs(self, seq: int, bytes_per_element: int = 2) -> list[LayerSpec]:
        """Embedding, ``layers`` blocks, head: FLOPs and activation bytes per token at ``seq``."""
        self.check_seq(seq)
        h, v = self.hidden, self.vocab
        scale = bytes_per_element / 2.0  # the activation formulas are written for 16-bit
        ew = ELEMENTWISE_OPS
        # Megatron (SC21, eq. 3): 24 h^2 per token for f = 4h is 6h^2 (QKV) + 2h^2 (proj) + 4hf (MLP);
        # attention scores and the value product add 4 s h per token. A sparse (MoE) block streams
        # every expert (params) but a token computes with its k experts only (the FLOPs).
        kinds = {}
        sparse_layers = self.sparse_layers
        present = ([True] if sparse_layers else []) + ([False] if len(sparse_layers) < self.layers else [])
        for sparse in present:  # the block kinds this model has: sparse (MoE), dense
            mm = self.block_matmuls(seq, sparse)
            params = self.attention_params + self.norm_params(self.block_norms) + (
                self.moe_params() if sparse else self.mlp_params)
            kinds[sparse] = (mm, sum(m.flops_per_token for m in mm), self.block_elementwise(seq, sparse),
                             self.block_activations(seq, sparse).total, params)
        learned = self.positional == "learned"
        head_ew = [ElementwiseOp(self.norm, float(h), ew[self.norm])]
        if self.head_bias:
            head_ew.append(ElementwiseOp("bias", float(v), ew["bias"]))
        head_ew.append(ElementwiseOp("cross_entropy", float(v), ew["cross_entropy"]))
        specs = [
            LayerSpec(
                name="embedding",
                kind="embedding",
                params=self.embedding_params,
                owned_params=self.embedding_params,
                fwd_flops_per_token=float(h) if learned else 0.0,  # adding the position vector
                bwd_flops_per_token=float(h),  # scatter-adding the gradient rows
                act_bytes_per_token=0.0,  # token ids only
                input_bytes_per_token=0.0,
                needs_weights_in_backward=False,
                elementwise=(ElementwiseOp("position", float(h), ew["position"]),) if learned else (),
            )
        ]
        for i in range(self.layers):
            block_mm, block_fwd, block_ew, block_act, block_params = kinds[i in sparse_layers]
            specs.append(
                LayerSpec(
                    name=f"block{i}",
                    kind="block",
                    params=block_params,
                    owned_params=block_params,
                    fwd_flops_per_token=block_fwd,
                    bwd_flops_per_token=2.0 * block_fwd,
                    act_bytes_per_token=block_act * scale,
                    input_bytes_per_token=2 * h * scale,
                    matmuls=block_mm,
                    elementwise=block_ew,
                )
            )
        head_owned = self.head_params - (v * h if self.tied_embeddings else 0)
        specs.append(
            LayerSpec(
                name="head",
                kind="head",
                params=self.head_params,
                owned_params=head_owned,
                fwd_flops_per_token=2.0 * v * h,
                bwd_flops_per_token=4.0 * v * h,
                # final norm input and LM head input (2h each) plus the softmax over V
                act_bytes_per_token=(4 * h + 2 * v) * scale,
                input_bytes_per_token=2 * h * scale,
                matmuls=(MatmulOp("lm_head", h, v),),
                elementwise=tuple(head_ew),
            )
        )
        return specs

    def flops_per_token(self, seq: int) -> float:
        """Model FLOPs per token for forward + backward, no recompute (3x forward for matmuls)."""
        return sum(l.fwd_flops_per_token + l.bwd_flops_per_token for l in self.layer_specs(seq))

    def describe(self) -> str:
        kv = f" ({self.kv_heads} KV)" if self.kv_heads != self.heads else ""
        if self.experts:
            shared = f" + shared {self.shared_expert_ffn}" if self.shared_expert_ffn else ""
            return (f"{self.name}: {self.params / 1e9:.3g}B params ({self.active_params / 1e9:.3g}B active), "
                    f"{self.layers} layers ({len(self.sparse_layers)} MoE), d_model {self.hidden}, "
                    f"{self.heads} heads{kv}, {self.experts} experts top-{self.experts_per_token} of d_ffn "
                    f"{self.expert_ffn}{shared}, vocab {self.vocab}")
        mlp = "SwiGLU " if self.gated_mlp and self.activation == "silu" else "gated " if self.gated_mlp else ""
        return (
            f"{self.name}: {self.params / 1e9:.3g}B params, {self.layers} layers, d_model "
            f"{self.hidden}, {self.heads} heads{kv}, {mlp}d_ffn {self.ffn}, vocab {self.vocab}"
        )
