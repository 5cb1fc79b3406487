"""Shared test setup: the dev extra must be installed; tiny models run on one torch thread; a
fixed-seed Hypothesis profile for CI; the reliability tests' tally of generated inputs by outcome.

On a 2-core machine with pytest-xdist workers, torch's intra-op threads only fight each other for
the cores (tiny models ran ~30x slower). Benchmarks keep torch's default threads, so that their
figures are what a user would see."""

import collections
import hashlib
import importlib.util
import json
import os

import pytest
from hypothesis import settings

# The dev extra (pyproject.toml) is what the test suite runs on: without it a test module would fail
# to import (transformers is the reference for every equivalence test). Refuse the whole run, loudly,
# rather than let a partial run pass. The `distributed` extra (Dask) stays optional: only the tests
# of `wsim sweep --backend dask` need it, and they skip with pytest's reason when it is absent.
DEV_EXTRA = ("transformers", "tokenizers", "hypothesis", "pytest_benchmark", "xdist", "safetensors")


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def pytest_configure(config):
    missing = [m for m in DEV_EXTRA if _missing(m)]
    if missing:
        raise pytest.UsageError(f"the test suite needs the dev extra: {', '.join(missing)} not installed; "
                                f"run `make setup` (pip install -e '.[dev]')")

# CI runs the property tests on a fixed seed (HYPOTHESIS_PROFILE=ci in .ci/run), so a failure there
# replays here with the same command; without it every run draws new examples.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _one_torch_thread(request):
    if request.node.get_closest_marker("benchmark"):
        yield
        return
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


# ---- a tally of generated inputs by outcome (tests/reliability) -----------------------------------
# Property tests record each input they actually ran, and its outcome, with
# ``tally(property, outcome, example)`` (the ``outcomes`` fixture): the counts are the examples
# Hypothesis drew and executed (not its ``max_examples``), and ``distinct`` counts different inputs
# among them (Hypothesis may draw the same input twice), by a digest of the example's repr that is
# the same in every process (sha256; Python's ``hash`` of a str is salted per process, so two xdist
# workers' hashes of one input would count twice). A record without an example counts in no
# distinct figure (the summary prints ``-`` when a property has none). ``tally.counts`` is the
# live table, which a property reads to assert its floor on the share of examples that ran
# (tests/reliability/test_input_validation.py, ``run_with_floor``). The counts are printed in
# pytest's terminal summary (no ``-s`` needed) and written to ``$WSIM_RELIABILITY_COUNTS`` when
# that variable names a file. Under pytest-xdist each
# worker sends its counts to the controller (``workeroutput``), which prints the sum. These hooks
# live here, not in tests/reliability/conftest.py: an xdist controller collects nothing, so it
# loads only this top-level conftest.
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
DISTINCT: dict[str, set] = collections.defaultdict(set)


def digest(example) -> str:
    """A digest of ``repr(example)`` that every process computes alike."""
    return hashlib.sha256(repr(example).encode()).hexdigest()[:16]


def tally(prop: str, outcome: str, example=None) -> None:
    OUTCOMES[prop][outcome] += 1
    if example is not None:
        DISTINCT[prop].add(digest(example))


tally.counts, tally.distinct, tally.digest = OUTCOMES, DISTINCT, digest
RAN = ("ran", "exit 0")  # the outcomes of an input that ran (Python API, CLI)


def ran_share(counts: collections.Counter) -> float:
    n = sum(counts.values())
    return sum(counts[k] for k in RAN) / n if n else 0.0


tally.ran_share = ran_share


@pytest.fixture(scope="session")
def outcomes():
    return tally


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts to the controller
        workeroutput["wsim_outcomes"] = json.dumps({k: dict(v) for k, v in OUTCOMES.items()})
        workeroutput["wsim_distinct"] = json.dumps({k: sorted(v) for k, v in DISTINCT.items()})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    counts = getattr(node, "workeroutput", {}).get("wsim_outcomes")
    for prop, by_outcome in json.loads(counts or "{}").items():
        OUTCOMES[prop].update(by_outcome)
    distinct = getattr(node, "workeroutput", {}).get("wsim_distinct")
    for prop, hashes in json.loads(distinct or "{}").items():
        DISTINCT[prop].update(hashes)


def pytest_terminal_summary(terminalreporter):
    if not OUTCOMES:
        return
    tr = terminalreporter
    tr.section("generated inputs by outcome (tests/reliability)")
    tr.write_line(f"{'property':<40} {'drawn':>6} {'distinct':>8} {'ran':>5}  outcomes")
    total = collections.Counter()
    for prop in sorted(OUTCOMES):
        counts = OUTCOMES[prop]
        total.update(counts)
        distinct = len(DISTINCT[prop]) if DISTINCT.get(prop) else "-"
        ran = f"{ran_share(counts):.0%}" if any(k in RAN or k.startswith(("exit", "ConfigError")) for k in counts) else "-"
        tr.write_line(f"{prop:<40} {sum(counts.values()):>6} {distinct:>8} {ran:>5}  " +
                      ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    tr.write_line(f"{'TOTAL':<40} {sum(total.values()):>6} {sum(len(v) for v in DISTINCT.values()):>8} "
                  f"{ran_share(total):>5.0%}  " +
                  ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
    path = os.environ.get("WSIM_RELIABILITY_COUNTS")
    if path:
        with open(path, "w") as fh:
            json.dump({k: dict(v) for k, v in OUTCOMES.items()}, fh, indent=1, sort_keys=True)
