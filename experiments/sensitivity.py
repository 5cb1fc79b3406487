"""Sensitivity: how the conclusions move when each assumed or fitted number moves 2x either way.

The numbers (``wsim/cluster/hardware.py``): the CS-2 peak FLOP/s (an estimate from Andromeda's 120 PFLOP/s);
the wafer compute model's parameters (``wsim/cluster/wafer.py``): the fitted matmul peak fraction, the
half-performance dimension n_1/2 (structural: sqrt(cores)), the element-wise issue rate and the
per-pass fill/drain (assumptions); the weight buffer (assumption); MemoryX stream/ingest bandwidth
and optimizer throughput, SwarmX port bandwidth and hop latency (Cerebras withheld them,
Microprocessor Report Sep 2021), and for context the CS-2's 1.2 Tb/s I/O. Each is multiplied by 0.5
and 2 from its default, one at a time (fractions capped at 1).

Conclusions measured, all with the engine (``wsim.simulate``; the optimizer's queueing is an
effect the closed form does not model) and best micro-batching (re-chosen for each hardware):
- 1.3B time to train on 16 CS-2 (published batch 528 and steps 24,334; docs/sources.md table);
- 1.3B speedup from 1 to 16 CS-2 at that batch;
- 13B time to train on its published 8 -> 12 CS-2 run (``wsim.studies.compare.published_phases``), with
  best micro-batching and with the ``fit`` plan (one sequence per micro-batch, no recompute: weight-
  stream bound, the regime where the stream assumptions matter). Both 13B phases give each CS-2 90
  sequences (the same step time), so the ``fit`` variant simulates the first phase for all steps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from experiments.common import Timer, bound, days, log, parser, progress, read_csv, write_csv
from models import zoo
from wsim.cluster import hardware
from wsim.cluster import generations
from wsim.studies.compare import Phase, cs2_time_to_train, published_phases

FACTORS = (0.5, 2.0)
# (label, section, fields moved together)
KNOBS = [
    ("CS-2 peak FLOP/s", "cs2", ("peak_flops_per_s",)),
    ("wafer matmul peak fraction (fitted)", "cs2", ("matmul_peak_fraction",)),
    ("wafer n_1/2 (grid side)", "cs2", ("matmul_half_dim",)),
    ("wafer element-wise rate", "cs2", ("elementwise_ops_per_core_per_cycle",)),
    ("wafer pass fill/drain", "cs2", ("pass_overhead_cycles",)),
    ("CS-2 weight buffer", "cs2", ("weight_buffer_bytes",)),
    ("MemoryX bandwidth", "memoryx", ("stream_bytes_per_s", "ingest_bytes_per_s")),
    ("MemoryX optimizer throughput", "memoryx", ("optimizer_params_per_s",)),
    ("SwarmX port bandwidth", "swarmx", ("port_bytes_per_s",)),
    ("SwarmX hop latency", "swarmx", ("hop_latency_s",)),
    ("CS-2 I/O bandwidth", "cs2", ("io_bytes_per_s",)),
]
QUICK_KNOBS = [KNOBS[1], KNOBS[6]]
METRICS = [("ttt_1.3b_16", "1.3B time to train on 16 CS-2 (days)"),
           ("speedup_1.3b_1_16", "1.3B speedup, 1 -> 16 CS-2 (x)"),
           ("ttt_13b", "13B time to train, published 8->12 CS-2 (days)"),
           ("ttt_13b_fit", "13B time to train, 'fit' plan (days)")]
COLUMNS = ["knob", "factor", "fields", "value", "ttt_1.3b_16", "speedup_1.3b_1_16", "ttt_13b",
           "ttt_13b_fit", "bottleneck_1.3b_16", "bottleneck_13b", "bottleneck_13b_fit"]
FRACTIONS = ("matmul_peak_fraction",)


def scaled(knob, factor: float) -> hardware.ClusterSpec:
    base = generations.preset("cs2", 1)
    if knob is None:
        return base
    _, section, names = knob
    spec = getattr(base, section)
    new = {n: value(spec, n) * factor for n in names}
    for n in FRACTIONS:
        if n in new:
            new[n] = min(1.0, new[n])
    return dataclasses.replace(base, **{section: dataclasses.replace(spec, **new)})


def value(spec, name: str) -> float:
    """The field's value; n_1/2's default (None) is sqrt(cores) (``wsim.cluster.wafer.half_dim``)."""
    if name == "matmul_half_dim":
        from wsim.cluster.wafer import half_dim

        return half_dim(spec)
    return getattr(spec, name)


def measure(cluster: hardware.ClusterSpec, with_13b: bool) -> dict:
    m13 = zoo.get("cerebras-gpt-1.3b")
    pub = zoo.CEREBRAS_GPT_TRAINING["cerebras-gpt-1.3b"]
    on16 = cs2_time_to_train(m13, [Phase(pub.batch_seqs, 16, pub.steps)], cluster=cluster)
    on1 = cs2_time_to_train(m13, [Phase(pub.batch_seqs, 1, pub.steps)], cluster=cluster)
    row = {"ttt_1.3b_16": days(on16["time_to_train_s"]),
           "speedup_1.3b_1_16": on1["time_to_train_s"] / on16["time_to_train_s"],
           "bottleneck_1.3b_16": on16["phases"][0]["bottleneck"]}
    if with_13b:
        phases = published_phases("cerebras-gpt-13b")
        big = cs2_time_to_train(zoo.get("cerebras-gpt-13b"), phases, cluster=cluster)
        # both phases give each CS-2 90 sequences: one simulated phase stands for the whole run
        steps = sum(p.steps for p in phases)
        fit = cs2_time_to_train(zoo.get("cerebras-gpt-13b"), [dataclasses.replace(phases[0], steps=steps)],
                                cluster=cluster, micro_batching="fit")
        row |= {"ttt_13b": days(big["time_to_train_s"]), "bottleneck_13b": big["phases"][-1]["bottleneck"],
                "ttt_13b_fit": days(fit["time_to_train_s"]),
                "bottleneck_13b_fit": fit["phases"][-1]["bottleneck"]}
    return row


def run(knobs, with_13b: bool) -> list[dict]:
    rows = [{"knob": "baseline", "factor": 1.0, "fields": "", "value": None} | measure(scaled(None, 1), with_13b)]
    for knob in progress(knobs, "sensitivity"):
        label, section, names = knob
        for f in FACTORS:
            c = scaled(knob, f)
            rows.append({"knob": label, "factor": f, "fields": " ".join(f"{section}.{n}" for n in names),
                         "value": value(getattr(c, section), names[0])} | measure(c, with_13b))
    return rows


def plot(rows: list[dict], out: Path) -> str:
    from wsim.studies.plots import figure, save, tornado

    base = rows[0]
    metrics = [(k, t) for k, t in METRICS if base.get(k) is not None]
    cols = min(2, len(metrics))
    fig, axes = figure(-(-len(metrics) // cols), cols, width=6.0, height=4.0)
    axes = list(getattr(axes, "flat", [axes]))
    knobs = list(dict.fromkeys(r["knob"] for r in rows[1:]))
    for ax, (key, title) in zip(axes, metrics):
        low = [next(r[key] for r in rows if r["knob"] == k and r["factor"] == FACTORS[0]) for k in knobs]
        high = [next(r[key] for r in rows if r["knob"] == k and r["factor"] == FACTORS[1]) for k in knobs]
        tornado(ax, knobs, low, high, base[key], xlabel=title, low_label="assumption x0.5",
                high_label="assumption x2",
                title=f"{title.split(' (')[0]}\nbaseline {base[key]:.3g}")
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    return save(fig, out / "sensitivity.png")


def main(argv=None) -> list[str]:
    args = parser("sensitivity", __doc__).parse_args(argv)
    out = Path(args.out)
    with Timer("sensitivity"):
        rows = run(QUICK_KNOBS if args.quick else KNOBS, with_13b=not args.quick)
        paths = [write_csv(out / "sensitivity.csv", rows, COLUMNS), plot(rows, out)]
    log("wrote " + ", ".join(paths))
    return paths


def reading(out: Path) -> str:
    rows = read_csv(Path(out) / "sensitivity.csv")
    base, rest = rows[0], rows[1:]
    lines = ["## 5. Sensitivity to the assumed and fitted numbers", "", "![sensitivity](sensitivity.png)", "",
             "Data: [sensitivity.csv](sensitivity.csv). Engine (simpy), each number x0.5 and x2 from "
             "`wsim/cluster/hardware.py`'s default, one at a time (the wafer compute model's parameters "
             "included); the `best` plan re-chosen for each.", "",
             "| metric | baseline | lowest (assumption, factor) | highest (assumption, factor) | "
             "no effect (within 1%) |", "|---|---|---|---|---|"]
    for key, title in METRICS:
        if base.get(key) is None:
            continue
        lo = min(rest, key=lambda r: r[key])
        hi = max(rest, key=lambda r: r[key])
        flat = sorted({r["knob"] for r in rest} - {r["knob"] for r in rest
                                                   if abs(r[key] / base[key] - 1) > 0.01})
        def cell(r):
            if abs(r[key] / base[key] - 1) <= 0.01:
                return "within 1% of baseline"
            return f"{r[key]:.3g} ({r['knob']}, x{r['factor']:g})"

        lines.append(f"| {title} | {base[key]:.3g} | {cell(lo)} | {cell(hi)} | {', '.join(flat) or 'none'} |")
    keys = [k for k, _ in METRICS if base.get(k) is not None]
    swing = {}
    for r in rest:
        worst = max(abs(r[k] / base[k] - 1) for k in keys)
        swing[r["knob"]] = max(swing.get(r["knob"], 0.0), worst)
    order = sorted(swing, key=swing.get, reverse=True)
    flat = [k for k in order if swing[k] <= 0.01]
    lines += ["", "Reading: largest swings (any metric): "
              + ", ".join(f"{k} {swing[k]:.0%}" for k in order if swing[k] > 0.01)
              + (f"; no effect within 1%: {', '.join(flat)}" if flat else "") + "."]
    if "ttt_13b_fit" in keys:
        bw = {(r["knob"], r["factor"]): r for r in rest}

        def move(knob, factor, key):
            r = bw.get((knob, factor))
            return f"{r[key] / base[key] - 1:+.0%}" if r else "n/a"

        stream_knobs = ["MemoryX bandwidth", "SwarmX port bandwidth", "CS-2 I/O bandwidth"]
        best_moves = max(abs(bw[(k, f)]["ttt_13b"] / base["ttt_13b"] - 1) for k in stream_knobs
                         for f in FACTORS if (k, f) in bw)
        fit_moves = max(abs(bw[(k, f)]["ttt_13b_fit"] / base["ttt_13b_fit"] - 1) for k in stream_knobs
                        for f in FACTORS if (k, f) in bw)
        speedups = [r["speedup_1.3b_1_16"] for r in rest]
        wafer = [k for k in order if k.startswith("wafer") or k == "CS-2 peak FLOP/s"]
        lines[-1] += (
            f" The stream assumptions (MemoryX, SwarmX, CS-2 I/O) move the 13B run by at most "
            f"{best_moves:.0%} with the default `best` plan, whose large recomputed micro-batches hide "
            f"the stream ({bound(base['bottleneck_13b'])}), but by up to {fit_moves:.0%} with the `fit` plan "
            f"({bound(base['bottleneck_13b_fit'])}): halving MemoryX bandwidth moves it "
            f"{move('MemoryX bandwidth', 0.5, 'ttt_13b_fit')}, doubling it "
            f"{move('MemoryX bandwidth', 2.0, 'ttt_13b_fit')} (the slowest link on the path then caps "
            f"it). The compute side moves every compute-bound run: "
            + ", ".join(f"{k} x0.5 {move(k, 0.5, 'ttt_13b')}, x2 {move(k, 2.0, 'ttt_13b')}" for k in wafer)
            + f" on the 13B time to train. The fitted peak fraction is pinned by the measurements "
            f"(leave-one-out refits stay within a few per cent of it, section 0), so its x0.5/x2 "
            f"swing is a what-if, not an uncertainty. The 1 -> 16 speedup of 1.3B stays within "
            f"{min(speedups):.3g} to {max(speedups):.3g}x whatever moves: the scaling conclusion does "
            f"not rest on any single assumption.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
