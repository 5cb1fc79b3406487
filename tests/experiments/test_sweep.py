"""``wsim.studies.sweep.run_grid``: rows in grid order, resumable, the same in processes and on Dask."""

import json

import pytest

from wsim.errors import ConfigError
from wsim.studies.sweep import Point, grid, read_rows, run_grid

SMALL = dict(models=["cerebras-gpt-111m"], systems=[1, 2, 3], batch=[6])


def _grid():
    return grid(**SMALL) + grid(["cerebras-gpt-111m"], [8], kind="gpu", batch=[8],
                                gpu=["a100-80gb", "h100-80gb"])


def test_grid_order_and_keys():
    pts = grid(["cerebras-gpt-111m", "cerebras-gpt-1.3b"], [1, 4], seqs_per_system=[2, 8])
    assert [(p.model[-4:], p.systems, p.batch) for p in pts[:4]] == [
        ("111m", 1, 2), ("111m", 1, 8), ("111m", 4, 8), ("111m", 4, 32)]
    assert len({p.key for p in pts}) == len(pts)
    with pytest.raises(ConfigError):
        grid(["cerebras-gpt-111m"], [1])  # neither batch nor seqs_per_system
    with pytest.raises(ConfigError):
        Point("nope", "cerebras-gpt-111m", 1, 1)


def test_rows_valid_and_invalid(tmp_path):
    res = run_grid(_grid(), out=tmp_path / "s.csv", progress=False)
    status = [r["status"] for r in res.rows]
    assert status == ["ok", "ok", "ok", "ok", "ok"]
    bad = run_grid(grid(["cerebras-gpt-111m"], [4], batch=[6]), progress=False).rows[0]
    assert bad["status"] == "invalid" and "divisible" in bad["error"]
    gpu = res.rows[-1]
    assert gpu["kind"] == "gpu" and gpu["gpus"] == 8 and gpu["tp"] * gpu["cp"] * gpu["pp"] * gpu["dp"] == 8


def test_resume_recomputes_only_missing_and_failed_rows(tmp_path):
    out = tmp_path / "s.csv"
    first = run_grid(_grid(), out=out, progress=False)
    assert (first.computed, first.reused) == (5, 0)
    again = run_grid(_grid(), out=out, progress=False)
    assert (again.computed, again.reused) == (0, 5)
    assert [r["key"] for r in again.rows] == [r["key"] for r in first.rows]
    # drop one finished row and mark another failed: exactly those two run again
    rows = read_rows(out)
    rows[1]["status"] = "failed"
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:1] + lines[1:3] + lines[4:]) + "\n")  # drop row 3
    from wsim.studies.sweep import write_rows

    kept = read_rows(out)
    kept[1]["status"] = "failed"
    write_rows(out, kept)
    third = run_grid(_grid(), out=out, progress=False)
    assert (third.computed, third.reused) == (2, 3)
    assert [r["step_time_s"] for r in third.rows] == pytest.approx([r["step_time_s"] for r in first.rows])


def test_file_is_the_same_whatever_the_order_of_completion(tmp_path):
    serial = run_grid(_grid(), out=tmp_path / "a.csv", progress=False)
    parallel = run_grid(_grid(), out=tmp_path / "b.csv", jobs=2, progress=False)
    assert parallel.executor.startswith("processes")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert serial.rows == read_rows(tmp_path / "a.csv")


def test_json_output_resumes_too(tmp_path):
    out = tmp_path / "s.json"
    run_grid(_grid(), out=out, progress=False)
    rows = json.loads(out.read_text())
    assert len(rows) == 5 and rows[0]["status"] == "ok"
    assert run_grid(_grid(), out=out, progress=False).computed == 0


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="csv or .json"):
        run_grid(_grid(), out=tmp_path / "s.txt", progress=False)
    with pytest.raises(ConfigError, match="duplicate"):
        run_grid(_grid() * 2, progress=False)
    with pytest.raises(ConfigError, match="jobs"):
        run_grid(_grid(), jobs=0, progress=False)


def test_dask_local_cluster_gives_the_same_rows(tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = run_grid(_grid(), out=tmp_path / "a.csv", progress=False)
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        res = run_grid(_grid(), out=tmp_path / "b.csv", scheduler=cluster.scheduler_address,
                       progress=False)
        assert res.executor.startswith("dask") and res.computed == 5
        # resumable on the cluster too
        assert run_grid(_grid(), out=tmp_path / "b.csv", scheduler=cluster.scheduler_address,
                        progress=False).computed == 0
    assert res.rows == serial.rows
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
