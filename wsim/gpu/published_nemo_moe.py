"""NVIDIA NeMo's published Mixtral pre-training rows, NeMo containers 25.02 and 25.04 (group nemo-moe).

Source: the NeMo Framework user guide's performance summary,
docs.nvidia.com/nemo-framework/user-guide/latest/performance/performance_summary.html, as it read
for container 25.02 ("Container: NeMo 25.02", "System: DGX-B200": "pre-training performance of
various models at FP8 precision (using NeMo 2.0)") and for container 25.04 ("Container: NeMo 25.04",
"System: DGX-GB200": "per-tensor FP8 quantization using the scaling factors calculated in the current
step"; the same table is kept at .../performance/archive/25.04-performance-summary.html). The page
left the NeMo repository in December 2024 (NVIDIA/NeMo a2aa70a2, "perf summary docs link", deleted
docs/source/performance/performance_summary.md): the release tags of these containers hold no copy.

Every row is a *validation* row: held out, nothing fitted on it. Columns used: #-GPUs, GBS, MBS,
sequence length, TP, PP, CP, VP, EP, tokens/s/GPU (GA and Model TFLOP/s are printed too, not used).
The Mixtral-8x22B lines print "1 | 64" under "GBS | MBS": read as GBS 64, MBS 1, the only reading
the same line's GA 16 allows (data parallel 256 / (TP 2 x PP 4 x CP 8) = 4; 64 / (4 x 1) = 16) and
the one the recipe table sets (recommended_model_configs/model_configs_b200.csv: mbs 1, gbs 64).

Recipe: the release tags of the containers' NeMo (github.com/NVIDIA/NeMo; v2.2.0, whose
docs/source/evaluation/evaluation_doc.rst line 100 names the container nvcr.io/nvidia/nemo:25.02, and
v2.3.0, whose line 131 names nemo:25.04): scripts/llm/performance/pretrain_mixtral_8x{7,22}b.py
(v2.2.0) and scripts/performance/llm/pretrain_mixtral_8x{7,22}b.py (v2.3.0) build
nemo/collections/llm/recipes/mixtral_8x{7,22}b.py ``pretrain_recipe(performance_mode=True)``, whose
pretrain_performance_optimizations (8x7b.py lines 214-235, 8x22b.py lines 221-242, unchanged between
the tags) adds MegatronTokenDropCallback (nemo/lightning/pytorch/callbacks/moe_token_drop.py lines
36-49: moe_expert_capacity_factor 1.0, moe_pad_expert_input_to_capacity True: token drop, padded to
capacity) and MegatronCommOverlapCallback with no TP overlap asked (megatron_comm_overlap.py line 135:
tp_comm_overlap False unless the user sets it); the model config (nemo/collections/llm/gpt/model/
mixtral.py lines 58-64) sets moe_token_dispatcher_type "alltoall", top-2 of 8 with aux-loss balancing
and no recompute, no moe_grouped_gemm (Megatron-Core's default: the per-expert loop; one local expert
at EP 8, so nothing to group). CUDA graphs: v2.2.0 pretrain_mixtral_8x7b.py lines 70-72 enable them
on B200 only; 8x22b.py sets none; v2.3.0 takes them from model_configs_gb200.csv (Mixtral 8x7B fp8
line 17: cuda_graphs 1; no 8x22B line, so utils.py lines 199-200 leave them off, and its ETP is
Megatron-Core's default, TP: 2; the 25.02 B200 line sets etp_size 1). FP8: v2.2.0
bf16_with_fp8_mixed (per-tensor delayed scaling); v2.3.0 utils.py lines 340-351 by --fp8_recipe
(default "ds", delayed scaling; the 25.04 page says current scaling): wsim times both as FP8.

Sequence: the 8x22B rows print 65,536 (v2.2.0 recipes/mixtral_8x22b.py line 187 sets it; v2.3.0's
line 187 says 4,096 and its script sets no other, so the 25.04 run set it by hand: the printed figure
is taken; its Model TFLOP/s cell, cut after "10" in the stored copy, fits 65,536, 1,008, not 661).

Left out, named: the DGX-H100 tables of both pages (and the 25.04 DGX-B200 table) hold Mixtral rows
too, but the stored copies of the pages end before them: no printed figure to copy.
"""

from __future__ import annotations

from models import zoo
from wsim.gpu.rows import VALIDATION, Row, moe_plan

MODELS = {"8x7b": zoo.get("mixtral-8x7b"), "8x22b": zoo.get("mixtral-8x22b")}
_GPU = {"B200": "b200-180gb", "GB200": "gb200-nvl72"}
_SRC = ("docs.nvidia.com/nemo-framework/user-guide/latest/performance/performance_summary.html, "
        "'Container: NeMo {}', 'System: DGX-{}', line '{}', tokens/s/GPU")
TOKEN_DROP_CAPACITY = 1.0  # MegatronTokenDropCallback's default (moe_token_drop.py line 38)

