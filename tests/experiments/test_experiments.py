"""Each experiment script runs alone, writes its CSV and PNG, reads its numbers back from the CSV,
and gives the same CSV twice (issue 5: "same inputs, same CSV")."""

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import main as main_job
from experiments.common import read_csv, write_csv

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
# script -> files its quick mode must write
OUTPUTS = {
    "wafer_validation": ["wafer_validation.csv", "wafer_loo.csv", "wafer_fit.csv", "wafer_batch_curve.csv",
                         "wafer_validation.png"],
    "cs3_llama": ["cs3_mechanisms.csv", "cs3_batch_sweep.csv", "cs3_batch_curve.csv", "cs3_batch_curve.png"],
    "cluster_scaling": ["cluster_scaling.csv", "cluster_scaling_strong.png", "cluster_scaling_weak.png"],
    "model_scaling": ["model_scaling.csv", "model_scaling.png"],
    "training_budget": ["training_budget.csv", "training_budget.png"],
    "gpu_comparison": ["gpu_comparison.csv", "gpu_comparison_curves.csv", "gpu_seed_points.csv",
                       "gpu_comparison.png"],
    "gpu_validation": ["gpu_validation.csv", "gpu_validation_groups.csv", "gpu_validation_alternatives.csv",
                       "gpu_validation.png"],
    "sensitivity": ["sensitivity.csv", "sensitivity.png"],
    "equivalence": ["equivalence_losses.csv", "equivalence_params.csv", "equivalence.png"],
    "inference": ["inference.csv", "inference.png"],
    "sweep_demo": ["sweep.csv", "sweep_resume.csv", "sweep.png"],
    "sparsity": ["sparsity.csv", "sparsity.png"],
    "energy": ["energy.csv", "energy.png"],
    "moe_scaling": ["moe_scaling.csv", "moe_time_to_train.csv", "moe_scaling.png", "moe_gpu.csv",
                    "moe_gpu_vs_cs.csv", "moe_gpu_vs_cs.png"],
}


def test_every_script_is_listed_in_the_main_job():
    assert list(OUTPUTS) == main_job.SCRIPTS


