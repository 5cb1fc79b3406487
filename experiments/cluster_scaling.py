"""Cluster-size scaling: throughput and speedup against the CS-2 count, N = 1 ... 192.

Strong scaling: each Cerebras-GPT model at its published global batch (docs/sources.md table; Dey et al.
2023; 13B at its final batch, 1080). Pure data parallelism needs the batch divisible by N
(``TrainingJob.seqs_per_system``), so the N are the divisors of the batch up to 192 (the
glossary "SwarmX" maximum). Weak scaling: each model at its published batch *per system*
(published batch / published CS-2 count) on N = 1 ... 192.

Micro-batching is the default ``best``: the micro-batch count and activation recompute chosen
jointly for the shortest step by the closed form (``wsim.engine.closed_form.choose_plan``).
Dense curves come from the closed form (``wsim.engine.closed_form``, within 1% of the engine without
contention); the engine (``wsim.simulate``) runs the headline points: N = 1, the published N, 16
(Andromeda) where it divides the batch, the knee and the largest N. The knee is the first N whose parallel efficiency (speedup / N) falls
below 90%; its cause is read from the step's parts (tokens per micro-batch against the balance
point, the step-boundary bubble, the time not spent computing).
"""

from __future__ import annotations

from pathlib import Path

from experiments.common import CGPT, QUICK_CGPT, Timer, fmt_n, log, parser, progress, read_csv, write_csv
from models import zoo
from wsim.cluster import generations
from wsim.studies.compare import choose_job

MAX_N = 192  # glossary "SwarmX": up to 192 CS-2 in one cluster
KNEE_EFFICIENCY = 0.9
ANDROMEDA = 16  # Andromeda: 16 CS-2 (press release 2022-11): an engine point wherever it divides the batch
WEAK_N = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192]
WEAK_ENGINE_N = [1, 4, 16, 64, 192]
QUICK_WEAK_N = [1, 2, 4, 16, 192]

COLUMNS = ["model", "params", "scaling", "method", "systems", "batch_seqs", "seqs_per_system",
           "micro_batches", "recompute", "tokens_per_micro_batch", "balance_tokens_per_system",
           "step_time_s", "tokens_per_s", "speedup", "efficiency", "compute_utilization",
           "bottleneck", "compute_fraction", "bubble_fraction"]


def published(name: str) -> tuple[int, int]:
    t = zoo.CEREBRAS_GPT_TRAINING[name]
    return t.batch_seqs, t.cs2_systems


def point(name: str, n: int, batch: int, method: str) -> dict:
    model = zoo.get(name)
    cluster = generations.preset("cs2", n)
    job, a = choose_job(model, seq=2048, batch=batch, cluster=cluster)
    row = {"model": name, "params": model.params, "method": method, "systems": n, "batch_seqs": batch,
           "seqs_per_system": batch // n, "micro_batches": a.micro_batches, "recompute": a.recompute,
           "tokens_per_micro_batch": a.tokens_per_micro_batch,
           "balance_tokens_per_system": a.balance_tokens_per_system}
    if method == "analytic":
        parts = {"cs2_compute": a.compute_s, "weight_stream": a.stream_s, "gradient_stream": a.gradient_s}
        return row | {"step_time_s": a.step_time_s, "tokens_per_s": a.tokens_per_s,
                      "compute_utilization": a.compute_utilization,
                      "bottleneck": max(parts, key=parts.get),
                      "compute_fraction": a.compute_s / a.step_time_s,
                      "bubble_fraction": a.bubble_s / a.step_time_s}
    from wsim.engine.run import simulate

    r = simulate(job, cluster)
    b = r.breakdown
    compute = b["compute_forward_s"] + b["compute_recompute_s"] + b["compute_backward_s"]
    return row | {"step_time_s": r.step_time_s, "tokens_per_s": r.tokens_per_s,
                  "compute_utilization": r.compute_utilization, "bottleneck": r.bottleneck,
                  "compute_fraction": compute / r.step_time_s,
                  "bubble_fraction": b["step_boundary_s"] / r.step_time_s}


def _with_speedup(rows: list[dict]) -> list[dict]:
    base = {(r["model"], r["scaling"], r["method"]): r for r in rows if r["systems"] == 1}
    for r in rows:
        b = base[(r["model"], r["scaling"], r["method"])]
        # throughput ratio: equals T(1)/T(N) at a fixed batch, and N x T(1)/T(N) at a fixed share
        r["speedup"] = r["tokens_per_s"] / b["tokens_per_s"]
        r["efficiency"] = r["speedup"] / r["systems"]
    return rows


def knee(rows: list[dict]) -> dict | None:
    """The first row (by N) whose efficiency is below KNEE_EFFICIENCY."""
    for r in sorted(rows, key=lambda r: r["systems"]):
        if r["efficiency"] < KNEE_EFFICIENCY:
            return r
    return None


