"""Rotary positions (Su et al. 2021, arXiv 2104.09864) as transformers computes them: the frequency
tables (``rope_cos_sin``, scaled by ``scaled_inv_freq`` under a config's ``rope_scaling``), the
half-split rotation (``rotary``) and config.json's rotary fields (``rope_parameters``).
``models.decoder`` re-exports them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


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
