"""Causal attention as transformers' eager attention computes it: the causal mask, the KV cache,
grouped-query expansion of the key/value heads (``repeat_kv``), the head split and ``attend``.
``models.decoder`` re-exports them; rotary positions are ``models/rotary.py``'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
