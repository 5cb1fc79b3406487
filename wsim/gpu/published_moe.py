"""Published mixture-of-experts training runs on GPUs, with their exact plans (issue 20 item 4).

Every row is a *validation* row: no parameter is fitted on them; they are predicted by the global
parameter set of ``wsim.gpu.calibration`` plus the sourced mechanisms of ``wsim.gpu.moe``. One group
per source:

- ``mcore-moe``: Megatron-Core's MoE README (megatron/core/transformer/moe/README.md at
  Megatron-LM c230e0d7, 2024-11-21): "Mixtral 8X7B bf16 training to achieve 468 TFLOPS as of MCore
  v0.9", and in the same file the "reference parallel mappings of MCore v0.8" for Mixtral 8x7B
  (dropless, all-to-all dispatcher, BF16, 64 GPUs, seq 4096, TP 1, EP 8, PP 4, VP 8, MBS 1, GBS 256).
  Pairing the figure with that mapping is an *assumption* (the README gives no plan beside it).
- ``bridge-moe``: Megatron-Bridge's performance archive (docs/performance-summary-archive.md at
  067f987d), NeMo 25.09 and 25.11 containers: the DeepSeek-V3 and Qwen3 MoE rows the dense
  ingestion (``published_modern``, group bridge-*) left out. "We force-balance the token
  distribution among experts" (the page's note): uniform routing, as the model assumes. ETP is not
  printed: 1, as the recipes set it (src/megatron/bridge/perf_recipes/*/: expert_tensor_parallel_size
  1; at 067f987d, newer than these containers: *assumption* that it held then). Each row carries its
  container's recipe settings (``_RECIPE``: EP overlap, CUDA graphs, token drop padded to capacity),
  read from the releases v0.1.0rc4 (25.09) and v0.2.0 (25.11).
- ``deepseek-v3``: DeepSeek-V3 technical report (arXiv 2412.19437): 2,048 H800, PP 16, EP 64 over
  8 nodes, ZeRO-1 data parallelism, no TP, FP8, DualPipe; 180K H800 GPU-hours per trillion tokens
  (Table 1) = 1e12 / (180e3 x 3600) = 1,543 tokens/s/GPU; batch 15,360 sequences of 4,096 (sec. 4.2).
- ``bridge26-moe`` (``wsim.gpu.published_bridge26``) and ``nemo-moe`` (``wsim.gpu.published_nemo_moe``:
  NeMo 25.02 / 25.04 Mixtral rows), registered below.

Left out, named: GPT-OSS 120B (alternating sliding-window attention and attention sinks: not
modelled), GB300 and B300 rows (no preset), NVFP4. MegaBlocks (arXiv 2211.15841) reports speed-ups over Megatron-LM
and Tutel, not step times of stated plans: no row. dgxc-benchmarking's training recipes of v24.11.1
and v25.04 (the dense groups' source) hold no MoE model.
"""

from __future__ import annotations

import dataclasses

from models import zoo
from wsim.gpu.published_bridge26 import moe_rows
from wsim.gpu.published_nemo_moe import rows as nemo_moe_rows
from wsim.gpu.rows import DEVELOPMENT, VALIDATION, Row, moe_plan

_MCORE_MOE = ("github.com/NVIDIA/Megatron-LM megatron/core/transformer/moe/README.md @ c230e0d7 "
              "(2024-11-21): line 3 '468 TFLOPS as of MCore v0.9' (Mixtral 8x7B, BF16); plan: the "
              "same file's 'reference parallel mappings of MCore v0.8' table (64 GPUs, TP 1, EP 8, "
              "PP 4, VP 8, MBS 1, GBS 256, seq 4096, dropless, All-to-All)")
_BRIDGE_MOE = ("github.com/NVIDIA-NeMo/Megatron-Bridge docs/performance-summary-archive.md "
               "(067f987d), NeMo {} container, {}, {}, tokens/s/GPU")
