"""Model-size scaling at a fixed cluster: 111M to 1T parameters on 16 CS-2 (Andromeda).

The "independent scaling" claim (cerebras.net glossary "MemoryX"/"SwarmX"; Hot Chips 34): weights
live in MemoryX and stream through, so the wafer holds activations only. At a fixed N and a fixed
share of tokens per CS-2 this shows, per model (engine, ``wsim.simulate``):
- step time, and throughput in model FLOP/s;
- wafer memory per CS-2 (peak: activations + weight buffer), bounded by the 40 GB SRAM whatever
  the model (CS-2 product page) -- micro-batching and recompute keep it under;
- MemoryX bytes (16 per parameter, ZeRO sec. 3.1): grows with the model, up to 2.4 PB (glossary);
- the tokens per CS-2 per micro-batch needed to stay compute bound (``analytic.balance_tokens``:
  a block's compute equals its weight stream), against what the wafer can hold per micro-batch
  with and without activation recompute (``wsim.cluster.memory``).
Models: the seven Cerebras-GPT (docs/sources.md table), GPT-3 175B and Megatron-LM's 18B ... 1T
(docs/sources.md SC21 Table 1). Micro-batching: ``best`` (``wsim.studies.compare.choose_job``).
"""

from __future__ import annotations

from pathlib import Path

from experiments.common import (CGPT, Timer, fmt_n, log, params_str, parser, progress, read_csv,
                                write_csv)
from models import zoo
from wsim.cluster import generations
from wsim.studies.compare import choose_job
from wsim.cluster.job import TrainingJob
from wsim.cluster.memory import activation_bytes_per_seq

SYSTEMS = 16  # Andromeda (press release 2022-11)
SEQS_PER_SYSTEM = 32  # 65,536 tokens per CS-2: above the balance point of every model here
BIG = ["megatron-18.4b", "megatron-39.1b", "gpt3-175b", "megatron-310.1b", "megatron-529.6b",
       "megatron-1t"]
QUICK = ["cerebras-gpt-111m", "cerebras-gpt-1.3b", "gpt3-175b"]

COLUMNS = ["model", "params", "layers", "hidden", "systems", "batch_seqs", "micro_batches",
           "recompute", "tokens_per_micro_batch", "step_time_s", "tokens_per_s", "model_flops_per_s",
           "compute_utilization", "bottleneck", "wafer_memory_bytes", "sram_bytes", "memoryx_bytes",
           "balance_tokens_per_system", "fit_tokens_no_recompute", "fit_tokens_recompute",
           "weight_stream_s_per_step"]


