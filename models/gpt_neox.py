"""GPT-NeoX (GPT-NeoX-20B, the Pythia suite) as layer functions that take their weights as arguments.

Architecture (Black et al. 2022, "GPT-NeoX-20B", arXiv 2204.06745, sec. 2.1; Biderman et al. 2023,
"Pythia", arXiv 2304.01373): two LayerNorms per block, both on the block input, with a parallel
residual x + attn(ln1 x) + mlp(ln2 x) (``use_parallel_residual``; sequential otherwise); rotary
positions (Su et al. 2021, arXiv 2104.09864) on the first ``rotary_pct`` of each head's dimensions,
half-split pairing; Q, K and V in one matrix, laid out per head; biases; an untied head
(``embed_out``).

Names, shapes and numerics follow transformers' ``models/gpt_neox/modeling_gpt_neox.py`` with its eager
attention, so that a float64 model here gives transformers' float64 logits: the attention softmax
and the rotary tables are computed in float32. The head is stored as ``embed_out.weight``, the name
the published checkpoints use and transformers 5 writes (it loads as ``lm_head``). No dropout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.decoder import (
    CausalLM, DecoderConfig, activation, boolean, causal_mask, check_eos, concat_cache, eos_ids,
    eos_json, given, one_of, positive_float, positive_int, require_keys, rope_cos_sin, rotate_half,
    token_id, token_embedding_forward,
)

EMBED, FINAL_LN = "gpt_neox.embed_in.weight", ("gpt_neox.final_layer_norm.weight", "gpt_neox.final_layer_norm.bias")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_fast", "relu")
_C = "GPTNeoXConfig"


@dataclass(frozen=True)
class GPTNeoXConfig(DecoderConfig):
    """A GPT-NeoX decoder; field names and meanings are those of Hugging Face ``GPTNeoXConfig``
    (transformers 4.x names ``rotary_pct``/``rotary_emb_base``; 5.x reads them into ``rope_parameters``)."""

    MODEL_TYPE = "gpt_neox"
    ARCHITECTURE = "GPTNeoXForCausalLM"
    EMBEDDING_WEIGHT = EMBED
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
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings"):
            positive_int(_C, name, getattr(self, name))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{_C}.hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        p = self.rotary_pct
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise ValueError(f"{_C}.rotary_pct must be in (0, 1], got {p!r}")
        if self.rotary_ndims < 2 or self.rotary_ndims % 2:
            raise ValueError(f"{_C}.rotary_pct {p!r} of head_dim {self.head_dim} gives {self.rotary_ndims} "
                             f"rotary dimensions; rotary rotates pairs: need an even number >= 2")
        one_of(_C, "hidden_act", self.hidden_act, ACTIVATIONS)
        for name in ("rotary_emb_base", "layer_norm_eps", "initializer_range"):
            positive_float(_C, name, getattr(self, name))
        for name in ("use_parallel_residual", "attention_bias", "tie_word_embeddings"):
            boolean(_C, name, getattr(self, name))
        token_id(_C, "bos_token_id", self.bos_token_id, self.vocab_size)
        check_eos(_C, self.eos_token_id, self.vocab_size)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_ndims(self) -> int:
        return int(self.head_dim * self.rotary_pct)  # as transformers' GPTNeoXAttention

    @property
    def n_layers(self) -> int:
        return self.num_hidden_layers

    @property
    def max_positions(self) -> int:
        return self.max_position_embeddings

    # ---- config.json ----
    @classmethod
    def from_hf_dict(cls, d: dict) -> GPTNeoXConfig:
        require_keys(d, ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                         "intermediate_size"), "gpt_neox")
        rope = d.get("rope_parameters") or {}  # transformers 5 writes the rotary fields here
        scaling = d.get("rope_scaling") or rope
        kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(scaling, dict) else scaling
        if kind not in ("default", None):
            raise ValueError(f"config rope type {kind!r} is not supported (only the default rotary "
                             f"embedding, rope_scaling null)")
        rope = rope if isinstance(rope, dict) else {}
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
            rotary_fraction=self.rotary_pct, parallel_residual=self.use_parallel_residual,
            attention_bias=self.attention_bias, mlp_bias=True, family="gpt_neox"), **overrides})

    # ---- names and shapes (nn.Linear: (out, in)); the order of GPTNeoXForCausalLM.named_parameters ----
    def embedding_shapes(self):
        return {EMBED: (self.vocab_size, self.hidden_size)}

    def block_prefix(self, i: int) -> str:
        return f"gpt_neox.layers.{i}."

    def block_shapes(self):
        C, Fi = self.hidden_size, self.intermediate_size
        shapes = {"input_layernorm.weight": (C,), "input_layernorm.bias": (C,),
                  "post_attention_layernorm.weight": (C,), "post_attention_layernorm.bias": (C,),
                  "attention.query_key_value.weight": (3 * C, C)}
        if self.attention_bias:
            shapes["attention.query_key_value.bias"] = (3 * C,)
        shapes["attention.dense.weight"] = (C, C)
        if self.attention_bias:
            shapes["attention.dense.bias"] = (C,)
        shapes.update({"mlp.dense_h_to_4h.weight": (Fi, C), "mlp.dense_h_to_4h.bias": (Fi,),
                       "mlp.dense_4h_to_h.weight": (C, Fi), "mlp.dense_4h_to_h.bias": (C,)})
        return shapes

    def head_shapes(self):
        shapes = {FINAL_LN[0]: (self.hidden_size,), FINAL_LN[1]: (self.hidden_size,)}
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

def rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first cos.size(-1) dims of every head, half-split pairing: x (B, heads, T, d),
    cos/sin (T, rot)."""
    rot = cos.size(-1)
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    return torch.cat([(x_rot * cos) + (rotate_half(x_rot) * sin), x_pass], dim=-1)