_DSV3 = ("DeepSeek-AI, 'DeepSeek-V3 Technical Report', arXiv 2412.19437: Table 1 (180K H800 "
         "GPU-hours per trillion tokens), sec. 3.2 (2,048 H800, PP 16, EP 64 across 8 nodes, ZeRO-1 "
         "DP, DualPipe), sec. 3.3 (FP8), sec. 4.2 (batch 15,360 x 4,096)")

# Qwen3-235B-A22B: Qwen3 Technical Report (arXiv 2505.09388) Table 2 and the Hugging Face config.json
# of Qwen/Qwen3-235B-A22B: 94 layers, hidden 4096, 64 query heads and 4 KV heads of 128 dims, 128
# experts of moe_intermediate_size 1536, 8 per token, vocabulary 151,936, untied, QK norm
QWEN3_235B = dataclasses.replace(
    zoo.get("qwen3-30b-a3b"), name="qwen3-235b-a22b", layers=94, hidden=4096, heads=64, kv_heads=4,
    ffn=1536, expert_ffn=1536, experts=128, experts_per_token=8, moe_layers=None,
    source="Qwen3 Technical Report (arXiv 2505.09388) Table 2; Hugging Face config.json of "
           "Qwen/Qwen3-235B-A22B")
MODELS = {"dsv3": zoo.get("deepseek-v3"), "q30": zoo.get("qwen3-30b-a3b"), "q235": QWEN3_235B,
          "mixtral": zoo.get("mixtral-8x7b")}
_GPU = {"H100": "h100-80gb", "B200": "b200-180gb", "GB200": "gb200-nvl72"}
_NOTES = {"dsv3": "MLA exact (zoo: q_a, q_b, kv_a, kv_b, o and an attention core of q.k width 192, "
                  "v width 128); 61 layers on uneven stages", "q30": "", "q235": ""}
# What each row's recipe sets beyond the printed plan (Megatron-Bridge history, see docs/sources.md):
# 25.09 = tag v0.1.0rc4 (2025-10-23): scripts/performance/run_script.py applies token drop
# (apply_moe_token_drop: moe_expert_capacity_factor 1.0, moe_pad_expert_input_to_capacity True) to
# both Qwen3 models and to DeepSeek-V3 on B200/GB200 ("if use_tokendrop: enable_deepep = False": the
# alltoall dispatcher; dropless with DeepEP, the flex dispatcher, on H100), and
# overlap_moe_expert_parallel_comm only to DeepSeek-V3 on H100 ("A2A_1F1B"); the perf_matrix YAMLs
# (configs/qwen3/*.yaml, configs/deepseek/*.yaml) set cuda_graphs true only for Qwen3-30B on B200
# and GB200 (whole layers: token drop padded to capacity is capturable; Qwen3-235B on GB200 at TP 1
# PP 8 EP 8, not the archive's plan: left off). Qwen3 keeps the provider's alltoall dispatcher
# (src/megatron/bridge/models/qwen/qwen_provider.py: moe_token_dispatcher_type "alltoall").
# 25.11 = tag v0.2.0 (2025-11-26): scripts/performance/configs/*/workload_base_configs.py: dropless
# (force-balanced); moe_flex_dispatcher_backend "hybridep" (the flex dispatcher, applied by
# training/flex_dispatcher_backend.py) on GB200 for Qwen3 and DeepSeek-V3, none (alltoall) on B200
# and H100; Transformer Engine partial CUDA graphs of scope moe_router + moe_preprocess for Qwen3-30B
# on GB200 (FP8-MX) and B200, Qwen3-235B and DeepSeek-V3 on GB200, plus scope attn for Qwen3-235B
# BF16 on GB200 (``cuda_graphs`` on: the dense part of the block); none for the H100 FP8-CS and
# B200 Qwen3-235B presets; moe_a2a_overlap True for Qwen3 on H100 and Qwen3-235B on B200, False
# for DeepSeek-V3 on GB200.
# (container, system, model) -> (moe_ep_overlap, cuda_graphs, token drop, dispatcher, router graphs)
_RECIPE = {("25.09", "GB200", "dsv3"): (False, False, True, "alltoall", False),
           ("25.09", "B200", "dsv3"): (False, False, True, "alltoall", False),
           ("25.09", "H100", "dsv3"): (True, False, False, "flex", False),
           ("25.09", "GB200", "q30"): (False, True, True, "alltoall", False),
           ("25.09", "B200", "q30"): (False, True, True, "alltoall", False),
           ("25.09", "H100", "q30"): (False, False, True, "alltoall", False),
           ("25.09", "GB200", "q235"): (False, False, True, "alltoall", False),
           ("25.09", "B200", "q235"): (False, False, True, "alltoall", False),
           ("25.09", "H100", "q235"): (False, False, True, "alltoall", False),
           ("25.11", "GB200", "dsv3"): (False, False, False, "flex", True),
           ("25.11", "B200", "dsv3"): (False, False, False, "alltoall", False),
           ("25.11", "GB200", "q30"): (False, False, False, "flex", True),
           ("25.11", "B200", "q30"): (False, False, False, "alltoall", True),
           ("25.11", "H100", "q30"): (True, False, False, "alltoall", False),
           ("25.11", "GB200", "q235"): (False, True, False, "flex", True),
           ("25.11", "B200", "q235"): (True, False, False, "alltoall", False),
           ("25.11", "H100", "q235"): (True, False, False, "alltoall", False)}
