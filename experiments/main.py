"""The main job (``make run``): every experiment, then ``results/report.md`` linking their CSV and PNG.

Runs each script's ``main`` in turn (progress on stderr), then asks each for its ``reading`` of
its own CSVs and writes the report. ``--quick`` runs the small grids (for tests); ``--only`` runs
a subset (the report then covers the sections whose CSVs exist).
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from experiments.common import RESULTS, log

# Question order of the scaling study (issue 5): one script each.
SCRIPTS = ["wafer_validation", "cs3_llama", "cluster_scaling", "model_scaling", "training_budget", "gpu_comparison",
           "gpu_validation", "sensitivity", "equivalence", "inference", "sweep_demo", "sparsity", "energy", "moe_scaling"]
# The CSV whose presence means a script's section can be written.
PRIMARY = {"wafer_validation": "wafer_validation.csv", "cs3_llama": "cs3_mechanisms.csv", "cluster_scaling": "cluster_scaling.csv", "model_scaling": "model_scaling.csv",
           "training_budget": "training_budget.csv", "gpu_comparison": "gpu_comparison.csv", "gpu_validation": "gpu_validation.csv",
           "sensitivity": "sensitivity.csv", "equivalence": "equivalence_losses.csv",
           "inference": "inference.csv", "sweep_demo": "sweep.csv", "sparsity": "sparsity.csv", "energy": "energy.csv",
           "moe_scaling": "moe_scaling.csv"}

INTRO = """# wsim scaling study

What a Cerebras CS-2 cluster in weight-streaming mode does as clusters and models grow, how it compares
with GPU clusters, and how much the conclusions depend on the numbers Cerebras did not publish. Every
number below is read from the CSV next to its figure. The design, the CLI/JSON/Python contract and the
sources of every input are in the project's `docs/` ([design](../docs/design.md),
[contract](../docs/contract.md), [sources](../docs/sources.md), [wafer model](../docs/wafer-model.md))
and in the comments of `wsim/cluster/hardware.py` and `models/zoo.py`.

Which model produced what: **engine** = the simpy discrete-event simulator (`wsim.simulate`);
**closed form** = `wsim.engine.closed_form.step_time` (within 1% of the engine without contention, ~1000x
faster) for dense curves; **GPU** = the Megatron-LM/ZeRO cost model and plan search (`wsim.gpu`).
How fast a CS-2 computes a layer is the wafer compute model (`wsim/cluster/wafer.py`), calibrated on measured
CS-2 throughput (section 0). CS-2 micro-batching is the simulator's default, **best**, unless said
otherwise: the micro-batch count and activation recompute chosen jointly for the shortest step by the
closed form (`wsim.engine.closed_form.choose_plan`), the like-for-like choice against a GPU plan search that also
picks recompute; **fit** is the fewest micro-batches that fit without recompute.
"""


def run(out: Path, quick: bool, only: list[str]) -> dict[str, float]:
    seconds = {}
    for i, name in enumerate(only, 1):
        log(f"== [{i}/{len(only)}] experiments.{name}")
        module = importlib.import_module(f"experiments.{name}")
        t0 = time.perf_counter()
        module.main(["--out", str(out)] + (["--quick"] if quick else []))
        seconds[name] = time.perf_counter() - t0
    return seconds


def report(out: Path, seconds: dict[str, float], quick: bool) -> str:
    parts = [INTRO]
    if quick:
        parts.append("> **Quick mode**: small grids for a first look and for tests; run "
                     "`python -m experiments.main` for the full study.\n")
    for name in SCRIPTS:
        if not (out / PRIMARY[name]).exists():
            continue
        module = importlib.import_module(f"experiments.{name}")
        parts.append(module.reading(out))
    if seconds:
        parts.append("## Run\n\n| script | wall time (s) |\n|---|---|\n" + "\n".join(
            f"| `python -m experiments.{k}` | {v:.1f} |" for k, v in seconds.items())
            + f"\n| total | {sum(seconds.values()):.1f} |\n")
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return str(path)


def main(argv=None) -> str:
    p = argparse.ArgumentParser(prog="python -m experiments.main", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RESULTS), help="output folder (default results/)")
    p.add_argument("--quick", action="store_true", help="small grids (tests, a first look)")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(SCRIPTS)}")
    p.add_argument("--report-only", action="store_true", help="rewrite report.md from existing CSVs")
    args = p.parse_args(argv)
    only = SCRIPTS if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SCRIPTS]
    if unknown:
        p.error(f"--only: unknown script(s) {unknown}; known: {', '.join(SCRIPTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seconds = {} if args.report_only else run(out, args.quick, only)
    path = report(out, seconds, args.quick)
    log(f"== report: {path} ({time.perf_counter() - t0:.1f} s)")
    return path


if __name__ == "__main__":
    main()