# (container, system, model, #-GPUs, GBS, MBS, seq, TP, PP, CP, VP, EP, tokens/s/GPU, CUDA graphs,
#  the line as printed (model and the columns after it, '|'-separated), recipe of the CUDA graphs)
_ROWS = [
    ("25.02", "B200", "8x7b", 64, 256, 2, 4096, 1, 1, 1, 1, 8, 15457, True,
     "Mixtral-8x7B | 64 | 256 | 2 | 4096 | 1 | 1 | 1 | 1 | 8 | 2 | 15457 | 1282",
     "CUDA graphs on (v2.2.0 scripts/llm/performance/pretrain_mixtral_8x7b.py lines 70-72: B200)"),
    ("25.02", "B200", "8x22b", 256, 64, 1, 65536, 2, 4, 8, 14, 8, 2232, False,
     "Mixtral-8x22B | 256 | 1 | 64 | 65536 | 2 | 4 | 8 | 14 | 8 | 16 | 2232 | 824",
     "CUDA graphs off (v2.2.0 scripts/llm/performance/pretrain_mixtral_8x22b.py sets none)"),
    ("25.04", "GB200", "8x7b", 64, 256, 2, 4096, 1, 1, 1, 1, 8, 19275, True,
     "Mixtral-8x7B | 64 | 256 | 2 | 4096 | 0 | 1 | 1 | 1 | 1 | 8 | 2 | 19275 | 1598",
     "CUDA graphs on (v2.3.0 scripts/performance/recommended_model_configs/model_configs_gb200.csv "
     "line 17: cuda_graphs 1)"),
    ("25.04", "GB200", "8x22b", 256, 64, 1, 65536, 2, 4, 8, 14, 8, 2731, False,
     "Mixtral-8x22B | 256 | 1 | 64 | 65536 | 0 | 2 | 4 | 8 | 14 | 8 | 16 | 2731",
     "CUDA graphs not stated, off (v2.3.0 model_configs_gb200.csv has no Mixtral 8x22B line; "
     "scripts/performance/utils.py lines 199-200 default off)"),
]


def rows() -> list[Row]:
    out = []
    for (ver, system, tag, gpus, gbs, mbs, seq, tp, pp, cp, vp, ep, tps, graphs, line,
         graphs_note) in _ROWS:
        # ETP: model_configs_b200.csv etp_size 1 for the 8x22B (v2.2.0 line 19); empty for the 8x7B
        # and no GB200 8x22B line at v2.3.0: None, Megatron-Core's default (initialize_model_parallel:
        # expert_tensor_parallel_size None -> tensor_model_parallel_size)
        etp = 1 if (tag, ver) == ("8x22b", "25.02") else tp
        plan = {**moe_plan(tp, pp, vp, mbs, ep, "fp8", etp=etp, recompute="none", cuda_graphs=graphs,
                           moe_dispatcher="alltoall", moe_ep_overlap=False,
                           moe_capacity_factor=TOKEN_DROP_CAPACITY, moe_pad_to_capacity=True,
                           tp_comm_overlap=False if tp > 1 else None),
                "cp": cp}
        notes = ["alltoall dispatcher (mixtral.py line 63)",
                 "token drop, capacity 1.0, padded to capacity (MegatronTokenDropCallback): routing "
                 "capped at capacity",
                 graphs_note,
                 "no recompute (the recipe sets none: Megatron-Core's default)",
                 "EP overlap off (not in these releases' recipes)",
                 f"ETP {etp} (" + ("v2.2.0 model_configs_b200.csv line 19: etp_size 1"
                                   if (tag, ver) == ("8x22b", "25.02") else
                                   "etp_size empty: Megatron-Core's default, ETP = TP" if tag == "8x7b"
                                   else "not stated, no GB200 8x22B line in v2.3.0's "
                                   "model_configs_gb200.csv: Megatron-Core's default, ETP = TP; with "
                                   "the B200 line's ETP 1 the model is 3,320, +21.6%") + ")",
                 ("FP8 per-tensor delayed scaling (bf16_with_fp8_mixed)" if ver == "25.02" else
                  "FP8 per-tensor (the page: current scaling; the script's default: delayed)")
                 + ", timed as FP8",
                 "distributed optimizer, BF16 gradient reduction (grad_reduce_in_fp32 False)"]
        if tp > 1:
            notes.append("sequence parallel (TP > 1: utils.py), TP comm overlap off "
                         "(MegatronCommOverlapCallback's default)")
        if tag == "8x22b":
            notes.append("printed 'GBS | MBS' = '1 | 64': GBS 64, MBS 1 (GA 16 = 64 / (DP 4 x MBS 1); "
                         "model_configs_b200.csv mbs 1, gbs 64)")
            notes.append("CP 8 at sequence 65,536, as printed" + (
                " (v2.2.0 recipes/mixtral_8x22b.py line 187: seq_length 65536)" if ver == "25.02" else
                " (v2.3.0's recipe says 4,096 and its script sets no other: the run set it; the "
                "stored copy's Model TFLOP/s cell, cut after '10', fits 65,536: 1,008 at 65,536, "
                "661 at 4,096)"))
        out.append(Row("nemo-moe", f"{ver}-mixtral-{tag}-fp8-{system.lower()}-{gpus}", VALIDATION,
                       MODELS[tag], _GPU[system], gpus, gbs, seq, "tokens_per_s_per_gpu",
                       float(tps), _SRC.format(ver, system, line.split(" | ")[0]), plan,
                       notes="; ".join(notes)))
    return out


# the lines as printed, for tests/gpu/test_gpu_nemo_moe.py
PRINTED = {f"{r[0]}-mixtral-{r[2]}-fp8-{r[1].lower()}-{r[3]}": (r[0], r[1], r[14]) for r in _ROWS}
