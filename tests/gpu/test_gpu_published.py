"""Published GPU runs the cost model must reproduce, with ONE global parameter set (wsim.gpu.specs).

- Megatron-LM SC21 Table 1 (Narayanan et al., arXiv 2104.04473; FACTS.md): A100-80GB, V = 51,200,
  s = 2048, full recompute, the published TP/PP/GPUs/batch; micro-batch and interleaving are not
  published, so ``estimate`` takes the best that fits. TFLOP/s per GPU counted with SC21 eq. (3)
  (= our hardware FLOPs). Tolerance: every row within 5%, mean absolute error at most 3%.
- Seed comparison points (FACTS.md), within 10%.
"""

import dataclasses

import pytest

from models import zoo
from wsim.gpu import GPUS, estimate, megatron_flops_per_step

# (zoo tag, TP, PP, GPUs, batch, published TFLOP/s per GPU) -- SC21 Table 1 / Megatron-LM README.
TABLE1 = [
    ("1.7b", 1, 1, 32, 512, 137), ("3.6b", 2, 1, 64, 512, 138), ("7.5b", 4, 1, 128, 512, 142),
    ("18.4b", 8, 1, 256, 1024, 135), ("39.1b", 8, 2, 512, 1536, 138),
    ("76.1b", 8, 4, 1024, 1792, 140), ("145.6b", 8, 8, 1536, 2304, 148),
    ("310.1b", 8, 16, 1920, 2160, 155), ("529.6b", 8, 35, 2520, 2520, 163),
    ("1t", 8, 64, 3072, 3072, 163),
]


def _table1_rows():
    rows = []
    for tag, tp, pp, gpus, batch, published in TABLE1:
        model = zoo.get(f"megatron-{tag}")
        r = estimate(model, seq=2048, batch=batch, gpus=gpus, gpu="a100-80gb", tp=tp, pp=pp,
                     recompute="full")
        flops = megatron_flops_per_step(batch=batch, seq=2048, layers=model.layers,
                                        hidden=model.hidden, vocab=model.vocab)
        predicted = flops / r.step_time_s / gpus / 1e12
        rows.append((tag, tp, pp, gpus, batch, r.plan.micro_batch, r.plan.interleave, published,
                     predicted, predicted / published - 1, r))
    return rows


def _format(rows) -> str:
    out = ["Megatron-LM SC21 Table 1: predicted vs published TFLOP/s per GPU (A100-80GB, full recompute)",
           f"{'model':>8} {'TP':>3} {'PP':>3} {'GPUs':>5} {'batch':>5} {'mb':>3} {'v':>2} "
           f"{'published':>9} {'predicted':>9} {'error':>7}"]
    for tag, tp, pp, gpus, batch, mb, v, pub, pred, err, _ in rows:
        out.append(f"{tag:>8} {tp:>3} {pp:>3} {gpus:>5} {batch:>5} {mb:>3} {v:>2} {pub:>9.0f} "
                   f"{pred:>9.1f} {100 * err:>+6.1f}%")
    mae = sum(abs(r[9]) for r in rows) / len(rows)
    out.append(f"mean absolute error {100 * mae:.2f}%, worst {100 * max(abs(r[9]) for r in rows):.2f}%")
    return "\n".join(out)


def test_megatron_sc21_table1_all_rows(capsys):
    rows = _table1_rows()
    table = _format(rows)
    with capsys.disabled():
        print("\n" + table)
    for row in rows:
        r = row[-1]
        assert r.fits, f"{row[0]}: the published plan must fit\n{table}"
        # our hardware FLOPs are SC21 eq. (3) exactly when f = 4h
        assert r.hardware_tflops_per_gpu == pytest.approx(row[8], rel=1e-9)
        assert abs(row[9]) <= 0.05, f"{row[0]} off by {100 * row[9]:+.1f}%\n{table}"
    mae = sum(abs(r[9]) for r in rows) / len(rows)
    assert mae <= 0.03, table


def test_table1_plans_report_chosen_options():
    r = estimate(zoo.get("megatron-1t"), seq=2048, batch=3072, gpus=3072, tp=8, pp=64)
    assert set(r.to_dict()["plan"]["chosen"]) == {"micro_batch", "interleave"}
    assert r.plan.dp == 6 and r.fits


def test_opt_175b_on_992_a100_80gb(capsys):
    """OPT paper sec. 2.4: FSDP + Megatron TP on 992 A100-80GB, up to 147 TFLOP/s per GPU.
    Assumptions: TP 8 (Megatron within a node), FSDP = ZeRO-3 over dp = 124, full activation
    checkpointing, and a batch of 992 sequences (8 per replica; the paper's "2M tokens" is not an
    integer number of sequences per replica with dp = 124). TFLOP/s compared as hardware FLOPs
    (recompute counted, the Megatron convention)."""
    r = estimate(zoo.get("opt-175b"), seq=2048, batch=992, gpus=992, gpu="a100-80gb", tp=8, pp=1,
                 zero=3, recompute="full")
    with capsys.disabled():
        print(f"\nOPT-175B: predicted {r.hardware_tflops_per_gpu:.1f} TFLOP/s per GPU (hardware), "
              f"{r.model_tflops_per_gpu:.1f} (model); published 147 "
              f"({100 * (r.hardware_tflops_per_gpu / 147 - 1):+.1f}%)")
    assert r.fits
    assert r.hardware_tflops_per_gpu == pytest.approx(147, rel=0.10)


def test_gpt_neox_20b_on_96_a100_40gb(capsys):
    """GPT-NeoX-20B (Black et al. 2022): 96 A100-40GB, TP 2 x PP 4, ZeRO-1, micro-batch 4 x 32
    accumulation x 12 replicas = 1536 sequences (the paper's "1538" is not divisible by dp 12),
    DeepSpeed's non-interleaved 1F1B, activation checkpointing; the cluster has 4 ConnectX-6 HCAs
    (200 Gb/s) per 8 GPUs, i.e. 12.5 GB/s per GPU. 117 TFLOP/s per GPU (secondary source).
    The source does not say how it counts FLOPs; the value matches model FLOPs (no recompute),
    which we compare. Counting recompute our prediction is ~152 (see the printed line)."""
    cluster_gpu = dataclasses.replace(GPUS["a100-40gb"], nic_bytes_per_s=12.5e9)
    r = estimate(zoo.get("gpt-neox-20b"), seq=2048, batch=1536, gpus=96, gpu=cluster_gpu, tp=2,
                 pp=4, zero=1, recompute="full", micro_batch=4, interleave=1)
    with capsys.disabled():
        print(f"\nGPT-NeoX-20B: predicted {r.model_tflops_per_gpu:.1f} TFLOP/s per GPU (model), "
              f"{r.hardware_tflops_per_gpu:.1f} (hardware); published 117 "
              f"({100 * (r.model_tflops_per_gpu / 117 - 1):+.1f}%)")
    assert r.fits
    assert r.model_tflops_per_gpu == pytest.approx(117, rel=0.10)


def test_neox_needs_zero_on_40gb():
    """20B / 8 model-parallel ranks x 16 bytes exceeds 40 GiB: without ZeRO-1 it must not fit."""
    from wsim.errors import ConfigError
    with pytest.raises(ConfigError, match="does not fit"):
        estimate(zoo.get("gpt-neox-20b"), seq=2048, batch=1536, gpus=96, gpu="a100-40gb", tp=2,
                 pp=4, zero=0)
