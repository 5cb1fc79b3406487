"""The element-wise and linear pieces every family's block shares, as transformers' eager modules
compute them: activations (``activation``, under the names configs use), ``nn.Linear`` by module
name (``linear``, ``linear_shapes``), the norms (``rms_norm``, ``layer_norm``) and the two MLPs
(``gated_mlp``, ``plain_mlp``). ``models.decoder`` re-exports them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# one list of the activations a spec accepts and the families compute (models/spec_checks.py)
from models.spec_checks import ACTIVATIONS

Shapes = dict[str, tuple[int, ...]]


# ---- activations (transformers/activations.py ACT2FN, the names configs use) --------------------

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


def gated_mlp(x: Tensor, w: dict[str, Tensor], m: str, act: str) -> Tensor:
    """SwiGLU-style MLP down(act(gate x) * up x) (Shazeer 2020, arXiv 2002.05202, eq. 6), modules
    ``{m}gate_proj``, ``{m}up_proj``, ``{m}down_proj`` (Llama and its descendants, MoE experts)."""
    gate = activation(linear(x, w, m + "gate_proj"), act)  # (..., f)
    return linear(gate * linear(x, w, m + "up_proj"), w, m + "down_proj")  # (..., C)


def plain_mlp(x: Tensor, w: dict[str, Tensor], fc_in: str, fc_out: str, act: str) -> Tensor:
    """fc_out(act(fc_in x)), with biases (GPT-J, GPT-NeoX)."""
    return linear(activation(linear(x, w, fc_in), act), w, fc_out)
