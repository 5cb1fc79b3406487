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

A family implements: ``MODEL_TYPE``, ``ARCHITECTURE``, ``from_hf_dict``, ``to_hf_dict``, ``spec``,
``_from_spec_fields``; the tensor names (``embedding_shapes``, ``block_prefix``, ``block_shapes``,
``head_shapes``, ``EMBEDDING_WEIGHT``); and ``embedding_forward``, ``block_forward``, ``head_forward``.
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


def one_of(cls: str, name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{cls}.{name} {value!r} is not one of {allowed}")


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


# ---- shared attention pieces --------------------------------------------------------------------

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


def rope_cos_sin(positions: Tensor, dim: int, base: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Rotary tables (T, dim) for the half-split layout (Su et al. 2021, arXiv 2104.09864, eq. 34):
    angle_j = pos / base^(2j/dim), duplicated over both halves. Computed in float32 and cast, as
    transformers' ``LlamaRotaryEmbedding`` / ``GPTNeoXRotaryEmbedding`` do, so that float64 runs
    see the same tables as transformers' float64 model."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))  # (dim/2,) float32
    freqs = positions[:, None].float() * inv_freq  # (T, dim/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, dim)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def token_embedding_forward(idx: Tensor, table: Tensor, cfg, pos_offset: int = 0) -> Tensor:
    """Token embeddings (B, T, C) of a rotary family: positions enter in each block's attention."""
    cfg.check_positions(pos_offset, idx.size(1))
    return F.embedding(idx, table)  # (B, T, C)


def rotate_half(x: Tensor) -> Tensor:
    """(..., d) -> (..., d): [-x2, x1] for halves x1, x2 (the half-split rotary pairing)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


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

    # -- implemented by each family --
    n_layers: int  # the family's layer count under a common name (a property of the HF field)
    max_positions: int  # the longest sequence the config allows (learned table or RoPE range)
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

    def block_shapes(self) -> Shapes:  # pragma: no cover - abstract
        """One block's tensors, names relative to ``block_prefix(i)``, in Hugging Face's order."""
        raise NotImplementedError

    def head_shapes(self) -> Shapes:  # pragma: no cover - abstract
        """The tensors the head owns (final norm, untied LM head, head bias), in HF's order."""
        raise NotImplementedError

    def embedding_forward(self, idx: Tensor, w: dict, pos_offset: int = 0) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def block_forward(self, x: Tensor, w: dict, layer_idx: int, past_kv=None, use_cache: bool = False,
                      pos_offset: int | None = None):  # pragma: no cover
        raise NotImplementedError

    def head_forward(self, x: Tensor, w: dict) -> Tensor:  # pragma: no cover
        raise NotImplementedError

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
        prefix = self.block_prefix(self.block_index(layer))
        return [prefix + n for n in self.block_shapes()]

    def param_shapes(self) -> Shapes:
        """Every unique parameter with its shape, named and ordered as transformers names them."""
        shapes = dict(self.embedding_shapes())
        block = self.block_shapes()
        for i in range(self.n_layers):
            prefix = self.block_prefix(i)
            shapes.update({prefix + n: s for n, s in block.items()})
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
        w = self.weights()
        x = idx
        for layer in self.cfg.layer_names():  # embedding (B, T, C), blocks (B, T, C), head (B, T, V)
            x = self.cfg.layer_forward(layer, x, w)
        loss = loss_fn(x, targets) if targets is not None else None
        return x, loss
