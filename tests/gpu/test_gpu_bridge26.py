"""Megatron-Bridge's 26.04.01 rows (wsim.gpu.published_bridge26) are the archive's, copied exactly.

ARCHIVE holds the table lines as printed in github.com/NVIDIA-NeMo/Megatron-Bridge
docs/performance-summary-archive.md @ 067f987d, section "26.04.01 NeMo Container" (the same text as
docs/performance-summary.md at tag v0.4.2), keyed by the row each one becomes: every printed column
the row uses (GPUs, GBS, MBS, sequence, FSDP, TP, PP, CP, VP, EP, tokens/s/GPU) is compared with the
row, so neither side can drift alone.
"""

import pytest

from experiments import gpu_doc_tables as G
from wsim.gpu import validation as V
from wsim.gpu.published import validation_rows as dense_validation_rows
from wsim.gpu.published_bridge26 import dense_rows
from wsim.gpu.published_bridge26 import moe_rows as _moe_rows
from wsim.gpu.published_moe import MODELS
from wsim.gpu.published_moe import validation_rows as moe_validation_rows
from wsim.gpu.rows import VALIDATION

# | System | #-GPUs | Precision | GBS | MBS | Sequence Length | FSDP | TP | PP | CP | VP | EP |
# Tokens / sec / GPU | Model TFLOP / sec / GPU |
ARCHIVE = {
    "26.04.01-70b-fp8-gb200-64":
        "| DGX-GB200 | 64 | FP8 | 256 | 2 | 8192 | 64 | 1 | 1 | 1 | n/a | n/a | 4224 | 1892 |",
    "26.04.01-70b-mxfp8-gb200-64":
        "| DGX-GB200 | 64 | MXFP8 | 256 | 1 | 8192 | 0 | 2 | 4 | 1 | 5 | n/a | 3712 | 1664 |",
    "26.04.01-70b-fp8-h100-64":
        "| DGX-H100 | 64 | FP8 | 256 | 1 | 8192 | 0 | 4 | 8 | 1 | 5 | n/a | 1664 | 731 |",
    "26.04.01-405b-fp8-gb200-256":
        "| DGX-GB200 | 256 | FP8 | 1536 | 1 | 8192 | 0 | 4 | 16 | 1 | 4 | n/a | 864 | 2144 |",
    "26.04.01-405b-mxfp8-gb200-256":
        "| DGX-GB200 | 256 | MXFP8 | 1536 | 1 | 8192 | 0 | 4 | 16 | 1 | 8 | n/a | 800 | 1994 |",
    "26.04.01-405b-fp8-h100-1024":
        "| DGX-H100 | 1024 | FP8 | 1536 | 1 | 8192 | 0 | 8 | 8 | 2 | 8 | n/a | 328 | 827 |",
    "26.04.01-dsv3-mxfp8-gb200-256":
        "| DGX-GB200 | 256 | MXFP8 | 4096 | 1 | 4096 | 0 | 1 | 4 | 1 | 4 | 64 | 4256 | 1106 |",
    "26.04.01-dsv3-mxfp8-b200-256":
        "| DGX-B200 | 256 | MXFP8 | 4096 | 1 | 4096 | 0 | 1 | 8 | 1 | 2 | 32 | 3328 | 864 |",
    "26.04.01-q30-mxfp8-gb200-8":
        "| DGX-GB200 | 8 | MXFP8 | 512 | 4 | 4096 | 0 | 1 | 1 | 1 | n/a | 8 | 26112 | 599 |",
    "26.04.01-q30-mxfp8-b200-8":
        "| DGX-B200 | 8 | MXFP8 | 512 | 4 | 4096 | 0 | 1 | 1 | 1 | n/a | 8 | 27136 | 619 |",
    "26.04.01-q30-fp8-h100-16":
        "| DGX-H100 | 16 | FP8 | 1024 | 1 | 4096 | 0 | 1 | 1 | 1 | n/a | 16 | 8960 | 206 |",
    "26.04.01-q235-mxfp8-gb200-256":
        "| DGX-GB200 | 256 | MXFP8 | 8192 | 1 | 4096 | 0 | 1 | 8 | 1 | 3 | 32 | 5680 | 840 |",
    "26.04.01-q235-mxfp8-b200-256":
        "| DGX-B200 | 256 | MXFP8 | 8192 | 1 | 4096 | 0 | 1 | 8 | 1 | n/a | 8 | 3776 | 560 |",
    "26.04.01-q235-fp8-h100-256":
        "| DGX-H100 | 256 | FP8 | 8192 | 1 | 4096 | 0 | 2 | 8 | 1 | 4 | 32 | 1712 | 253 |",
}


