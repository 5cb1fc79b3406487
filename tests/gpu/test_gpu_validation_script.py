"""``python -m experiments.gpu_validation``: writes its CSVs and plot, reads its numbers back."""

from pathlib import Path

from experiments import gpu_validation
from experiments.common import read_csv


def test_quick_run_writes_csv_png_and_reading(tmp_path):
    paths = gpu_validation.main(["--quick", "--out", str(tmp_path)])
    names = {Path(p).name for p in paths}
    assert names == {"gpu_validation.csv", "gpu_validation_groups.csv",
                     "gpu_validation_alternatives.csv", "gpu_validation_moe.csv", "gpu_validation.png"}
    moe = read_csv(tmp_path / "gpu_validation_moe.csv")
    assert {r["group"] for r in moe} == {"mcore-moe", "bridge-moe", "deepseek-v3", "bridge26-moe",
                                            "nemo-moe"}
    assert all(int(r["ep"]) > 1 for r in moe)
    assert (tmp_path / "gpu_validation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_csv(tmp_path / "gpu_validation.csv")
    assert {r["role"] for r in rows} == {"development", "validation"}
    assert all(r["source"] for r in rows)
    section = gpu_validation.reading(tmp_path)
    assert section.startswith("## ") and "(gpu_validation.png)" in section
    assert "sc21-zero3" in section