def why(r: dict) -> str:
    """The cause of lost efficiency at a point, from its fields."""
    tokens, balance = r["tokens_per_micro_batch"], r["balance_tokens_per_system"]
    if tokens < balance:
        return (f"weight-stream bound: {fmt_n(tokens)} tokens per micro-batch per CS-2 is below the "
                f"{fmt_n(balance)} at which a block's compute hides its weight stream")
    return (f"fixed per-step cost: still compute bound ({fmt_n(tokens)} tokens per micro-batch >= "
            f"{fmt_n(balance)}), but compute is only {r['compute_fraction']:.0%} of the step "
            f"(step-boundary bubble {r['bubble_fraction']:.1%}, pipeline fill and drain)")


def run(models: list[str], quick: bool) -> list[dict]:
    rows: list[dict] = []
    for name in progress(models, "cluster scaling"):
        batch, n_pub = published(name)
        divs = [n for n in range(1, min(batch, MAX_N) + 1) if batch % n == 0]
        if quick:
            divs = sorted({divs[0], divs[1], n_pub, divs[-1]})
        strong = [point(name, n, batch, "analytic") | {"scaling": "strong"} for n in divs]
        k = knee(_with_speedup(strong))
        engine_n = sorted({1, n_pub, divs[-1]} | ({k["systems"]} if k else set())
                          | ({ANDROMEDA} if ANDROMEDA in divs else set()))
        strong += [point(name, n, batch, "engine") | {"scaling": "strong"} for n in engine_n]
        share = batch // n_pub
        weak_n = QUICK_WEAK_N if quick else WEAK_N
        weak = [point(name, n, share * n, "analytic") | {"scaling": "weak"} for n in weak_n]
        weak += [point(name, n, share * n, "engine") | {"scaling": "weak"}
                 for n in (QUICK_WEAK_N[::2] if quick else WEAK_ENGINE_N)]
        rows += strong + weak
    return _with_speedup(rows)


def plot(rows: list[dict], out: Path) -> list[str]:
    from wsim.studies.plots import COLOURS, figure, log2_axis, save, short

    models = list(dict.fromkeys(r["model"] for r in rows))
    paths = []
    for scaling in ("strong", "weak"):
        fig, (ax1, ax2) = figure(1, 2, width=6.0, height=4.6)
        top, effs = 1, []
        for i, m in enumerate(models):
            c = COLOURS[i % len(COLOURS)]
            for method, style in (("analytic", dict(ls="-", lw=1.4)),
                                  ("engine", dict(ls="none", marker="o", ms=5, mfc="none"))):
                pts = sorted((r["systems"], r["speedup"], r["efficiency"], r["tokens_per_s"])
                             for r in rows
                             if r["model"] == m and r["scaling"] == scaling and r["method"] == method)
                if not pts:
                    continue
                n = [p[0] for p in pts]
                top = max(top, max(n))
                effs += [p[2] for p in pts]
                label = short(m) if method == "analytic" else None
                y1 = [p[1] for p in pts] if scaling == "strong" else [p[3] for p in pts]
                ax1.plot(n, y1, color=c, label=label, **style)
                ax2.plot(n, [p[2] for p in pts], color=c, label=label, **style)
            if scaling == "strong":
                k = knee([r for r in rows if r["model"] == m and r["scaling"] == "strong"
                          and r["method"] == "analytic"])
                if k:
                    ax2.plot([k["systems"]], [k["efficiency"]], marker="x", ms=9, mew=2, color=c)
        if scaling == "strong":
            ax1.plot([1, top], [1, top], color="grey", ls=":", label="linear")
            log2_axis(ax1, top, "y")
            ax1.set_ylabel("speedup over 1 CS-2 (throughput ratio, x)")
            ax1.set_title("Strong scaling at the published global batch")
            ax2.axhline(KNEE_EFFICIENCY, color="grey", ls="--", lw=1, label="90% (knee)")
            ax2.set_ylim(0, 1.08)
            ax2.set_title("Parallel efficiency (x: first N below 90%)")
        else:
            ax1.set_yscale("log")
            ax1.set_ylabel("throughput (tokens/s)")
            ax1.set_title("Weak scaling at the published batch per CS-2")
            low = min(effs)
            ax2.set_ylim(min(0.99, low - 0.001), 1.001)
            ax2.yaxis.set_major_formatter(lambda v, _: f"{v:.1%}")
            ax2.set_title("Parallel efficiency (zoomed: only SwarmX latency grows)")
        ax1.plot([], [], ls="none", marker="o", mfc="none", color="black", label="engine (simpy)")
        for ax in (ax1, ax2):
            log2_axis(ax, top, "x")
            ax.set_xlabel("CS-2 systems N")
        ax1.legend(ncol=2, loc="upper left")
        ax2.legend(loc="lower left", ncol=2)
        paths.append(save(fig, out / f"cluster_scaling_{scaling}.png"))
    return paths


def main(argv=None) -> list[str]:
    args = parser("cluster_scaling", __doc__).parse_args(argv)
    out = Path(args.out)
    with Timer("cluster_scaling"):
        rows = run(QUICK_CGPT if args.quick else CGPT, args.quick)
        paths = [write_csv(out / "cluster_scaling.csv", rows, COLUMNS)] + plot(rows, out)
    log("wrote " + ", ".join(paths))
    return paths