@pytest.mark.parametrize("name", main_job.SCRIPTS + ["main"])
def test_help_runs_alone(name):
    r = subprocess.run([sys.executable, "-m", f"experiments.{name}", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: python -m experiments.{name}")


def _module(name):
    import importlib

    return importlib.import_module(f"experiments.{name}")


def _check_outputs(name, out: Path):
    for f in OUTPUTS[name]:
        path = out / f
        assert path.is_file() and path.stat().st_size > 0, f
        if f.endswith(".png"):
            assert path.read_bytes()[:8] == PNG
        else:
            assert read_csv(path), f"{f} has no rows"
    section = _module(name).reading(out)
    assert section.startswith("## ")
    for f in OUTPUTS[name]:
        if f.endswith(".png") or f == OUTPUTS[name][0]:
            assert f"({f})" in section, f"the reading does not link {f}"


@pytest.mark.parametrize("name", [n for n in main_job.SCRIPTS if n != "equivalence"])
def test_quick_mode_writes_csv_png_and_reading(name, tmp_path):
    paths = _module(name).main(["--out", str(tmp_path), "--quick"])
    assert all(Path(p).exists() for p in paths)
    _check_outputs(name, tmp_path)


def test_equivalence_quick_is_within_design_tolerance(tmp_path):
    from experiments import equivalence

    equivalence.main(["--out", str(tmp_path), "--quick"])
    _check_outputs("equivalence", tmp_path)
    losses = read_csv(tmp_path / "equivalence_losses.csv")
    params = read_csv(tmp_path / "equivalence_params.csv")
    assert max(r["relative_difference"] for r in losses) <= equivalence.LOSS_TOL
    assert max(p["relative_difference"] for p in params) <= equivalence.PARAM_TOL
    assert "within docs/design.md" in equivalence.reading(tmp_path)


@pytest.mark.parametrize("name", ["cluster_scaling", "training_budget", "sweep_demo"])
def test_same_inputs_same_csv(name, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _module(name).main(["--out", str(a), "--quick"])
    _module(name).main(["--out", str(b), "--quick"])
    for f in OUTPUTS[name]:
        if f.endswith(".csv"):
            assert filecmp.cmp(a / f, b / f, shallow=False), f"{f} differs between two runs"


def test_reading_takes_its_numbers_from_the_csv(tmp_path):
    """Change a number in the CSV: the report changes with it (nothing is typed in)."""
    from experiments import training_budget

    training_budget.main(["--out", str(tmp_path), "--quick"])
    rows = read_csv(tmp_path / "training_budget.csv")
    rows[0]["flops_ratio"] = 0.123
    write_csv(tmp_path / "training_budget.csv", rows, training_budget.COLUMNS)
    assert "0.12" in training_budget.reading(tmp_path)


def test_cluster_scaling_knee_and_reason():
    from experiments.cluster_scaling import knee, why

    rows = [{"systems": n, "efficiency": e} for n, e in ((1, 1.0), (2, 0.95), (4, 0.85), (8, 0.5))]
    assert knee(rows)["systems"] == 4
    assert knee(rows[:2]) is None
    bound = {"tokens_per_micro_batch": 8192, "balance_tokens_per_system": 20000.0,
             "compute_fraction": 0.5, "bubble_fraction": 0.01}
    assert why(bound).startswith("weight-stream bound")
    assert why(bound | {"tokens_per_micro_batch": 40960}).startswith("fixed per-step cost")


@pytest.mark.slow
def test_main_job_quick_writes_a_report_linking_every_file(tmp_path):
    path = Path(main_job.main(["--out", str(tmp_path), "--quick"]))
    text = path.read_text()
    for name, files in OUTPUTS.items():
        for f in files:
            assert (tmp_path / f).exists()
            if f.endswith(".png"):
                assert f"({f})" in text
    assert text.count("## ") >= len(OUTPUTS)


def test_moe_gpu_rows_are_the_estimate_of_their_plan_and_fit(tmp_path):
    """The MoE study's GPU rows (quick: Mixtral 8x7B on 64 H100): each plan, read back from the CSV and
    run through ``wsim.gpu.estimate`` alone, fits in the GPU's memory and gives the row's tokens/s, its
    bound and its regime; the fastest plan is at least as fast as the fastest validated one; the CS side
    of each match is the closed form's faster batching on the stated count, and the peak match holds."""
    from experiments import moe_gpu, moe_scaling
    from wsim.cluster import generations
    from wsim.gpu import estimate, gpu_spec

    moe_scaling.main(["--out", str(tmp_path), "--quick"])
    gpu = read_csv(tmp_path / "moe_gpu.csv")
    assert list(gpu[0]) == moe_gpu.COLUMNS
    assert {r["source"] for r in gpu} == {"search", "search (validated regime)"}
    for r in gpu:
        plan = {k: r[k] for k in moe_gpu.PLAN_KEYS + moe_gpu.KNOBS if k != "dp"}
        rep = estimate(moe_scaling.train_model(r["model"]), seq=moe_gpu.SEQ, batch=r["batch_seqs"],
                       gpus=r["gpus"], gpu=r["gpu"], attention=moe_gpu.ATTENTION, precision=r["precision"],
                       **plan)
        assert rep.fits and rep.plan.dp == r["dp"]
        assert rep.memory.total_bytes <= rep.memory.capacity_bytes <= gpu_spec(r["gpu"]).hbm_bytes
        assert rep.memory.total_bytes / 2**30 == pytest.approx(r["memory_per_gpu_gib"], rel=1e-5)
        assert rep.tokens_per_s == pytest.approx(r["tokens_per_s"], rel=1e-5)  # the CSV keeps 6 digits
        assert rep.tokens_per_s * r["days_per_1e12_tokens"] * 86400 == pytest.approx(1e12, rel=1e-5)
        assert r["bound"] + "_s" == max(rep.breakdown_s, key=rep.breakdown_s.get)
        assert r["regime"] == ("validated" if rep.validated else rep.regime["status"])
    fastest, valid = (next(r for r in gpu if r["source"] == s) for s in ("search", "search (validated regime)"))
    assert valid["regime"] == "validated" and fastest["tokens_per_s"] >= valid["tokens_per_s"]
    match = read_csv(tmp_path / "moe_gpu_vs_cs.csv")
    assert {(m["match"], m["cs"]) for m in match} == {(k, c) for k in ("device count", "peak FLOPs")
                                                      for c in ("cs2", "cs3")}
    for m in match:
        per = generations.preset(m["cs"], 1).cs2.peak_flops_per_s
        g = next(r for r in gpu if r["source"] == m["source"])
        if m["match"] == "device count":
            assert m["cs_systems"] == m["gpus"]
        else:
            assert abs(m["cs_systems"] * per - g["peak_pflops"] * 1e15) <= per / 2
        cs = moe_scaling.best_cs_point(m["model"], m["cs"], m["cs_systems"])
        assert cs["days_per_1e12_tokens"] == pytest.approx(m["cs_days"], rel=1e-5)
        assert m["faster"] == ("GPU" if m["gpu_days"] < m["cs_days"] else "CS")
    text = moe_scaling.reading(tmp_path)
    assert "### GPU against CS" in text and "What BTA buys" in text


def test_main_rejects_unknown_scripts(capsys):
    with pytest.raises(SystemExit) as exc:
        main_job.main(["--only", "nope"])
    assert exc.value.code == 2