# The recompute the recipes state (Megatron-Core --recompute-granularity / --recompute-modules;
# wsim.gpu.recompute). DeepSeek-V3: recompute_granularity "selective" (25.09: scripts/performance/
# configs/deepseek/deepseek_v3_llm_pretrain.yaml line 22; 25.11: configs/deepseek/
# deepseek_llm_pretrain.py set_deepseek_v3_common_configs), modules per system (25.09: scripts/
# performance/run_script.py lines 90-98: H100 mla_up_proj + mlp, B200 mla_up_proj, GB200 token drop
# mla_up_proj; 25.11: configs/deepseek/workload_base_configs.py, GB200 and B200 mla_up_proj). Qwen3:
# recompute_granularity null, no recompute (25.09: configs/qwen3/qwen3_*_llm_pretrain.yaml line 19;
# 25.11: configs/qwen3/qwen3_llm_pretrain.py lines 36, 53). None: not stated (the fastest that fits).
_RECOMPUTE = {("25.09", "dsv3", "GB200"): ("mla_up_proj",), ("25.09", "dsv3", "B200"): ("mla_up_proj",),
              ("25.09", "dsv3", "H100"): ("mla_up_proj", "mlp"),
              ("25.11", "dsv3", "GB200"): ("mla_up_proj",), ("25.11", "dsv3", "B200"): ("mla_up_proj",)}
# Multi-token prediction (wsim.gpu.mtp) at 25.09: the recipe trains one MTP module
# (src/megatron/bridge/recipes/deepseek/deepseek_v3.py @ v0.1.0rc4 line 51, mtp_num_layers 1; not
# overridden by scripts/performance/run_script.py) and infers the layout from PP and VP (lines
# 117-140, last stage: decoder x 13 at (4, 4), x 1 at (16, 1); run_script.py line 66 gives H100
# "Et|(tt|)*30mL", PP 8 x VP 4: 7, 8 x 6, 6 + MTP). 25.11: the GB200 rows are labelled "w/o MTP":
# off; the B200 row "w/ MTP" (archive line 580): the v0.2.0 recipe's mtp_num_layers 1 (src/megatron/
# bridge/recipes/deepseek/deepseek_v3.py line 174, not overridden by scripts/performance/configs/
# deepseek/deepseek_llm_pretrain.py) and its layout map (lines 233-250, entry (16, 1): [E + 4t],
# [4t] x 14, [t + mtp + loss]): 1 layer on the last stage.
_MTP_LAST_STAGE = {("25.09", "GB200"): 13, ("25.09", "B200"): 1, ("25.09", "H100"): 6,
                   ("25.11", "B200"): 1}
