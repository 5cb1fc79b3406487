"""Megatron-Bridge's NeMo 26.04.01 container rows (2026), with their plans and recipes (issues 19, 20).

Two validation groups, never fitted on, from Megatron-Bridge's performance archive
(docs/performance-summary-archive.md at 067f987d, section "26.04.01 NeMo Container", identical to
docs/performance-summary.md at tag v0.4.2, the release that documents this container:
docs/fern/versions/0.4.2/pages/performance-summary.mdx):

- ``bridge26-dense``: LLAMA3_70B and LLAMA3.1_405B on DGX-H100 (FP8) and DGX-GB200 (FP8 and
  MXFP8). The container has no DGX-B200 dense row. Left out: GB300 and B300 (no preset), NVFP4
  (wsim has no FP4).
- ``bridge26-moe``: DeepSeekV3 (GB200, B200; MXFP8), Qwen3_30B_a3B and Qwen3_235B_a22B (GB200, B200:
  MXFP8; H100: FP8). Left out: GPT OSS 120B and Kimi K2 (no wsim model), Nemotron 3 (hybrid
  Mamba), GB300/B300. "We force-balance the token distribution among experts and all benchmarks
  are token-dropless" (the archive's footnote): uniform routing, dropless.

"FP8" is per-tensor current scaling (the recipes' ``fp8_cs``); "MXFP8" (``fp8_mx``: 1x32 blocks,
E8M0 scales) is timed as wsim's FP8 (*assumption*: the same tensor-core peak on Blackwell; the block
scaling's extra quantize traffic, a row-wise and a column-wise copy of each cast tensor, is not
modelled). The plan of each row is the one printed; the recipe options are those of the workload
presets at tag v0.4.2 (c8101293; default ``--config_variant v2``, falling back to v1 where no v2
exists: scripts/performance/argument_parser.py line 816, utils/utils.py lines 105-116), applied by
scripts/performance/utils/overrides.py ``set_workload_base_configs`` (lines 202-235). Every option
a row takes is cited at the row's table entry below; what wsim cannot express is in the row's notes.
"""

from __future__ import annotations

from wsim.gpu.published_modern import LLAMA3_70B, LLAMA31_405B
from wsim.gpu.published_modern import _plan as dense_plan
from wsim.gpu.rows import VALIDATION, Row, moe_plan

_SRC = ("github.com/NVIDIA-NeMo/Megatron-Bridge docs/performance-summary-archive.md (067f987d), NeMo "
        "26.04.01 container, DGX-{}, {} {}, tokens/s/GPU; recipe: scripts/performance/configs/{} @ v0.4.2 "
        "(c8101293)")
_GPU = {"H100": "h100-80gb", "B200": "b200-180gb", "GB200": "gb200-nvl72"}
_MX = ("MXFP8 timed as FP8 (assumption: same tensor-core peak; the 1x32-block scaling's extra "
       "quantize traffic not modelled)")

# Dense. Recipes at v0.4.2: src/megatron/bridge/recipes/llama/llama3.py llama3_70b_pretrain_config
# (line 658): cuda_graph_impl "none" (697), recompute_granularity None (705), tp_comm_overlap True
# (738); llama31_405b_pretrain_config (1103): cuda_graph_impl "none" (1148), recompute None (1156),
# tp_comm_overlap True (1189); the perf scripts keep tp_comm_overlap for FP8/MXFP8
# (configs/llama/llama3_llm_pretrain.py lines 114-115, 214; llama31_llm_pretrain.py 121-122, 213).
# (model, system, precision, GPUs, GBS, MBS, FSDP, TP, PP, CP, VP, tokens/s/GPU, preset file:lines)
_DENSE = [
    ("70b", "GB200", "fp8", 64, 256, 2, True, 1, 1, 1, 1, 4224,
     "llama/llama3_workload_base_configs.py:241-246 LLAMA3_70B_PRETRAIN_CONFIG_GB200_FP8_CS_V2"),
    ("70b", "GB200", "mxfp8", 64, 256, 1, False, 2, 4, 1, 5, 3712,
     "llama/llama3_workload_base_configs.py:249-254 LLAMA3_70B_PRETRAIN_CONFIG_GB200_FP8_MX_V2"),
    ("70b", "H100", "fp8", 64, 256, 1, False, 4, 8, 1, 5, 1664,
     "llama/llama3_workload_base_configs.py:339-344 LLAMA3_70B_PRETRAIN_CONFIG_H100_FP8_CS_V2"),
    ("405b", "GB200", "fp8", 256, 1536, 1, False, 4, 16, 1, 4, 864,
     "llama/llama31_workload_base_configs.py:262-272 LLAMA31_405B_PRETRAIN_CONFIG_GB200_FP8_CS_V2"),
    ("405b", "GB200", "mxfp8", 256, 1536, 1, False, 4, 16, 1, 8, 800,
     "llama/llama31_workload_base_configs.py:275-281 LLAMA31_405B_PRETRAIN_CONFIG_GB200_FP8_MX_V2"),
    ("405b", "H100", "fp8", 1024, 1536, 1, False, 8, 8, 2, 8, 328,
     "llama/llama31_workload_base_configs.py:297-300 LLAMA31_405B_PRETRAIN_CONFIG_H100_FP8_CS_V2"),
]
_DENSE_MODELS = {"70b": (LLAMA3_70B, "LLAMA3_70B"), "405b": (LLAMA31_405B, "LLAMA3.1_405B")}
# The 70B GB200 FP8 preset offloads 40 of 80 layers' activations (cpu_offloading_num_layers 40;
# overrides.py lines 140-143: cpu_offloading True, weights not offloaded), as at 25.11
_OFFLOAD = {("70b", "GB200", "fp8"): 40}