def embedding_forward(idx: Tensor, w: dict[str, Tensor], cfg: GPTNeoXConfig, pos_offset: int = 0) -> Tensor:
    return token_embedding_forward(idx, w[EMBED], cfg, pos_offset)  # (B, T, C)


def attention(x: Tensor, w: dict[str, Tensor], p: str, cfg: GPTNeoXConfig, pos_offset: int, past_kv=None):
    """Causal multi-head self-attention with partial rotary q and k; returns (y, (k, v))."""
    B, T, C = x.shape
    nh, d = cfg.num_attention_heads, cfg.head_dim
    a = p + "attention."
    qkv = F.linear(x, w[a + "query_key_value.weight"], w.get(a + "query_key_value.bias"))  # (B, T, 3C)
    q, k, v = qkv.view(B, T, nh, 3 * d).transpose(1, 2).chunk(3, dim=-1)  # (B, nh, T, d) each: per head q|k|v
    positions = torch.arange(pos_offset, pos_offset + T, device=x.device)  # (T,)
    cos, sin = rope_cos_sin(positions, cfg.rotary_ndims, cfg.rotary_emb_base, x.dtype)  # (T, rot)
    q, k = rotary(q, cos, sin), rotary(k, cos, sin)
    k, v = concat_cache(k, v, past_kv)  # (B, nh, P+T, d) each
    P = k.size(2) - T
    if P != pos_offset:
        raise ValueError(f"the KV cache holds {P} positions but the tokens start at position {pos_offset}")
    att = torch.matmul(q, k.transpose(2, 3)) * (d ** -0.5)  # (B, nh, T, P+T)
    att = att.masked_fill(~causal_mask(T, P, x.device), float("-inf"))
    att = F.softmax(att, dim=-1, dtype=torch.float32).to(q.dtype)  # in float32, as transformers' eager
    y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, C)  # (B, T, C)
    return F.linear(y, w[a + "dense.weight"], w.get(a + "dense.bias")), (k, v)


def mlp(x: Tensor, w: dict[str, Tensor], p: str, cfg: GPTNeoXConfig) -> Tensor:
    h = F.linear(x, w[p + "mlp.dense_h_to_4h.weight"], w[p + "mlp.dense_h_to_4h.bias"])  # (B, T, f)
    h = activation(h, cfg.hidden_act)
    return F.linear(h, w[p + "mlp.dense_4h_to_h.weight"], w[p + "mlp.dense_4h_to_h.bias"])  # (B, T, C)


def block_forward(x: Tensor, w: dict[str, Tensor], cfg: GPTNeoXConfig, layer_idx: int, past_kv=None,
                  use_cache: bool = False, pos_offset: int | None = None):
    """One GPT-NeoX block (Black et al. 2022, sec. 2.1.2): parallel x + attn(ln1 x) + mlp(ln2 x),
    or sequential. ``past_kv`` = (k, v) each (B, nh, P, d). Returns x (B, T, C), or (x, present_kv)."""
    p = cfg.block_prefix(layer_idx)
    if pos_offset is None:
        pos_offset = 0 if past_kv is None else past_kv[0].size(2)
    cfg.check_positions(pos_offset, x.size(1))
    C, eps = cfg.hidden_size, cfg.layer_norm_eps
    ln1 = F.layer_norm(x, (C,), w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"], eps)
    a, present = attention(ln1, w, p, cfg, pos_offset, past_kv)
    ln2_w, ln2_b = w[p + "post_attention_layernorm.weight"], w[p + "post_attention_layernorm.bias"]
    if cfg.use_parallel_residual:
        x = mlp(F.layer_norm(x, (C,), ln2_w, ln2_b, eps), w, p, cfg) + a + x  # transformers' order
    else:
        a = a + x
        x = mlp(F.layer_norm(a, (C,), ln2_w, ln2_b, eps), w, p, cfg) + a
    return (x, present) if use_cache else x


def head_forward(x: Tensor, w: dict[str, Tensor], cfg: GPTNeoXConfig) -> Tensor:
    """Final LayerNorm and the LM head (``embed_out``): logits (B, T, V)."""
    x = F.layer_norm(x, (cfg.hidden_size,), w[FINAL_LN[0]], w[FINAL_LN[1]], cfg.layer_norm_eps)
    return F.linear(x, w[cfg.head_weight_name])  # (B, T, V)


class GPTNeoX(CausalLM):
    """The whole GPT-NeoX as one ``nn.Module``: parameters under ``GPTNeoXForCausalLM``'s
    checkpoint names (the head as ``embed_out``)."""
