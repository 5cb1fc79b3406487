"""Published GPU training runs: the development set the parameters were fitted on, and validation
rows they were not. Each row: the run's exact configuration, what was published, and the source.

Where a source leaves a setting out (micro-batch, interleaving) the row says ``None`` and the model
takes the fastest value that fits, as the run's authors would have; every other assumption is
written in the row's ``notes``. Errors are throughput errors: predicted / published - 1
(positive: the model is too fast). Never a number without its source.
"""

from __future__ import annotations

import dataclasses

from models import zoo
from models.spec import ModelSpec
from wsim.gpu import published_bridge26 as bridge26
from wsim.gpu import published_modern as modern
from wsim.gpu import published_torchtitan as torchtitan
from wsim.gpu.rows import DEVELOPMENT, VALIDATION, Row

__all__ = ["DEVELOPMENT", "VALIDATION", "Row", "development_rows", "validation_rows", "all_rows"]

_SC21 = "Narayanan et al., SC21, arXiv 2104.04473"
_T1 = f"{_SC21}, Table 1 (Megatron-LM README, April 2021)"
_T2 = f"{_SC21}, Table 2"
_MTNLG = "Smith et al. 2022, arXiv 2201.11990, sec. 2.4 (MT-NLG 530B on Selene)"
_BLOOM = ("BigScience 2022, BLOOM-176B training (bigscience/bloom model card and 'The Technology "
          "Behind BLOOM Training', HF blog 2022): 384 A100-80GB, TP 4 x PP 12 x DP 8, ~150 TFLOP/s")
_OPT = "Zhang et al. 2022, arXiv 2205.01068, sec. 2.4 (OPT-175B: up to 147 TFLOP/s per GPU)"
_NEOX = ("Black et al. 2022, arXiv 2204.06745 (GPT-NeoX-20B): 96 A100-40GB, 117 TFLOP/s per GPU "
         "(secondary source; how FLOPs are counted is not stated)")
_FA = ("github.com/Dao-AILab/flash-attention training/README.md 'Training speed' (commit 0b037c2d), "
       "configs training/configs/experiment/pile/gpt3xl-flash.yaml, gpt3-2.7B-flash-hdim128.yaml: "
       "8 x A100-80GB SXM, tokens/s of the node")
# The FlashAttention repository's trainer (training/configs/experiment/pile/gpt3xl-flash.yaml @
# 0b037c2d: PyTorch Lightning, strategy src.utils.ddp_zero1.DDPStrategyZero1, apex fused dense,
# LayerNorm and cross-entropy) is neither Megatron-Core nor NeMo: no development row measures its
# kernels, so it runs at the prior every such stack takes, Megatron-LM's fused kernels (stack
# megatron, kernel_efficiency 1.0; wsim.gpu.validation.PRIOR_KERNEL_EFFICIENCY). Until issue 19's
# second pass these rows ran on megatron-core, whose 0.873 is fitted on the Megatron-LM r0.8 H100
# table (-15.8% and -13.1% then). PyTorch DDP overlaps its gradient all-reduce with the backward,
# Megatron-LM 2021 did not: 0.02-0.04 s of a 6-12 s step on one NVLink node.
_FA_STACK = ("stack megatron: Megatron-style fused kernels at the prior speed (no development "
             "row measures this trainer); its DDP's overlapped all-reduce is not modelled (<0.5%)")
_MOSAIC = ("github.com/mosaicml/llm-foundry scripts/train/benchmarking/README.md (commit 061f2c7c), "
           "MPT models (scripts/train/yamls/pretrain/mpt-*.yaml), FSDP FULL_SHARD, Throughput (T/s/GPU)")


def _spec(name: str, layers: int, hidden: int, heads: int, vocab: int, *, dropout: bool,
          tied: bool = True, learned: bool = True, source: str = "") -> ModelSpec:
    return ModelSpec(name=name, layers=layers, hidden=hidden, heads=heads, vocab=vocab,
                     positions=2048, tied_embeddings=tied, dropout=dropout,
                     positional="learned" if learned else "rotary", source=source)


def _meg(tag: str) -> ModelSpec:
    return zoo.get(f"megatron-{tag}")


# SC21 models use V = 51,200 (Table 1 caption); GPT-3 175B's shape with that vocabulary.
SC21_175B = dataclasses.replace(zoo.get("gpt3-175b"), name="sc21-175b", vocab=51200)
SC21_530B = _meg("529.6b")
MT_NLG = dataclasses.replace(SC21_530B, name="mt-nlg-530b", vocab=50257)  # GPT-2 BPE
BLOOM = _spec("bloom-176b", 70, 14336, 112, 250880, dropout=False, learned=False, source=_BLOOM)
FA_GPT3_13 = _spec("gpt3-1.3b-fa", 24, 2048, 16, 50264, dropout=True, source=_FA)
FA_GPT3_27 = _spec("gpt3-2.7b-hdim128", 32, 2560, 20, 50264, dropout=True, source=_FA)
MPT = {tag: _spec(f"mpt-{tag}", l, h, a, 50368, dropout=False, source=_MOSAIC)
       for tag, l, h, a in (("3b", 32, 2560, 20), ("7b", 32, 4096, 32), ("13b", 40, 5120, 40),
                            ("30b", 48, 7168, 56), ("70b", 80, 8192, 64))}


