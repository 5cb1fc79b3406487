"""Published Megatron-Core / NeMo runs on H100, B200 and GB200 (2024-25), with their exact plans.

Development: the Megatron-LM r0.8 H100 scaling table, NeMo 24.07's FP8 performance summary and the
DGX Cloud benchmarking recipes of release v24.11.1. Validation (never fitted on; whole groups
held out): the recipes of release v25.04, Megatron-Bridge's H100 and Blackwell rows (NeMo 25.09 and
25.11 containers) and the Llama 3 paper's Table 4. Every number is copied as published; the
plans (TP, PP, CP, VP, micro-batch, batch) are the sources' own. What a source leaves out is said in
the row's ``notes`` and takes the stack's default (``wsim.gpu.calibration.STACKS``): the recipes'
options (tensor-parallel overlap, bf16 gradient reduction, the distributed optimizer) are the
``nemo`` stack's; Megatron-LM's README names its own (``--tp-comm-overlap``,
``--overlap-grad-reduce``, ``--overlap-param-gather``). Sources: /docs/sources.md, "GPU, modern".
"""

from __future__ import annotations

import dataclasses

from models import zoo
from models.spec import ModelSpec
from wsim.gpu.rows import DEVELOPMENT, VALIDATION, Row

_MCORE = ("github.com/NVIDIA/Megatron-LM README 'Training Speed and Scalability' (commit f2e5db40, "
          "2024-07-15; table images/model_table.png, Megatron-Core r0.8.0, H100): per-GPU TFLOP/s "
          "counted by megatron/training/training.py num_floating_point_operations")
_NEMO2407 = ("github.com/NVIDIA/NeMo docs/source/performance/performance_summary.md at v2.1.0 "
             "(633cb602; '24.07 perf numbers', 9c5c5e97): NeMo 24.07, DGX-H100, FP8, tokens/s/GPU")
_DGXC_24 = ("github.com/NVIDIA/dgxc-benchmarking release v24.11.1 (35a9aecc) {}: DGX H100, NeMo "
            "24.09/24.11, training step time (s)")
_DGXC_25 = ("github.com/NVIDIA/dgxc-benchmarking release v25.04 (741c8860) {}: DGX H100, NeMo "
            "25.02, training step time (s)")
_BRIDGE = ("github.com/NVIDIA-NeMo/Megatron-Bridge docs/performance-summary-archive.md (067f987d), "
           "NeMo {} container, {}, FP8 per-tensor current scaling, tokens/s/GPU")
_LLAMA3 = ("Llama Team, 'The Llama 3 Herd of Models', arXiv 2407.21783, Table 4 (405B pre-training "
           "on H100 80 GB, RoCE; BF16 MFU 38-43%), TFLOPs/GPU")


def _gpt(tag: str, layers: int, hidden: int, heads: int) -> ModelSpec:
    return ModelSpec(name=f"mcore-gpt-{tag}", layers=layers, hidden=hidden, heads=heads,
                     vocab=131072, positions=4096, tied_embeddings=True, dropout=False,
                     source=_MCORE)


LLAMA31_405B = dataclasses.replace(
    zoo.get("llama-3-70b"), name="llama-3.1-405b", layers=126, hidden=16384, heads=128,
    kv_heads=8, ffn=53248, positions=131072,
    source="Llama 3 paper (arXiv 2407.21783) Table 3; meta-llama/Llama-3.1-405B config.json")
LLAMA3_8B = dataclasses.replace(zoo.get("llama-3-8b"), positions=131072)
LLAMA3_70B = dataclasses.replace(zoo.get("llama-3-70b"), positions=131072)
# Nemotron-4: squared-ReLU MLP (not gated, 4h), GQA with 8 KV heads, RoPE, untied, no biases,
# vocabulary 256,000. Squared ReLU is modelled as ReLU (the same shapes and FLOPs).
_NEMOTRON = dict(tied_embeddings=False, activation="relu", positional="rotary",
                 attention_bias=False, mlp_bias=False, dropout=False)
NEMOTRON4_15B = ModelSpec(name="nemotron-4-15b", layers=32, hidden=6144, heads=48, kv_heads=8,
                          vocab=256000, positions=4096, **_NEMOTRON,
                          source="Nemotron-4 15B, arXiv 2402.16819 Table 1")
NEMOTRON4_340B = ModelSpec(name="nemotron-4-340b", layers=96, hidden=18432, heads=96, kv_heads=8,
                           vocab=256000, positions=4096, **_NEMOTRON,
                           source="Nemotron-4 340B, arXiv 2406.11704 Table 1")
