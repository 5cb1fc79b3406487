"""Sparse weight streaming: step time, bytes and energy at weight density 1, 0.5 and 0.25.

Three situations, each at its own bound: Cerebras-GPT 13B at its published batch (720) on 8 CS-2
(compute-bound), 1.3B at its published batch (528) on 4 CS-2, and 13B at 8 sequences per system on
the 2048-CS-3 cluster (weight-stream-bound). Every weight matrix is at the density (the tied
embedding/head included; ``wsim/cluster/sparsity.py``). Two values of the realised share of the FLOP
saving: 1 (the vendor's claim: the wafer skips the zeros) and 0.5 (half of it: a what-if). The
sparse format's cost is wsim's assumption: a 1-bit mask per weight position streamed with the
nonzeros. Engine (simpy) for every point.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from experiments.common import Timer, bound, log, parser, read_csv, write_csv
from models import zoo
from wsim.cluster import generations
from wsim.cluster.job import TrainingJob

DENSITIES = [1.0, 0.5, 0.25]
EFFICIENCIES = [1.0, 0.5]  # cs2.sparse_flop_efficiency: the vendor claim, and half of it
# (label, model, cluster preset, systems, global batch)
SCENARIOS = [
    ("13B, 8 CS-2, batch 720", "cerebras-gpt-13b", "cs2", 8, 720),
    ("1.3B, 4 CS-2, batch 528", "cerebras-gpt-1.3b", "cs2", 4, 528),
    ("13B, 2048 CS-3, 8 per system", "cerebras-gpt-13b", "cs3-2048", 2048, 8 * 2048),
]
QUICK_SCENARIOS = [
    ("1.3B, 4 CS-2, batch 528", "cerebras-gpt-1.3b", "cs2", 4, 528),
    ("1.3B, 64 CS-3, 1 per system", "cerebras-gpt-1.3b", "cs3-64", 64, 64),
]

COLUMNS = ["scenario", "model", "cluster", "systems", "batch_seqs", "density", "sparse_flop_efficiency",
           "step_time_s", "tokens_per_s", "speedup", "weight_products_speedup", "stream_speedup", "bottleneck",
           "compute_s", "weight_stall_s", "stream_bytes_per_step", "stream_bytes_ratio",
           "model_flops_per_step", "memoryx_bytes", "micro_batches", "recompute", "power_w",
           "energy_per_step_j", "energy_ratio"]


def point(scenario, density: float, efficiency: float) -> dict:
    from wsim.engine.run import simulate

    label, name, preset, n, batch = scenario
    cluster = generations.preset(preset, n)
    cluster = dataclasses.replace(cluster, cs2=dataclasses.replace(cluster.cs2, sparse_flop_efficiency=efficiency))
    job = TrainingJob(zoo.get(name), seq=2048, batch_seqs=batch, density=density)
    r = simulate(job, cluster)
    b = r.breakdown
    return {"scenario": label, "model": name, "cluster": preset, "systems": n, "batch_seqs": batch,
            "density": density, "sparse_flop_efficiency": efficiency, "step_time_s": r.step_time_s,
            "tokens_per_s": r.tokens_per_s, "bottleneck": r.bottleneck,
            "compute_s": b["compute_forward_s"] + b["compute_recompute_s"] + b["compute_backward_s"],
            "weight_stall_s": b["weight_stall_s"],
            "stream_bytes_per_step": r.extra["memoryx_stream_bytes_per_step"],
            "model_flops_per_step": r.model_flops_per_step, "memoryx_bytes": r.memoryx_bytes,
            "micro_batches": r.micro_batches, "recompute": r.recompute, "power_w": r.power_w,
            "energy_per_step_j": r.energy_per_step_j,
            # the weight products' time shrinks to 1 - e (1 - d) (wsim/cluster/wafer.py); the rest does not
            "weight_products_speedup": 1.0 / (1.0 - efficiency * (1.0 - density))}


def run(scenarios) -> list[dict]:
    rows = [point(s, d, e) for s in scenarios for e in EFFICIENCIES for d in DENSITIES
            if not (d == 1.0 and e != EFFICIENCIES[0])]  # density 1 does not depend on e
    dense = {r["scenario"]: r for r in rows if r["density"] == 1.0}
    for r in rows:
        base = dense[r["scenario"]]
        r["speedup"] = base["step_time_s"] / r["step_time_s"]
        r["stream_bytes_ratio"] = r["stream_bytes_per_step"] / base["stream_bytes_per_step"]
        r["stream_speedup"] = 1.0 / r["stream_bytes_ratio"]  # what a purely stream-bound step gains
        r["energy_ratio"] = r["energy_per_step_j"] / base["energy_per_step_j"]
    return rows


def plot(rows: list[dict], out: Path) -> str:
    from wsim.studies.plots import figure, save

    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    fig, (ax, bx) = figure(1, 2, width=5.5, height=4.4)
    for i, s in enumerate(scenarios):
        colour = f"C{i}"
        for e, style in zip(EFFICIENCIES, ("-", "--")):
            pts = sorted((r for r in rows if r["scenario"] == s and (r["density"] == 1.0
                          or r["sparse_flop_efficiency"] == e)), key=lambda r: r["density"])
            ax.plot([r["density"] for r in pts], [r["speedup"] for r in pts], style, marker="o",
                    color=colour, label=f"{s}, e={e:g}")
        pts = sorted((r for r in rows if r["scenario"] == s and r["sparse_flop_efficiency"] == 1.0),
                     key=lambda r: r["density"])
        bx.plot([r["density"] for r in pts], [r["stream_bytes_ratio"] for r in pts], marker="o",
                color=colour, label=s)
    ds = sorted(DENSITIES)
    ax.plot(ds, [1 / d for d in ds], ":", color="grey", label="1 / density")
    bx.plot(ds, ds, ":", color="grey", label="density")
    for a in (ax, bx):
        a.set_xscale("log", base=2)
        a.set_xticks(ds, [f"{d:g}" for d in ds])
        a.set_xlabel("weight density")
        a.legend(fontsize=7)
    ax.set_yscale("log", base=2)
    ax.set_ylabel("step speedup over dense")
    ax.set_title("step time (e: realised share of the FLOP saving)")
    bx.set_ylabel("streamed bytes / dense")
    bx.set_title("weight stream (1-bit mask per weight; the situations coincide)")
    return save(fig, out / "sparsity.png")


def main(argv=None) -> list[str]:
    args = parser("sparsity", __doc__).parse_args(argv)
    out = Path(args.out)
    with Timer("sparsity"):
        rows = run(QUICK_SCENARIOS if args.quick else SCENARIOS)
        paths = [write_csv(out / "sparsity.csv", rows, COLUMNS), plot(rows, out)]
    log("wrote " + ", ".join(paths))
    return paths


def reading(out: Path) -> str:
    rows = read_csv(Path(out) / "sparsity.csv")
    lines = ["## 9. Sparse weight streaming (timing)", "", "![sparsity](sparsity.png)", "",
             "Data: [sparsity.csv](sparsity.csv). Engine (simpy). Density = nonzero fraction of every "
             "weight matrix; e = realised share of the FLOP saving (1 is Cerebras' claim, 0.5 a "
             "what-if); the sparse format costs a 1-bit mask per weight position (wsim's assumption: "
             "Cerebras has not published its format). Gradients and the optimizer cover the nonzeros.",
             "", "| situation | density | e | step (s) | speedup | the weight products' speedup | "
             "the stream's speedup | bound | streamed bytes | energy per step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['density']:g} | {r['sparse_flop_efficiency']:g} | "
                     f"{r['step_time_s']:.4g} | {r['speedup']:.2f}x | {r['weight_products_speedup']:.2f}x | "
                     f"{r['stream_speedup']:.2f}x | {bound(r['bottleneck'])} | {r['stream_bytes_ratio']:.0%} | "
                     f"{r['energy_ratio']:.0%} |")
    notes = []
    for s in dict.fromkeys(r["scenario"] for r in rows):
        pts = {(r["density"], r["sparse_flop_efficiency"]): r for r in rows if r["scenario"] == s}
        dense = pts[(1.0, 1.0)]
        q = pts.get((0.25, 1.0))
        if q is None:
            continue
        half = pts.get((0.25, 0.5))
        text = (f"{s} ({bound(dense['bottleneck'])} when dense): at density 0.25 the step is "
                f"{q['speedup']:.2f}x faster with the claimed saving (the weight products alone "
                f"{q['weight_products_speedup']:.2f}x, the stream {q['stream_speedup']:.2f}x), "
                f"{bound(q['bottleneck'])}, streaming {q['stream_bytes_ratio']:.0%} of the dense bytes")
        if half is not None:
            text += (f"; with half the saving realised, {half['speedup']:.2f}x "
                     f"({bound(half['bottleneck'])})")
        notes.append(text + ".")
    lines += ["", "Reading: " + " ".join(notes) + " A compute-bound step gains what the wafer "
              "realises of the FLOP saving, less the work density does not touch (attention's "
              "activation products, element-wise work, each pass's fill and drain); a stream-bound "
              "one gains what the stream loses, which the mask's 1 bit per weight keeps above the "
              "density (2 bytes a weight dense, 0.125 + 2d sparse), until compute binds again. Energy "
              "per step falls with the step time: the power drawn is taken as constant.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