# The "w/o MTP" rows keep the recipe's layout where it has one: v0.2.0's map (deepseek_v3.py lines
# 233-250) is indexed by (PP, VP) whatever the MTP setting, and its (4, 4) entry puts 13 layers on
# the last rank (virtual stages 3, 7, 11, 15: 4 + 4 + 4 + 1), the loss and no MTP module: the BF16
# GB200 row. The FP8-MX GB200 row (PP 8, VP 4: 61 layers do not split into 32 chunks) has no entry
# in the map and its run's layout is not printed: wsim's even split (ceiling per stage).
_NO_MTP_LAST_STAGE = {("25.11", "GB200", "bf16"): 13}
TOKEN_DROP_CAPACITY = 1.0  # apply_moe_token_drop's default (training/utils/moe_token_drop.py, v0.1.0rc4)


def _mcore() -> list[Row]:
    return [Row("mcore-moe", "mixtral-8x7b-64", VALIDATION, MODELS["mixtral"], "h100-80gb", 64, 256,
                4096, "tflops_model", 468.0, _MCORE_MOE,
                moe_plan(1, 4, 8, 1, 8, "bf16", stack="megatron-core", etp=None),
                notes="figure and plan from two places of one README (assumption: the v0.9 figure "
                      "ran the v0.8 reference mapping); distributed optimizer, recompute not stated "
                      "(the fastest that fits); model FLOPs as Megatron counts them (k experts) "
                      "plus the router (0.03%)")]


# (container, system, model, precision, GPUs, GBS, MBS, TP, PP, VP, EP, tokens/s/GPU, table label)
_BRIDGE = [
    ("25.09", "GB200", "dsv3", "fp8", 256, 2048, 1, 1, 4, 4, 64, 3454, "DeepSeekV3 (tokendrop)"),
    ("25.09", "GB200", "q30", "fp8", 8, 512, 4, 1, 1, 1, 8, 22775, "Qwen3_30B_a3B (tokendrop)"),
    ("25.09", "GB200", "q235", "fp8", 64, 1024, 1, 2, 1, 1, 64, 4452, "Qwen3_235B_a22B (tokendrop)"),
    ("25.09", "B200", "dsv3", "fp8", 256, 2048, 1, 1, 16, 1, 8, 2265, "DeepSeekV3 (tokendrop)"),
    ("25.09", "B200", "q30", "fp8", 8, 512, 1, 1, 1, 1, 8, 18066, "Qwen3_30B_a3B (tokendrop)"),
    ("25.09", "B200", "q235", "fp8", 64, 1024, 1, 1, 8, 2, 8, 4104, "Qwen3_235B_a22B (tokendrop)"),
    ("25.09", "H100", "dsv3", "fp8", 1024, 8192, 1, 2, 8, 4, 64, 1297, "DeepSeekV3 (dropless)"),
    ("25.09", "H100", "q30", "fp8", 16, 512, 2, 1, 2, 24, 8, 10494, "Qwen3_30B_a3B (tokendrop)"),
    ("25.09", "H100", "q235", "fp8", 256, 2048, 1, 2, 8, 4, 32, 1204, "Qwen3_235B_a22B (tokendrop)"),
    ("25.11", "GB200", "dsv3", "bf16", 256, 4096, 1, 1, 4, 4, 64, 3139, "DeepSeekV3 (w/o MTP) BF16"),
    ("25.11", "GB200", "dsv3", "fp8", 256, 4096, 1, 1, 8, 4, 32, 4018, "DeepSeekV3 (w/o MTP) FP8-MX"),
    ("25.11", "GB200", "q30", "fp8", 8, 512, 4, 1, 1, 1, 8, 23766, "Qwen3_30B_a3B FP8-MX"),
    ("25.11", "GB200", "q235", "bf16", 256, 8192, 1, 1, 8, 3, 32, 4916, "Qwen3_235B_a22B BF16"),
    ("25.11", "B200", "dsv3", "fp8", 256, 2048, 1, 1, 16, 1, 8, 2139, "DeepSeekV3 (w/ MTP) FP8-MX"),
    ("25.11", "B200", "q30", "fp8", 8, 512, 1, 1, 1, 1, 8, 9299, "Qwen3_30B_a3B FP8-MX"),
    ("25.11", "B200", "q235", "fp8", 64, 1024, 1, 1, 8, 2, 8, 3269, "Qwen3_235B_a22B FP8-MX"),
    ("25.11", "H100", "q30", "fp8", 16, 512, 2, 1, 2, 24, 8, 5275, "Qwen3_30B_a3B FP8-CS"),
    ("25.11", "H100", "q235", "fp8", 256, 2048, 1, 2, 8, 4, 32, 1575, "Qwen3_235B_a22B FP8-CS"),
]


