"""What every model family provides, and what all families share.

A family (GPT-2 ``models/gpt.py``, Llama ``models/llama.py``, GPT-J ``models/gptj.py``, GPT-NeoX
``models/gpt_neox.py``) is a frozen config dataclass whose field names are those of the Hugging Face
config class of the same ``model_type``, subclassing ``DecoderConfig``, plus layer functions in its
module that take their weights as arguments. Weight streaming moves one layer at a time (docs/design.md),
so a model is cut into the same streamed layers for every family:

    embedding  the token embedding (and GPT-2's learned positions)
    block{i}   one transformer block, i = 0 .. n_layers-1
    head       the final norm and the LM head (the token embedding itself when tied)

The functional executor, reference trainer and decoder (``wsim/functional``) use only this interface:

    cfg.layer_names()                       streamed layers in forward order
    cfg.layer_param_names(layer)            Hugging Face names of the tensors ``layer`` computes with
    cfg.param_shapes()                      every unique tensor and its shape, in Hugging Face's order
    cfg.layer_forward(layer, inp, w, ...)   run a layer with weights ``w`` (a name -> tensor map)
    cfg.init_weights(seed, dtype), cfg.check_weights(w), cfg.spec(name), cfg.to_hf_dict()
    cfg.vocab_size, cfg.n_layers, cfg.max_positions, cfg.bos_token_id, cfg.eos_token_id

A family implements: ``MODEL_TYPE``, ``ARCHITECTURE``, ``DIMENSIONS`` (its names for the width,
layers, heads and positions), ``from_hf_dict``, ``to_hf_dict``, ``spec``, ``_from_spec_fields``; the
tensor names (``embedding_shapes``, ``block_prefix``, ``block_shapes``, ``EMBEDDING_WEIGHT``,
``FINAL_NORM``, ``NORM_BIAS``, ``HEAD_BIAS``); and ``norm`` and ``block`` (one block's math). The
rest is shared: the embedding (token table), the block step (positions, cache), the head (final norm,
LM head), and the pieces below (attention, rotary, MLPs, norms), which mirror transformers' eager
modules operation for operation.
"""

from __future__ import annotations

import hashlib
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Shapes = dict[str, tuple[int, ...]]


# ---- validation helpers (plain ValueError: ``models`` never imports ``wsim``) --------------------