def reading(out: Path) -> str:
    rows = read_csv(Path(out) / "cluster_scaling.csv")
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = ["## 1. Cluster-size scaling", "",
             "![strong scaling](cluster_scaling_strong.png)", "",
             "![weak scaling](cluster_scaling_weak.png)", "",
             "Data: [cluster_scaling.csv](cluster_scaling.csv). Lines: closed-form model "
             "(`wsim.engine.closed_form`) at every N; circles: the simpy engine at N = 1, the published N, "
             "16, the knee and the largest N. Micro-batching: `best` (count and activation recompute "
             "chosen jointly for the shortest step). Strong scaling uses the N that divide the "
             "published batch (pure data parallelism needs equal shares).", "",
             "| model | batch | largest N | speedup there (engine) | strong knee N (eff.) | why | "
             "weak efficiency at largest N (engine) |",
             "|---|---|---|---|---|---|---|"]
    for m in models:
        strong = [r for r in rows if r["model"] == m and r["scaling"] == "strong"]
        eng = {r["systems"]: r for r in strong if r["method"] == "engine"}
        top = eng[max(eng)]
        k = knee([r for r in strong if r["method"] == "analytic"])
        weak = [r for r in rows if r["model"] == m and r["scaling"] == "weak" and r["method"] == "engine"]
        wtop = max(weak, key=lambda r: r["systems"])
        knee_txt = f"{k['systems']} ({k['efficiency']:.0%})" if k else "none"
        lines.append(f"| {m} | {top['batch_seqs']} | {top['systems']} | {top['speedup']:.1f}x "
                     f"({top['efficiency']:.0%}) | {knee_txt} | {why(k) if k else 'linear throughout'} | "
                     f"{wtop['efficiency']:.2%} at N = {wtop['systems']} |")
    pairs = {}
    for r in rows:
        pairs.setdefault((r["model"], r["scaling"], r["systems"]), {})[r["method"]] = r["step_time_s"]
    gaps = [abs(p["engine"] / p["analytic"] - 1) for p in pairs.values() if len(p) == 2]
    lines += ["", f"Engine and closed form agree within {max(gaps):.2%} on the {len(gaps)} points "
              "where both ran (median "
              f"{sorted(gaps)[len(gaps) // 2]:.2%}). The gap is the 512 MB weight buffer: it bounds how "
              "far MemoryX streams ahead when the forward is stream-bound and the backward "
              "compute-bound, which the closed form (a fluid flow shop with unbounded buffers) does not "
              "model; with a buffer that never binds they agree within 1% "
              "(`tests/engine/test_analytic.py`)."]
    knees = []
    for m in models:
        k = knee([r for r in rows if r["model"] == m and r["scaling"] == "strong" and r["method"] == "analytic"])
        knees.append((m, k))
    stream = [m for m, k in knees if k and k["tokens_per_micro_batch"] < k["balance_tokens_per_system"]]
    fixed = [m for m, k in knees if k and m not in stream]
    linear = [m for m, k in knees if not k]
    order = [f"{m.replace('cerebras-gpt-', '')} at {k['systems']}" for m, k in knees if k]
    wk = [r for r in rows if r["scaling"] == "weak" and r["method"] == "engine"]
    wlow = min(wk, key=lambda r: r["efficiency"])
    lines += ["", "Reading: at a fixed global batch every CS-2 added shrinks each system's share; "
              "scaling stays linear while the tokens per micro-batch keep each layer's compute "
              "longer than its weight stream, then bends. Knees (first N below 90%): "
              + ", ".join(order) + (f"; none up to the largest N for {', '.join(linear)}" if linear else "")
              + ". " + (f"For {', '.join(stream)} the knee is the weight stream: below the balance "
                        f"point the CS-2s wait for weights that SwarmX broadcasts once for all of "
                        f"them. " if stream else "")
              + (f"For {', '.join(fixed)} it is the fixed per-step cost (the update bubble at the "
                 f"step boundary, pipeline fill and drain), a larger share of their short steps. "
                 if fixed else "")
              + f"At a fixed batch per CS-2 (weak scaling) each system keeps its tokens and only the "
              f"SwarmX tree deepens (log N hops of latency): the lowest engine efficiency is "
              f"{wlow['efficiency']:.2%} ({wlow['model']}, N = {wlow['systems']}).", ""]
    h = [r for r in rows if r["model"] == "cerebras-gpt-1.3b" and r["scaling"] == "strong"
         and r["method"] == "engine" and r["systems"] == ANDROMEDA]
    if h:
        r = h[0]
        lines += [f"Cerebras-GPT 1.3B at its batch of {r['batch_seqs']}, 1 -> {ANDROMEDA} CS-2 (engine): "
                  f"speedup {r['speedup']:.2f}x ({r['efficiency']:.1%} efficiency), "
                  f"{r['micro_batches']} micro-batch(es) of up to "
                  f"{-(-r['seqs_per_system'] // r['micro_batches'])} sequences"
                  f"{' with recompute' if r['recompute'] else ''} per CS-2; {why(r)}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