GPT3_175B = dataclasses.replace(zoo.get("gpt3-175b"), dropout=False)
MODELS = {"8b": LLAMA3_8B, "70b": LLAMA3_70B, "405b": LLAMA31_405B, "175b": GPT3_175B,
          "15b": NEMOTRON4_15B, "340b": NEMOTRON4_340B}


def _plan(tp, pp, cp, vp, mbs, *, stack="nemo", zero=1, **extra) -> dict:
    return dict(tp=tp, pp=pp, cp=cp, interleave=vp, micro_batch=mbs, recompute=None,
                sequence_parallel=tp > 1, zero=zero, stack=stack, attention="flash", **extra)


def _mcore() -> list[Row]:
    rows = []
    for tag, heads, hidden, layers, tp, pp, gpus, batch, tflops in (
            ("1.7b", 16, 2048, 24, 1, 1, 48, 192, 408.8), ("7.1b", 32, 4096, 30, 2, 1, 96, 192, 465.9),
            ("16b", 48, 6144, 32, 4, 1, 192, 192, 489.1), ("32b", 56, 7168, 48, 8, 1, 384, 192, 459.6),
            ("70b", 64, 8192, 84, 8, 2, 768, 384, 419.7), ("119b", 80, 10240, 92, 8, 4, 1536, 768, 420.5),
            ("177b", 96, 12288, 96, 8, 6, 2304, 1152, 432.8),
            ("314b", 128, 16384, 96, 8, 8, 3072, 1536, 474.4),
            ("462b", 144, 18432, 112, 8, 16, 6144, 3072, 459.9)):
        plan = _plan(tp, pp, 1, None, None, stack="megatron-core", tp_comm_overlap=tp > 1)
        rows.append(Row("mcore-h100", tag, DEVELOPMENT, _gpt(tag, layers, hidden, heads),
                        "h100-80gb", gpus, batch, 4096, "tflops_model", tflops, _MCORE, plan,
                        notes="precision not stated (MFU against the BF16 peak: bf16 assumed); "
                              "micro-batch, interleaving, recompute not stated (best that fits, "
                              "recompute that fits); FFN 4h, MHA, tied, no dropout assumed"))
    return rows


def _nemo2407() -> list[Row]:
    rows = []
    for name, model, gpus, gbs, mbs, seq, tp, pp, cp, vp, tps in (
            ("gpt3-175b-128", GPT3_175B, 128, 256, 1, 2048, 4, 8, 1, 6, 716),
            ("gpt3-175b-512", GPT3_175B, 512, 2048, 2, 2048, 4, 8, 1, 6, 825),
            ("llama2-7b", zoo.get("llama-2-7b"), 8, 128, 1, 4096, 1, 1, 1, 1, 16934),
            ("llama2-13b", zoo.get("llama-2-13b"), 16, 128, 1, 4096, 1, 4, 1, 10, 8715),
            ("llama2-70b", zoo.get("llama-2-70b"), 64, 128, 1, 4096, 4, 4, 1, 20, 1728),
            ("nemotron-340b", NEMOTRON4_340B, 128, 32, 1, 4096, 8, 8, 1, 12, 326),
            ("llama3-8b", LLAMA3_8B, 8, 128, 1, 8192, 1, 1, 2, 1, 12273),
            ("llama3-70b", LLAMA3_70B, 64, 128, 1, 8192, 4, 4, 2, 5, 1524)):
        rows.append(Row("nemo-24.07", name, DEVELOPMENT, model, "h100-80gb", gpus, gbs, seq,
                        "tokens_per_s_per_gpu", tps, _NEMO2407,
                        _plan(tp, pp, cp, vp, mbs, precision="fp8"),
                        notes="FP8; recompute not stated (the fastest that fits)"))
    return rows


def _recipes(group: str, role: str, source: str, table, extra: dict | None = None) -> list[Row]:
    """``extra``: model tag -> (plan options, note) a release's recipe states for that model."""
    rows = []
    for tag, prec, file, gpus, gbs, tp, pp, cp, vp, mbs, step in table:
        model = MODELS[tag]
        seq = {"175b": 2048, "15b": 4096, "340b": 4096}.get(tag, 8192)
        opts, note = (extra or {}).get(tag, ({}, ""))
        rows.append(Row(group, f"{tag}-{prec}-{gpus}", role, model, "h100-80gb", gpus, gbs, seq,
                        "step_s", step, source.format(file),
                        {**_plan(tp, pp, cp, vp, mbs, precision=prec), **opts},
                        notes="NeMo recipe options (nemo stack)" + (
                            "" if "recompute" in opts else
                            "; recompute not stated (the fastest that fits)") + note))
    return rows


