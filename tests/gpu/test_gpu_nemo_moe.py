"""NeMo's 25.02 and 25.04 Mixtral rows (wsim.gpu.published_nemo_moe) are the page's, copied exactly.

PAGE holds the table lines as the NeMo Framework user guide's performance summary printed them
(docs.nvidia.com/nemo-framework/user-guide/latest/performance/performance_summary.html, container
25.02 on DGX-B200, container 25.04 on DGX-GB200; the 25.04 Mixtral-8x22B line's Model TFLOP/s cell
is cut in the stored copy after "10", so it is left off), keyed by the row each one becomes: every
printed column the row uses is compared with the row, so neither side can drift alone.
"""

import pytest

from experiments import gpu_doc_tables as G
from wsim.gpu import validation as V
from wsim.gpu.flops import attention_core_fwd_flops_per_token, model_flops_per_step
from wsim.gpu.published_moe import validation_rows as moe_validation_rows
from wsim.gpu.published_nemo_moe import PRINTED, rows
from wsim.gpu.rows import VALIDATION

# 25.02: | Model | #-GPUs | GBS | MBS | Sequence Length | TP | PP | CP | VP | EP | GA |
#          Tokens / sec / GPU | Model TFLOP / sec / GPU |
# 25.04: the same with FSDP after Sequence Length
PAGE = {
    "25.02-mixtral-8x7b-fp8-b200-64":
        "Mixtral-8x7B | 64 | 256 | 2 | 4096 | 1 | 1 | 1 | 1 | 8 | 2 | 15457 | 1282",
    "25.02-mixtral-8x22b-fp8-b200-256":
        "Mixtral-8x22B | 256 | 1 | 64 | 65536 | 2 | 4 | 8 | 14 | 8 | 16 | 2232 | 824",
    "25.04-mixtral-8x7b-fp8-gb200-64":
        "Mixtral-8x7B | 64 | 256 | 2 | 4096 | 0 | 1 | 1 | 1 | 1 | 8 | 2 | 19275 | 1598",
    "25.04-mixtral-8x22b-fp8-gb200-256":
        "Mixtral-8x22B | 256 | 1 | 64 | 65536 | 0 | 2 | 4 | 8 | 14 | 8 | 16 | 2731",
}
GPU = {"b200": "b200-180gb", "gb200": "gb200-nvl72"}


def _cells(name: str, line: str) -> dict:
    c = [x.strip() for x in line.split("|")]
    if name.startswith("25.04"):  # FSDP after the sequence length
        assert c.pop(5) == "0"  # FSDP 0: DDP, as the rows' distributed optimizer
    keys = ("model", "gpus", "gbs", "mbs", "seq", "tp", "pp", "cp", "vp", "ep", "ga", "tokens", "tflops")
    return dict(zip(keys, c))


def _rows():
    return {r.name: r for r in rows()}


def test_every_row_is_a_page_line_and_every_line_a_row():
    assert set(_rows()) == set(PAGE) == set(PRINTED)
    assert all(PRINTED[n][2] == line for n, line in PAGE.items())


@pytest.mark.parametrize("name", sorted(PAGE))
def test_row_copies_its_page_line(name):
    row, c = _rows()[name], _cells(name, PAGE[name])
    plan = row.plan
    assert c["model"].lower() in "mixtral-" + name.split("-mixtral-")[1]
    assert row.model.name == c["model"].lower()
    assert row.gpu == GPU[name.split("-")[-2]] and row.gpus == int(c["gpus"])
    assert row.seq == int(c["seq"]) and row.published == float(c["tokens"])
    assert (plan["tp"], plan["pp"], plan["cp"], plan["interleave"], plan["ep"]) == \
        (int(c["tp"]), int(c["pp"]), int(c["cp"]), int(c["vp"]), int(c["ep"]))
    gbs, mbs = int(c["gbs"]), int(c["mbs"])
    if name.split("-")[2] == "8x22b":  # printed '1 | 64' under 'GBS | MBS': GBS 64, MBS 1
        gbs, mbs = mbs, gbs
        assert "GBS 64, MBS 1" in row.notes
    assert (row.batch, plan["micro_batch"]) == (gbs, mbs)
    dp = row.gpus // (plan["tp"] * plan["pp"] * plan["cp"])
    assert row.batch // (dp * mbs) == int(c["ga"])  # the printed GA agrees with the reading
    assert plan["precision"] == "fp8" and row.role == VALIDATION and row.group == "nemo-moe"


def test_recipes_as_the_release_tags_set_them():
    rows_ = _rows()
    for name, r in rows_.items():
        p = r.plan
        assert p["moe_dispatcher"] == "alltoall" and not p["moe_ep_overlap"]
        assert p["moe_capacity_factor"] == 1.0 and p["moe_pad_to_capacity"]  # MegatronTokenDropCallback
        assert p["recompute"] == "none" and p["zero"] == 1
        # ETP: the 25.02 B200 CSV line's 1; else not stated, Megatron-Core's default (TP)
        assert p["etp"] == (1 if name == "25.02-mixtral-8x22b-fp8-b200-256" else p["tp"])
        assert p["cuda_graphs"] == ("8x7b" in name)  # B200 8x7B (25.02 script), GB200 8x7B (csv)
        if p["tp"] > 1:
            assert p["tp_comm_overlap"] is False and p["sequence_parallel"]


def test_printed_model_flops_per_token_are_wsims():
    """Model TFLOP/s over tokens/s: wsim's FLOPs a token at the printed sequence (8x7B at 4,096 with
    a full attention core, 8x22B at 65,536 with a causal one: the page counts them so), within 0.5%:
    the model shapes and the 8x22B's sequence of 65,536 are the runs'."""
    for name, line in PAGE.items():
        c = _cells(name, line)
        if "tflops" not in c:
            continue
        m, s = _rows()[name].model, int(c["seq"])
        full = model_flops_per_step(m, seq=s, batch=1) / s
        causal = full - 3.0 * m.layers * attention_core_fwd_flops_per_token(m, s) / 2.0
        per_token = float(c["tflops"]) * 1e12 / float(c["tokens"])
        assert per_token == pytest.approx(causal if "8x22b" in name else full, rel=0.005), name


def test_group_is_registered_and_in_the_generated_table():
    assert {r.name for r in moe_validation_rows() if r.group == "nemo-moe"} == set(PAGE)
    moe = G.moe()
    assert all(f"| nemo-moe/{n} |" in moe for n in PAGE)
    assert "| " + G.MOE_NAMES["nemo-moe"] + " | 4 |" in moe
    assert "TP2 PP4 CP8 VP14 EP8 ETP1, 1, 64" in moe and "TP2 PP4 CP8 VP14 EP8 ETP2, 1, 64" in moe


def test_predictions_as_reported(capsys):
    preds = {p.row.name: p for p in V.current_moe() if p.row.group == "nemo-moe"}
    with capsys.disabled():
        print("\nnemo-moe:\n" + "\n".join(f"{n:36} {p.row.published:8.0f} {p.predicted:8.0f} "
                                          f"{100 * p.error:+6.1f}%" for n, p in preds.items()))
    assert all(p.report.fits for p in preds.values())
    # compute-bound: the step is the blocks' compute, not the all-to-all or the pipeline bubble
    for p in preds.values():
        b = p.report.breakdown_s
        assert b["compute_s"] > 0.85 * p.report.step_time_s
