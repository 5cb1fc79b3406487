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
Supported: the default rotary embedding (``rope_scaling`` null, any ``rope_theta``), ``head_dim`` =
hidden/heads, ``hidden_act`` silu; anything else is refused by name. No dropout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.decoder import (
    CausalLM, DecoderConfig, activation, boolean, causal_mask, check_eos, concat_cache, eos_ids,
    eos_json, given, positive_float, positive_int, repeat_kv, require_keys, rope_cos_sin, rotate_half,
    token_id, token_embedding_forward,
)

EMBED, NORM = "model.embed_tokens.weight", "model.norm.weight"
_C = "LlamaConfig"


@dataclass(frozen=True)
class LlamaConfig(DecoderConfig):
    """A Llama decoder; field names and meanings are those of Hugging Face ``LlamaConfig``."""

    MODEL_TYPE = "llama"
    ARCHITECTURE = "LlamaForCausalLM"
    EMBEDDING_WEIGHT = EMBED
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

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "max_position_embeddings"):
            positive_int(_C, name, getattr(self, name))
        if self.num_key_value_heads is None:
            object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
        positive_int(_C, "num_key_value_heads", self.num_key_value_heads)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{_C}.hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"{_C}.num_key_value_heads ({self.num_key_value_heads}) must divide "
                             f"num_attention_heads ({self.num_attention_heads}): in grouped-query "
                             f"attention each key/value head serves a whole group of query heads")
        if self.head_dim % 2:
            raise ValueError(f"{_C}: head_dim {self.head_dim} must be even (rotary rotates pairs)")
        for name in ("rms_norm_eps", "rope_theta", "initializer_range"):
            positive_float(_C, name, getattr(self, name))
        for name in ("attention_bias", "mlp_bias", "tie_word_embeddings"):
            boolean(_C, name, getattr(self, name))
        if self.hidden_act != "silu":
            raise ValueError(f"{_C}.hidden_act {self.hidden_act!r} is not supported (Llama's SwiGLU uses 'silu')")
        token_id(_C, "bos_token_id", self.bos_token_id, self.vocab_size)
        check_eos(_C, self.eos_token_id, self.vocab_size)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def n_layers(self) -> int:
        return self.num_hidden_layers

    @property
    def max_positions(self) -> int:
        return self.max_position_embeddings

    # ---- config.json ----
    @classmethod
    def from_hf_dict(cls, d: dict) -> LlamaConfig:
        require_keys(d, ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                         "num_attention_heads"), "llama")
        rope = d.get("rope_parameters") or {}  # transformers 5 writes rope_theta here
        scaling = d.get("rope_scaling") or rope
        kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(scaling, dict) else scaling
        if kind not in ("default", None):
            raise ValueError(f"config rope type {kind!r} is not supported (only the default rotary "
                             f"embedding, rope_scaling null)")
        heads = d["num_attention_heads"]
        head_dim = d.get("head_dim")
        if head_dim is not None and isinstance(heads, int) and heads and head_dim != d["hidden_size"] // heads:
            raise ValueError(f"config head_dim {head_dim} is not hidden_size/num_attention_heads "
                             f"({d['hidden_size']}/{heads}): not supported")
        theta = rope.get("rope_theta", d.get("rope_theta", 10000.0)) if isinstance(rope, dict) else 10000.0
        return cls(
            vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], intermediate_size=d["intermediate_size"],
            num_hidden_layers=d["num_hidden_layers"], num_attention_heads=heads,
            num_key_value_heads=d.get("num_key_value_heads"),
            max_position_embeddings=d.get("max_position_embeddings", 2048),
            rms_norm_eps=d.get("rms_norm_eps", 1e-6), rope_theta=theta,
            attention_bias=d.get("attention_bias", False), mlp_bias=d.get("mlp_bias", False),
            tie_word_embeddings=d.get("tie_word_embeddings", False), hidden_act=d.get("hidden_act", "silu"),
            bos_token_id=given(d, "bos_token_id", 1), eos_token_id=eos_ids(given(d, "eos_token_id", 2)),
            initializer_range=d.get("initializer_range", 0.02),
        )

    def to_hf_dict(self) -> dict:
        """A ``config.json`` dict that ``transformers.LlamaForCausalLM`` reads (4.x and 5.x)."""
        return {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"],
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim, "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps, "rope_theta": self.rope_theta, "rope_scaling": None,
            "attention_bias": self.attention_bias, "mlp_bias": self.mlp_bias,
            "tie_word_embeddings": self.tie_word_embeddings, "hidden_act": self.hidden_act,
            "bos_token_id": self.bos_token_id, "eos_token_id": eos_json(self.eos_token_id),
            "initializer_range": self.initializer_range, "attention_dropout": 0.0, "pretraining_tp": 1,
            "use_cache": True,
        }

    @classmethod
    def _from_spec_fields(cls, spec) -> dict:
        return dict(vocab_size=spec.vocab, hidden_size=spec.hidden, intermediate_size=spec.ffn,
                    num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                    num_key_value_heads=spec.kv_heads, max_position_embeddings=spec.positions,
                    attention_bias=spec.attention_bias, mlp_bias=spec.mlp_bias,
                    tie_word_embeddings=spec.tied_embeddings, hidden_act=spec.activation)

    def spec(self, name: str = "llama", **overrides):
        from models.spec import ModelSpec

        return ModelSpec(**{**dict(
            name=name, layers=self.num_hidden_layers, hidden=self.hidden_size, heads=self.num_attention_heads,
            kv_heads=self.num_key_value_heads, ffn=self.intermediate_size, vocab=self.vocab_size,
            positions=self.max_position_embeddings, tied_embeddings=self.tie_word_embeddings,
            activation="silu", gated_mlp=True, norm="rmsnorm", positional="rotary", rotary_fraction=1.0,
            attention_bias=self.attention_bias, mlp_bias=self.mlp_bias, head_bias=False,
            family="llama"), **overrides})

    # ---- names and shapes (nn.Linear: (out, in)); the order of LlamaForCausalLM.named_parameters ----
    def embedding_shapes(self):
        return {EMBED: (self.vocab_size, self.hidden_size)}

    def block_prefix(self, i: int) -> str:
        return f"model.layers.{i}."

    def block_shapes(self):
        h, f, kvd = self.hidden_size, self.intermediate_size, self.num_key_value_heads * self.head_dim
        shapes = {}
        for proj, (out, inp) in (("q_proj", (h, h)), ("k_proj", (kvd, h)), ("v_proj", (kvd, h)),
                                 ("o_proj", (h, h))):
            shapes[f"self_attn.{proj}.weight"] = (out, inp)
            if self.attention_bias:
                shapes[f"self_attn.{proj}.bias"] = (out,)
        for proj, (out, inp) in (("gate_proj", (f, h)), ("up_proj", (f, h)), ("down_proj", (h, f))):
            shapes[f"mlp.{proj}.weight"] = (out, inp)
            if self.mlp_bias:
                shapes[f"mlp.{proj}.bias"] = (out,)
        shapes["input_layernorm.weight"] = (h,)
        shapes["post_attention_layernorm.weight"] = (h,)
        return shapes

    def head_shapes(self):
        shapes = {NORM: (self.hidden_size,)}
        if not self.tie_word_embeddings:
            shapes[self.LM_HEAD] = (self.vocab_size, self.hidden_size)
        return shapes

    def embedding_forward(self, idx, w, pos_offset=0):
        return embedding_forward(idx, w, self, pos_offset)

    def block_forward(self, x, w, layer_idx, past_kv=None, use_cache=False, pos_offset=None):
        return block_forward(x, w, self, layer_idx, past_kv=past_kv, use_cache=use_cache, pos_offset=pos_offset)

    def head_forward(self, x, w):
        return head_forward(x, w, self)


