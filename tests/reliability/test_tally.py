"""The tally of generated inputs (tests/conftest.py) counts what it claims: a distinct input is a
digest every process computes alike (xdist workers send theirs to the controller, which unions
them), and a record without an example adds to no distinct count."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('c', 'tests/conftest.py'); "
         "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
         "m.tally('p', 'exit 0', ['simulate', '--systems', '4', ('x', 1.5)]); print(sorted(m.DISTINCT['p']))")


def test_the_digest_of_an_example_is_the_same_in_every_process(outcomes):
    """Two processes with different string-hash salts (as two xdist workers have) must agree."""
    seen = {subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=ROOT, check=True,
                           env=dict(os.environ, PYTHONHASHSEED=seed)).stdout.strip() for seed in ("1", "2")}
    outcomes("tally self-test: digest", "exit 0", ["simulate", "--systems", "4", ("x", 1.5)])
    assert seen == {str(sorted(outcomes.distinct["tally self-test: digest"]))}, seen


def test_a_record_without_an_example_counts_in_no_distinct_figure(outcomes):
    prop = "tally self-test"
    outcomes(prop, "held")
    outcomes(prop, "held")
    assert outcomes.counts[prop]["held"] >= 2 and not outcomes.distinct.get(prop)
    outcomes(prop, "ran", (1, 2))
    outcomes(prop, "ran", (1, 2))
    assert len(outcomes.distinct[prop]) == 1
