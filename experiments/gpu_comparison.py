"""GPU comparison: the GPUs (A100, H100) and TP/PP/DP plan that match each CS-2 training run.

For each Cerebras-GPT model on its published CS-2 cluster (docs/sources.md table), ``wsim.studies.compare``
finds the smallest GPU count in a geometric grid (powers of 2 and 1.5 x powers of 2) whose fastest
plan (``wsim.gpu.search``: Megatron-LM PTD-P + ZeRO, SC21 arXiv 2104.04473) trains the same batches
for the same steps within the CS-2 time to train (engine, best micro-batching), and reports the
plan and its complexity (parallel dimensions > 1, model-parallel degree tp x pp, knobs away from
plain data parallelism; the CS-2 cluster: 1 dimension, 0 knobs).

Seed points (docs/sources.md, "published runs"), compared per step (their token budgets are not in
docs/sources.md): OPT-175B on 992 A100-80GB (OPT paper sec. 2.4; batch 992 x 2048 ~ its 2M tokens, as
992 sequences split evenly over data-parallel ranks), GPT-NeoX-20B on 96 A100-40GB (TP 2 x PP 4 +
ZeRO-1; batch 1536, the nearest to the published 1538 that the plan's dp = 12 divides), and
Cerebras-GPT 1.3B and 6.7B on 16 CS-2 (Andromeda): the fewest CS-2 as fast as the GPU cluster, or
the fewest GPUs as fast as the 16 CS-2.
"""

from __future__ import annotations

from pathlib import Path

from experiments.common import CGPT, QUICK_CGPT, Timer, days, log, parser, progress, read_csv, write_csv
from models import zoo
from wsim.studies.compare import Phase, compare, cs2_step, match_cs2
from wsim.gpu import estimate, search

GPUS = ("a100-80gb", "h100-80gb")
COLUMNS = ["model", "params", "cs2_systems", "cs2_days", "gpu", "matched", "gpus", "gpu_days",
           "time_ratio", "tp", "pp", "dp", "micro_batch", "interleave", "recompute",
           "sequence_parallel", "zero", "cp", "stack", "parallel_dims", "model_parallel", "knobs", "mfu",
           "memory_per_gpu_gib", "regime", "validated_gpu_days", "extrapolated_gpus",
           "extrapolated_days", "extrapolated_regime"]
CURVE_COLUMNS = ["model", "gpu", "gpus", "time_to_train_days", "cs2_days"]
SEED_COLUMNS = ["case", "model", "batch", "gpu", "gpus", "plan_source", "tp", "pp", "dp", "micro_batch",
                "interleave", "recompute", "sequence_parallel", "zero", "cp", "stack", "gpu_step_s",
                "gpu_tokens_per_s", "model_tflops_per_gpu", "published_tflops_per_gpu", "cs2_systems", "cs2_step_s",
                "cs2_tokens_per_s", "cs2_bottleneck"]
PLAN_KEYS = ("tp", "pp", "dp", "micro_batch", "interleave", "recompute", "sequence_parallel", "zero",
             "cp", "stack")


def model_rows(name: str) -> tuple[list[dict], list[dict]]:
    r = compare(name, gpu=GPUS).to_dict()
    cs2_days = days(r["cs2"]["time_to_train_s"])
    label = "->".join(dict.fromkeys(str(p["systems"]) for p in r["cs2"]["phases"]))
    rows, curves = [], []
    for g in r["gpu"]:
        row = {"model": name, "params": r["params"], "cs2_systems": label, "cs2_days": cs2_days,
               "gpu": g["gpu"], "matched": g["matched"], "gpus": g["gpus"]}
        x = g.get("fastest_extrapolated")
        if x:  # the fastest plan of any regime, beside the validated headline (issue 19)
            row |= {"extrapolated_gpus": x["gpus"], "extrapolated_days": days(x["time_to_train_s"]),
                    "extrapolated_regime": x["regime"]}
        if g["matched"]:
            row |= {"gpu_days": days(g["time_to_train_s"]), "time_ratio": g["time_ratio_gpu_over_cs2"],
                    "mfu": g["mfu"], "memory_per_gpu_gib": g["memory_per_gpu_bytes"] / 2**30,
                    "regime": g["regime"], "validated_gpu_days": days(g["validated_time_to_train_s"])
                    if g["validated_time_to_train_s"] is not None else None}
            row |= {k: g["plan"][k] for k in PLAN_KEYS} | g["complexity"]
        rows.append(row)
        curves += [{"model": name, "gpu": g["gpu"], "gpus": c["gpus"], "cs2_days": cs2_days,
                    "time_to_train_days": days(c["time_to_train_s"])} for c in g["curve"]]
    return rows, curves


