"""Weight-streamed inference: simulated tokens/s vs batch for Cerebras-GPT 1.3B and 13B on one CS-2.

Every decoding step streams all the weights again, so with a small batch a CS-2 mostly waits for
weights: throughput grows linearly with the batch along the stream bound (batch x B_down / weight
bytes) until the KV cache, which lives on the wafer, fills the SRAM. The compute bound is drawn
too. Timing: the engine (``wsim.engine.inference``), a 128-token prompt then 128 new tokens.

    python -m experiments.inference [--out results] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from models import zoo
from wsim.cluster import generations
from wsim.engine.inference import calls_for, kv_cache_bytes, simulate_inference

MODELS = ("cerebras-gpt-1.3b", "cerebras-gpt-13b")
PROMPT, NEW = 128, 128


def batches_that_fit(model, cluster, limit: int) -> list[int]:
    usable = cluster.cs2.usable_sram_bytes - cluster.cs2.weight_buffer_bytes
    out, b = [], 1
    while b <= limit and kv_cache_bytes(model, b, PROMPT + NEW - 1) <= usable:
        out.append(b)
        b *= 2
    return out


def run(out: Path, quick: bool = False) -> list[dict]:
    cluster = generations.preset("cs2", 1)
    rows = []
    for name in MODELS:
        model = zoo.get(name)
        for batch in batches_that_fit(model, cluster, 64 if quick else 1 << 16):
            r = simulate_inference(model, calls_for(batch, PROMPT, NEW), cluster)
            decode_s = sum(r.call_times_s[1:]) / (r.calls - 1)
            rows.append({
                "model": name, "params": model.params, "batch": batch,
                "tokens_per_s": round(r.tokens_per_s, 6),
                "decode_tokens_per_s": round(batch / decode_s, 6),
                "stream_bound_tokens_per_s": round(r.stream_bound_tokens_per_s, 6),
                "compute_bound_tokens_per_s": round(r.compute_bound_tokens_per_s, 3),
                "latency_s": round(r.latency_s, 9), "kv_cache_gb": round(r.kv_cache_bytes / 1e9, 6),
                "bottleneck": r.bottleneck,
            })
            print(f"inference: {name} batch {batch}: {r.tokens_per_s:,.0f} tokens/s", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "inference.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "inference.png")
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6.2))
    for name, color in zip(MODELS, ("tab:blue", "tab:red")):
        pts = [r for r in rows if r["model"] == name]
        if not pts:
            continue
        b = [r["batch"] for r in pts]
        ax.plot(b, [r["stream_bound_tokens_per_s"] for r in pts], "-", color=color, alpha=0.25, lw=8,
                label=f"{name}: stream bound (batch x 150 GB/s / weight bytes)")
        ax.plot(b, [r["decode_tokens_per_s"] for r in pts], "o-", color=color,
                label=f"{name}: simulated decode (engine)")
        ax.axhline(pts[0]["compute_bound_tokens_per_s"], color=color, ls=":", alpha=0.7,
                   label=f"{name}: compute bound")
        ax.annotate(f"batch {b[-1]}: KV cache\n{pts[-1]['kv_cache_gb']:.0f} GB, the next doubling\n"
                    "overflows the wafer", (b[-1], pts[-1]["decode_tokens_per_s"]),
                    textcoords="offset points", xytext=(12, -40), fontsize=8, color=color,
                    arrowprops=dict(arrowstyle="->", color=color))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch (sequences decoded together)")
    ax.set_ylabel("generated tokens per second")
    ax.set_title("Weight-streamed inference on one CS-2 (128-token prompt, 128 new tokens)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlim(0.7, max(r["batch"] for r in rows) * 4)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7.5, loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reading(out: Path) -> str:
    """The report section, every number from inference.csv."""
    with open(out / "inference.csv") as fh:
        rows = list(csv.DictReader(fh))
    lines = ["## 7. Weight-streamed inference\n", "![inference](inference.png)\n",
             "Data: [inference.csv](inference.csv). Engine (simpy, forward-only schedules), one CS-2, "
             f"a {PROMPT}-token prompt then {NEW} new tokens.\n",
             "| model | largest batch run (full mode: the largest that fits) | tokens/s at batch 1 | tokens/s at the largest | "
             "share of the stream bound | KV cache GB | compute bound tokens/s |", "|---|---|---|---|---|---|---|"]
    for name in MODELS:
        pts = [r for r in rows if r["model"] == name]
        if not pts:
            continue
        first, last = pts[0], pts[-1]
        share = float(last["decode_tokens_per_s"]) / float(last["stream_bound_tokens_per_s"])
        lines.append(f"| {name} | {last['batch']} | {float(first['tokens_per_s']):,.1f} | "
                     f"{float(last['tokens_per_s']):,.0f} | {share:.1%} | {float(last['kv_cache_gb']):.1f} | "
                     f"{float(last['compute_bound_tokens_per_s']):,.0f} |")
    lines.append("\nReading: every decoding step streams all the weights again, so decode throughput "
                 "sits on the stream bound and grows linearly with the batch; the KV cache on the wafer, "
                 "not compute, ends the growth, orders of magnitude below the compute bound.\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[str]:
    p = argparse.ArgumentParser(prog="python -m experiments.inference", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results", help="output folder (CSV and PNG)")
    p.add_argument("--quick", action="store_true", help="batches up to 64 only")
    args = p.parse_args(argv)
    out = Path(args.out)
    run(out, args.quick)
    return [str(out / "inference.csv"), str(out / "inference.png")]


if __name__ == "__main__":
    main()