# The development rows of the two MoE-only parameters, Efficiency.expert_host_s_per_kernel and
# expert_device_s_per_kernel (wsim.gpu.moe_fit): the two dropless rows that run the alltoall
# dispatcher's per-expert loop without CUDA graphs on one GPU type, two models (128 experts top-8 on
# 8 B200: 16 local experts; on 64 B200 with EP 8: 16), and the two rows whose whole blocks replay
# from CUDA graphs (no host cost) at two micro-batch sizes (Qwen3-30B-A3B on 8 B200, micro-batch 1,
# and on 8 GB200, micro-batch 4: 16 local experts each). Every other MoE row stays validation.
MOE_DEVELOPMENT = ("25.11-q30-fp8-b200-8", "25.11-q235-fp8-b200-64", "25.09-q30-fp8-b200-8",
                   "25.09-q30-fp8-gb200-8")


def _bridge() -> list[Row]:
    rows = []
    for ver, system, tag, prec, gpus, gbs, mbs, tp, pp, vp, ep, tps, label in _BRIDGE:
        gpu = _GPU[system]
        overlap, graphs, drop, dispatcher, router_graphs = _RECIPE[(ver, system, tag)]
        note = "; ".join(n for n in (_NOTES[tag], f"{dispatcher} dispatcher"
                                     + (" (HybridEP)" if dispatcher == "flex" and ver == "25.11"
                                        else " (DeepEP)" if dispatcher == "flex" else "")) if n)
        if "MX" in label:
            note += "; MXFP8 (32x32 blocks) timed as FP8"
        if ver == "25.09":
            note += ("; 25.09's table prints no precision: FP8 with per-tensor current scaling (the "
                     "figures in parentheses, not used, are 32x32 MXFP8 on B200/GB200, 1x128/128x128 "
                     "blocks on H100)")
        note += (f"; recipe: EP overlap {'on' if overlap else 'off'}, CUDA graphs "
                 f"{'on' if graphs else 'off'}"
                 + (", router and preprocess in CUDA graphs" if router_graphs else "") + ", "
                 + ("token drop (capacity 1.0, padded)" if drop else "dropless, force-balanced"))
        extra = dict(moe_ep_overlap=overlap, cuda_graphs=graphs, moe_dispatcher=dispatcher,
                     moe_router_graphs=router_graphs)
        modules = _RECOMPUTE.get((ver, tag, system))
        if tag == "dsv3":
            extra.update(recompute="selective", recompute_modules=modules)
            stated = (f"recompute selective of {', '.join(modules)} (the recipe's; "
                      f"wsim.gpu.recompute)")
        else:
            extra.update(recompute="none")
            stated = "no recompute (the recipe's recompute_granularity null)"
        if drop:
            extra.update(moe_capacity_factor=TOKEN_DROP_CAPACITY, moe_pad_to_capacity=True)
        last = _MTP_LAST_STAGE.get((ver, system)) if tag == "dsv3" else None
        if last is not None:
            extra.update(mtp_layers=1, last_stage_layers=last)
            note += (f"; the recipe's one MTP module (one more MoE block, projection, second head "
                     f"pass) on the last stage, which holds {last} of the 61 layers (the recipe's "
                     "layout; wsim.gpu.mtp)")
        elif tag == "dsv3":
            note += "; no MTP (the table's 'w/o MTP')"
            last = _NO_MTP_LAST_STAGE.get((ver, system, prec))
            if last is not None:
                extra.update(last_stage_layers=last)
                note += (f"; the last stage holds {last} of the 61 layers and the loss (the "
                         "recipe's layout map, entry (4, 4))")
            else:
                note += "; layout not stated: wsim's even split"
        name = f"{ver}-{tag}-{prec}-{system.lower()}-{gpus}"
        role = DEVELOPMENT if name in MOE_DEVELOPMENT else VALIDATION
        rows.append(Row("bridge-moe", name, role,
                        MODELS[tag], gpu, gpus, gbs, 4096, "tokens_per_s_per_gpu", float(tps),
                        _BRIDGE_MOE.format(ver, "DGX-" + system, label),
                        moe_plan(tp, pp, vp, mbs, ep, prec, **extra),
                        notes=note + f"; ETP 1 (the recipes'); {stated}; routing uniform "
                                     "(force-balanced, or capped at capacity 1.0)"))
    return rows


