"""GPT-2 / Cerebras-GPT in PyTorch, as layer functions that take their weights as arguments.

Weight streaming (docs/design.md) computes one layer at a time with weights that arrive over the network
and are dropped afterwards, so every layer here is a plain function ``f(input, w, cfg)`` where ``w``
maps Hugging Face parameter names to tensors. ``GPT`` (an ``nn.Module``) only holds the parameters and
chains the same functions, so the streamed executor and the reference trainer run identical math.
``GPTConfig`` is this family's ``models.decoder.DecoderConfig``: the interface the functional
executor uses for every family.

Architecture: GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners",
sec. 2.3: pre-LayerNorm blocks, a final LayerNorm, learned positions), which Cerebras-GPT reuses
unchanged with tied embeddings and no dropout (Dey et al. 2023, arXiv 2304.03208, sec. 3.1).
Names, shapes and layout follow Hugging Face ``transformers/models/gpt2/modeling_gpt2.py``: linear
maps are ``Conv1D`` with the weight stored (in_features, out_features) and computed as
``addmm(b, x, W)`` = x @ W + b, so HF state dicts load as they are, without transposes.
There is no dropout (Cerebras-GPT trains without it; a checkpoint's p_drop values are not modelled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.decoder import (
    CausalLM, DecoderConfig, activation, attend, check_fields, layer_norm, modelled_activation,
    token_id,
)
from models.decoder import loss_fn  # noqa: F401  (part of this module's public names)

WTE, WPE, LM_HEAD = "transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"
LN_F = ("transformer.ln_f.weight", "transformer.ln_f.bias")
_C = "GPTConfig"
# The 12 tensors of one block, in Hugging Face's order, relative to "transformer.h.{i}.".
BLOCK_PARAMS = (
    "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
    "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
)


@dataclass(frozen=True)
class GPTConfig(DecoderConfig):
    """A GPT-2 decoder; field names and meanings are those of Hugging Face ``GPT2Config``."""

    MODEL_TYPE = "gpt2"
    ARCHITECTURE = "GPT2LMHeadModel"
    DIMENSIONS = ("n_embd", "n_layer", "n_head", "n_positions")
    EMBEDDING_WEIGHT = WTE
    FINAL_NORM = "transformer.ln_f"
    DROPOUT_KEYS = ("resid_pdrop", "embd_pdrop", "attn_pdrop")
    # the causal-mask buffers transformers 4.x saved in .bin files (Cerebras-GPT's checkpoints)
    CHECKPOINT_IGNORED = (".attn.bias", ".attn.masked_bias")

    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int
    n_positions: int
    n_inner: int | None = None  # None means 4 * n_embd (resolved in __post_init__)
    activation_function: str = "gelu"  # 'gelu' exact erf GELU, 'gelu_new' tanh approximation
    layer_norm_epsilon: float = 1e-5
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None  # None means vocab_size - 1 (GPT-2's <|endoftext|>)
    eos_token_id: int | None = None
    initializer_range: float = 0.02  # std of the GPT-2 normal init (HF GPT2Config default)

    def __post_init__(self) -> None:
        check_fields(_C, self, ints=("n_layer", "n_embd", "n_head", "vocab_size", "n_positions"))
        if self.n_inner is None:
            object.__setattr__(self, "n_inner", 4 * self.n_embd)
        check_fields(_C, self, ints=("n_inner",))
        if self.n_embd % self.n_head:
            raise ValueError(f"{_C}.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        modelled_activation(_C, "activation_function", self.activation_function)
        check_fields(_C, self, floats=("layer_norm_epsilon", "initializer_range"), bools=("tie_word_embeddings",))
        for name in ("bos_token_id", "eos_token_id"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.vocab_size - 1)
            token_id(_C, name, getattr(self, name), self.vocab_size)

    @classmethod
    def from_hf_dict(cls, d: dict) -> GPTConfig:
        """From a Hugging Face GPT-2 ``config.json`` dict (Cerebras-GPT publishes this format)."""
        if not isinstance(d, dict):
            raise ValueError(f"a GPT-2 config must be a JSON object, got {type(d).__name__}")
        if d.get("model_type", "gpt2") != "gpt2":
            raise ValueError(f"config model_type {d['model_type']!r} is not 'gpt2'")
        # Variants whose math differs from plain GPT-2 (see GPT2Attention in modeling_gpt2.py).
        for key, plain in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                           ("reorder_and_upcast_attn", False), ("add_cross_attention", False)):
            if bool(d.get(key, plain)) != plain:
                raise ValueError(f"config {key}={d[key]!r} is not supported (plain GPT-2 has {plain})")
        try:
            # GPT2Config's default context is 1024; older configs name it n_ctx
            n_positions = d["n_positions"] if "n_positions" in d else d.get("n_ctx", 1024)
            return cls(
                n_layer=d["n_layer"], n_embd=d["n_embd"], n_head=d["n_head"],
                vocab_size=d["vocab_size"], n_positions=n_positions, n_inner=d.get("n_inner"),
                activation_function=d.get("activation_function", "gelu_new"),  # HF's default
                layer_norm_epsilon=d.get("layer_norm_epsilon", 1e-5),
                tie_word_embeddings=d.get("tie_word_embeddings", True),
                bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"),
                initializer_range=d.get("initializer_range", 0.02),
            )
        except KeyError as exc:
            raise ValueError(f"config lacks the GPT-2 key {exc.args[0]!r}") from None

    def to_hf_dict(self) -> dict:
        """A ``config.json`` dict that ``transformers.GPT2LMHeadModel`` reads (dropouts 0.0)."""
        return {
            "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
            "n_layer": self.n_layer, "n_embd": self.n_embd, "n_head": self.n_head,
            "n_inner": self.n_inner, "vocab_size": self.vocab_size, "n_positions": self.n_positions,
            "n_ctx": self.n_positions, "activation_function": self.activation_function,
            "layer_norm_epsilon": self.layer_norm_epsilon, "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_id,
            "initializer_range": self.initializer_range,
            "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0, "summary_first_dropout": 0.0,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False, "use_cache": True,
        }

    def normalise_checkpoint(self, raw: dict[str, Tensor]) -> dict[str, Tensor]:
        """Also adds the ``transformer.`` prefix of checkpoints saved from ``GPT2Model`` (OpenAI's
        gpt2, some Cerebras-GPT uploads)."""
        raw = {n if n == LM_HEAD or n.startswith("transformer.") else "transformer." + n: t
               for n, t in raw.items()}
        return super().normalise_checkpoint(raw)

    @classmethod
    def _from_spec_fields(cls, spec) -> dict:
        return dict(n_layer=spec.layers, n_embd=spec.hidden, n_head=spec.heads, vocab_size=spec.vocab,
                    n_positions=spec.positions, n_inner=spec.ffn, activation_function=spec.activation,
                    tie_word_embeddings=spec.tied_embeddings)

    @classmethod
    def from_spec(cls, spec, **overrides) -> GPTConfig:
        """From a ``models.spec.ModelSpec``; keyword ``overrides`` replace any field."""
        if spec.positional != "learned":
            raise ValueError(f"model {spec.name!r} uses {spec.positional} positions; GPT-2 has learned ones")
        return super().from_spec(spec, **overrides)

    def spec(self, name: str = "gpt2", **overrides):
        """The ``models.spec.ModelSpec`` of this shape; ``overrides`` (e.g. dropout) replace fields."""
        from models.spec import ModelSpec

        return ModelSpec(**{**dict(
            name=name, layers=self.n_layer, hidden=self.n_embd, heads=self.n_head, ffn=self.n_inner,
            vocab=self.vocab_size, positions=self.n_positions, tied_embeddings=self.tie_word_embeddings,
            activation=self.activation_function, family="gpt2"), **overrides})

    # ---- the DecoderConfig interface ----
    def embedding_shapes(self):
        return {WTE: (self.vocab_size, self.n_embd), WPE: (self.n_positions, self.n_embd)}

    def block_prefix(self, i: int) -> str:
        return f"transformer.h.{i}."

    def block_shapes(self):
        C, Fi = self.n_embd, self.n_inner  # Conv1D weights are stored (in, out)
        shapes = ((C,), (C,), (C, 3 * C), (3 * C,), (C, C), (C,), (C,), (C,), (C, Fi), (Fi,), (Fi, C), (C,))
        return dict(zip(BLOCK_PARAMS, shapes))

    def init_std(self, name: str) -> float:
        # GPT-2 sec. 2.3: residual projections scaled by 1/sqrt(N) for N residual layers (2 per block)
        if name.endswith("c_proj.weight"):
            return self.initializer_range / math.sqrt(2 * self.n_layer)
        return self.initializer_range

    def embedding_forward(self, idx, w, pos_offset=0):
        return embedding_forward(idx, w, self, pos_offset)

    def norm(self, x, w, name):
        return layer_norm(x, w, name, self.layer_norm_epsilon)

    def block(self, x, w, p, pos_offset, past_kv=None):
        """One pre-LN transformer block (GPT-2 sec. 2.3): x + attn(ln_1 x), then + mlp(ln_2 x)."""
        a, present = attention(self.norm(x, w, p + "ln_1"), w, p, self, past_kv)
        x = x + a  # (B, T, C)
        return x + mlp(self.norm(x, w, p + "ln_2"), w, p, self), present


# ---- names, shapes and init as module functions (the interface above, for this module's callers) --

def layer_names(cfg: GPTConfig) -> list[str]:
    """The streamed layers, in forward order: embedding, block0 … block{L-1}, head."""
    return cfg.layer_names()


def head_weight_name(cfg: GPTConfig) -> str:
    """The LM head matrix: the token embedding itself when tied (Press & Wolf 2017)."""
    return cfg.head_weight_name


def layer_param_names(cfg: GPTConfig, layer: str) -> list[str]:
    """HF names of the tensors ``layer`` needs; a tied ``wte`` appears in embedding and head."""
    return cfg.layer_param_names(layer)


def param_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every unique parameter with its shape, as ``GPT2LMHeadModel`` names them (Conv1D: in, out)."""
    return cfg.param_shapes()