def moe_rows():
    return _moe_rows(MODELS)


GPU = {"DGX-H100": "h100-80gb", "DGX-B200": "b200-180gb", "DGX-GB200": "gb200-nvl72"}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def _num(cell: str) -> int:
    return 1 if cell == "n/a" else int(cell)


def _all_rows():
    return {r.name: r for r in dense_rows() + moe_rows()}


def test_every_row_is_an_archive_line_and_every_kept_line_a_row():
    assert set(_all_rows()) == set(ARCHIVE)


@pytest.mark.parametrize("name", sorted(ARCHIVE))
def test_row_copies_its_archive_line(name):
    row = _all_rows()[name]
    system, gpus, prec, gbs, mbs, seq, fsdp, tp, pp, cp, vp, ep, tokens, _ = _cells(ARCHIVE[name])
    plan = row.plan
    assert row.gpu == GPU[system] and row.gpus == int(gpus) and row.batch == int(gbs)
    assert row.seq == int(seq) and row.published == float(tokens)
    assert prec.lower() in name and plan["precision"] == "fp8"  # MXFP8 timed as FP8 (notes)
    assert (prec == "MXFP8") == ("MXFP8 timed as FP8" in row.notes)
    assert (plan["micro_batch"], plan["tp"], plan["pp"], plan["cp"], plan["interleave"]) == \
        (int(mbs), int(tp), int(pp), int(cp), _num(vp))
    assert plan["zero"] == (3 if int(fsdp) else 1)
    assert plan.get("ep", 1) == _num(ep)
    assert row.role == VALIDATION


def test_moe_recipes_as_the_v042_presets_set_them():
    rows = {r.name: r.plan for r in moe_rows()}
    # flex wherever a preset names a flex backend (Qwen3-30B on H100 too: HybridEP runs on SM 9.x)
    assert {n for n, p in rows.items() if p["moe_dispatcher"] == "alltoall"} == \
        {"26.04.01-q235-mxfp8-b200-256", "26.04.01-q235-fp8-h100-256"}
    assert {n for n, p in rows.items() if p["moe_ep_overlap"]} == \
        {"26.04.01-dsv3-mxfp8-b200-256", "26.04.01-q235-fp8-h100-256"}
    assert rows["26.04.01-q30-mxfp8-gb200-8"]["moe_router_graphs"]
    assert not rows["26.04.01-q30-mxfp8-gb200-8"]["cuda_graphs"]  # scope moe_router, moe_preprocess
    assert rows["26.04.01-dsv3-mxfp8-b200-256"]["recompute_modules"] == ("mla_up_proj", "mlp")
    assert rows["26.04.01-q235-fp8-h100-256"]["tp_comm_overlap"] is False
    assert all("moe_capacity_factor" not in p for p in rows.values())  # token-dropless


def test_archive_model_flops_per_token_are_wsims_and_deepseek_adds_its_mtp_module():
    """The archive's Model TFLOP/s over tokens/s: wsim's model FLOPs a token with a causal attention
    core for Qwen3 (within 1.5%: the printed tokens/s are rounded, to multiples of 512 on the 8-GPU
    rows); DeepSeek-V3's are 4% above, the recipe's MTP module wsim leaves
    out (its 25.11 'w/o MTP' rows match: tests/gpu/test_gpu_moe.py)."""
    from wsim.gpu.flops import attention_core_fwd_flops_per_token, model_flops_per_step
    for name, line in ARCHIVE.items():
        row = _all_rows()[name]
        if row.group != "bridge26-moe":
            continue
        cells = _cells(line)
        m, s = row.model, row.seq
        causal = (model_flops_per_step(m, seq=s, batch=1) / s
                  - 3.0 * m.layers * attention_core_fwd_flops_per_token(m, s) / 2.0)
        ratio = float(cells[13]) * 1e12 / float(cells[12]) / causal
        if "dsv3" in name:
            assert 1.03 < ratio < 1.05, name
        else:
            assert ratio == pytest.approx(1.0, rel=0.015), name


def test_groups_are_registered_and_in_the_generated_tables():
    assert {r.name for r in dense_validation_rows() if r.group == "bridge26-dense"} == \
        {r.name for r in dense_rows()}
    assert {r.name for r in moe_validation_rows() if r.group == "bridge26-moe"} == \
        {r.name for r in moe_rows()}
    assert V.TOLERANCE["bridge26-dense"] == 0.15
    assert "| " + G.DENSE_NAMES["bridge26-dense"] + " | validation | 6 |" in G.dense()
    moe = G.moe()
    assert all(f"| bridge26-moe/{r.name} |" in moe for r in moe_rows())