def point(name: str) -> dict:
    from wsim.engine.run import simulate

    model = zoo.get(name)
    cluster = generations.preset("cs2", SYSTEMS)
    batch = SEQS_PER_SYSTEM * SYSTEMS
    job, a = choose_job(model, seq=2048, batch=batch, cluster=cluster)
    r = simulate(job, cluster)
    usable = cluster.cs2.usable_sram_bytes - cluster.cs2.weight_buffer_bytes
    base = TrainingJob(model, seq=2048, batch_seqs=batch)
    fit = {rc: int(usable // activation_bytes_per_seq(base, recompute=rc)) * 2048 for rc in (False, True)}
    return {"model": name, "params": model.params, "layers": model.layers, "hidden": model.hidden,
            "systems": SYSTEMS, "batch_seqs": batch, "micro_batches": r.micro_batches,
            "recompute": r.recompute, "tokens_per_micro_batch": a.tokens_per_micro_batch,
            "step_time_s": r.step_time_s, "tokens_per_s": r.tokens_per_s,
            "model_flops_per_s": r.model_flops_per_s, "compute_utilization": r.compute_utilization,
            "bottleneck": r.bottleneck, "wafer_memory_bytes": r.wafer_memory_bytes,
            "sram_bytes": cluster.cs2.sram_bytes, "memoryx_bytes": r.memoryx_bytes,
            "balance_tokens_per_system": a.balance_tokens_per_system,
            "fit_tokens_no_recompute": fit[False], "fit_tokens_recompute": fit[True],
            "weight_stream_s_per_step": a.stream_s}


def plot(rows: list[dict], out: Path) -> str:
    from wsim.studies.plots import figure, save, short

    fig, axes = figure(2, 2, width=6.0, height=4.2)
    (a1, a2), (a3, a4) = axes
    p = [r["params"] / 1e9 for r in rows]
    a1.plot(p, [r["step_time_s"] for r in rows], "o-", label="step time (engine)")
    a1.set_ylabel("step time (s)")
    a1.set_yscale("log")
    t = a1.twinx()
    t.plot(p, [100 * r["compute_utilization"] for r in rows], "s--", color="tab:red",
           label="utilization of peak")
    t.set_ylabel("model FLOP/s as % of peak")
    t.set_ylim(0, 60)
    t.grid(False)
    a1.set_title(f"Step time, {SYSTEMS} CS-2 x {SEQS_PER_SYSTEM} sequences each")
    h1, l1 = a1.get_legend_handles_labels()
    h2, l2 = t.get_legend_handles_labels()
    a1.legend(h1 + h2, l1 + l2, loc="upper left")
    a2.plot(p, [r["wafer_memory_bytes"] / 1e9 for r in rows], "o-", label="peak per CS-2 (engine)")
    a2.axhline(rows[0]["sram_bytes"] / 1e9, color="black", ls="--", lw=1, label="WSE-2 SRAM (40 GB)")
    for r, x in zip(rows, p):
        if r["recompute"]:
            a2.plot([x], [r["wafer_memory_bytes"] / 1e9], "x", color="tab:red", ms=8)
    a2.plot([], [], "x", color="tab:red", label="with activation recompute")
    a2.set_ylim(0, 45)
    a2.set_ylabel("wafer memory per CS-2 (GB)")
    a2.set_title("Wafer memory: flat (activations only)")
    a2.legend(loc="lower right")
    a3.plot(p, [r["memoryx_bytes"] / 1e12 for r in rows], "o-", color="tab:green",
            label="weights + optimizer state (16 B/param)")
    a3.set_yscale("log")
    a3.set_ylabel("MemoryX bytes (TB)")
    a3.set_title("MemoryX: grows with the model")
    a3.legend(loc="upper left")
    a4.plot(p, [r["balance_tokens_per_system"] for r in rows], "o-", color="black",
            label="needed to be compute bound")
    a4.plot(p, [r["fit_tokens_no_recompute"] or float("nan") for r in rows], "^--",
            label="fits on the wafer, no recompute")
    a4.plot(p, [r["fit_tokens_recompute"] for r in rows], "v--", label="fits with recompute")
    a4.plot(p, [r["tokens_per_micro_batch"] for r in rows], "s:", label=f"used ({SEQS_PER_SYSTEM} seqs/CS-2, best split)")
    a4.set_yscale("log")
    a4.set_ylabel("tokens per CS-2 per micro-batch")
    a4.set_title("Tokens per system: needed vs. what fits")
    a4.legend(loc="lower left")
    for ax in (a1, a2, a3, a4):
        ax.set_xscale("log")
        ax.set_xlabel("model parameters (billions)")
    for r, x in zip(rows, p):
        if r["model"] in ("cerebras-gpt-111m", "cerebras-gpt-13b", "gpt3-175b", "megatron-1t"):
            a3.annotate(short(r["model"]), (x, r["memoryx_bytes"] / 1e12), xytext=(4, -10),
                        textcoords="offset points", fontsize=7)
    return save(fig, out / "model_scaling.png")


def main(argv=None) -> list[str]:
    args = parser("model_scaling", __doc__).parse_args(argv)
    out = Path(args.out)
    models = QUICK if args.quick else CGPT + BIG
    with Timer("model_scaling"):
        rows = [point(m) for m in progress(models, "model scaling")]
        rows.sort(key=lambda r: r["params"])
        paths = [write_csv(out / "model_scaling.csv", rows, COLUMNS), plot(rows, out)]
    log("wrote " + ", ".join(paths))
    return paths


def reading(out: Path) -> str:
    rows = read_csv(Path(out) / "model_scaling.csv")
    small, big = rows[0], rows[-1]
    wafer = [r["wafer_memory_bytes"] for r in rows]
    bal = [r["balance_tokens_per_system"] for r in rows]
    bound = [r for r in rows if r["bottleneck"] == "weight_stream"]
    first_bound = min(bound, key=lambda r: r["params"]) if bound else None
    lines = ["## 2. Model-size scaling at a fixed cluster", "",
             "![model scaling](model_scaling.png)", "",
             f"Data: [model_scaling.csv](model_scaling.csv). Engine (simpy) at every point; "
             f"{small['systems']} CS-2, {small['batch_seqs'] // small['systems']} sequences of 2048 "
             f"tokens per CS-2; micro-batching: the default `best`.", "",
             "| model | params | step (s) | % of peak | micro-batches | recompute | wafer GB/CS-2 | "
             "MemoryX TB | balance tokens | tokens/micro-batch | bottleneck |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {params_str(r['params'])} | {r['step_time_s']:.3g} | "
                     f"{r['compute_utilization']:.0%} | {r['micro_batches']} | {r['recompute']} | "
                     f"{r['wafer_memory_bytes'] / 1e9:.1f} | {r['memoryx_bytes'] / 1e12:.3g} | "
                     f"{fmt_n(r['balance_tokens_per_system'])} | {fmt_n(r['tokens_per_micro_batch'])} | "
                     f"{r['bottleneck']} |")
    lines += ["",
              f"Reading: from {params_str(small['params'])} to {params_str(big['params'])} parameters "
              f"({big['params'] / small['params']:.0f}x) the wafer memory per CS-2 stays between "
              f"{min(wafer) / 1e9:.1f} and {max(wafer) / 1e9:.1f} GB (under the 40 GB SRAM), while "
              f"MemoryX grows from {small['memoryx_bytes'] / 1e12:.3g} to {big['memoryx_bytes'] / 1e12:.3g} TB, "
              f"and the same 16-CS-2 data-parallel job runs every model with no model parallelism. "
              f"The tokens per CS-2 needed to stay compute bound grow only "
              f"{max(bal) / min(bal):.1f}x over that range ({fmt_n(min(bal))} to {fmt_n(max(bal))}): "
              f"a layer's weight bytes and its FLOPs per token grow together, so the balance is the "
              f"wafer's sustained FLOP/s over the stream bandwidth, per byte of weight, moved only by "
              f"the wafer's better use of wider layers; so cluster size and model size scale independently -- as long as the wafer can hold that "
              f"many tokens of activations. It cannot for the largest models: what fits per "
              f"micro-batch falls as layers get wider and deeper"
              + (f", and from {first_bound['model']} ({params_str(first_bound['params'])}) up the "
                 f"micro-batch holds fewer tokens than the balance point, the step becomes "
                 f"weight-stream bound and the share of peak drops (to "
                 f"{big['compute_utilization']:.0%} at {params_str(big['params'])})." if first_bound else
                 ", but every model here still fits a compute-bound micro-batch.")
              + " The claim holds for memory; for speed it holds while activations fit.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