# v24.11.1's Nemotron-4 340B runs NeMo 1 with Apex's distributed Adam in bf16 (nemotron/
# nemotron4-340b-synth.yaml @ 35a9aecc lines 182-186: optim name distributed_fused_adam,
# grad_sync_dtype bf16, dtype bf16): master weights and moments in bf16 (wsim.gpu.knobs
# optimizer_bf16). The release's other recipes (llama3.1, gpt3 175B, nemotron4 15B) keep fp32.
# The same file states the recompute, for all four 340B runs (lines 138-139:
# activations_checkpoint_granularity selective, method null; nemotron/configure.sh @ 35a9aecc
# overrides parallelism, batch and FP8, not it): Megatron-Core's checkpointed core attention,
# rerun in the backward (flash: no memory saved; wsim.gpu.recompute core_attn). The release's
# other recipes state none (activations_checkpoint_granularity null), which their rows' "fastest
# that fits" picks.
_V2411_EXTRA = {"340b": ({"optimizer_bf16": True, "recompute": "selective"},
                         "; optimizer state in bf16 (the recipe's distributed_fused_adam dtype "
                         "bf16); selective recompute (the recipe's "
                         "activations_checkpoint_granularity)")}


# (model, precision, README, GPUs, global batch, TP, PP, CP, VP, micro-batch, step time s)
_V2411 = [
    ("8b", "bf16", "llama3.1/README_8b.md", 8, 128, 1, 1, 2, 1, 1, 12.91),
    ("8b", "bf16", "llama3.1/README_8b.md", 128, 2048, 1, 1, 2, 1, 1, 13.10),
    ("8b", "fp8", "llama3.1/README_8b.md", 8, 128, 1, 1, 2, 1, 1, 9.67),
    ("8b", "fp8", "llama3.1/README_8b.md", 128, 2048, 1, 1, 2, 1, 1, 9.82),
    ("70b", "bf16", "llama3.1/README_70b.md", 64, 128, 4, 4, 2, 5, 1, 14.72),
    ("70b", "bf16", "llama3.1/README_70b.md", 2048, 4096, 4, 4, 2, 5, 1, 14.98),
    ("70b", "fp8", "llama3.1/README_70b.md", 64, 128, 4, 4, 2, 5, 1, 11.01),
    ("70b", "fp8", "llama3.1/README_70b.md", 2048, 4096, 4, 4, 2, 5, 1, 11.39),
    ("405b", "bf16", "llama3.1/README_405b.md", 576, 252, 8, 9, 2, 7, 1, 17.20),
    ("405b", "bf16", "llama3.1/README_405b.md", 2304, 1008, 8, 9, 2, 7, 1, 17.62),
    ("405b", "fp8", "llama3.1/README_405b.md", 576, 252, 8, 9, 2, 7, 1, 11.24),
    ("405b", "fp8", "llama3.1/README_405b.md", 2304, 1008, 8, 9, 2, 7, 1, 12.35),
    ("175b", "bf16", "nemo_megatron/README_175b.md", 128, 256, 4, 8, 1, 12, 1, 8.91),
    ("175b", "bf16", "nemo_megatron/README_175b.md", 2048, 4096, 4, 8, 1, 12, 1, 9.02),
    ("175b", "fp8", "nemo_megatron/README_175b.md", 128, 256, 4, 8, 1, 12, 1, 5.92),
    ("175b", "fp8", "nemo_megatron/README_175b.md", 2048, 4096, 4, 8, 1, 12, 1, 6.24),
    ("15b", "bf16", "nemotron/README_15b.md", 16, 64, 4, 1, 1, 1, 4, 2.83),
    ("15b", "bf16", "nemotron/README_15b.md", 2048, 8192, 4, 1, 1, 1, 4, 2.96),
    ("15b", "fp8", "nemotron/README_15b.md", 16, 64, 4, 1, 1, 1, 4, 2.08),
    ("15b", "fp8", "nemotron/README_15b.md", 2048, 8192, 4, 1, 1, 1, 4, 2.18),
    ("340b", "bf16", "nemotron/README_340b.md", 128, 32, 8, 8, 1, 12, 1, 4.61),
    ("340b", "bf16", "nemotron/README_340b.md", 2048, 512, 8, 8, 1, 12, 1, 4.84),
    ("340b", "fp8", "nemotron/README_340b.md", 128, 32, 8, 8, 1, 12, 1, 3.16),
    ("340b", "fp8", "nemotron/README_340b.md", 2048, 512, 8, 8, 1, 12, 1, 3.49),
]
_V2504 = [
    ("8b", "bf16", "llama3.1/README.md", 8, 128, 1, 1, 2, 1, 1, 12.27),
    ("8b", "bf16", "llama3.1/README.md", 128, 2048, 1, 1, 2, 1, 1, 12.33),
    ("8b", "fp8", "llama3.1/README.md", 8, 128, 1, 1, 2, 1, 1, 9.33),
    ("8b", "fp8", "llama3.1/README.md", 128, 2048, 1, 1, 2, 1, 1, 9.54),
    ("70b", "bf16", "llama3.1/README.md", 64, 128, 4, 4, 2, 5, 1, 14.66),
    ("70b", "bf16", "llama3.1/README.md", 2048, 4096, 4, 4, 2, 5, 1, 14.66),
    ("70b", "fp8", "llama3.1/README.md", 64, 128, 4, 8, 1, 5, 1, 9.86),
    ("70b", "fp8", "llama3.1/README.md", 2048, 4096, 4, 8, 1, 5, 1, 10.15),
    ("405b", "bf16", "llama3.1/README.md", 512, 256, 8, 8, 2, 8, 1, 19.78),
    ("405b", "bf16", "llama3.1/README.md", 2048, 1024, 8, 8, 2, 8, 1, 19.87),
    ("405b", "fp8", "llama3.1/README.md", 512, 256, 8, 8, 2, 8, 1, 12.37),
    ("405b", "fp8", "llama3.1/README.md", 2048, 1024, 8, 8, 2, 8, 1, 12.56),
    ("175b", "bf16", "nemo_megatron/README_175b.md", 128, 256, 4, 8, 1, 6, 1, 8.309),
    ("175b", "bf16", "nemo_megatron/README_175b.md", 2048, 4096, 4, 8, 1, 6, 1, 8.49),
    ("175b", "fp8", "nemo_megatron/README_175b.md", 128, 256, 4, 8, 1, 6, 1, 5.626),
    ("175b", "fp8", "nemo_megatron/README_175b.md", 2048, 4096, 4, 8, 1, 6, 1, 5.96),
    ("15b", "bf16", "nemotron/README.md", 16, 64, 2, 1, 1, 1, 2, 2.66),
    ("15b", "bf16", "nemotron/README.md", 2048, 8192, 2, 1, 1, 1, 2, 2.78),
    ("15b", "fp8", "nemotron/README.md", 16, 64, 2, 1, 1, 1, 2, 1.98),
    ("15b", "fp8", "nemotron/README.md", 2048, 8192, 2, 1, 1, 1, 2, 2.09),
    # VP printed "NA"; NeMo's own configuration for this run (scripts/performance/
    # recommended_model_configs/model_configs_h100.csv: nemotron4 340b, 256 GPUs) uses VP 12
    ("340b", "bf16", "nemotron/README.md", 256, 64, 8, 8, 1, 12, 1, 4.36),
    ("340b", "bf16", "nemotron/README.md", 2048, 512, 8, 8, 1, 12, 1, 4.43),
    ("340b", "fp8", "nemotron/README.md", 256, 64, 8, 8, 1, 12, 1, 2.93),
    ("340b", "fp8", "nemotron/README.md", 2048, 512, 8, 8, 1, 12, 1, 3.05),
]


