"""docs/gpu-model.md's generated tables are what the code gives now (experiments/gpu_doc_tables.py)."""

import json

from experiments import gpu_doc_tables as G


def test_gpu_model_doc_tables_are_current():
    # fast: the predictions take well under a second
    assert G.main(["--check"]) == 0, "run: python -m experiments.gpu_doc_tables --write"


def test_check_fails_on_a_changed_figure(tmp_path, monkeypatch, capsys):
    doc = tmp_path / "gpu-model.md"
    doc.write_text(G.DOC.read_text().replace("| SC21 Table 1 | development | 10 |",
                                             "| SC21 Table 1 | development | 11 |"))
    monkeypatch.setattr(G, "DOC", doc)
    assert G.main(["--check"]) == 1
    assert G.main(["--write"]) == 0 and G.main(["--check"]) == 0
    assert "| SC21 Table 1 | development | 10 |" in doc.read_text()


def test_every_group_has_a_printed_name_and_tolerance():
    from wsim.gpu import validation as V

    dense = {p.row.group for p in V.current()}
    assert dense == set(G.DENSE_NAMES) == set(V.TOLERANCE)
    assert {p.row.group for p in V.current_moe()} == set(G.MOE_NAMES)


def test_stored_leave_one_group_out_describes_the_shipped_model():
    # the refit itself is slow (tests/gpu/test_gpu_published.py::test_leave_one_group_out recomputes it);
    # here: the stored file was computed against today's development-row predictions
    from experiments import gpu_logo as L

    stored = L.load()
    assert L.stale(stored) is None, L.stale(stored)
    from wsim.gpu import validation as V
    assert set(stored["groups"]) == {p.row.group for p in V.current() if p.row.role == V.DEVELOPMENT}


def test_logo_check_fails_on_a_moved_prediction(tmp_path, monkeypatch, capsys):
    from experiments import gpu_logo as L

    stored = L.load()
    data = tmp_path / "gpu_logo.json"
    data.write_text(json.dumps(dict(stored, fingerprint="0" * 64)))
    monkeypatch.setattr(L, "DATA", data)
    assert L.main(["--check"]) == 1
    assert "gpu_logo --write" in capsys.readouterr().err