def _deepseek() -> list[Row]:
    return [Row("deepseek-v3", "2048-h800", VALIDATION, MODELS["dsv3"], "h800-80gb", 2048, 15360,
                4096, "tokens_per_s_per_gpu", 1e12 / (180e3 * 3600), _DSV3,
                moe_plan(1, 16, None, None, 64, "fp8", moe_ep_overlap=True, moe_max_nodes=4,
                      moe_fp8_dispatch=True, moe_dispatcher="flex", recompute="selective",
                      recompute_modules=("layernorm", "mla_up_proj"), mtp_layers=1,
                      last_stage_layers=1),
                notes="MLA exact (zoo); recompute of RMSNorm and the MLA up-projection (sec. "
                      "3.2.3), as Megatron-Core's selective layernorm and mla_up_proj "
                      "(wsim.gpu.recompute); approximated: "
                      "DualPipe's overlap of all-to-all with compute modelled as 1F1B with "
                      "moe_ep_overlap (the all-to-all under the other micro-batch's compute); "
                      "node-limited routing (at most 4 nodes a token, sec. 3.2.2) with its own "
                      "dispatch kernels (sec. 3.2.2; open-sourced as DeepEP: the flex dispatcher, a "
                      "token sent once to each target GPU) and the FP8 "
                      "dispatch with a BF16 combine (sec. 3.3) as the report describes them; FP8 "
                      "GEMMs as Transformer Engine's "
                      "per-tensor FP8 (the report's is 1x128/128x128 tiles); one MTP module (D = 1, "
                      "sec. 2.2, 4.2) on the last stage (wsim.gpu.mtp), which holds 1 of the 61 "
                      "layers (assumption: the report does not state its split; Megatron-Bridge's "
                      "16-stage layout for this model, 15 x 4 + 1); stack nemo (the nearest: "
                      "bf16 gradients, distributed optimizer) for DeepSeek's own HAI-LLM; "
                      "throughput averaged over the whole run (GPU-hours per token), not one "
                      "step")]


def validation_rows() -> list[Row]:
    return _mcore() + _bridge() + _deepseek() + moe_rows(MODELS) + nemo_moe_rows()
