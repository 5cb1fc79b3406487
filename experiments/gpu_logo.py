"""Leave-one-group-out errors of the dense GPU model, computed and stored rather than typed.

For each development group, ``wsim.gpu.validation.leave_one_group_out`` refits the global parameters
without it and predicts its rows. The refit takes about 35 s (ten groups, each a full fit;
measured on this 2-core machine), too slow for every fast test run, so the result is stored in ``docs/data/gpu_logo.json`` together with a
fingerprint of what it was computed against: the shipped parameters' predictions of every
development row. ``experiments.gpu_doc_tables`` prints the stored figures into docs/gpu-model.md and
its ``--check`` fails when the fingerprint no longer matches the code (a prediction moved, so the
stored refit is stale); the slow test ``tests/gpu/test_gpu_published.py::test_leave_one_group_out``
recomputes the refit and compares it with the stored figures.

    python -m experiments.gpu_logo --write     # recompute (about 35 s; prints each group as it ends)
    python -m experiments.gpu_logo --check     # exit 1 if the stored file is stale (under a second)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "docs" / "data" / "gpu_logo.json"
SWEEPS = 2  # coordinate-descent sweeps per refit (validation.fit), as the slow test has always used
DIGITS = 4  # errors stored to 0.01 percentage point: platform float noise stays below it


def fingerprint() -> str:
    """sha256 of the shipped model's development-row predictions, rounded to 1e-9 relative."""
    from wsim.gpu import validation as V

    dev = [p for p in V.current() if p.row.role == V.DEVELOPMENT]
    key = [(p.row.group, p.row.name, f"{p.predicted:.9e}") for p in dev]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def compute(sweeps: int = SWEEPS, progress=None) -> dict:
    """{"sweeps", "fingerprint", "groups": {group: {"rows", "mean_abs_error", "worst_error", "values"}}}"""
    from wsim.gpu import validation as V

    groups = {}
    t0 = time.perf_counter()
    for group, d in V.leave_one_group_out(sweeps=sweeps, progress=progress).items():
        errs = [p.error for p in d["predictions"]]
        groups[group] = {"rows": len(errs),
                         "mean_abs_error": round(sum(map(abs, errs)) / len(errs), DIGITS),
                         "worst_error": round(max(errs, key=abs), DIGITS),
                         "values": {k: round(v, DIGITS) for k, v in d["values"].items()}}
    return {"sweeps": sweeps, "fingerprint": fingerprint(), "seconds": round(time.perf_counter() - t0, 1),
            "groups": groups}


def load(path: Path | None = None) -> dict:
    path = DATA if path is None else path
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path} is missing: run python -m experiments.gpu_logo --write") from None


def stale(stored: dict) -> str | None:
    """Why the stored refit no longer describes the code, or None."""
    if stored.get("fingerprint") != fingerprint():
        return ("the development rows' predictions changed since the leave-one-group-out refit was stored: "
                "run python -m experiments.gpu_logo --write (about 35 s)")
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.gpu_logo", description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help=f"recompute and write {DATA.name} (about 35 s)")
    g.add_argument("--check", action="store_true", help=f"exit 1 if {DATA.name} is stale")
    args = p.parse_args(argv)
    if args.check:
        why = stale(load())
        if why:
            print(f"{DATA.name}: {why}", file=sys.stderr)
        return 1 if why else 0

    def progress(i, n, group, seconds):
        print(f"[{i}/{n}] {group}: refit without it in {seconds:.0f} s", file=sys.stderr, flush=True)

    out = compute(progress=progress)
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    for group, d in out["groups"].items():
        print(f"{group:12} worst {100 * d['worst_error']:+6.1f}%  mean {100 * d['mean_abs_error']:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