def _bridge() -> list[Row]:
    rows = []
    # (group, container, system, gpu, model, GPUs, GBS, MBS, FSDP, TP, PP, CP, VP, tokens/s/GPU)
    for group, ver, system, gpu, tag, gpus, gbs, mbs, fsdp, tp, pp, cp, vp, tps in (
            ("bridge-h100", "25.09", "DGX-H100", "h100-80gb", "8b", 8, 128, 1, True, 1, 1, 1, 1, 14079),
            ("bridge-h100", "25.09", "DGX-H100", "h100-80gb", "70b", 64, 128, 1, False, 4, 8, 1, 5, 1619),
            ("bridge-h100", "25.09", "DGX-H100", "h100-80gb", "405b", 1024, 512, 1, False, 8, 8, 2, 8, 302),
            ("bridge-h100", "25.11", "DGX-H100", "h100-80gb", "8b", 8, 128, 1, True, 1, 1, 1, 1, 14451),
            ("bridge-h100", "25.11", "DGX-H100", "h100-80gb", "70b", 64, 128, 1, False, 4, 8, 1, 5, 1602),
            ("bridge-h100", "25.11", "DGX-H100", "h100-80gb", "405b", 1024, 512, 1, False, 8, 8, 2, 8, 292),
            ("bridge-bw", "25.09", "DGX-B200", "b200-180gb", "8b", 8, 128, 2, False, 1, 1, 1, 1, 29994),
            ("bridge-bw", "25.09", "DGX-B200", "b200-180gb", "405b", 128, 64, 1, False, 4, 8, 2, 8, 664),
            ("bridge-bw", "25.11", "DGX-B200", "b200-180gb", "8b", 8, 128, 2, False, 1, 1, 1, 1, 30624),
            ("bridge-bw", "25.11", "DGX-B200", "b200-180gb", "405b", 128, 64, 1, False, 4, 8, 2, 8, 661),
            ("bridge-bw", "25.11", "DGX-GB200", "gb200-nvl72", "8b", 8, 128, 2, False, 1, 1, 1, 1, 31508),
            ("bridge-bw", "25.11", "DGX-GB200", "gb200-nvl72", "70b", 64, 256, 2, True, 1, 1, 1, 1, 4312),
            ("bridge-bw", "25.11", "DGX-GB200", "gb200-nvl72", "405b", 256, 1536, 1, False, 4, 16, 1, 4, 813)):
        group = "bridge-blackwell" if group == "bridge-bw" else group
        model = MODELS[tag]
        extra, note = {}, ""
        if tag == "8b" and gpu != "h100-80gb":
            # CUDA graphs in Megatron-Bridge's 8B Blackwell recipes (src/megatron/bridge/
            # perf_recipes/llama/{b200,gb200}/llama3.py @ 067f987d: cuda_graph_impl "local")
            extra, note = {"cuda_graphs": True}, "; CUDA graphs (the recipe's)"
        if tag == "70b" and fsdp and gpu == "gb200-nvl72":
            # Megatron-Bridge src/megatron/bridge/perf_recipes/llama/gb200/llama3.py @ 067f987d,
            # llama3_70b_pretrain_64gpu_gb200_fp8cs_config: cpu_offloading True, num_layers 40;
            # Megatron-Core refuses recompute with offloading, so the run had none
            extra = {"cpu_offload_layers": 40, "recompute": "none"}
            note = ("; the recipe offloads 40 of 80 layers' activations to the Grace CPU "
                    "(cpu_offloading_num_layers 40, gb200/llama3.py), hence no recompute "
                    "(Megatron-Core refuses both together)")
        rows.append(Row(group, f"{ver}-{tag}-{gpu.split('-')[0]}-{gpus}", VALIDATION, model, gpu,
                        gpus, gbs, 8192, "tokens_per_s_per_gpu", tps, _BRIDGE.format(ver, system),
                        {**_plan(tp, pp, cp, vp, mbs, zero=3 if fsdp else 1, precision="fp8"),
                         **extra},
                        notes="FSDP > 0: Megatron-FSDP (zero 3); recompute not stated (the "
                              "fastest that fits)" + note))
    return rows


