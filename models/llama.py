"""Llama (Llama 2, Llama 3) as layer functions that take their weights as arguments.

Architecture (Touvron et al. 2023, "LLaMA", arXiv 2302.13971, sec. 2.2; "Llama 2", arXiv
2307.09288, sec. 2.2 and A.2.1): pre-norm blocks with RMSNorm (Zhang & Sennrich 2019, arXiv
1910.07467), a SwiGLU MLP down(silu(gate x) * up x) (Shazeer 2020, arXiv 2002.05202), rotary
positions on every head dimension (Su et al. 2021, arXiv 2104.09864), no biases, an untied head;
Llama-2-70B and Llama 3 share each key/value head among several query heads (grouped-query attention,
Ainslie et al. 2023, arXiv 2305.13245).

Names, shapes and numerics follow transformers' ``models/llama/modeling_llama.py`` (``nn.Linear``
weights stored (out, in)), with its eager attention, so that a float64 model here gives transformers'
float64 logits: RMSNorm statistics and the attention softmax are computed in float32 and cast back,
and the rotary cos/sin tables are computed in float32, as transformers does for any dtype.
Supported: the default rotary embedding (any ``rope_theta``), and its ``linear`` and ``llama3``
scalings (``models.decoder.scaled_inv_freq``), any even
``head_dim`` (given, or hidden/heads), biases on attention and MLP, a tied head, the activations of
``models.decoder.ACTIVATIONS``; anything else is refused by name. No dropout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from models.decoder import (
    SCALED_ROPE, CausalLM, DecoderConfig, attend, check_eos, check_fields, eos_ids, eos_json, gated_mlp,
    given, heads, linear, linear_shapes, modelled_activation, require_keys, rms_norm, rope_cos_sin,
    rope_parameters, rotary, token_id,
)

EMBED, NORM = "model.embed_tokens.weight", "model.norm.weight"
_C = "LlamaConfig"


@dataclass(frozen=True)
class LlamaConfig(DecoderConfig):
    """A Llama decoder; field names and meanings are those of Hugging Face ``LlamaConfig``."""

    MODEL_TYPE = "llama"
    ARCHITECTURE = "LlamaForCausalLM"
    EMBEDDING_WEIGHT = EMBED
    FINAL_NORM = "model.norm"
    NORM_BIAS = False  # RMSNorm
    QK_NORM = False  # an RMSNorm on each query and key head (Qwen3)
    DROPOUT_KEYS = ("attention_dropout",)
    CHECKPOINT_IGNORED = (".rotary_emb.inv_freq",)  # a buffer transformers 4.2x-4.3x saved

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int | None = None  # None means num_attention_heads (multi-head attention)
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    attention_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    bos_token_id: int = 1  # LlamaConfig's defaults
    eos_token_id: int | tuple[int, ...] = 2  # a tuple: stop on any, pad with the first
    initializer_range: float = 0.02
    head_dim: int | None = None  # None means hidden_size // num_attention_heads
    # None, or ("linear", factor) / ("llama3", factor, low_freq_factor, high_freq_factor,
    # original_max_position_embeddings): config.json's rope_scaling (models.decoder.scaled_inv_freq)
    rope_scaling: tuple | None = None

    def __post_init__(self) -> None:
        check_fields(_C, self, ints=("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                     "num_attention_heads", "max_position_embeddings"))
        for name, default in (("num_key_value_heads", self.num_attention_heads),
                              ("head_dim", self.hidden_size // self.num_attention_heads)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        check_fields(_C, self, ints=("num_key_value_heads", "head_dim"))
        if self.hidden_size % self.num_attention_heads:  # transformers' validate_architecture, too
            raise ValueError(f"{_C}.hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"{_C}.num_key_value_heads ({self.num_key_value_heads}) must divide "
                             f"num_attention_heads ({self.num_attention_heads}): in grouped-query "
                             f"attention each key/value head serves a whole group of query heads")
        if self.head_dim % 2:  # transformers' validate_rope refuses it too
            raise ValueError(f"{_C}: head_dim {self.head_dim} must be even (rotary rotates pairs)")
        check_fields(_C, self, floats=("rms_norm_eps", "rope_theta", "initializer_range"),
                     bools=("attention_bias", "mlp_bias", "tie_word_embeddings"))
        modelled_activation(_C, "hidden_act", self.hidden_act)
        token_id(_C, "bos_token_id", self.bos_token_id, self.vocab_size)
        check_eos(_C, self.eos_token_id, self.vocab_size)
        r = self.rope_scaling
        if r is not None and not (isinstance(r, tuple) and r and r[0] in SCALED_ROPE
                                  and len(r) == 1 + len(SCALED_ROPE[r[0]])):
            raise ValueError(f"{_C}.rope_scaling must be None or (kind, *values) of {sorted(SCALED_ROPE)}, got {r!r}")

    # ---- config.json ----
    @classmethod
    def from_hf_dict(cls, d: dict) -> LlamaConfig:
        require_keys(d, ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                         "num_attention_heads"), cls.MODEL_TYPE)
        return cls(**cls._hf_fields(d))

    @classmethod
    def _hf_fields(cls, d: dict) -> dict:
        """The fields Llama and its descendants (the MoE families) read the same way."""
        # Llama's default rotary ignores partial_rotary_factor, as here; linear and llama3 scale it
        rope = rope_parameters(d, scaled=("linear", "llama3"))
        return dict(
            vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], intermediate_size=d["intermediate_size"],
            num_hidden_layers=d["num_hidden_layers"], num_attention_heads=d["num_attention_heads"],
            num_key_value_heads=d.get("num_key_value_heads"), head_dim=d.get("head_dim"),
            max_position_embeddings=d.get("max_position_embeddings", cls.max_position_embeddings),
            rms_norm_eps=d.get("rms_norm_eps", cls.rms_norm_eps), rope_theta=rope.get("rope_theta", d.get("rope_theta", 10000.0)),
            attention_bias=d.get("attention_bias", False), mlp_bias=d.get("mlp_bias", False),
            tie_word_embeddings=d.get("tie_word_embeddings", False), hidden_act=d.get("hidden_act", "silu"),
            bos_token_id=given(d, "bos_token_id", 1), eos_token_id=eos_ids(given(d, "eos_token_id", 2)),
            initializer_range=d.get("initializer_range", 0.02), rope_scaling=rope["scaling"],
        )

    def to_hf_dict(self) -> dict:
        """A ``config.json`` dict that ``transformers.LlamaForCausalLM`` reads (4.x and 5.x)."""
        return {
            "model_type": self.MODEL_TYPE, "architectures": [self.ARCHITECTURE],
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim, "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps, "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling_json(),
            "attention_bias": self.attention_bias, "mlp_bias": self.mlp_bias,
            "tie_word_embeddings": self.tie_word_embeddings, "hidden_act": self.hidden_act,
            "bos_token_id": self.bos_token_id, "eos_token_id": eos_json(self.eos_token_id),
            "initializer_range": self.initializer_range, "attention_dropout": 0.0, "pretraining_tp": 1,
            "use_cache": True,
        }

    def rope_scaling_json(self) -> dict | None:
        if self.rope_scaling is None:
            return None
        kind, *values = self.rope_scaling
        return {"rope_type": kind, **dict(zip(SCALED_ROPE[kind], values))}

    @classmethod
    def _from_spec_fields(cls, spec) -> dict:
        return dict(vocab_size=spec.vocab, hidden_size=spec.hidden, intermediate_size=spec.ffn,
                    num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                    num_key_value_heads=spec.kv_heads, max_position_embeddings=spec.positions,
                    attention_bias=spec.attention_bias, mlp_bias=spec.mlp_bias, head_dim=spec.head_dim,
                    tie_word_embeddings=spec.tied_embeddings, hidden_act=spec.activation)

    def _spec_fields(self, name: str) -> dict:
        return dict(
            name=name, layers=self.num_hidden_layers, hidden=self.hidden_size, heads=self.num_attention_heads,
            kv_heads=self.num_key_value_heads, ffn=self.intermediate_size, vocab=self.vocab_size,
            positions=self.max_position_embeddings, tied_embeddings=self.tie_word_embeddings,
            activation=self.hidden_act, gated_mlp=True, norm="rmsnorm", positional="rotary",
            rotary_fraction=1.0, attention_bias=self.attention_bias, mlp_bias=self.mlp_bias,
            head_bias=False, family=self.MODEL_TYPE,
            head_width=0 if self.head_dim == self.hidden_size // self.num_attention_heads else self.head_dim)

    def spec(self, name: str = "llama", **overrides):
        from models.spec import ModelSpec

        return ModelSpec(**{**self._spec_fields(name), **overrides})

    # ---- names and shapes (nn.Linear: (out, in)); the order of LlamaForCausalLM.named_parameters ----
    def embedding_shapes(self):
        return {EMBED: (self.vocab_size, self.hidden_size)}

    def block_prefix(self, i: int) -> str:
        return f"model.layers.{i}."

    def attention_shapes(self):
        h, qd, kvd, b = self.hidden_size, self.num_attention_heads * self.head_dim, \
            self.num_key_value_heads * self.head_dim, self.attention_bias
        return {**linear_shapes("self_attn.q_proj", qd, h, b), **linear_shapes("self_attn.k_proj", kvd, h, b),
                **linear_shapes("self_attn.v_proj", kvd, h, b), **linear_shapes("self_attn.o_proj", h, qd, b)}

    def mlp_shapes(self, layer_idx: int = 0):
        h, f, b = self.hidden_size, self.intermediate_size, self.mlp_bias
        return {**linear_shapes("mlp.gate_proj", f, h, b), **linear_shapes("mlp.up_proj", f, h, b),
                **linear_shapes("mlp.down_proj", h, f, b)}

    def block_shapes(self):
        return {**self.attention_shapes(), **self.mlp_shapes(),
                **self.norm_shapes("input_layernorm"), **self.norm_shapes("post_attention_layernorm")}

    # ---- layers ----
    def norm(self, x, w, name):
        return rms_norm(x, w[name + ".weight"], self.rms_norm_eps)

    def block(self, x, w, p, pos_offset, past_kv=None):
        """One pre-RMSNorm block: x + attn(norm x), then + mlp(norm x)."""
        a, present = attention(self.norm(x, w, p + "input_layernorm"), w, p, self, pos_offset, past_kv)
        x = x + a  # (B, T, C)
        return x + self.mlp(self.norm(x, w, p + "post_attention_layernorm"), w, p), present

    def mlp(self, x, w, p):
        """SwiGLU (Shazeer 2020, eq. 6); the MoE families replace it with their experts."""
        return gated_mlp(x, w, p + "mlp.", self.hidden_act)


def attention(x: Tensor, w: dict[str, Tensor], p: str, cfg: LlamaConfig, pos_offset: int, past_kv=None):
    """Causal grouped-query self-attention with rotary q and k (all of each head's dims); returns
    (y, (k, v)), the cache holding kv_heads heads: (B, kv_heads, P+T, d) each."""
    a = p + "self_attn."
    q = heads(linear(x, w, a + "q_proj"), cfg.num_attention_heads)  # (B, nh, T, d)
    k = heads(linear(x, w, a + "k_proj"), cfg.num_key_value_heads)  # (B, kvh, T, d)
    if cfg.QK_NORM:  # Qwen3: RMSNorm over each head's dims of q and k, before the rotary
        q, k = cfg.norm(q, w, a + "q_norm"), cfg.norm(k, w, a + "k_norm")
    v = heads(linear(x, w, a + "v_proj"), cfg.num_key_value_heads)
    positions = torch.arange(pos_offset, pos_offset + x.size(1), device=x.device)  # (T,)
    cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, x.dtype, cfg.rope_scaling)  # (T, d) each
    y, present = attend(rotary(q, cos, sin), rotary(k, cos, sin), v, past_kv, pos_offset)  # (B, T, nh*d)
    return linear(y, w, a + "o_proj"), present


class Llama(CausalLM):
    """The whole Llama as one ``nn.Module``: parameters under ``LlamaForCausalLM``'s names."""
