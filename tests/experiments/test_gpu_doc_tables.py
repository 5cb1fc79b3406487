"""docs/gpu-model.md's generated tables are what the code gives now (experiments/gpu_doc_tables.py)."""

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