def dense_rows() -> list[Row]:
    rows = []
    for tag, system, prec, gpus, gbs, mbs, fsdp, tp, pp, cp, vp, tps, preset in _DENSE:
        model, label = _DENSE_MODELS[tag]
        extra = dict(recompute="none", cuda_graphs=False, tp_comm_overlap=tp > 1)
        note = ("recipe: no recompute (recompute_granularity None), no CUDA graphs, TP comm "
                "overlap on" + (" (userbuffers)" if tp > 1 else ": nothing to overlap at TP 1"))
        offload = _OFFLOAD.get((tag, system, prec))
        if offload:
            extra["cpu_offload_layers"] = offload
            note += (f"; activations of {offload} of {model.layers} layers offloaded to the Grace "
                     "CPU (cpu_offloading_num_layers)")
        if fsdp:
            note += "; FSDP > 0: Megatron-FSDP optim_grads_params (zero 3)"
        if prec == "mxfp8":
            note += "; " + _MX
        rows.append(Row("bridge26-dense", f"26.04.01-{tag}-{prec}-{system.lower()}-{gpus}", VALIDATION,
                        model, _GPU[system], gpus, gbs, 8192, "tokens_per_s_per_gpu", float(tps),
                        _SRC.format(system, label, prec.upper(), preset),
                        {**dense_plan(tp, pp, cp, vp, mbs, zero=3 if fsdp else 1, precision="fp8"),
                         **extra},
                        notes=note))
    return rows


# MoE. Common: the dispatcher is "flex" where a preset names moe_flex_dispatcher_backend (hybridep
# or deepep; training/flex_dispatcher_backend.py lines 57-72: HybridEP applies on SM 8.x, 9.x, 10.x,
# so on H100 too), else "alltoall" (overrides.py lines 230-233); moe_a2a_overlap True sets
# overlap_moe_expert_parallel_comm and delay_wgrad_compute (overrides.py lines 155-162); CUDA graphs
# (cuda_graph_impl "transformer_engine") of scope moe_router + moe_preprocess are wsim's
# ``moe_router_graphs``, scope attn the dense part of the block (``cuda_graphs``), as at 25.11.
# Qwen3: recompute_granularity None (configs/qwen/qwen3_llm_pretrain.py lines 30-44, with
# moe_router_force_load_balancing). DeepSeek-V3: recompute_granularity "selective"
# (configs/deepseek/deepseek_llm_pretrain.py line 39), modules per preset; the recipe trains one
# multi-token-prediction module (src/megatron/bridge/recipes/deepseek/deepseek_v3.py line 84,
# mtp_num_layers 1; the preset layouts end "tmL").
# (model, system, precision, GPUs, GBS, MBS, TP, PP, VP, EP, tokens/s/GPU, dispatcher (backend),
#  EP overlap, CUDA graphs attn, router graphs, recompute modules, TP comm overlap, preset file:lines)
_MOE = [
    ("dsv3", "GB200", "mxfp8", 256, 4096, 1, 1, 4, 4, 64, 4256, "flex", "hybridep", False, True, True,
     ("mlp",), None,
     "deepseek/deepseek_workload_base_configs.py:72-84,161-170 DEEPSEEK_V3_PRETRAIN_CONFIG_GB200_FP8_MX_V2"),
    ("dsv3", "B200", "mxfp8", 256, 4096, 1, 1, 8, 2, 32, 3328, "flex", "deepep", True, True, True,
     ("mla_up_proj", "mlp"), None,
     "deepseek/deepseek_workload_base_configs.py:203-214 DEEPSEEK_V3_PRETRAIN_CONFIG_B200_FP8_MX_V2"),
    ("q30", "GB200", "mxfp8", 8, 512, 4, 1, 1, 1, 8, 26112, "flex", "hybridep", False, False, True,
     None, None,
     "qwen/qwen3_workload_base_configs.py:363-370 QWEN3_30B_A3B_PRETRAIN_CONFIG_GB200_FP8_MX_V1"),
    ("q30", "B200", "mxfp8", 8, 512, 4, 1, 1, 1, 8, 27136, "flex", "hybridep", False, True, True,
     None, None,
     "qwen/qwen3_workload_base_configs.py:396-409 QWEN3_30B_A3B_PRETRAIN_CONFIG_B200_FP8_MX_V1"),
    ("q30", "H100", "fp8", 16, 1024, 1, 1, 1, 1, 16, 8960, "flex", "hybridep", False, False, False,
     None, None,
     "qwen/qwen3_workload_base_configs.py:424-431 QWEN3_30B_A3B_PRETRAIN_CONFIG_H100_FP8_CS_V1"),
    ("q235", "GB200", "mxfp8", 256, 8192, 1, 1, 8, 3, 32, 5680, "flex", "hybridep", False, True, True,
     None, None,
     "qwen/qwen3_workload_base_configs.py:96-105,216-226 QWEN3_235B_A22B_PRETRAIN_CONFIG_GB200_FP8_MX_V2"),
    ("q235", "B200", "mxfp8", 256, 8192, 1, 1, 8, 1, 8, 3776, "alltoall", None, False, False, False,
     None, None,
     "qwen/qwen3_workload_base_configs.py:149-156,258-265 QWEN3_235B_A22B_PRETRAIN_CONFIG_B200_FP8_MX_V2"),
    # qwen3_llm_pretrain.py line 167: CommOverlapConfig(tp_comm_overlap=False) for Qwen3-235B on H100
    ("q235", "H100", "fp8", 256, 8192, 1, 2, 8, 4, 32, 1712, "alltoall", None, True, False, False,
     None, False,
     "qwen/qwen3_workload_base_configs.py:175-184,275-278 QWEN3_235B_A22B_PRETRAIN_CONFIG_H100_FP8_CS_V2"),
]
_MOE_LABELS = {"dsv3": "DeepSeekV3", "q30": "Qwen3_30B_a3B", "q235": "Qwen3_235B_a22B"}
# DeepSeek-V3's multi-token prediction and pipeline layout (wsim.gpu.mtp), system -> transformer
# layers on the last stage, which also holds the MTP module and the loss: GB200 (PP 4, VP 4, no
# pp_layout in the preset) takes the recipe's layout map (src/megatron/bridge/recipes/deepseek/
# deepseek_v3.py lines 37-45 @ v0.4.2, entry (4, 4): [E + 4t], [4t] x 14, [t + mtp + loss], 16
# virtual stages round-robin over 4 ranks: 16, 16, 16, 13 + MTP); B200 MXFP8 the preset's
# pp_layout "Et*4|(t*4|)*14tmL" (PP 8, VP 2: 8 x 7 stages, 4 + 1 + MTP on the last)
_DSV3_LAST_STAGE = {"GB200": 13, "B200": 5}


