"""``wsim sweep`` at work: a CS-2 and GPU throughput grid, in parallel processes, resumed.

The grid (``wsim.studies.sweep.grid``): Cerebras-GPT 1.3B and 6.7B (docs/sources.md table) at a global batch of
1536 sequences of 2048 tokens, on 4 ... 192 CS-2 (engine, the default ``best`` micro-batching) and on 32 ...
1536 A100-80GB / H100-80GB (best plan by ``wsim.gpu.search``). It runs through
``wsim.studies.sweep.run_grid`` with ``--jobs`` worker processes, into ``results/sweep.csv``; then the same
grid runs again to show that finished points are read back, not recomputed
(``sweep_resume.csv``: points computed and reused on each run).
"""

from __future__ import annotations

from pathlib import Path

from experiments.common import Timer, log, parser, read_csv, write_csv

MODELS = ["cerebras-gpt-1.3b", "cerebras-gpt-6.7b"]
BATCH = 1536  # divisible by every count below (2^k and 3 x 2^k)
CS2 = [4, 8, 16, 32, 64, 96, 128, 192]
GPUS = [32, 64, 128, 256, 512, 768, 1024, 1536]
GPU_TYPES = ["a100-80gb", "h100-80gb"]
QUICK = dict(models=MODELS[:1], cs2=[16, 64], gpus=[64, 256], gpu_types=GPU_TYPES[:1])


def points(quick: bool):
    from wsim.studies.sweep import grid

    q = QUICK if quick else dict(models=MODELS, cs2=CS2, gpus=GPUS, gpu_types=GPU_TYPES)
    return (grid(q["models"], q["cs2"], kind="simulate", batch=BATCH)
            + grid(q["models"], q["gpus"], kind="gpu", batch=BATCH, gpu=q["gpu_types"]))


def main(argv=None) -> list[str]:
    p = parser("sweep_demo", __doc__)
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = p.parse_args(argv)
    from wsim.studies.plots import sweep_plot
    from wsim.studies.sweep import run_grid

    out = Path(args.out)
    csv_path = out / "sweep.csv"
    csv_path.unlink(missing_ok=True)  # a fresh grid; the second run below shows the resume
    grid = points(args.quick)
    with Timer("sweep_demo"):
        first = run_grid(grid, out=csv_path, jobs=args.jobs)
        again = run_grid(grid, out=csv_path, jobs=args.jobs)
        runs = [{"run": i + 1, "points": len(grid), "computed": r.computed, "reused": r.reused,
                 "ok": sum(row["status"] == "ok" for row in r.rows)} for i, r in enumerate((first, again))]
        paths = [str(csv_path), write_csv(out / "sweep_resume.csv", runs),
                 sweep_plot(first.rows, out / "sweep.png",
                            title=f"Throughput at a global batch of {BATCH} x 2048 tokens")]
    log("wrote " + ", ".join(paths))
    return paths


def reading(out: Path) -> str:
    rows = [r for r in read_csv(Path(out) / "sweep.csv") if r["status"] == "ok"]
    runs = read_csv(Path(out) / "sweep_resume.csv")
    lines = ["## 8. Sweeps (`wsim sweep`)", "", "![sweep](sweep.png)", "",
             "Data: [sweep.csv](sweep.csv) (written by `wsim.studies.sweep.run_grid`, the API behind "
             "`wsim sweep`), [sweep_resume.csv](sweep_resume.csv). CS-2 points: engine with the default "
             "`best` micro-batching (the sweep runs the engine as `wsim simulate` would); GPU points: "
             "the fastest plan by `wsim.gpu.search`.", ""]
    for r in runs:
        lines.append(f"- run {r['run']}: {r['points']} points, {r['computed']} computed, "
                     f"{r['reused']} read back from the file")
    lines += ["", "| model | device | counts | tokens/s (first -> last) | scaling efficiency | "
              "plan / bottleneck at the largest count |", "|---|---|---|---|---|---|"]
    for m in sorted({r["model"] for r in rows}):
        series = {}
        for r in rows:
            if r["model"] == m:
                series.setdefault("CS-2" if r["kind"] == "simulate" else r["gpu"], []).append(r)
        for dev, pts in sorted(series.items()):
            pts.sort(key=lambda r: r["gpus"] or r["systems"])
            a, b = pts[0], pts[-1]
            na, nb = a["gpus"] or a["systems"], b["gpus"] or b["systems"]
            eff = (b["tokens_per_s"] / a["tokens_per_s"]) / (nb / na)
            how = (b["bottleneck"] if dev == "CS-2" else
                   f"tp {b['tp']} x pp {b['pp']} x dp {b['dp']}"
                   + (f" x cp {b['cp']}" if b.get("cp") and b["cp"] > 1 else "")
                   + f", ZeRO-{b['zero']}" + (f", {b['gpu_stack']}" if b.get("gpu_stack") else ""))
            lines.append(f"| {m} | {dev} | {na} -> {nb} | {a['tokens_per_s']:.3g} -> "
                         f"{b['tokens_per_s']:.3g} | {eff:.0%} | {how} |")
    cs2 = [r for r in rows if r["kind"] == "simulate"]
    last = {m: max((r for r in cs2 if r["model"] == m), key=lambda r: r["systems"]) for m in {r["model"] for r in cs2}}
    lines += ["", "Reading: with the global batch fixed, each CS-2 added shrinks every system's share; "
              "at the largest count the CS-2 step is "
              + ", ".join(f"{b['bottleneck']}-bound for {m}" for m, b in sorted(last.items()))
              + " (section 1 gives the knees and their causes); the GPU curves keep the batch per "
              "GPU shrinking too, and their efficiency is in the table. Run it yourself with `wsim sweep --models ... "
              "--systems ... --jobs 2 --out results/sweep.csv`, or on a Dask cluster with "
              "`--scheduler tcp://HOST:PORT`; rerunning skips the points already in the file.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