def _plan_cells(rep) -> dict:
    return {k: getattr(rep.plan, k) for k in PLAN_KEYS} | {
        "gpu_step_s": rep.step_time_s, "gpu_tokens_per_s": rep.tokens_per_s,
        "model_tflops_per_gpu": rep.model_tflops_per_gpu}


def _cs2_cells(model, batch: int, gpu_step_s: float) -> dict:
    m = match_cs2(model, batch, gpu_step_s)
    if m is None:
        return {"cs2_systems": None}
    return {"cs2_systems": m["systems"], "cs2_step_s": m["step_time_s"],
            "cs2_tokens_per_s": m["tokens_per_s"], "cs2_bottleneck": m["bottleneck"]}


def seed_rows(quick: bool) -> list[dict]:
    rows = []
    gpu_cases = [] if quick else [
        ("OPT-175B on 992 A100 (OPT sec. 2.4)", "opt-175b", 992, "a100-80gb", 992, None, 147.0),
        ("GPT-NeoX-20B on 96 A100-40GB", "gpt-neox-20b", 1536, "a100-40gb", 96, (2, 4, 1), 117.0),
    ]
    for case, name, batch, gpu, n, fixed, published in gpu_cases:
        model = zoo.get(name)
        reps = [("search", search(model, batch=batch, gpus=n, gpu=gpu))]
        if fixed:
            tp, pp, zero = fixed
            reps.append(("published", estimate(model, batch=batch, gpus=n, gpu=gpu, tp=tp, pp=pp,
                                               zero=zero, recompute="full")))
        for source, rep in reps:
            rows.append({"case": case, "model": name, "batch": batch, "gpu": gpu, "gpus": n,
                         "plan_source": source, "published_tflops_per_gpu": published}
                        | _plan_cells(rep) | _cs2_cells(model, batch, rep.step_time_s))
    for name in (["cerebras-gpt-1.3b"] if quick else ["cerebras-gpt-1.3b", "cerebras-gpt-6.7b"]):
        batch = zoo.CEREBRAS_GPT_TRAINING[name].batch_seqs
        model = zoo.get(name)
        cs2 = cs2_step(model, batch=batch, systems=16)
        r = compare(model, phases=[Phase(batch, 16, 1)], gpu=GPUS).to_dict()
        for g in r["gpu"]:
            row = {"case": f"{name} on 16 CS-2 (Andromeda)", "model": name, "batch": batch,
                   "gpu": g["gpu"], "gpus": g["gpus"], "plan_source": "search (matched)",
                   "cs2_systems": 16, "cs2_step_s": cs2["step_time_s"],
                   "cs2_tokens_per_s": cs2["tokens_per_s"], "cs2_bottleneck": cs2["bottleneck"]}
            if g["matched"]:
                row |= {k: g["plan"][k] for k in PLAN_KEYS} | {
                    "gpu_step_s": g["phases"][0]["step_time_s"], "gpu_tokens_per_s": g["tokens_per_s"],
                    "model_tflops_per_gpu": g["model_tflops_per_gpu"]}
            rows.append(row)
    return rows