def positive_int(cls: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{cls}.{name} must be a positive integer, got {value!r}")


def positive_float(cls: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{cls}.{name} must be a positive number, got {value!r}")


def boolean(cls: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{cls}.{name} must be a bool, got {value!r}")


def modelled_activation(cls: str, name: str, value) -> None:
    """transformers takes any of its ACT2FN names; the ones ``activation`` computes are modelled."""
    if value not in ACTIVATIONS:
        raise ValueError(f"{cls}.{name} {value!r} is not supported: transformers' {value} is not "
                         f"modelled (supported: {', '.join(ACTIVATIONS)})")


def token_id(cls: str, name: str, value, vocab: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab:
        raise ValueError(f"{cls}.{name} must be a token id in [0, {vocab}), got {value!r}")


def require_keys(d: dict, keys: tuple[str, ...], model_type: str) -> None:
    """Refuse a config.json that lacks a field with no sensible default (the model's dimensions)."""
    missing = [k for k in keys if d.get(k) is None]
    if missing:
        raise ValueError(f"config lacks the {model_type} key {missing[0]!r}"
                         + (f" (and {', '.join(map(repr, missing[1:]))})" if missing[1:] else ""))


def given(d: dict, key: str, default):
    """``d[key]``, or ``default`` when absent or null (configs write ``"bos_token_id": null``)."""
    value = d.get(key)
    return default if value is None else value


def eos_ids(value):
    """config.json's ``eos_token_id``: one id, or a list of ids (Llama 3 instruct ends on either of
    two): kept as an int or a tuple, whose first id pads finished rows (as transformers does)."""
    if isinstance(value, list):
        return tuple(value) if len(value) != 1 else value[0]
    return value


def check_eos(cls: str, value, vocab: int) -> None:
    for v in value if isinstance(value, tuple) and value else (value,):
        token_id(cls, "eos_token_id", v, vocab)


def eos_json(value):
    return list(value) if isinstance(value, tuple) else value


# ---- activations (transformers/activations.py ACT2FN, the names configs use) --------------------

ACTIVATIONS = ("gelu", "gelu_new", "gelu_fast", "relu", "silu")


def activation(x: Tensor, kind: str) -> Tensor:
    if kind == "gelu":  # exact erf form (Hendrycks & Gimpel 2016, arXiv 1606.08415)
        return F.gelu(x)
    if kind == "gelu_new":  # tanh approximation of the original GPT-2 code (HF NewGELUActivation)
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    if kind == "gelu_fast":  # HF FastGELUActivation (GPT-NeoX-20B's config)
        return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))
    if kind == "silu":  # x * sigmoid(x) (Elfwing et al. 2017; Llama's SwiGLU gate)
        return F.silu(x)
    if kind == "relu":
        return F.relu(x)
    raise ValueError(f"activation {kind!r} is not one of {ACTIVATIONS}")


# ---- shared layer pieces (the numerics of transformers' eager modules) ---------------------------

def linear(x: Tensor, w: dict[str, Tensor], name: str) -> Tensor:
    """``nn.Linear`` module ``name``: x W^T (+ b when the module has a bias), W stored (out, in)."""
    return F.linear(x, w[name + ".weight"], w.get(name + ".bias"))


def linear_shapes(name: str, out: int, inp: int, bias: bool) -> Shapes:
    """The tensors of ``nn.Linear(inp, out, bias)`` named as transformers names them."""
    return {name + ".weight": (out, inp), **({name + ".bias": (out,)} if bias else {})}


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * g (Zhang & Sennrich 2019, arXiv 1910.07467, eq. 4), statistics in
    float32 as transformers' ``LlamaRMSNorm`` (and its MoE descendants)."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def layer_norm(x: Tensor, w: dict[str, Tensor], name: str, eps: float) -> Tensor:
    """``nn.LayerNorm`` module ``name`` (gain and bias) over the last dimension."""
    return F.layer_norm(x, (x.size(-1),), w[name + ".weight"], w.get(name + ".bias"), eps)


def causal_mask(T: int, P: int, device) -> Tensor:
    """(T, P+T) bool: query t sits at absolute position P+t and sees keys 0..P+t."""
    return torch.ones(T, P + T, dtype=torch.bool, device=device).tril(diagonal=P)


def concat_cache(k: Tensor, v: Tensor, past_kv):
    """Append this call's keys and values (B, kv_heads, T, d) to the cache (B, kv_heads, P, d).
    Without a cache the result is a contiguous copy, as transformers' ``DynamicCache`` (which its
    models create even in training) returns: GPT-J's float32 score product then runs on the same
    memory layout, hence the same summation order, as transformers'."""
    if past_kv is None:
        return k.contiguous(), v.contiguous()
    return torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """(B, kv_heads, S, d) -> (B, kv_heads * n_rep, S, d): each key/value head serves ``n_rep``
    query heads (grouped-query attention, Ainslie et al. 2023, arXiv 2305.13245); laid out as
    transformers' ``repeat_kv`` so that the backward sums the group in the same order."""
    if n_rep == 1:
        return x
    B, kvh, S, d = x.shape
    return x[:, :, None, :, :].expand(B, kvh, n_rep, S, d).reshape(B, kvh * n_rep, S, d)


def heads(t: Tensor, n: int) -> Tensor:
    """(B, T, n*d) -> (B, n, T, d)."""
    B, T, _ = t.shape
    return t.view(B, T, n, -1).transpose(1, 2)


def attend(q: Tensor, k: Tensor, v: Tensor, past_kv=None, pos_offset: int | None = None,
           scores_fp32: bool = False, softmax_fp32: bool = True):
    """Causal scaled dot-product attention (Vaswani et al. 2017) as transformers' eager attention:
    q (B, nh, T, d), k and v (B, kvh, T, d) appended to the cache ``past_kv``; each key/value head
    serves nh/kvh query heads. ``softmax_fp32``: the softmax in float32, cast back (Llama, GPT-NeoX
    and descendants); else in the dtype (GPT-2, GPT-J). ``scores_fp32``: q k^T in float32 (GPT-J).
    Returns y (B, T, nh*d) and the cache (k, v), each (B, kvh, P+T, d)."""
    B, nh, T, d = q.shape
    k, v = concat_cache(k, v, past_kv)  # (B, kvh, P+T, d) each
    P = k.size(2) - T  # tokens already in the cache
    if pos_offset is not None and P != pos_offset:
        raise ValueError(f"the KV cache holds {P} positions but the tokens start at position {pos_offset}")
    kr, vr = repeat_kv(k, nh // k.size(1)), repeat_kv(v, nh // v.size(1))  # (B, nh, P+T, d) each
    if scores_fp32:  # transformers' GPT-J: "to avoid overflow issues", then back to the dtype
        att = (torch.matmul(q.to(torch.float32), kr.to(torch.float32).transpose(2, 3)) * (d ** -0.5)).to(v.dtype)
    else:
        att = torch.matmul(q, kr.transpose(2, 3)) * (d ** -0.5)  # (B, nh, T, P+T)
    att = att.masked_fill(~causal_mask(T, P, q.device), float("-inf"))  # query t sees keys 0..P+t
    att = F.softmax(att, dim=-1, dtype=torch.float32).to(q.dtype) if softmax_fp32 else F.softmax(att, dim=-1)
    y = torch.matmul(att, vr).transpose(1, 2).reshape(B, T, nh * d)  # (B, T, nh*d): heads side by side
    return y, (k, v)


def gated_mlp(x: Tensor, w: dict[str, Tensor], m: str, act: str) -> Tensor:
    """SwiGLU-style MLP down(act(gate x) * up x) (Shazeer 2020, arXiv 2002.05202, eq. 6), modules
    ``{m}gate_proj``, ``{m}up_proj``, ``{m}down_proj`` (Llama and its descendants, MoE experts)."""
    gate = activation(linear(x, w, m + "gate_proj"), act)  # (..., f)
    return linear(gate * linear(x, w, m + "up_proj"), w, m + "down_proj")  # (..., C)


def plain_mlp(x: Tensor, w: dict[str, Tensor], fc_in: str, fc_out: str, act: str) -> Tensor:
    """fc_out(act(fc_in x)), with biases (GPT-J, GPT-NeoX)."""
    return linear(activation(linear(x, w, fc_in), act), w, fc_out)


def scaled_inv_freq(inv_freq: Tensor, scaling: tuple) -> Tensor:
    """Rotary frequencies under a config's ``rope_scaling`` (transformers' modeling_rope_utils):
    ("linear", factor) divides them by the factor (position interpolation, Chen et al. 2023, arXiv
    2306.15595); ("llama3", factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)
    divides the low frequencies, keeps the high ones and interpolates between (Llama 3.1, Meta's
    reference code; transformers' ``_compute_llama3_parameters``, whose float32 steps these are)."""
    if scaling[0] == "linear":
        return inv_freq / scaling[1]
    _, factor, low_freq_factor, high_freq_factor, old_context_len = scaling
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rope_cos_sin(positions: Tensor, dim: int, base: float, dtype: torch.dtype,
                 scaling: tuple | None = None) -> tuple[Tensor, Tensor]:
    """Rotary tables for the half-split layout (Su et al. 2021, arXiv 2104.09864, eq. 34):
    angle_j = pos / base^(2j/dim), j < ceil(dim/2), duplicated over both halves, so (T, 2 ceil(dim/2)):
    an odd ``dim`` rotates dim+1 dimensions, as transformers' ``GPTNeoXRotaryEmbedding`` does.
    Computed in float32 and cast, as transformers' rotary embeddings do for any dtype."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))  # (ceil(dim/2),) float32
    if scaling is not None:
        inv_freq = scaled_inv_freq(inv_freq, scaling)
    freqs = positions[:, None].float() * inv_freq  # (T, ceil(dim/2))
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, 2 ceil(dim/2))
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotary_dims(dim: int) -> int:
    """The dimensions ``rope_cos_sin(dim)`` rotates: 2 ceil(dim/2)."""
    return 2 * ((dim + 1) // 2)


def rotate_half(x: Tensor) -> Tensor:
    """(..., d) -> (..., d): [-x2, x1] for halves x1, x2 (the half-split rotary pairing)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first cos.size(-1) dims of every head, half-split pairing (all of them for Llama):
    x (B, heads, T, d), cos/sin (T, rot)."""
    rot = cos.size(-1)
    if rot == x.size(-1):
        return (x * cos) + (rotate_half(x) * sin)
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    return torch.cat([(x_rot * cos) + (rotate_half(x_rot) * sin), x_pass], dim=-1)


def token_embedding_forward(idx: Tensor, table: Tensor, cfg, pos_offset: int = 0) -> Tensor:
    """Token embeddings (B, T, C) of a rotary family: positions enter in each block's attention."""
    cfg.check_positions(pos_offset, idx.size(1))
    return F.embedding(idx, table)  # (B, T, C)


SCALED_ROPE = {"linear": ("factor",),
               "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}


def rope_parameters(d: dict, scaled: tuple[str, ...] = ()) -> dict:
    """config.json's rotary parameters (transformers 5 writes ``rope_parameters`` with rope_type,
    rope_theta and partial_rotary_factor; 4.x ``rope_scaling`` and top-level fields), with
    ``"scaling"``: None, or for a family that models the kinds in ``scaled`` (``SCALED_ROPE``) the
    tuple ``scaled_inv_freq`` takes. Other kinds (dynamic, yarn, longrope, ...) are refused."""
    rope = d.get("rope_parameters")
    rope = rope if isinstance(rope, dict) else {}
    scaling = d.get("rope_scaling") or rope
    kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(scaling, dict) else scaling
    if kind in ("default", None):
        return {**rope, "scaling": None}
    if kind not in scaled:
        raise ValueError(f"config rope type {kind!r} is not supported: transformers' {kind} rotary "
                         f"scaling is not modelled (only the default rotary embedding"
                         f"{', ' + ', '.join(scaled) if scaled else ''})")
    missing = [k for k in SCALED_ROPE[kind] if not isinstance(scaling.get(k), (int, float))]
    if missing:
        raise ValueError(f"config rope_scaling of type {kind!r} lacks {missing[0]!r}")
    values = tuple(scaling[k] if k == "original_max_position_embeddings" else float(scaling[k])
                   for k in SCALED_ROPE[kind])
    if any(v <= 0 for v in values) or (kind == "llama3" and values[1] == values[2]):
        raise ValueError(f"config rope_scaling {kind} needs positive values and low_freq_factor != "
                         f"high_freq_factor, got {dict(zip(SCALED_ROPE[kind], values))}")
    if float(scaling.get("partial_rotary_factor", 1.0)) != 1.0:  # transformers' table would not fit the heads
        raise ValueError(f"config rope_scaling {kind} with partial_rotary_factor is not supported")
    return {**rope, **({"rope_theta": scaling["rope_theta"]} if "rope_theta" in scaling else {}),
            "scaling": (kind, *values)}


def check_fields(cls: str, obj, ints: tuple = (), floats: tuple = (), bools: tuple = ()) -> None:
    for name in ints:
        positive_int(cls, name, getattr(obj, name))
    for name in floats:
        positive_float(cls, name, getattr(obj, name))
    for name in bools:
        boolean(cls, name, getattr(obj, name))


# ---- the interface ------------------------------------------------------------------------------

class DecoderConfig:
    """Base of every family's config dataclass (see the module docstring for the interface)."""

    MODEL_TYPE: ClassVar[str]
    ARCHITECTURE: ClassVar[str]
    EMBEDDING_WEIGHT: ClassVar[str]  # the token embedding matrix (the head's matrix when tied)
    LM_HEAD: ClassVar[str] = "lm_head.weight"  # the untied head matrix
    DROPOUT_KEYS: ClassVar[tuple[str, ...]] = ()  # config.json dropout probabilities
    CHECKPOINT_IGNORED: ClassVar[tuple[str, ...]] = ()  # non-parameter buffers old checkpoints carry
    CHECKPOINT_RENAMES: ClassVar[dict[str, str]] = {}  # other tensor names transformers loads -> ours
    FINAL_NORM: ClassVar[str]  # the final norm module's name
    NORM_BIAS: ClassVar[bool] = True  # LayerNorm (gain and bias); False: RMSNorm (gain only)
    HEAD_BIAS: ClassVar[str | None] = None  # a bias on the LM head (GPT-J)

    # the Hugging Face fields of the model width, the block count, the attention heads and the
    # longest sequence (learned table or rotary range), read under common names by the properties below
    DIMENSIONS: ClassVar[tuple[str, str, str, str]] = (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")

    # -- implemented by each family --
    vocab_size: int
    tie_word_embeddings: bool
    initializer_range: float
    bos_token_id: int
    eos_token_id: int | tuple[int, ...]  # generation stops on any of them; the first pads

    @classmethod
    def from_hf_dict(cls, d: dict) -> DecoderConfig:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_hf_dict(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def spec(self, name: str, **overrides):  # pragma: no cover - abstract
        """The ``models.spec.ModelSpec`` of this shape (what cost models read)."""
        raise NotImplementedError

    @classmethod
    def _from_spec_fields(cls, spec) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def embedding_shapes(self) -> Shapes:  # pragma: no cover - abstract
        raise NotImplementedError

    def block_prefix(self, i: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def block_shapes_at(self, i: int) -> Shapes:
        """Block ``i``'s tensors: ``block_shapes()`` unless blocks differ (dense and MoE layers)."""
        return self.block_shapes()

    def block_shapes(self) -> Shapes:  # pragma: no cover - abstract
        """One block's tensors, names relative to ``block_prefix(i)``, in Hugging Face's order."""
        raise NotImplementedError

    def block(self, x: Tensor, w: dict, p: str, pos_offset: int, past_kv=None):  # pragma: no cover
        """One block with tensors under prefix ``p``, its first token at ``pos_offset``, the cache
        ``past_kv`` (k, v) each (B, kv_heads, P, d): returns (x (B, T, C), present_kv)."""
        raise NotImplementedError

    def norm(self, x: Tensor, w: dict, name: str) -> Tensor:  # pragma: no cover
        """The family's norm module ``name`` (LayerNorm or RMSNorm) applied to ``x``."""
        raise NotImplementedError

    @property
    def hidden(self) -> int:
        return getattr(self, self.DIMENSIONS[0])

    @property
    def n_layers(self) -> int:
        return getattr(self, self.DIMENSIONS[1])

    @property
    def head_dim(self) -> int:
        return self.hidden // getattr(self, self.DIMENSIONS[2])

    @property
    def max_positions(self) -> int:
        return getattr(self, self.DIMENSIONS[3])

    # -- shared forward: embedding, the block loop's one step, head --
    def norm_shapes(self, name: str) -> Shapes:
        """A norm module's tensors: a gain, and a bias for a LayerNorm (``NORM_BIAS``)."""
        return {name + ".weight": (self.hidden,), **({name + ".bias": (self.hidden,)} if self.NORM_BIAS else {})}

    def head_shapes(self) -> Shapes:
        """The tensors the head owns (final norm, untied LM head, head bias), in HF's order."""
        shapes = self.norm_shapes(self.FINAL_NORM)
        if not self.tie_word_embeddings:
            shapes[self.LM_HEAD] = (self.vocab_size, self.hidden)
        if self.HEAD_BIAS:  # GPT-J's, kept when the matrix is tied
            shapes[self.HEAD_BIAS] = (self.vocab_size,)
        return shapes

    def embedding_forward(self, idx: Tensor, w: dict, pos_offset: int = 0) -> Tensor:
        """Token embeddings (B, T, C); a rotary family's positions enter in each block's attention."""
        return token_embedding_forward(idx, w[self.EMBEDDING_WEIGHT], self, pos_offset)

    def block_forward(self, x: Tensor, w: dict, layer_idx: int, past_kv=None, use_cache: bool = False,
                      pos_offset: int | None = None):
        """Block ``layer_idx``. ``pos_offset`` (the first token's position) defaults to the cache's
        length P. Returns x (B, T, C), or (x, present_kv) with ``use_cache``."""
        if pos_offset is None:
            pos_offset = 0 if past_kv is None else past_kv[0].size(2)
        self.check_positions(pos_offset, x.size(1))
        x, present = self.block(x, w, self.block_prefix(layer_idx), pos_offset, past_kv)
        return (x, present) if use_cache else x

    def head_forward(self, x: Tensor, w: dict) -> Tensor:
        """Final norm and the LM head (the token embedding when tied; its bias if any): (B, T, V)."""
        bias = w[self.HEAD_BIAS] if self.HEAD_BIAS else None
        return F.linear(self.norm(x, w, self.FINAL_NORM), w[self.head_weight_name], bias)

    def init_std(self, name: str) -> float:
        """Standard deviation of the normal init of matrix ``name`` (HF ``_init_weights``: N(0,
        initializer_range) for linear maps and embeddings); GPT-2 scales its residual projections."""
        return self.initializer_range

    # -- shared --
    @classmethod
    def hf_dropout(cls, d: dict) -> bool:
        """Whether a config.json trains with dropout (the cost model's activation bytes; the
        functional mode has none)."""
        return max((float(d.get(k, 0.0) or 0.0) for k in cls.DROPOUT_KEYS), default=0.0) > 0.0

    def normalise_checkpoint(self, raw: dict[str, Tensor]) -> dict[str, Tensor]:
        """A checkpoint's tensors under our names: buffers dropped, older names renamed, and a tied
        head's duplicate matrix dropped (transformers ties it to the embedding whatever it holds)."""
        out = {}
        for name, t in raw.items():
            if name.endswith(self.CHECKPOINT_IGNORED):
                continue
            out[self.CHECKPOINT_RENAMES.get(name, name)] = t
        if self.tie_word_embeddings:
            out.pop(self.LM_HEAD, None)
        return out

    @classmethod
    def from_spec(cls, spec, **overrides) -> DecoderConfig:
        """From a ``models.spec.ModelSpec`` of this family; keyword ``overrides`` replace any field."""
        if spec.family != cls.MODEL_TYPE:
            raise ValueError(f"model {spec.name!r} is a {spec.family} model, not {cls.MODEL_TYPE}")
        return cls(**{**cls._from_spec_fields(spec), **overrides})

    @property
    def head_weight_name(self) -> str:
        """The LM head matrix: the token embedding itself when tied (Press & Wolf 2017)."""
        return self.EMBEDDING_WEIGHT if self.tie_word_embeddings else self.LM_HEAD

    def layer_names(self) -> list[str]:
        return ["embedding", *(f"block{i}" for i in range(self.n_layers)), "head"]

    def block_index(self, layer: str) -> int:
        if layer.startswith("block") and layer[5:].isdigit() and int(layer[5:]) < self.n_layers:
            return int(layer[5:])
        raise ValueError(f"unknown layer {layer!r}; layers are embedding, block0..block{self.n_layers - 1}, head")

    def layer_param_names(self, layer: str) -> list[str]:
        """HF names of the tensors ``layer`` needs; a tied embedding appears in embedding and head."""
        if layer == "embedding":
            return list(self.embedding_shapes())
        if layer == "head":
            own = list(self.head_shapes())
            if not self.tie_word_embeddings:
                return own
            # the tied matrix sits where the untied one would: after the norm, before a head bias
            head_module = self.LM_HEAD.rsplit(".", 1)[0] + "."
            n_norm = sum(1 for n in own if not n.startswith(head_module))
            return own[:n_norm] + [self.EMBEDDING_WEIGHT] + own[n_norm:]
        i = self.block_index(layer)
        return [self.block_prefix(i) + n for n in self.block_shapes_at(i)]

    def param_shapes(self) -> Shapes:
        """Every unique parameter with its shape, named and ordered as transformers names them."""
        shapes = dict(self.embedding_shapes())
        for i in range(self.n_layers):
            prefix = self.block_prefix(i)
            shapes.update({prefix + n: s for n, s in self.block_shapes_at(i).items()})
        shapes.update(self.head_shapes())
        return shapes

    def check_weights(self, w: dict[str, Tensor], where: str = "weights") -> None:
        """Raise ``ValueError`` unless ``w`` holds exactly the model's tensors with the right shapes."""
        shapes = self.param_shapes()
        for kind, names in (("missing", [n for n in shapes if n not in w]),
                            ("unexpected", [n for n in w if n not in shapes])):
            if names:
                raise ValueError(f"{where}: {kind} tensor(s) {names[:5]}{' ...' if len(names) > 5 else ''}")
        for n, s in shapes.items():
            if tuple(w[n].shape) != s:
                raise ValueError(f"{where}: tensor {n!r} has shape {tuple(w[n].shape)}, the config needs {s}")

    def layer_forward(self, layer: str, inp: Tensor, w: dict[str, Tensor], pos_offset: int = 0,
                      past_kv=None, use_cache: bool = False):
        """Run streamed layer ``layer`` on ``inp`` with weights ``w``. ``pos_offset``: the absolute
        position of ``inp``'s first token (KV-cache decoding); ``past_kv``/``use_cache``: a block's
        cache in and out (then the result is ``(x, present_kv)``)."""
        if layer == "embedding":
            return self.embedding_forward(inp, w, pos_offset)
        if layer == "head":
            return self.head_forward(inp, w)
        return self.block_forward(inp, w, self.block_index(layer), past_kv=past_kv, use_cache=use_cache,
                                  pos_offset=pos_offset)

    def run_layers(self, idx: Tensor, w: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """Every layer in order on token ids ``idx``: the logits (B, T, V) and an auxiliary loss
        term for the whole model's loss (None here; the MoE families' router loss)."""
        x = idx
        for layer in self.layer_names():  # embedding (B, T, C), blocks (B, T, C), head (B, T, V)
            x = self.layer_forward(layer, x, w)
        return x, None

    def check_positions(self, pos_offset: int, T: int) -> None:
        if pos_offset < 0 or pos_offset + T > self.max_positions:
            raise ValueError(f"positions {pos_offset}..{pos_offset + T - 1} exceed the model's "
                             f"{self.max_positions} positions")

    # -- init --
    def _init_tensor(self, name: str, seed: int, dtype: torch.dtype) -> Tensor:
        shape = self.param_shapes()[name]
        if len(shape) == 1:  # biases start at 0, norm gains at 1 (HF _init_weights)
            fill = 0.0 if name.endswith(".bias") else 1.0
            return torch.full(shape, fill, dtype=dtype)
        # One generator per tensor, seeded from (seed, name): any layer can be drawn on its own, in
        # any order, with the same values. Drawn in float32 so float32 and float64 runs start identical.
        digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest[:7], "big"))
        return torch.empty(shape, dtype=torch.float32).normal_(0.0, self.init_std(name), generator=g).to(dtype)

    def init_layer_weights(self, layer: str, seed: int, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
        """The init of one layer's tensors (the same values ``init_weights`` gives them)."""
        return {n: self._init_tensor(n, seed, dtype) for n in self.layer_param_names(layer)}

    def init_weights(self, seed: int, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
        """Every tensor, deterministic for ``seed``, keys in HF order (see ``init_std``)."""
        return {n: self._init_tensor(n, seed, dtype) for n in self.param_shapes()}


def loss_fn(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over all targets: logits (..., V), targets (...)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


class CausalLM(nn.Module):
    """The whole model as one ``nn.Module``: parameters under HF's names (nested modules mirror
    transformers', so ``state_dict()`` keys are HF's); ``forward`` chains the family's layer
    functions. A tied head reuses the embedding Parameter, so autograd sums both gradients in it."""

    def __init__(self, cfg: DecoderConfig, weights: dict[str, Tensor] | None = None, seed: int = 0,
                 dtype: torch.dtype | None = None):
        super().__init__()
        self.cfg = cfg
        if weights is None:
            weights = cfg.init_weights(seed, dtype or torch.float32)
        cfg.check_weights(weights)
        for name in cfg.param_shapes():
            t = weights[name].detach().clone()
            self._attach(name, nn.Parameter(t.to(dtype) if dtype is not None else t))

    def _attach(self, name: str, param: nn.Parameter) -> None:
        *path, leaf = name.split(".")
        mod: nn.Module = self
        for part in path:
            if part not in mod._modules:
                mod.add_module(part, nn.Module())
            mod = mod._modules[part]
        mod.register_parameter(leaf, param)

    def weights(self) -> dict[str, Tensor]:
        """The live Parameters by HF name (each unique tensor once)."""
        return dict(self.named_parameters())

    def forward(self, idx: Tensor, targets: Tensor | None = None):
        """Logits (B, T, V) and the mean cross-entropy on ``targets``; an MoE config with
        ``output_router_logits`` adds router_aux_loss_coef x the load-balancing loss over every
        sparse block's tokens (``models.moe``), as transformers' MoE models do."""
        x, aux = self.cfg.run_layers(idx, self.weights())
        loss = loss_fn(x, targets) if targets is not None else None
        if loss is not None and aux is not None:
            loss = loss + aux
        return x, loss