def _table1() -> list[Row]:
    rows = []
    for tag, tp, pp, gpus, batch, tflops in (
            ("1.7b", 1, 1, 32, 512, 137), ("3.6b", 2, 1, 64, 512, 138), ("7.5b", 4, 1, 128, 512, 142),
            ("18.4b", 8, 1, 256, 1024, 135), ("39.1b", 8, 2, 512, 1536, 138),
            ("76.1b", 8, 4, 1024, 1792, 140), ("145.6b", 8, 8, 1536, 2304, 148),
            ("310.1b", 8, 16, 1920, 2160, 155), ("529.6b", 8, 35, 2520, 2520, 163),
            ("1t", 8, 64, 3072, 3072, 163)):
        rows.append(Row("sc21-table1", tag, DEVELOPMENT, _meg(tag), "a100-80gb", gpus, batch, 2048,
                        "tflops_megatron", tflops, _T1,
                        dict(tp=tp, pp=pp, recompute="full", stack="megatron", micro_batch=None,
                             interleave=None),
                        notes="micro-batch and interleaving not published: best that fits"))
    return rows


def _table2() -> list[Row]:
    rows = []
    for model, tag, gpus, batch, mb, tflops in (
            (SC21_175B, "175b", 384, 1536, 4, 144), (SC21_175B, "175b", 768, 1536, 2, 88),
            (SC21_175B, "175b", 1536, 1536, 1, 44), (SC21_530B, "530b", 640, 2560, 4, 138),
            (SC21_530B, "530b", 1120, 2240, 2, 98), (SC21_530B, "530b", 2240, 2240, 1, 48)):
        rows.append(Row("sc21-zero3", f"{tag}-{gpus}", DEVELOPMENT, model, "a100-80gb", gpus, batch,
                        2048, "tflops_megatron", tflops, _T2,
                        dict(tp=1, pp=1, zero=3, stack="deepspeed", recompute="full",
                             micro_batch=mb),
                        notes="ZeRO-3 (DeepSpeed) without model parallelism; activation "
                              "checkpointing assumed (TFLOP/s counted with SC21 eq. 3)"))
    for model, tag, pp, gpus, batch, tflops in (
            (SC21_175B, "175b", 12, 384, 1536, 153), (SC21_175B, "175b", 12, 768, 1536, 149),
            (SC21_175B, "175b", 12, 1536, 1536, 141), (SC21_530B, "530b", 35, 560, 2240, 171),
            (SC21_530B, "530b", 35, 1120, 2240, 167), (SC21_530B, "530b", 35, 2240, 2240, 159)):
        rows.append(Row("sc21-ptdp", f"{tag}-{gpus}", DEVELOPMENT, model, "a100-80gb", gpus, batch,
                        2048, "tflops_megatron", tflops, _T2,
                        dict(tp=8, pp=pp, recompute="full", stack="megatron", micro_batch=1,
                             interleave=None),
                        notes="interleaving not published: best that fits"))
    return rows


def development_rows() -> list[Row]:
    """The 2021-22 development set and the modern one (``published_modern``)."""
    return development_rows_2021() + modern.development_rows()


def validation_rows() -> list[Row]:
    return (validation_rows_2021() + modern.validation_rows() + torchtitan.validation_rows()
            + bridge26.dense_rows())


def development_rows_2021() -> list[Row]:
    rows = _table1() + _table2()
    for nodes, seconds in ((280, 60.1), (350, 50.2), (420, 44.4)):
        rows.append(Row("mt-nlg", f"{nodes * 8}", DEVELOPMENT, MT_NLG, "a100-80gb", nodes * 8, 1920,
                        2048, "step_s", seconds, _MTNLG,
                        dict(tp=8, pp=35, zero=1, stack="deepspeed", recompute="full",
                             micro_batch=None, interleave=1),
                        notes="DeepSpeed pipeline (1F1B) + Megatron TP; ZeRO-1 and the micro-batch "
                              "assumed (not published)"))
    rows.append(Row("bloom", "176b-384", DEVELOPMENT, BLOOM, "a100-80gb", 384, 2048, 2048,
                    "tflops_megatron", 150.0, _BLOOM,
                    dict(tp=4, pp=12, zero=1, stack="deepspeed", recompute="full", micro_batch=2,
                         interleave=1),
                    notes="Megatron-DeepSpeed, ZeRO-1, micro-batch 2, full checkpointing; ALiBi "
                          "(no position table), no dropout (HF config); TFLOP/s with SC21 eq. 3; "
                          "--pp-partition-method 'type:transformer|embedding': the embedding and "
                          "5 blocks on the first stage, 6 on the middle ten, 5 and the head on the "
                          "last (bigscience-workshop/bigscience train/tr11-176B-ml/README.md @ "
                          "e726b159; wsim.gpu.stages)"))
    rows.append(Row("opt", "175b-992", DEVELOPMENT, zoo.get("opt-175b"), "a100-80gb", 992, 992, 2048,
                    "tflops_hardware", 147.0, _OPT,
                    dict(tp=8, pp=1, zero=3, stack="fsdp", recompute="full"),
                    notes="FSDP + Megatron TP 8; batch 992 sequences (8 per replica: the paper's "
                          "2M tokens is not a whole number per replica); 'up to' 147 compared as "
                          "hardware FLOPs"))
    rows.append(Row("neox", "20b-96", DEVELOPMENT, zoo.get("gpt-neox-20b"), "a100-40gb", 96, 1536,
                    2048, "tflops_model", 117.0, _NEOX,
                    dict(tp=2, pp=4, zero=1, stack="deepspeed", recompute="full", micro_batch=4,
                         interleave=1),
                    nic_bytes_per_s=12.5e9,
                    notes="4 ConnectX-6 (200 Gb/s) per 8 GPUs: 12.5 GB/s per GPU; batch 1536 (the "
                          "paper's 1538 is not divisible by dp 12); compared as model FLOPs"))
    return rows


