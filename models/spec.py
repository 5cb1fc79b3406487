"""What a model *is*: dimensions, and per-layer parameters, FLOPs and activation bytes.

A ``ModelSpec`` is split into the layers that weight streaming moves one at a time: the embedding,
``layers`` transformer blocks, and the head (final norm + LM head, tied to the embedding when
``tied_embeddings``). Everything here is per token so that the caller chooses batch and sequence.
One spec describes every family the functional mode implements (``family``, a Hugging Face
``model_type``): GPT-2 (and the GPT-3/OPT/Megatron rows, which share its block), Llama, GPT-J and
GPT-NeoX, through the fields that change cost: key/value heads (grouped-query attention), a gated
MLP (SwiGLU: three matrices), the norm kind (LayerNorm or RMSNorm), biases, parallel residual (one
or two norms), rotary positions on a fraction of each head, and a tied or untied head.

The rest of ``models`` does the work this face hands on: ``models/spec_checks.py`` what a spec accepts
(the checks ``__post_init__`` runs, the mixture-of-experts fields' among them, ``MAX_LAYERS``),
``models/per_layer.py`` what each layer holds and does, with the conventions it counts by (FLOPs,
matrix products, element-wise operations, activation bytes after Korthikanti et al. 2022), and
``models/records.py`` the records it lists (``MatmulOp``, ``ElementwiseOp``, ``ELEMENTWISE_OPS``,
``BlockActivations``, ``LayerSpec``), which this module re-exports:
``from models.spec import ModelSpec, LayerSpec, MatmulOp, MAX_LAYERS`` keeps working.

This module never imports ``wsim`` (rule of the house): it raises plain ``ValueError``; ``wsim``
wraps it in its ``ConfigError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models import per_layer
from models.records import (  # noqa: F401  (re-exported: the names callers import from models.spec)
    ELEMENTWISE_OPS, BlockActivations, ElementwiseOp, LayerKind, LayerSpec, MatmulOp,
)
from models.spec_checks import (  # noqa: F401  (re-exported, as above)
    ACTIVATIONS, FAMILIES, MAX_LAYERS, NORMS, POSITIONALS, check_spec,
)


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
    # multi-head latent attention (MLA, DeepSeek-V2/V3; Hugging Face DeepseekV3Config's names), when
    # kv_lora_rank > 0 (0: the attention above, every other model): queries h -> q_lora_rank (RMSNorm)
    # -> heads x (qk_nope_head_dim + qk_rope_head_dim) (q_lora_rank 0: one h -> heads x that product);
    # keys and values h -> kv_lora_rank + qk_rope_head_dim, the latent RMSNormed and lifted to heads x
    # (qk_nope_head_dim + v_head_dim); the rope part of the key is one head shared by all; the output
    # projection is heads x v_head_dim -> h (models/per_layer.py lists the products)
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0

    def __post_init__(self) -> None:
        check_spec(self)  # raises ValueError naming the field; fills in ffn, kv_heads, moe_layers

    # ---- shapes and parameter counts --------------------------------------------------------
    @property
    def mla(self) -> bool:
        """Multi-head latent attention (``kv_lora_rank`` > 0)."""
        return self.kv_lora_rank > 0

    @property
    def head_dim(self) -> int:
        """Each head's q.k width: head_width or hidden / heads; with MLA qk_nope + qk_rope."""
        if self.kv_lora_rank:
            return self.qk_nope_head_dim + self.qk_rope_head_dim
        return self.head_width or self.hidden // self.heads

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
        if self.kv_lora_rank:  # MLA rotates its qk_rope_head_dim of each head only
            return self.qk_rope_head_dim if self.positional == "rotary" else 0
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
        if self.kv_lora_rank:
            return self.mla_params
        h, q, kvd = self.hidden, self.q_dim, self.kv_dim
        bias = (q + 2 * kvd + (h if self.attention_out_bias else 0)) if self.attention_bias else 0
        return 2 * h * q + 2 * h * kvd + bias + (2 * self.head_dim if self.qk_norm else 0)

    @property
    def mla_params(self) -> int:
        """Multi-head latent attention's weights (transformers' DeepseekV3Attention, no biases):
        q_a (h x r_q) and its RMSNorm (r_q), q_b (r_q x a d_qk), or q (h x a d_qk) when q_lora_rank
        is 0; kv_a (h x (r_kv + d_rope)) and its RMSNorm (r_kv), kv_b (r_kv x a (d_nope + d_v)), o
        (a d_v x h); d_qk = d_nope + d_rope. DeepSeek-V3: 187,107,328."""
        h, a, rq, rkv = self.hidden, self.heads, self.q_lora_rank, self.kv_lora_rank
        dqk, dv = self.head_dim, self.v_head_dim
        q = (h * rq + rq + rq * a * dqk) if rq else h * a * dqk
        kv = h * (rkv + self.qk_rope_head_dim) + rkv + rkv * a * (self.qk_nope_head_dim + dv)
        return q + kv + a * dv * h

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
        """Keys and values of every block for one cached token (kv_heads, not heads, are cached).
        MLA: the latent and the shared rope key, kv_lora_rank + qk_rope_head_dim a block, as DeepSeek's
        absorbed inference caches them (DeepSeek-V3 report, arXiv 2412.19437, sec. 2.1.1)."""
        if self.kv_lora_rank:
            return float(self.layers * (self.kv_lora_rank + self.qk_rope_head_dim) * bytes_per_element)
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
        """Bytes per token one block stores for its backward at 16-bit (``per_layer.block_activations``)."""
        return per_layer.block_activations(self, seq, sparse)

    def block_matmuls(self, seq: int, sparse: bool = False) -> tuple[MatmulOp, ...]:
        """A block's forward matrix products per token (``per_layer.block_matmuls``)."""
        return per_layer.block_matmuls(self, seq, sparse)

    def block_elementwise(self, seq: int, sparse: bool = False) -> tuple[ElementwiseOp, ...]:
        """A block's forward element-wise operations per token (``per_layer.block_elementwise``)."""
        return per_layer.block_elementwise(self, seq, sparse)

    def layer_specs(self, seq: int, bytes_per_element: int = 2) -> list[LayerSpec]:
        """Embedding, ``layers`` blocks, head: FLOPs and activation bytes per token at ``seq``
        (``per_layer.layer_specs``)."""
        return per_layer.layer_specs(self, seq, bytes_per_element)

    def flops_per_token(self, seq: int) -> float:
        """Model FLOPs per token for forward + backward, no recompute (3x forward for matmuls)."""
        return sum(l.fwd_flops_per_token + l.bwd_flops_per_token for l in self.layer_specs(seq))

    def describe(self) -> str:
        kv = f" ({self.kv_heads} KV)" if self.kv_heads != self.heads else ""
        if self.kv_lora_rank:
            kv = (f" (MLA: q rank {self.q_lora_rank or 'full'}, kv rank {self.kv_lora_rank}, q.k "
                  f"{self.qk_nope_head_dim}+{self.qk_rope_head_dim}, v {self.v_head_dim})")
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