def check_weights(cfg: GPTConfig, w: dict[str, Tensor], where: str = "weights") -> None:
    """Raise ``ValueError`` unless ``w`` holds exactly the model's tensors with the right shapes."""
    cfg.check_weights(w, where)


def init_layer_weights(cfg: GPTConfig, layer: str, seed: int,
                       dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """GPT-2 init of one layer's tensors (the same values ``init_weights`` gives them)."""
    return cfg.init_layer_weights(layer, seed, dtype)


def init_weights(cfg: GPTConfig, seed: int, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """GPT-2 init (sec. 2.3; HF GPT2PreTrainedModel._init_weights): N(0, 0.02) for matrices and
    embeddings, c_proj weights N(0, 0.02/sqrt(2 L)), zero biases, unit LayerNorm weights.
    Deterministic for ``seed``; keys in HF order."""
    return cfg.init_weights(seed, dtype)


# ---- layers --------------------------------------------------------------------------------------

def conv1d(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """HF ``Conv1D``: x @ W + b with W stored (in, out)."""
    out = torch.addmm(bias, x.reshape(-1, x.size(-1)), weight)  # (B*T, out)
    return out.view(*x.shape[:-1], weight.size(1))


def gelu(x: Tensor, kind: str) -> Tensor:
    """'gelu' exact erf GELU (Cerebras-GPT's choice), 'gelu_new' the original GPT-2 tanh form, 'relu'."""
    return activation(x, kind)


def embedding_forward(idx: Tensor, w: dict[str, Tensor], cfg: GPTConfig, pos_offset: int = 0) -> Tensor:
    """Token plus learned position embeddings; positions start at ``pos_offset`` (KV-cache decode)."""
    B, T = idx.shape
    if pos_offset < 0 or pos_offset + T > cfg.n_positions:
        raise ValueError(f"positions {pos_offset}..{pos_offset + T - 1} exceed n_positions {cfg.n_positions}")
    pos = torch.arange(pos_offset, pos_offset + T, device=idx.device)  # (T,)
    tok_emb = F.embedding(idx, w[WTE])  # (B, T, C)
    pos_emb = F.embedding(pos, w[WPE])  # (T, C)
    return tok_emb + pos_emb  # (B, T, C)


def _block_prefix(w: dict[str, Tensor], layer_idx: int | None) -> str:
    if layer_idx is not None:
        return f"transformer.h.{layer_idx}."
    found = [k[: -len("ln_1.weight")] for k in w if k.endswith("ln_1.weight")]
    if len(found) != 1:
        raise ValueError(f"block weights must hold exactly one block (found {len(found)}); pass layer_idx")
    return found[0]


def attention(x: Tensor, w: dict[str, Tensor], p: str, cfg: GPTConfig, past_kv=None):
    """Causal multi-head self-attention (Vaswani et al. 2017); returns (y, (k, v))."""
    B, T, C = x.shape
    nh, hs = cfg.n_head, cfg.head_dim
    qkv = conv1d(x, w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"])  # (B, T, 3C)
    q, k, v = qkv.split(C, dim=2)  # 3 x (B, T, C)
    q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    y, present = attend(q, k, v, past_kv, softmax_fp32=False)  # (B, T, C): heads side by side
    return conv1d(y, w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"]), present


def mlp(x: Tensor, w: dict[str, Tensor], p: str, cfg: GPTConfig) -> Tensor:
    h = conv1d(x, w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"])  # (B, T, n_inner)
    h = gelu(h, cfg.activation_function)
    return conv1d(h, w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"])  # (B, T, C)


def block_forward(x: Tensor, w: dict[str, Tensor], cfg: GPTConfig, past_kv=None, use_cache: bool = False,
                  layer_idx: int | None = None):
    """One pre-LN transformer block (GPT-2 sec. 2.3). ``w`` holds this block's 12 tensors under HF
    names (or the whole model, with ``layer_idx``). ``past_kv`` = (k, v), each (B, nh, P, hs).
    Returns x (B, T, C), or (x, present_kv) with present_kv each (B, nh, P+T, hs) when ``use_cache``."""
    x, present = cfg.block(x, w, _block_prefix(w, layer_idx), 0, past_kv)
    return (x, present) if use_cache else x


def head_forward(x: Tensor, w: dict[str, Tensor], cfg: GPTConfig) -> Tensor:
    """Final LayerNorm and the LM head (the token embedding when tied): logits (B, T, V)."""
    return cfg.head_forward(x, w)  # (B, T, V), as HF's nn.Linear lm_head


def layer_forward(cfg: GPTConfig, layer: str, inp: Tensor, w: dict[str, Tensor], **kwargs):
    """Run streamed layer ``layer`` (a name from ``layer_names``) on ``inp`` with weights ``w``.
    Keyword arguments go to the layer function (pos_offset; past_kv, use_cache)."""
    return cfg.layer_forward(layer, inp, w, **kwargs)


class GPT(CausalLM):
    """The whole GPT-2 as one ``nn.Module`` (``models.decoder.CausalLM``): parameters under
    ``GPT2LMHeadModel``'s names; a tied head reuses the ``wte`` Parameter."""
