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
LM head), and the pieces that mirror transformers' eager modules operation for operation, each in
its own module and re-exported here (``from models.decoder import attend, rotary, ...`` keeps
working): ``models/attention.py`` (causal mask, KV cache, grouped-query attention),
``models/rotary.py`` (rotary tables, rotation, config.json's rotary fields), ``models/mlp.py``
(activations, linear maps, norms, MLPs) and ``models/config_fields.py`` (field checks and
config.json readers).
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# re-exported: the families, models.moe, wsim.functional and the tests import these from here
from models.attention import attend, causal_mask, concat_cache, heads, repeat_kv  # noqa: F401
from models.config_fields import (  # noqa: F401
    boolean, check_eos, check_fields, eos_ids, eos_json, given, modelled_activation, positive_float,
    positive_int, require_keys, token_id,
)
from models.mlp import (  # noqa: F401
    ACTIVATIONS, Shapes, activation, gated_mlp, layer_norm, linear, linear_shapes, plain_mlp, rms_norm,
)
from models.rotary import (  # noqa: F401
    SCALED_ROPE, rope_cos_sin, rope_parameters, rotary, rotary_dims, rotate_half, scaled_inv_freq,
)


def token_embedding_forward(idx: Tensor, table: Tensor, cfg, pos_offset: int = 0) -> Tensor:
    """Token embeddings (B, T, C) of a rotary family: positions enter in each block's attention."""
    cfg.check_positions(pos_offset, idx.size(1))
    return F.embedding(idx, table)  # (B, T, C)


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