def validation_rows_2021() -> list[Row]:
    rows = [
        Row("flash-attn", "gpt3-1.3b", VALIDATION, FA_GPT3_13, "a100-80gb", 8, 512, 2048,
            "tokens_per_s_per_gpu", 169e3 / 8, _FA,
            dict(tp=1, pp=1, zero=1, stack="megatron", recompute="none", micro_batch=8,
                 attention="flash"),
            notes="FlashAttention, fused dense/LayerNorm/cross-entropy, DDP + ZeRO-1, no "
                  "checkpointing, 1M-token batch, 8 sequences per GPU per micro-batch; " + _FA_STACK),
        Row("flash-attn", "gpt3-2.7b", VALIDATION, FA_GPT3_27, "a100-80gb", 8, 512, 2048,
            "tokens_per_s_per_gpu", 85e3 / 8, _FA,
            dict(tp=1, pp=1, zero=1, stack="megatron", recompute="none", micro_batch=4,
                 attention="flash"),
            notes="head dimension 128 (20 heads); 4 sequences per GPU per micro-batch; " + _FA_STACK),
    ]
    # (tag, gpu, gpus, micro-batch, grad accumulation, checkpointing, T/s/GPU, precision)
    for tag, gpu, gpus, mb, ga, ckpt, tps, prec in (
            ("7b", "a100-80gb", 8, 6, 2, False, 4641, "bf16"),
            ("13b", "a100-80gb", 8, 2, 3, False, 2262, "bf16"),
            ("30b", "a100-80gb", 8, 3, 21, True, 916, "bf16"),
            ("70b", "a100-80gb", 32, 2, 16, True, 373, "bf16"),
            ("70b", "a100-80gb", 64, 8, 4, True, 410, "bf16"),
            ("7b", "a100-40gb", 8, 12, 4, True, 3679, "bf16"),
            ("7b", "a100-40gb", 128, 18, 1, True, 3623, "bf16"),
            ("13b", "a100-40gb", 16, 10, 1, True, 1993, "bf16"),
            ("13b", "a100-40gb", 128, 16, 1, True, 1972, "bf16"),
            ("30b", "a100-40gb", 32, 4, 1, True, 857, "bf16"),
            ("70b", "a100-40gb", 64, 2, 1, True, 276, "bf16"),
            ("70b", "a100-40gb", 128, 4, 1, True, 376, "bf16"),
            ("7b", "h100-80gb", 8, 6, 1, False, 10643, "bf16"),
            ("13b", "h100-80gb", 64, 2, 1, False, 4800, "bf16"),
            ("30b", "h100-80gb", 32, 14, 3, True, 2308, "bf16"),
            ("70b", "h100-80gb", 64, 8, 4, True, 1039, "bf16"),
            ("3b", "h100-80gb", 8, 10, 6, False, 30586, "fp8")):
        rows.append(Row(f"mosaic-{gpu.split('-')[0]}", f"{tag}-{gpu}-{gpus}-{prec}", VALIDATION,
                        MPT[tag], gpu, gpus, gpus * mb * ga, 2048, "tokens_per_s_per_gpu", tps,
                        _MOSAIC,
                        dict(tp=1, pp=1, zero=3, stack="fsdp", micro_batch=mb,
                             recompute="full" if ckpt else "none", attention="flash",
                             precision=prec),
                        notes="MPT: FlashAttention (triton), no biases, learned positions, no "
                              "dropout; A100 clusters 8 x 200 Gb/s RoCE per node; the H100 "
                              "cluster's network is not stated (DGX H100 assumed)"))
    return rows


def all_rows() -> list[Row]:
    return development_rows() + validation_rows()