def _llama3() -> list[Row]:
    rows = []
    for gpus, cp, dp, seq, tflops in ((8192, 1, 64, 8192, 430), (16384, 1, 128, 8192, 400),
                                      (16384, 16, 8, 131072, 380)):
        rows.append(Row("llama3-table4", f"405b-{gpus}-cp{cp}", VALIDATION, LLAMA31_405B,
                        "h100-80gb", gpus, 16 * dp if gpus == 16384 else 32 * dp, seq,
                        "tflops_model", tflops, _LLAMA3,
                        dict(tp=8, pp=16, cp=cp, interleave=None, micro_batch=None,
                             recompute=None, sequence_parallel=True, zero=1, stack="meta-llama3",
                             attention="flash", fabric="roce"),
                        notes="Meta's own stack (meta-llama3: all-gather CP, FP32 gradient "
                              "reduction, ZeRO-1 with PP); 126 layers on 16 stages: uneven stages "
                              "(the paper removes a layer from the first and last); the CP 16 "
                              "row's DP is 8 (v3; v1 prints 4, which does not multiply to 16,384)"))
    return rows


def development_rows() -> list[Row]:
    return _mcore() + _nemo2407() + _recipes("dgxc-24.11", DEVELOPMENT, _DGXC_24, _V2411,
                                               _V2411_EXTRA)


def validation_rows() -> list[Row]:
    return _recipes("dgxc-25.04", VALIDATION, _DGXC_25, _V2504) + _bridge() + _llama3()