# ---- layers --------------------------------------------------------------------------------------

def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * g (Zhang & Sennrich 2019, eq. 4), statistics in float32 as
    transformers' ``LlamaRMSNorm``."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (j, j + d/2) of every head by the position's angles (Su et al. 2021, eq. 34,
    half-split layout): x (B, heads, T, d), cos/sin (T, d)."""
    return (x * cos) + (rotate_half(x) * sin)


def embedding_forward(idx: Tensor, w: dict[str, Tensor], cfg: LlamaConfig, pos_offset: int = 0) -> Tensor:
    return token_embedding_forward(idx, w[EMBED], cfg, pos_offset)  # (B, T, C)


def attention(x: Tensor, w: dict[str, Tensor], p: str, cfg: LlamaConfig, pos_offset: int, past_kv=None):
    """Causal grouped-query self-attention with rotary q and k; returns (y, (k, v)), the cache
    holding kv_heads heads: (B, kv_heads, P+T, d) each."""
    B, T, C = x.shape
    nh, kvh, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    a = p + "self_attn."
    q = F.linear(x, w[a + "q_proj.weight"], w.get(a + "q_proj.bias")).view(B, T, nh, d).transpose(1, 2)
    k = F.linear(x, w[a + "k_proj.weight"], w.get(a + "k_proj.bias")).view(B, T, kvh, d).transpose(1, 2)
    v = F.linear(x, w[a + "v_proj.weight"], w.get(a + "v_proj.bias")).view(B, T, kvh, d).transpose(1, 2)
    positions = torch.arange(pos_offset, pos_offset + T, device=x.device)  # (T,)
    cos, sin = rope_cos_sin(positions, d, cfg.rope_theta, x.dtype)  # (T, d) each
    q, k = rotary(q, cos, sin), rotary(k, cos, sin)  # (B, nh, T, d), (B, kvh, T, d)
    k, v = concat_cache(k, v, past_kv)  # (B, kvh, P+T, d) each
    P = k.size(2) - T
    if P != pos_offset:
        raise ValueError(f"the KV cache holds {P} positions but the tokens start at position {pos_offset}")
    kr, vr = repeat_kv(k, nh // kvh), repeat_kv(v, nh // kvh)  # (B, nh, P+T, d) each
    att = torch.matmul(q, kr.transpose(2, 3)) * (d ** -0.5)  # (B, nh, T, P+T)
    att = att.masked_fill(~causal_mask(T, P, x.device), float("-inf"))
    att = F.softmax(att, dim=-1, dtype=torch.float32).to(q.dtype)  # in float32, as transformers' eager
    y = torch.matmul(att, vr)  # (B, nh, T, d)
    y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
    return F.linear(y, w[a + "o_proj.weight"], w.get(a + "o_proj.bias")), (k, v)


def mlp(x: Tensor, w: dict[str, Tensor], p: str, cfg: LlamaConfig) -> Tensor:
    """SwiGLU: down(silu(gate x) * up x) (Shazeer 2020, eq. 6)."""
    m = p + "mlp."
    gate = activation(F.linear(x, w[m + "gate_proj.weight"], w.get(m + "gate_proj.bias")), cfg.hidden_act)
    up = F.linear(x, w[m + "up_proj.weight"], w.get(m + "up_proj.bias"))  # (B, T, f)
    return F.linear(gate * up, w[m + "down_proj.weight"], w.get(m + "down_proj.bias"))  # (B, T, C)


def block_forward(x: Tensor, w: dict[str, Tensor], cfg: LlamaConfig, layer_idx: int, past_kv=None,
                  use_cache: bool = False, pos_offset: int | None = None):
    """One pre-RMSNorm block. ``past_kv`` = (k, v) each (B, kv_heads, P, d); ``pos_offset`` (the
    first token's position) defaults to P. Returns x (B, T, C), or (x, present_kv) with ``use_cache``."""
    p = cfg.block_prefix(layer_idx)
    if pos_offset is None:
        pos_offset = 0 if past_kv is None else past_kv[0].size(2)
    cfg.check_positions(pos_offset, x.size(1))
    h = rms_norm(x, w[p + "input_layernorm.weight"], cfg.rms_norm_eps)  # (B, T, C)
    a, present = attention(h, w, p, cfg, pos_offset, past_kv)
    x = x + a  # (B, T, C)
    h = rms_norm(x, w[p + "post_attention_layernorm.weight"], cfg.rms_norm_eps)
    x = x + mlp(h, w, p, cfg)  # (B, T, C)
    return (x, present) if use_cache else x


def head_forward(x: Tensor, w: dict[str, Tensor], cfg: LlamaConfig) -> Tensor:
    """Final RMSNorm and the LM head: logits (B, T, V)."""
    x = rms_norm(x, w[NORM], cfg.rms_norm_eps)  # (B, T, C)
    return F.linear(x, w[cfg.head_weight_name])  # (B, T, V)


class Llama(CausalLM):
    """The whole Llama as one ``nn.Module``: parameters under ``LlamaForCausalLM``'s names."""
