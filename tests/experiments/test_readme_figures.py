"""The README's validation block is what the code gives now (experiments/readme_figures.py)."""

import pytest

from experiments import readme_figures


def test_readme_has_the_generated_block():
    text = readme_figures.README.read_text()
    block = readme_figures.current(text)
    assert block.count("\n- ") >= 4


@pytest.mark.slow
def test_readme_figures_are_current():
    assert readme_figures.main(["--check"]) == 0, "run: python -m experiments.readme_figures --write"
