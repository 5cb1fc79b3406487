"""``wsim sweep`` through ``wsim.commands.cli.main``: JSON, resume, plot, Dask, exit 2 with one line."""

import json

import pytest

from wsim.commands.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_resume_and_plot(capsys, tmp_path):
    out = tmp_path / "s.csv"
    argv = ["sweep", "--models", "cerebras-gpt-111m", "--systems", "1,2,3", "--batch", "6",
            "--out", str(out), "--plot", str(tmp_path / "s.png"), "--json"]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    d = json.loads(stdout)
    assert {"rows", "computed", "reused", "out", "executor", "counts"} <= d.keys()
    assert d["computed"] == 3 and d["counts"] == {"ok": 3, "invalid": 0, "failed": 0}
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert "sweep" in err  # progress bar and log on stderr
    code, stdout, _ = run(capsys, *argv)
    assert json.loads(stdout)["computed"] == 0 and json.loads(stdout)["reused"] == 3


def test_gpu_kind_and_jobs(capsys, tmp_path):
    code, stdout, err = run(capsys, "sweep", "--kind", "gpu", "--models", "cerebras-gpt-111m",
                            "--gpus", "8,16", "--gpu", "a100-80gb,h100-80gb", "--batch", "120",
                            "--jobs", "2", "--out", str(tmp_path / "g.json"), "--quiet", "--json")
    assert code == 0, err
    rows = json.loads(stdout)["rows"]
    assert [(r["gpus"], r["gpu"]) for r in rows] == [(8, "a100-80gb"), (8, "h100-80gb"),
                                                     (16, "a100-80gb"), (16, "h100-80gb")]
    assert len(json.loads((tmp_path / "g.json").read_text())) == 4


def test_human_output_names_invalid_points(capsys, tmp_path):
    code, stdout, err = run(capsys, "sweep", "--models", "cerebras-gpt-111m", "--systems", "4",
                            "--batch", "6,8", "--out", str(tmp_path / "s.csv"), "--quiet")
    assert code == 0 and "invalid" in stdout and "divisible" in stdout, err


def test_a_sweep_with_no_valid_point_is_bad_input(capsys, tmp_path):
    code, stdout, err = run(capsys, "sweep", "--models", "cerebras-gpt-111m", "--systems", "4",
                            "--batch", "6", "--out", str(tmp_path / "s.csv"), "--quiet")
    # every point invalid: one line naming the first point's problem, exit 2, nothing on stdout;
    # the rows stay in the --out file
    assert code == 2 and stdout == "" and err.count("\n") == 1, (stdout, err)
    assert "none of the 1 sweep points is valid" in err and "divisible" in err, err
    assert (tmp_path / "s.csv").read_text().count("invalid") == 1


def test_a_sweep_with_one_valid_point_exits_0(capsys, tmp_path):
    code, stdout, err = run(capsys, "sweep", "--models", "cerebras-gpt-111m", "--systems", "4",
                            "--batch", "6,8", "--out", str(tmp_path / "s.csv"), "--quiet")
    assert code == 0 and "1 ok, 1 invalid" in stdout, err


def test_a_failed_point_exits_1():
    from wsim.commands.sweep import exit_status

    rows = [{"key": "a", "status": "ok"}, {"key": "b", "status": "failed", "error": "RuntimeError: x"}]
    code, message = exit_status({"counts": {"ok": 1, "invalid": 0, "failed": 1}, "rows": rows})
    assert code == 1 and message == "1 of 2 sweep points failed (first: b: RuntimeError: x)"


def test_scheduler_runs_on_a_dask_cluster(capsys, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        code, stdout, err = run(capsys, "sweep", "--models", "cerebras-gpt-111m", "--systems", "1,2",
                                "--out", str(tmp_path / "s.csv"), "--scheduler",
                                cluster.scheduler_address, "--quiet", "--json")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["executor"].startswith("dask") and d["counts"]["ok"] == 2


@pytest.mark.parametrize("argv,needle", [
    (["--models", "nope", "--systems", "1"], "unknown model"),
    (["--models", "cerebras-gpt-111m"], "--systems is required"),
    (["--models", "cerebras-gpt-111m", "--systems", "1,x"], "positive integers"),
    (["--models", "cerebras-gpt-111m", "--systems", "0"], "positive integers"),
    (["--models", "cerebras-gpt-111m", "--gpus", "8"], "not --gpus"),
    (["--kind", "gpu", "--models", "cerebras-gpt-111m", "--systems", "8"], "not --systems"),
    (["--kind", "gpu", "--models", "cerebras-gpt-111m", "--gpus", "8", "--gpu", "tpu"], "unknown GPU"),
    (["--models", "cerebras-gpt-111m", "--systems", "1", "--out", "x.txt"], ".csv or .json"),
    (["--models", "cerebras-gpt-111m", "--systems", "1", "--jobs", "0"], "--jobs"),
    (["--models", "cerebras-gpt-111m", "--systems", "1", "--cluster", "nowhere"], "preset"),
    (["--models", "cerebras-gpt-111m", "--systems", "1", "--batch", "2", "--seqs-per-system", "2"],
     "not allowed with"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, needle):
    code, out, err = run(capsys, "sweep", *argv, "--json", "--quiet")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err, err