def plot(rows: list[dict], curves: list[dict], out: Path) -> str:
    import numpy as np

    from wsim.studies.plots import COLOURS, figure, log2_axis, save, short

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, (a1, a2) = figure(1, 2, width=6.2, height=4.8)
    x = np.arange(len(models))
    w = 0.27
    cs2 = [_cs2_max(next(r for r in rows if r["model"] == m)) for m in models]
    a1.bar(x - w, cs2, w, label="CS-2 (published count)", color="tab:green")
    for j, (gpu, colour) in enumerate(zip(GPUS, ("tab:blue", "tab:orange"))):
        vals = []
        for m in models:
            r = next(r for r in rows if r["model"] == m and r["gpu"] == gpu)
            vals.append(r["gpus"] if r["matched"] else np.nan)
        a1.bar(x + j * w, vals, w, label=f"{gpu.upper()} matching it", color=colour)
        for xi, m, v in zip(x, models, vals):
            r = next(r for r in rows if r["model"] == m and r["gpu"] == gpu)
            if r["matched"]:
                a1.annotate(f"{v}: {r['tp']}x{r['pp']}x{r['dp']}", (xi + j * w, v), xytext=(0, 2),
                            textcoords="offset points", ha="center", fontsize=6, rotation=90)
    top = max((int(r["gpus"]) for r in rows if r["matched"]), default=max(cs2))
    log2_axis(a1, top, "y")
    a1.set_ylim(0.7, top * 3)
    a1.set_xticks(x)
    a1.set_xticklabels([short(m) for m in models])
    a1.set_xlabel("Cerebras-GPT model (bar labels: GPUs: TP x PP x DP)")
    a1.set_ylabel("accelerators (count)")
    a1.set_title("GPUs needed to match the CS-2 time to train")
    a1.legend(loc="upper left")
    for i, m in enumerate(models):
        c = COLOURS[i % len(COLOURS)]
        pts = sorted((p["gpus"], p["time_to_train_days"]) for p in curves
                     if p["model"] == m and p["gpu"] == GPUS[0])
        if not pts:
            continue
        a2.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, color=c, label=short(m))
        target = next(r for r in rows if r["model"] == m)["cs2_days"]
        a2.axhline(target, color=c, ls=":", lw=1)
        a2.plot([pts[-1][0]], [pts[-1][1]], "*", ms=10, color=c)
    a2.plot([], [], "k:", lw=1, label="CS-2 time to train")
    a2.plot([], [], "k*", ms=8, ls="none", label="first match")
    log2_axis(a2, max(p["gpus"] for p in curves), "x")
    a2.set_yscale("log")
    a2.set_xlabel(f"{GPUS[0].upper()} GPUs (best plan at each count)")
    a2.set_ylabel("time to train (days)")
    a2.set_title(f"{GPUS[0].upper()} time to train vs. count")
    a2.legend(ncol=2, loc="lower left")
    return save(fig, out / "gpu_comparison.png")


def main(argv=None) -> list[str]:
    args = parser("gpu_comparison", __doc__).parse_args(argv)
    out = Path(args.out)
    rows, curves = [], []
    with Timer("gpu_comparison"):
        for m in progress(QUICK_CGPT if args.quick else CGPT, "gpu comparison"):
            r, c = model_rows(m)
            rows += r
            curves += c
        seeds = seed_rows(args.quick)
        paths = [write_csv(out / "gpu_comparison.csv", rows, COLUMNS),
                 write_csv(out / "gpu_comparison_curves.csv", curves, CURVE_COLUMNS),
                 write_csv(out / "gpu_seed_points.csv", seeds, SEED_COLUMNS),
                 plot(rows, curves, out)]
    log("wrote " + ", ".join(paths))
    return paths


def _cs2_max(r: dict) -> int:
    """The largest CS-2 count of a run ("8->12" -> 12)."""
    return max(int(x) for x in str(r["cs2_systems"]).split("->"))


def _plan(r: dict) -> str:
    extras = [f"mb {r['micro_batch']}"]
    if r["interleave"] and r["interleave"] > 1:
        extras.append(f"interleave {r['interleave']}")
    extras.append(f"recompute {r['recompute']}")
    if r["sequence_parallel"]:
        extras.append("SP")
    if r["zero"]:
        extras.append(f"ZeRO-{r['zero']}")
    if r.get("cp") and r["cp"] > 1:
        extras.append(f"CP {r['cp']}")
    if r.get("stack"):
        extras.append(str(r["stack"]))
    return f"{r['tp']}x{r['pp']}x{r['dp']} ({', '.join(extras)})"


def _seed_reading(seeds: list[dict]) -> str:
    checks = [f"{s['model']} {s['plan_source']} plan {s['model_tflops_per_gpu']:.0f} vs "
              f"{s['published_tflops_per_gpu']:.0f} published ({s['model_tflops_per_gpu'] / s['published_tflops_per_gpu'] - 1:+.0%})"
              for s in seeds if s.get("published_tflops_per_gpu") and s.get("model_tflops_per_gpu")]
    if not checks:
        return ""
    return (" On the published GPU runs the GPU cost model gives model TFLOP/s per GPU of "
            + "; ".join(checks) + ": where it is above the published figure, GPU counts above are "
            "optimistic for the GPUs (the search also finds plans faster than the ones used).")


