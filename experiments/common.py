"""What every experiment script shares: its command line, CSV in and out, progress, the model list.

Each script ``experiments/NAME.py`` answers one question: ``main(argv)`` writes CSV + PNG under
``--out`` (default ``results/``) and returns their paths; ``reading(out_dir)`` reads its CSVs back
and returns the report section (every number in it comes from the CSV, none is typed in).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from models import zoo
from wsim.studies.sweep import parse_cell

RESULTS = Path("results")
# The seven Cerebras-GPT models in size order (docs/sources.md table; Dey et al. 2023).
CGPT = list(zoo.CEREBRAS_GPT)
QUICK_CGPT = ["cerebras-gpt-111m", "cerebras-gpt-1.3b"]


def parser(prog: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m experiments.{prog}",
                                description=doc.strip().splitlines()[0],
                                epilog="Writes CSV and PNG under --out; same inputs give the same CSV.")
    p.add_argument("--out", default=str(RESULTS), help="output folder (default results/)")
    p.add_argument("--quick", action="store_true",
                   help="a small grid (two models, few points): for tests and a first look")
    return p


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def progress(items, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


def _fmt(v, digits):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if digits is None else f"{v:.{digits}g}"
    return v


def write_csv(path: str | Path, rows: list[dict], columns: list[str] | None = None,
              digits: int | None = 6) -> str:
    """Rows to CSV, floats to ``digits`` significant digits (default 6: what the figures can show;
    None: every digit). Same rows, same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or list(rows[0])
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k), digits) for k in columns})
    return str(path)


def read_csv(path: str | Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return [{k: parse_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]


class Timer:
    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.t0 = time.perf_counter()
        log(f"[{self.name}] start")
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        log(f"[{self.name}] done in {self.seconds:.1f} s")


def days(seconds: float) -> float:
    return seconds / 86400.0


def fmt_n(x: float) -> str:
    """3 significant digits, thousands separated for big integers."""
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def params_str(p: float) -> str:
    """111M, 1.32B, 1.01T."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if p >= scale:
            return f"{p / scale:.3g}{unit}"
    return f"{p:.3g}"


BOUNDS = {"cs2_compute": "compute", "weight_stream": "weight-stream", "gradient_stream": "gradient-stream",
          "memoryx_optimizer": "MemoryX-optimizer"}


def bound(bottleneck: str) -> str:
    """'compute-bound', 'weight-stream-bound', ... from a report's ``bottleneck`` key."""
    return f"{BOUNDS.get(bottleneck, bottleneck)}-bound"
