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
from torch import Tensor

from models.decoder import (
    CausalLM, DecoderConfig, attend, check_eos, check_fields, eos_ids, eos_json, given, layer_norm,
    linear, linear_shapes, modelled_activation, plain_mlp, require_keys, token_id,
)

WTE = "transformer.wte.weight"
_C = "GPTJConfig"


@dataclass(frozen=True)
class GPTJConfig(DecoderConfig):
    """A GPT-J decoder; field names and meanings are those of Hugging Face ``GPTJConfig``."""

    MODEL_TYPE = "gptj"
    ARCHITECTURE = "GPTJForCausalLM"
    DIMENSIONS = ("n_embd", "n_layer", "n_head", "n_positions")
    EMBEDDING_WEIGHT = WTE
    FINAL_NORM = "transformer.ln_f"
    HEAD_BIAS = "lm_head.bias"
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
        check_fields(_C, self, ints=("vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "rotary_dim"))
        if self.n_inner is None:
            object.__setattr__(self, "n_inner", 4 * self.n_embd)
        check_fields(_C, self, ints=("n_inner",))
        if self.n_embd % self.n_head:
            raise ValueError(f"{_C}.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        # transformers fails on the others too: an odd rotary_dim pairs unequal halves in
        # rotate_every_two, a larger one (or 0, read as n_embd) mismatches its sin/cos table
        if self.rotary_dim % 2 or self.rotary_dim > self.head_dim:
            raise ValueError(f"{_C}.rotary_dim must be an even number of dimensions up to head_dim "
                             f"{self.head_dim} (rotary rotates pairs), got {self.rotary_dim}")
        modelled_activation(_C, "activation_function", self.activation_function)
        check_fields(_C, self, floats=("layer_norm_epsilon", "initializer_range"), bools=("tie_word_embeddings",))
        token_id(_C, "bos_token_id", self.bos_token_id, self.vocab_size)
        check_eos(_C, self.eos_token_id, self.vocab_size)

    # ---- config.json ----
    @classmethod
    def from_hf_dict(cls, d: dict) -> GPTJConfig:
        require_keys(d, ("vocab_size", "n_embd", "n_layer", "n_head"), "gptj")
        if d.get("rotary_dim", 64) is None:  # transformers 5 refuses it too (GPTJConfig.rotary_dim: int)
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
        return {**self.norm_shapes("ln_1"), **{f"attn.{n}.weight": (C, C) for n in ("k_proj", "v_proj", "q_proj", "out_proj")},
                **linear_shapes("mlp.fc_in", Fi, C, True), **linear_shapes("mlp.fc_out", C, Fi, True)}

    # ---- layers ----
    def norm(self, x, w, name):
        return layer_norm(x, w, name, self.layer_norm_epsilon)

    def block(self, x, w, p, pos_offset, past_kv=None):
        """One GPT-J block: x + attn(ln x) + mlp(ln x), one LayerNorm for both."""
        h = self.norm(x, w, p + "ln_1")
        a, present = attention(h, w, p, self, pos_offset, past_kv)
        m = plain_mlp(h, w, p + "mlp.fc_in", p + "mlp.fc_out", self.activation_function)
        return a + m + x, present  # (B, T, C), summed in transformers' order


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
    """Rotate the first ``rot`` dims of every head, adjacent pairs: x (B, T, heads, d), sin/cos (T, rot)."""
    sin, cos = sin[:, None, :], cos[:, None, :]  # (T, 1, rot): broadcast over heads
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    return torch.cat([(x_rot * cos) + (rotate_every_two(x_rot) * sin), x_pass], dim=-1)


def attention(x: Tensor, w: dict[str, Tensor], p: str, cfg: GPTJConfig, pos_offset: int, past_kv=None):
    """Causal multi-head self-attention with partial interleaved rotary q and k; scores in float32
    whatever the dtype (transformers' GPT-J eager attention), then the dtype's softmax; returns (y, (k, v))."""
    B, T, _ = x.shape
    nh, d = cfg.n_head, cfg.head_dim
    q = linear(x, w, p + "attn.q_proj").view(B, T, nh, d)  # (B, T, nh, d)
    k = linear(x, w, p + "attn.k_proj").view(B, T, nh, d)
    v = linear(x, w, p + "attn.v_proj").view(B, T, nh, d).transpose(1, 2)  # (B, nh, T, d)
    sin, cos = sin_cos(torch.arange(pos_offset, pos_offset + T, device=x.device), cfg.rotary_dim, x.dtype)
    q = rotary(q, sin, cos, cfg.rotary_dim).transpose(1, 2)  # (B, nh, T, d)
    k = rotary(k, sin, cos, cfg.rotary_dim).transpose(1, 2)
    y, present = attend(q, k, v, past_kv, pos_offset, scores_fp32=True, softmax_fp32=False)
    return linear(y, w, p + "attn.out_proj"), present


class GPTJ(CausalLM):
    """The whole GPT-J as one ``nn.Module``: parameters under ``GPTJForCausalLM``'s names."""