def reading(out: Path) -> str:
    rows = read_csv(Path(out) / "gpu_comparison.csv")
    seeds = read_csv(Path(out) / "gpu_seed_points.csv")
    lines = ["## 4. GPU comparison (`wsim compare`)", "", "![gpu comparison](gpu_comparison.png)", "",
             "Data: [gpu_comparison.csv](gpu_comparison.csv), "
             "[gpu_comparison_curves.csv](gpu_comparison_curves.csv), "
             "[gpu_seed_points.csv](gpu_seed_points.csv). CS-2: engine, published batch/count/steps, "
             "best micro-batching. GPU: `wsim.gpu.search` (fastest plan that fits) at the same batches "
             "and steps, smallest count in {1, 2, 4, 8, 16, 24, 32, 48, ...} that is as fast. "
             "Plan: TP x PP x DP (CP, stack and knobs in brackets). Complexity: parallel dimensions > 1 "
             "/ model-parallel degree (tp x pp) / knobs away from plain data parallelism (the CS-2 "
             "cluster: 1 / 1 / 0). Regime: whether the GPU model was validated on runs like this plan "
             "(`wsim.gpu.regimes`: validated, checked, extrapolated); 'validated days' is the same "
             "GPU count with its fastest plan inside a validated regime. Since issue 19 the GPU count "
             "is matched with plans inside a validated regime only (`--basis validated`); the "
             "last column is the count the fastest plan of any regime would need, with its regime "
             "(an extrapolation of the cost model, not a headline).", "",
             "| model | CS-2 | CS-2 days | GPU | GPUs | GPU days | plan | complexity | MFU | regime | "
             "validated days | fastest of any regime |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ext = (f"{r['extrapolated_gpus']} GPUs, {r['extrapolated_days']:.3g} days "
               f"({r['extrapolated_regime']})" if r.get("extrapolated_gpus") else "")
        if not r["matched"]:
            lines.append(f"| {r['model']} | {r['cs2_systems']} | {r['cs2_days']:.3g} | {r['gpu']} | "
                         f"none in grid (validated) | | | | | | | {ext} |")
            continue
        lines.append(f"| {r['model']} | {r['cs2_systems']} | {r['cs2_days']:.3g} | {r['gpu']} | "
                     f"{r['gpus']} | {r['gpu_days']:.3g} | {_plan(r)} | {r['parallel_dims']} / "
                     f"{r['model_parallel']} / {r['knobs']} | {r['mfu']:.0%} | {r['regime']} | "
                     + (f"{r['validated_gpu_days']:.3g} |" if r["validated_gpu_days"] is not None else "none |")
                     + f" {ext} |")
    lines += ["", "Seed points (per step):", "",
              "| case | GPUs | plan (source) | GPU step (s) | model TFLOP/s per GPU (published) | "
              "CS-2 count (as fast / given) | CS-2 step (s) |", "|---|---|---|---|---|---|---|"]
    for s in seeds:
        if s["gpus"] is None:
            lines.append(f"| {s['case']} | {s['gpu']}: none in grid | | | | {s['cs2_systems']} | |")
            continue
        pub = f" ({s['published_tflops_per_gpu']:.0f})" if s["published_tflops_per_gpu"] else ""
        cs2 = s["cs2_systems"] if s["cs2_systems"] is not None else "none <= 192"
        step = f"{s['cs2_step_s']:.3g}" if s["cs2_step_s"] is not None else ""
        lines.append(f"| {s['case']} | {s['gpus']} x {s['gpu']} | {_plan(s)} ({s['plan_source']}) | "
                     f"{s['gpu_step_s']:.3g} | {s['model_tflops_per_gpu']:.0f}{pub} | {cs2} | {step} |")
    a100 = [r for r in rows if r["gpu"] == GPUS[0] and r["matched"]]
    h100 = [r for r in rows if r["gpu"] == GPUS[1] and r["matched"]]
    def span(matched, name):
        if not matched:
            return (f"no {name} plan inside a validated regime in the grid (the last column gives the "
                    f"fastest {name} plan of any regime)")
        ratio = [r["gpus"] / _cs2_max(r) for r in matched]
        return f"{min(ratio):.3g} to {max(ratio):.3g} {name}s per CS-2"
    mp = [r for r in a100 + h100 if r["model_parallel"] > 1]
    extra_knobs = sum(1 for r in a100 + h100 if r["zero"] or r["sequence_parallel"] or r["recompute"] != "none")
    lines += ["", f"Reading: matching a Cerebras-GPT run takes {span(a100, 'A100')} and "
              f"{span(h100, 'H100')} (grid resolution: "
              f"steps of 1.33-1.5x). {len(mp)} of the {len(a100 + h100)} matching GPU plans need model "
              f"parallelism (tp x cp x pp > 1), up to tp x cp x pp = "
              f"{max((r['model_parallel'] for r in mp), default=1)}, and {extra_knobs} of them add ZeRO, "
              f"sequence parallelism or recompute on top; the CS-2 cluster runs every model as the same "
              f"data-parallel job. Of the matching GPU plans "
              + ", ".join(f"{sum(r['regime'] == k for r in a100 + h100)} are {k}"
                          for k in ("validated", "checked", "extrapolated"))
              + f" (the cost model's own verdict on how far it was tested there).{_seed_reading(seeds)}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