def moe_rows(models: dict) -> list[Row]:
    """The MoE rows; ``models``: published_moe.MODELS (passed in: that module registers these rows,
    so importing it here would close an import circle)."""
    rows = []
    for (tag, system, prec, gpus, gbs, mbs, tp, pp, vp, ep, tps, dispatcher, backend, overlap, graphs,
         router_graphs, modules, tp_overlap, preset) in _MOE:
        extra = dict(moe_ep_overlap=overlap, cuda_graphs=graphs, moe_dispatcher=dispatcher,
                     moe_router_graphs=router_graphs)
        notes = [f"{dispatcher} dispatcher" + (f" ({backend})" if backend else "")]
        if modules:
            extra.update(recompute="selective", recompute_modules=modules)
            notes.append(f"recompute selective of {', '.join(modules)} (the preset's)")
        else:
            extra.update(recompute="none")
            notes.append("no recompute (recompute_granularity None)")
        if tp_overlap is not None:
            extra["tp_comm_overlap"] = tp_overlap
            notes.append("TP comm overlap off (the recipe's)")
        scope = ["attn"] * graphs + ["moe_router", "moe_preprocess"] * router_graphs
        notes.append("CUDA graphs " + (f"(Transformer Engine, scope {' + '.join(scope)})" if scope
                                       else "off"))
        notes.append("EP overlap " + ("on, with delay_wgrad_compute (the weight-gradient delay is "
                                      "not modelled)" if overlap else "off"))
        if tag == "dsv3":
            last = _DSV3_LAST_STAGE[system]
            extra.update(mtp_layers=1, last_stage_layers=last)
            notes.append(f"MLA exact (zoo); the recipe's one MTP module (mtp_num_layers 1: one more "
                         f"MoE block, the 2h->h projection and a second output-head pass) on the "
                         f"last stage, which holds {last} of the 61 layers (the preset's pipeline "
                         f"layout; wsim.gpu.mtp)")
        if prec == "mxfp8":
            notes.append(_MX)
        notes.append("ETP 1 (the presets'); dropless, force-balanced: routing uniform")
        rows.append(Row("bridge26-moe", f"26.04.01-{tag}-{prec}-{system.lower()}-{gpus}", VALIDATION,
                        models[tag], _GPU[system], gpus, gbs, 4096, "tokens_per_s_per_gpu",
                        float(tps), _SRC.format(system, _MOE_LABELS[tag], prec.upper(), preset),
                        moe_plan(tp, pp, vp, mbs, ep, "fp8", **extra), notes="; ".join(notes)))
    return rows
