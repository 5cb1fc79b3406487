"""Shared by the reliability tests: one thread for torch, and a tally of generated inputs by outcome.

Property tests record each generated input's outcome with ``tally(property, outcome)``; the counts
are printed in pytest's terminal summary (no ``-s`` needed) and written to
``$WSIM_RELIABILITY_COUNTS`` when that variable names a file. Under pytest-xdist each worker sends
its counts to the controller (``workeroutput``), which prints the sum.
"""

import collections
import json
import os

import pytest

OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def tally(prop: str, outcome: str) -> None:
    OUTCOMES[prop][outcome] += 1


@pytest.fixture(scope="session")
def outcomes():
    return tally


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts to the controller
        workeroutput["wsim_outcomes"] = json.dumps({k: dict(v) for k, v in OUTCOMES.items()})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    counts = getattr(node, "workeroutput", {}).get("wsim_outcomes")
    for prop, by_outcome in json.loads(counts or "{}").items():
        OUTCOMES[prop].update(by_outcome)


def pytest_terminal_summary(terminalreporter):
    if not OUTCOMES:
        return
    tr = terminalreporter
    tr.section("generated inputs by outcome (tests/reliability)")
    total = collections.Counter()
    for prop in sorted(OUTCOMES):
        counts = OUTCOMES[prop]
        total.update(counts)
        tr.write_line(f"{prop:<34} {sum(counts.values()):>6}  " +
                      ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    tr.write_line(f"{'TOTAL':<34} {sum(total.values()):>6}  " +
                  ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
    path = os.environ.get("WSIM_RELIABILITY_COUNTS")
    if path:
        with open(path, "w") as fh:
            json.dump({k: dict(v) for k, v in OUTCOMES.items()}, fh, indent=1, sort_keys=True)
