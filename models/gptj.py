"""GPT-J as layer functions that take their weights as arguments.

Architecture (Wang & Komatsuzaki 2021, "GPT-J-6B", github.com/kingoflolz/mesh-transformer-jax; the
EleutherAI/gpt-j-6b model card): one LayerNorm per block feeding attention and MLP in parallel,
x + attn(ln x) + mlp(ln x); rotary positions (Su et al. 2021, arXiv 2104.09864) on the first
``rotary_dim`` dimensions of each head, pairing adjacent dimensions (2j, 2j+1); no attention
biases; a GeLU MLP with biases; an untied LM head with a bias.

Names, shapes and numerics follow transformers' ``models/gptj/modeling_gptj.py`` with its eager
attention, so that a float64 model here gives transformers' float64 logits: the query-key product
is computed in float32 (transformers: "to avoid overflow issues") and the sin/cos table in float32.
No dropout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.decoder import (
    CausalLM, DecoderConfig, activation, boolean, causal_mask, check_eos, concat_cache, eos_ids,
    eos_json, given, one_of, positive_float, positive_int, require_keys, token_id,
    token_embedding_forward,
)

WTE, LN_F = "transformer.wte.weight", ("transformer.ln_f.weight", "transformer.ln_f.bias")
LM_HEAD_BIAS = "lm_head.bias"
ACTIVATIONS = ("gelu", "gelu_new", "gelu_fast", "relu")
_C = "GPTJConfig"


@dataclass(frozen=True)
class GPTJConfig(DecoderConfig):
    """A GPT-J decoder; field names and meanings are those of Hugging Face ``GPTJConfig``."""

    MODEL_TYPE = "gptj"
    ARCHITECTURE = "GPTJForCausalLM"
    EMBEDDING_WEIGHT = WTE
    DROPOUT_KEYS = ("resid_pdrop", "embd_pdrop", "attn_pdrop")
    CHECKPOINT_IGNORED = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of transformers 4.x

    vocab_size: int
    n_embd: int
    n_layer: int
    n_head: int
    n_positions: int = 2048
    rotary_dim: int = 64
    n_inner: int | None = None  # None means 4 * n_embd
    activation_function: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    tie_word_embeddings: bool = False
    bos_token_id: int = 50256  # GPTJConfig's defaults (GPT-2's <|endoftext|>)
    eos_token_id: int | tuple[int, ...] = 50256  # a tuple: stop on any, pad with the first
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "rotary_dim"):
            positive_int(_C, name, getattr(self, name))
        if self.n_inner is None:
            object.__setattr__(self, "n_inner", 4 * self.n_embd)
        positive_int(_C, "n_inner", self.n_inner)
        if self.n_embd % self.n_head:
            raise ValueError(f"{_C}.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.rotary_dim % 2 or self.rotary_dim > self.head_dim:
            raise ValueError(f"{_C}.rotary_dim must be an even number of dimensions up to head_dim "
                             f"{self.head_dim} (rotary rotates pairs), got {self.rotary_dim}")
        one_of(_C, "activation_function", self.activation_function, ACTIVATIONS)
        for name in ("layer_norm_epsilon", "initializer_range"):
            positive_float(_C, name, getattr(self, name))
        boolean(_C, "tie_word_embeddings", self.tie_word_embeddings)
        token_id(_C, "bos_token_id", self.bos_token_id, self.vocab_size)
        check_eos(_C, self.eos_token_id, self.vocab_size)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_layers(self) -> int:
        return self.n_layer

    @property
    def max_positions(self) -> int:
        return self.n_positions

    # ---- config.json ----
    @classmethod
    def from_hf_dict(cls, d: dict) -> GPTJConfig:
        require_keys(d, ("vocab_size", "n_embd", "n_layer", "n_head"), "gptj")
        if d.get("rotary_dim", 64) is None:  # transformers would rotate hidden_size dims of each head
            raise ValueError("config rotary_dim null is not supported: give the rotated head dimensions")
        return cls(
            vocab_size=d["vocab_size"], n_embd=d["n_embd"], n_layer=d["n_layer"], n_head=d["n_head"],
            n_positions=d.get("n_positions", 2048), rotary_dim=d.get("rotary_dim", 64),
            n_inner=d.get("n_inner"), activation_function=d.get("activation_function", "gelu_new"),
            layer_norm_epsilon=d.get("layer_norm_epsilon", 1e-5),
            tie_word_embeddings=d.get("tie_word_embeddings", False),
            bos_token_id=given(d, "bos_token_id", 50256),
            eos_token_id=eos_ids(given(d, "eos_token_id", 50256)),
            initializer_range=d.get("initializer_range", 0.02),
        )

    def to_hf_dict(self) -> dict:
        """A ``config.json`` dict that ``transformers.GPTJForCausalLM`` reads (dropouts 0.0)."""
        return {
            "model_type": "gptj", "architectures": ["GPTJForCausalLM"],
            "vocab_size": self.vocab_size, "n_embd": self.n_embd, "n_layer": self.n_layer,
            "n_head": self.n_head, "n_positions": self.n_positions, "rotary_dim": self.rotary_dim,
            "n_inner": self.n_inner, "activation_function": self.activation_function,
            "layer_norm_epsilon": self.layer_norm_epsilon, "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id, "eos_token_id": eos_json(self.eos_token_id),
            "initializer_range": self.initializer_range,
            "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0, "use_cache": True,
        }

    @classmethod
    def _from_spec_fields(cls, spec) -> dict:
        return dict(vocab_size=spec.vocab, n_embd=spec.hidden, n_layer=spec.layers, n_head=spec.heads,
                    n_positions=spec.positions, rotary_dim=spec.rotary_dims, n_inner=spec.ffn,
                    activation_function=spec.activation, tie_word_embeddings=spec.tied_embeddings)

    def spec(self, name: str = "gptj", **overrides):
        from models.spec import ModelSpec

        return ModelSpec(**{**dict(
            name=name, layers=self.n_layer, hidden=self.n_embd, heads=self.n_head, ffn=self.n_inner,
            vocab=self.vocab_size, positions=self.n_positions, tied_embeddings=self.tie_word_embeddings,
            activation=self.activation_function, positional="rotary",
            rotary_fraction=self.rotary_dim / self.head_dim, block_norms=1, parallel_residual=True,
            attention_bias=False, mlp_bias=True, head_bias=True, family="gptj"), **overrides})

    # ---- names and shapes (nn.Linear: (out, in)); the order of GPTJForCausalLM.named_parameters ----
    def embedding_shapes(self):
        return {WTE: (self.vocab_size, self.n_embd)}

    def block_prefix(self, i: int) -> str:
        return f"transformer.h.{i}."

    def block_shapes(self):
        C, Fi = self.n_embd, self.n_inner
        return {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.k_proj.weight": (C, C),
                "attn.v_proj.weight": (C, C), "attn.q_proj.weight": (C, C), "attn.out_proj.weight": (C, C),
                "mlp.fc_in.weight": (Fi, C), "mlp.fc_in.bias": (Fi,), "mlp.fc_out.weight": (C, Fi),
                "mlp.fc_out.bias": (C,)}

    def head_shapes(self):
        shapes = {LN_F[0]: (self.n_embd,), LN_F[1]: (self.n_embd,)}
        if not self.tie_word_embeddings:
            shapes[self.LM_HEAD] = (self.vocab_size, self.n_embd)
        shapes[LM_HEAD_BIAS] = (self.vocab_size,)  # kept when the matrix is tied
        return shapes

    def embedding_forward(self, idx, w, pos_offset=0):
        return embedding_forward(idx, w, self, pos_offset)

    def block_forward(self, x, w, layer_idx, past_kv=None, use_cache=False, pos_offset=None):
        return block_forward(x, w, self, layer_idx, past_kv=past_kv, use_cache=use_cache, pos_offset=pos_offset)

    def head_forward(self, x, w):
        return head_forward(x, w, self)


# ---- layers --------------------------------------------------------------------------------------

def sin_cos(positions: Tensor, dim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(T, dim) tables for the interleaved layout: angle_j = pos / 10000^(2j/dim), each angle used
    by the pair (2j, 2j+1). Computed in float32, as transformers' ``create_sinusoidal_positions``."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.int64) / dim))  # (dim/2,) float32
    angles = positions.float()[:, None] * inv_freq  # (T, dim/2)
    sin, cos = torch.sin(angles).to(dtype), torch.cos(angles).to(dtype)
    return sin.repeat_interleave(2, dim=-1), cos.repeat_interleave(2, dim=-1)  # (T, dim) each


def rotate_every_two(x: Tensor) -> Tensor:
    """(..., d) -> (..., d): pairs (x_2j, x_2j+1) become (-x_2j+1, x_2j)."""
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def rotary(x: Tensor, sin: Tensor, cos: Tensor, rot: int) -> Tensor:
    """Rotate the first ``rot`` dims of every head: x (B, T, heads, d), sin/cos (T, rot)."""
    sin, cos = sin[:, None, :], cos[:, None, :]  # (T, 1, rot): broadcast over heads
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    return torch.cat([(x_rot * cos) + (rotate_every_two(x_rot) * sin), x_pass], dim=-1)


def embedding_forward(idx: Tensor, w: dict[str, Tensor], cfg: GPTJConfig, pos_offset: int = 0) -> Tensor:
    return token_embedding_forward(idx, w[WTE], cfg, pos_offset)  # (B, T, C)


def attention(x: Tensor, w: dict[str, Tensor], p: str, cfg: GPTJConfig, pos_offset: int, past_kv=None):
    """Causal multi-head self-attention with partial rotary q and k; returns (y, (k, v))."""
    B, T, C = x.shape
    nh, d = cfg.n_head, cfg.head_dim
    q = F.linear(x, w[p + "attn.q_proj.weight"]).view(B, T, nh, d)  # (B, T, nh, d)
    k = F.linear(x, w[p + "attn.k_proj.weight"]).view(B, T, nh, d)
    v = F.linear(x, w[p + "attn.v_proj.weight"]).view(B, T, nh, d).transpose(1, 2)  # (B, nh, T, d)
    positions = torch.arange(pos_offset, pos_offset + T, device=x.device)  # (T,)
    sin, cos = sin_cos(positions, cfg.rotary_dim, x.dtype)
    q = rotary(q, sin, cos, cfg.rotary_dim).transpose(1, 2)  # (B, nh, T, d)
    k = rotary(k, sin, cos, cfg.rotary_dim).transpose(1, 2)
    k, v = concat_cache(k, v, past_kv)  # (B, nh, P+T, d) each
    P = k.size(2) - T
    if P != pos_offset:
        raise ValueError(f"the KV cache holds {P} positions but the tokens start at position {pos_offset}")
    # scores in float32 whatever the dtype (transformers' GPT-J eager attention), then the dtype's softmax
    att = torch.matmul(q.to(torch.float32), k.to(torch.float32).transpose(2, 3)) * (d ** -0.5)
    att = att.to(v.dtype).masked_fill(~causal_mask(T, P, x.device), float("-inf"))  # (B, nh, T, P+T)
    att = F.softmax(att, dim=-1)
    y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, C)  # (B, T, C)
    return F.linear(y, w[p + "attn.out_proj.weight"]), (k, v)


def mlp(x: Tensor, w: dict[str, Tensor], p: str, cfg: GPTJConfig) -> Tensor:
    h = F.linear(x, w[p + "mlp.fc_in.weight"], w[p + "mlp.fc_in.bias"])  # (B, T, n_inner)
    return F.linear(activation(h, cfg.activation_function), w[p + "mlp.fc_out.weight"], w[p + "mlp.fc_out.bias"])


def block_forward(x: Tensor, w: dict[str, Tensor], cfg: GPTJConfig, layer_idx: int, past_kv=None,
                  use_cache: bool = False, pos_offset: int | None = None):
    """One GPT-J block: x + attn(ln x) + mlp(ln x), one LayerNorm for both. ``past_kv`` = (k, v)
    each (B, nh, P, d). Returns x (B, T, C), or (x, present_kv) with ``use_cache``."""
    p = cfg.block_prefix(layer_idx)
    if pos_offset is None:
        pos_offset = 0 if past_kv is None else past_kv[0].size(2)
    cfg.check_positions(pos_offset, x.size(1))
    h = F.layer_norm(x, (cfg.n_embd,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], cfg.layer_norm_epsilon)
    a, present = attention(h, w, p, cfg, pos_offset, past_kv)
    x = a + mlp(h, w, p, cfg) + x  # (B, T, C), summed in transformers' order
    return (x, present) if use_cache else x


def head_forward(x: Tensor, w: dict[str, Tensor], cfg: GPTJConfig) -> Tensor:
    """Final LayerNorm and the LM head with its bias: logits (B, T, V)."""
    x = F.layer_norm(x, (cfg.n_embd,), w[LN_F[0]], w[LN_F[1]], cfg.layer_norm_epsilon)  # (B, T, C)
    return F.linear(x, w[cfg.head_weight_name], w[LM_HEAD_BIAS])  # (B, T, V)


class GPTJ(CausalLM):
    """The whole GPT-J as one ``nn.Module``: parameters under ``GPTJForCausalLM``'s names."""
