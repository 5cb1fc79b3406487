"""The selective recompute module sets ``wsim.gpu.search`` tries (docs/gpu-model.md section 2,
"Searched"): Megatron-Core's default and a greedy chain of the model's effective modules."""

from __future__ import annotations

from wsim.gpu.moe import dense_mlp_s
from wsim.gpu.recompute import (DEFAULT, MEGATRON_MODULES, effective_modules, mla_latent_norm_bytes,
                                mla_up_proj_bytes_per_token, mla_up_proj_fwd_s, mlp_bytes, mlp_fwd_s,
                                moe_act_bytes, moe_act_fwd_s, norm_bytes)


def searched_module_sets(c, dense_blocks: bool) -> tuple[tuple[str, ...], ...]:
    """The selective recompute module sets the search tries on consts ``c`` (``consts.Consts``):
    Megatron-Core's default (``core_attn``), then the modules that change something on this model
    (``effective_modules``) added one at a time in order of the memory each frees per second of
    recompute it costs (per token of one block, one GPU, at the sequence's GEMM shapes), each
    prefix of that chain a set: the sets a memory budget would pick greedily (at most 5 more; all
    31 subsets of DeepSeek-V3's five cost the search 1.7-8.8x its time and found the same plans
    in four MoE study searches). A module freeing nothing (``core_attn`` under
    FlashAttention) is left out of the chain."""
    T = float(c.seq)  # one sequence's tokens: the GEMM shapes of a micro-batch of 1
    mods = effective_modules(bool(c.mla), c.moe is not None, dense_blocks)
    hbm, passes = c.gpu.hbm_bytes_per_s, c.eff.elementwise_passes
    linear, core_f, _, _ = c.gemm_times(1, 1, 1, False)
    _, ew_core, _ = c.elementwise_times(1, 1, False, 1)
    freed = {  # bytes per token of one block, seconds per token of one block
        "core_attn": (0.0 if c.flash else c.act_attn, (core_f + ew_core) / T),
        "layernorm": (norm_bytes(c), passes * 2.0 * c.h / hbm),
        "moe_act": ((moe_act_bytes(c), moe_act_fwd_s(c, 1.0, 1)) if c.moe is not None
                    else (0.0, 1.0)),
        "mla_up_proj": ((mla_up_proj_bytes_per_token(c) + mla_latent_norm_bytes(c),
                         mla_up_proj_fwd_s(c, T, 1, False) / T) if c.mla else (0.0, 1.0)),
    }
    if "mlp" in mods:
        freed["mlp"] = (mlp_bytes(c, 1, False), mlp_fwd_s(c, T, 1, False, dense_mlp_s(c, T, 1)) / T)
    ranked = sorted((m for m in mods if freed[m][0] > 0.0),
                    key=lambda m: (-float(f"{freed[m][0] / max(freed[m][1], 1e-30):.9g}"),
                                   MEGATRON_MODULES.index(m)))  # (ties: Megatron-Core's order)
    out = [DEFAULT]
    for n in range(1, len(ranked) + 1):
        chain = tuple(m for m in MEGATRON_MODULES if m in ranked[:n])
        if chain not in out:
            out.append(chain)
    return tuple(out)
