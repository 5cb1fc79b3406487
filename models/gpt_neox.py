"""GPT-NeoX (GPT-NeoX-20B, the Pythia suite) as layer functions that take their weights as arguments.

Architecture (Black et al. 2022, "GPT-NeoX-20B", arXiv 2204.06745, sec. 2.1; Biderman et al. 2023,
"Pythia", arXiv 2304.01373): two LayerNorms per block, both on the block input, with a parallel
residual x + attn(ln1 x) + mlp(ln2 x) (``use_parallel_residual``; sequential otherwise); rotary
positions (Su et al. 2021, arXiv 2104.09864) on the first ``rotary_pct`` of each head's dimensions,
half-split pairing (an odd int(head_dim x rotary_pct) = r rotates r + 1 dimensions with r's
frequencies, and 0 none, as transformers does); Q, K and V in one matrix, laid out per head; biases; an untied head
(``embed_out``).

Names, shapes and numerics follow transformers' ``models/gpt_neox/modeling_gpt_neox.py`` with its eager
attention, so that a float64 model here gives transformers' float64 logits: the attention softmax
and the rotary tables are computed in float32. The head is stored as ``embed_out.weight``, the name
the published checkpoints use and transformers 5 writes (it loads as ``lm_head``). No dropout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from models.decoder import (
    CausalLM, DecoderConfig, attend, check_eos, check_fields, eos_ids, eos_json, given, heads,
    layer_norm, linear, linear_shapes, modelled_activation, plain_mlp, require_keys, rope_cos_sin,
    rope_parameters, rotary, rotary_dims, token_id,
)

EMBED = "gpt_neox.embed_in.weight"
_C = "GPTNeoXConfig"


@dataclass(frozen=True)
class GPTNeoXConfig(DecoderConfig):
    """A GPT-NeoX decoder; field names and meanings are those of Hugging Face ``GPTNeoXConfig``
    (transformers 4.x names ``rotary_pct``/``rotary_emb_base``; 5.x reads them into ``rope_parameters``)."""

    MODEL_TYPE = "gpt_neox"
    ARCHITECTURE = "GPTNeoXForCausalLM"
    EMBEDDING_WEIGHT = EMBED
    FINAL_NORM = "gpt_neox.final_layer_norm"
    LM_HEAD = "embed_out.weight"
    DROPOUT_KEYS = ("hidden_dropout", "attention_dropout")
    # causal-mask and rotary buffers older checkpoints carry; transformers 5's own name for the head
    CHECKPOINT_IGNORED = (".attention.bias", ".attention.masked_bias", ".rotary_emb.inv_freq")
    CHECKPOINT_RENAMES = {"lm_head.weight": "embed_out.weight"}

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    rotary_pct: float = 0.25
    rotary_emb_base: float = 10000.0
    max_position_embeddings: int = 2048
    layer_norm_eps: float = 1e-5
    use_parallel_residual: bool = True
    attention_bias: bool = True
    tie_word_embeddings: bool = False
    bos_token_id: int = 0  # GPTNeoXConfig's defaults
    eos_token_id: int | tuple[int, ...] = 2  # a tuple: stop on any, pad with the first
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        check_fields(_C, self, ints=("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                     "intermediate_size", "max_position_embeddings"))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{_C}.hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        p = self.rotary_pct
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
            raise ValueError(f"{_C}.rotary_pct must be a number, got {p!r}")
        # transformers' rotary table spans 2 ceil(r/2) dims for r = int(head_dim x rotary_pct): it
        # fails on a negative r (its arange) and on a table wider than the head (its broadcast)
        if self.rotary_ndims < 0 or self.rotated_dims > self.head_dim:
            raise ValueError(f"{_C}.rotary_pct {p!r} of head_dim {self.head_dim} gives {self.rotary_ndims} "
                             f"rotary dimensions, a table of {self.rotated_dims}: need 0 .. head_dim "
                             f"(transformers fails on it too)")
        modelled_activation(_C, "hidden_act", self.hidden_act)
        check_fields(_C, self, floats=("rotary_emb_base", "layer_norm_eps", "initializer_range"),
                     bools=("use_parallel_residual", "attention_bias", "tie_word_embeddings"))
        token_id(_C, "bos_token_id", self.bos_token_id, self.vocab_size)
        check_eos(_C, self.eos_token_id, self.vocab_size)

    @property
    def rotary_ndims(self) -> int:
        return int(self.head_dim * self.rotary_pct)  # as transformers' GPTNeoXAttention

    @property
    def rotated_dims(self) -> int:
        """The dimensions actually rotated: rotary_ndims rounded up to even (``rope_cos_sin``)."""
        return rotary_dims(self.rotary_ndims)

    # ---- config.json ----
    @classmethod
    def from_hf_dict(cls, d: dict) -> GPTNeoXConfig:
        require_keys(d, ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                         "intermediate_size"), "gpt_neox")
        rope = rope_parameters(d)  # transformers 5 writes the rotary fields here
        return cls(
            vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], num_hidden_layers=d["num_hidden_layers"],
            num_attention_heads=d["num_attention_heads"], intermediate_size=d["intermediate_size"],
            hidden_act=d.get("hidden_act", "gelu"),
            rotary_pct=rope.get("partial_rotary_factor", d.get("rotary_pct", 0.25)),
            rotary_emb_base=rope.get("rope_theta", d.get("rotary_emb_base", 10000.0)),
            max_position_embeddings=d.get("max_position_embeddings", 2048),
            layer_norm_eps=d.get("layer_norm_eps", 1e-5),
            use_parallel_residual=d.get("use_parallel_residual", True),
            attention_bias=d.get("attention_bias", True), tie_word_embeddings=d.get("tie_word_embeddings", False),
            bos_token_id=given(d, "bos_token_id", 0), eos_token_id=eos_ids(given(d, "eos_token_id", 2)),
            initializer_range=d.get("initializer_range", 0.02),
        )

    def to_hf_dict(self) -> dict:
        """A ``config.json`` dict that ``transformers.GPTNeoXForCausalLM`` reads (4.x and 5.x)."""
        return {
            "model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"],
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size, "hidden_act": self.hidden_act,
            "rotary_pct": self.rotary_pct, "rotary_emb_base": self.rotary_emb_base, "rope_scaling": None,
            "max_position_embeddings": self.max_position_embeddings, "layer_norm_eps": self.layer_norm_eps,
            "use_parallel_residual": self.use_parallel_residual, "attention_bias": self.attention_bias,
            "tie_word_embeddings": self.tie_word_embeddings, "bos_token_id": self.bos_token_id,
            "eos_token_id": eos_json(self.eos_token_id), "initializer_range": self.initializer_range,
            "hidden_dropout": 0.0, "attention_dropout": 0.0, "use_cache": True,
        }

    @classmethod
    def _from_spec_fields(cls, spec) -> dict:
        return dict(vocab_size=spec.vocab, hidden_size=spec.hidden, num_hidden_layers=spec.layers,
                    num_attention_heads=spec.heads, intermediate_size=spec.ffn, hidden_act=spec.activation,
                    rotary_pct=spec.rotary_fraction, max_position_embeddings=spec.positions,
                    use_parallel_residual=spec.parallel_residual, attention_bias=spec.attention_bias,
                    tie_word_embeddings=spec.tied_embeddings)

    def spec(self, name: str = "gpt_neox", **overrides):
        from models.spec import ModelSpec

        return ModelSpec(**{**dict(
            name=name, layers=self.num_hidden_layers, hidden=self.hidden_size, heads=self.num_attention_heads,
            ffn=self.intermediate_size, vocab=self.vocab_size, positions=self.max_position_embeddings,
            tied_embeddings=self.tie_word_embeddings, activation=self.hidden_act, positional="rotary",
            rotary_fraction=self.rotated_dims / self.head_dim, parallel_residual=self.use_parallel_residual,
            attention_bias=self.attention_bias, mlp_bias=True, family="gpt_neox"), **overrides})

    # ---- names and shapes (nn.Linear: (out, in)); the order of GPTNeoXForCausalLM.named_parameters ----
    def embedding_shapes(self):
        return {EMBED: (self.vocab_size, self.hidden_size)}

    def block_prefix(self, i: int) -> str:
        return f"gpt_neox.layers.{i}."

    def block_shapes(self):
        C, Fi, b = self.hidden_size, self.intermediate_size, self.attention_bias
        return {**self.norm_shapes("input_layernorm"), **self.norm_shapes("post_attention_layernorm"),
                **linear_shapes("attention.query_key_value", 3 * C, C, b), **linear_shapes("attention.dense", C, C, b),
                **linear_shapes("mlp.dense_h_to_4h", Fi, C, True), **linear_shapes("mlp.dense_4h_to_h", C, Fi, True)}

    # ---- layers ----
    def norm(self, x, w, name):
        return layer_norm(x, w, name, self.layer_norm_eps)

    def block(self, x, w, p, pos_offset, past_kv=None):
        """One GPT-NeoX block (Black et al. 2022, sec. 2.1.2): parallel x + attn(ln1 x) + mlp(ln2 x),
        or sequential, summed in transformers' order."""
        a, present = attention(self.norm(x, w, p + "input_layernorm"), w, p, self, pos_offset, past_kv)
        if self.use_parallel_residual:
            return self.mlp(self.norm(x, w, p + "post_attention_layernorm"), w, p) + a + x, present
        a = a + x
        return self.mlp(self.norm(a, w, p + "post_attention_layernorm"), w, p) + a, present

    def mlp(self, x, w, p):
        return plain_mlp(x, w, p + "mlp.dense_h_to_4h", p + "mlp.dense_4h_to_h", self.hidden_act)


def attention(x: Tensor, w: dict[str, Tensor], p: str, cfg: GPTNeoXConfig, pos_offset: int, past_kv=None):
    """Causal multi-head self-attention with partial rotary q and k, Q, K and V of each head side by
    side in one matrix; returns (y, (k, v))."""
    qkv = heads(linear(x, w, p + "attention.query_key_value"), cfg.num_attention_heads)  # (B, nh, T, 3d)
    q, k, v = qkv.chunk(3, dim=-1)  # (B, nh, T, d) each
    positions = torch.arange(pos_offset, pos_offset + x.size(1), device=x.device)  # (T,)
    cos, sin = rope_cos_sin(positions, cfg.rotary_ndims, cfg.rotary_emb_base, x.dtype)  # (T, rotated)
    y, present = attend(rotary(q, cos, sin), rotary(k, cos, sin), v, past_kv, pos_offset)
    return linear(y, w, p + "attention.dense"), present


class GPTNeoX(CausalLM):
    """The whole GPT-NeoX as one ``nn.Module``: parameters under ``GPTNeoXForCausalLM``'s
    checkpoint names (the head as ``embed_out``)."""
