"""CS-3 and Llama on the wafer: which mechanism could make them slower than the model predicts.

Every candidate of ``wsim.studies.calibration.mechanisms`` is put into the model for every row and both
generations, the one global ``matmul_peak_fraction`` refitted on the development set (Zhang et al.,
batch 256) each time; a candidate with a free magnitude gets the magnitude that makes the CS-3
Llama-2-7B row exact (the most favourable case for it). Then: the batch dependence of one CS-2 and one
CS-3 on GPT-J 6B and Llama-2-7B (throughput against sequences per system, closed form, default plan),
the structural reason a small batch is slower (weights streamed for few tokens) and how many tokens a
pass each generation needs.
"""

from __future__ import annotations

from pathlib import Path

from experiments.common import Timer, log, parser, read_csv, write_csv
from models import zoo
from wsim.cluster import generations
from wsim.cluster.job import TrainingJob
from wsim.engine import closed_form
from wsim.studies.calibration import batch_sweep as B
from wsim.studies.calibration import mechanisms as X

# (candidate, fixed magnitude or None, bisection range for the magnitude that makes the target row
# exact, the target row; "sweep": the magnitude of the fixed-cost fit to the CS-3 batch sweep)
L3 = "Llama-3-8B b960 on 1 CS-3 (ALCF)"
PLAN = [("none", None, None, None), ("io", None, None, None), ("no_scores", None, None, None),
        ("seq4096", None, None, None), ("lanes", 11.0, None, None), ("elementwise", None, (1.0, 3000.0), X.LLAMA_CS3),
        ("sram", None, (1.0, 20.0), X.LLAMA_CS3), ("lanes", None, (1.0, 64.0), X.LLAMA_CS3),
        ("lanes", 5.0, None, None), ("head", None, (1.0, 200.0), L3),
        ("step_fixed", "sweep", None, None), ("step_update", "sweep", None, None)]
MEANING = {"none": "the model as it is", "io": "CS-3 I/O at the CS-2's 1.2 Tb/s (not +30%)",
           "no_scores": "no stored s x s attention probabilities (fused attention)",
           "seq4096": "the CS-3 Llama row at sequence 4096",
           "lanes": "weights streamed once per compiler lane of s sequences",
           "elementwise": "element-wise work k x costlier (SRAM-bound on the WSE-3)",
           "sram": "matrix products bound by SRAM bandwidth at b bytes a FLOP",
           "head": "LM head and fp32 loss k x costlier (the vocabulary)",
           "step_fixed": "a fixed cost of t seconds a step (every system)",
           "step_update": "the whole optimizer update exposed each step, at f x MemoryX's rate"}
GPTJ_CS3, GPTJ_CS2 = "GPT-J 6B b120 on 1 CS-3 (ALCF)", "GPT-J 6B b120 on 2 CS-2 (ALCF)"
LLAMA_CS2 = "LLaMA-7B b99 (ALCF)"
SLACK = 0.001  # a candidate may not move the worst Zhang et al. point (closed form) by more than this
MISS = 0.15  # the bound on a measured row
SHAPE = 0.05  # the batch-32 fall reproduced within 5 points of the plateau
COLUMNS = ["candidate", "meaning", "magnitude", "solved", "matmul_peak_fraction", "zhang_worst",
           "gptj_cs3", "gptj_cs2", "llama_cs3", "llama_cs2", "gpt2_cs2", "llama3_cs3", "gptj_ratio",
           "llama_ratio", "b32_relative", "verdict"]
SWEEP = ["batch", "label", "measured_samples_per_s", "predicted_samples_per_s", "error",
         "relative_measured", "relative_predicted", "step_fit_samples_per_s", "step_fit_residual"]
CURVE = ["model", "generation", "batch", "samples_per_s", "relative", "tokens_per_micro_batch",
         "micro_batches", "recompute", "bottleneck", "balance_tokens"]
BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024]
QUICK_BATCHES = [1, 8, 128]


def sweep_magnitude(candidate: str) -> float:
    """The per-step candidates' magnitude from the fixed-cost fit to the CS-3 sweep: t0 seconds, or
    the fraction of MemoryX's update rate that makes the whole update take t0 for Llama-2-7B."""
    fit = B.fit_step_cost(B.sweep_rows())
    if candidate == "step_fixed":
        return fit.fixed_s
    rate = generations.preset("cs3").memoryx.optimizer_params_per_s
    return B.sweep_rows()[0].model.params / (fit.fixed_s * rate)


def _verdict(e: dict, zhang: float, tolerance: float, b32: float, b32_measured: float) -> str:
    why = [w for w, bad in (
        (f"a Zhang point at {zhang:.1%}", zhang > tolerance),
        (f"CS-3 Llama-2 {e[X.LLAMA_CS3]:+.1%}", abs(e[X.LLAMA_CS3]) >= MISS),
        (f"CS-3 GPT-J {e[GPTJ_CS3]:+.1%}", abs(e[GPTJ_CS3]) >= MISS),
        (f"CS-2 LLaMA {e[LLAMA_CS2]:+.1%}", abs(e[LLAMA_CS2]) >= MISS),
        (f"CS-3 Llama-3 {e[L3]:+.1%}", abs(e[L3]) >= MISS),
        (f"batch-32 fall {b32:.2f} (measured {b32_measured:.2f})", abs(b32 - b32_measured) > SHAPE)) if bad]
    return "explains the rows" if not why else "rejected: " + ", ".join(why)


def mechanism_rows(quick: bool) -> list[dict]:
    out = []
    base = X.errors(X.Setting())[1]
    tolerance = max(abs(v) for k, v in base.items() if "ALCF" not in k) + SLACK
    b32_measured = B.shape()["relative_measured"][32]
    for cand, value, rng, target in PLAN:
        solved = False
        if value == "sweep":
            value = sweep_magnitude(cand)
        if rng is not None:
            if quick:
                continue
            value, solved = X.solve(cand, *rng, target=target), True
            if value is None:
                out.append({"candidate": cand, "meaning": MEANING[cand], "solved": True,
                            "verdict": "no magnitude in range makes the target row exact"})
                continue
        if quick and cand not in ("none", "step_update"):
            continue
        sh = B.shape(X.Setting(cand, value))
        eta, e = sh["matmul_peak_fraction"], sh["all_errors"]
        zhang = max(abs(v) for k, v in e.items() if "ALCF" not in k)
        b32 = sh["relative_predicted"][32]
        out.append({"candidate": cand, "meaning": MEANING[cand], "magnitude": value, "solved": solved,
                    "matmul_peak_fraction": eta, "zhang_worst": zhang, "gptj_cs3": e[GPTJ_CS3],
                    "gptj_cs2": e[GPTJ_CS2], "llama_cs3": e[X.LLAMA_CS3], "llama_cs2": e[LLAMA_CS2],
                    "gpt2_cs2": e["GPT-2 small b112 (ALCF)"], "llama3_cs3": e[L3],
                    "gptj_ratio": X.ratio(e, GPTJ_CS3, GPTJ_CS2)[1],
                    "llama_ratio": X.ratio(e, X.LLAMA_CS3, LLAMA_CS2)[1], "b32_relative": b32,
                    "verdict": _verdict(e, zhang, tolerance, b32, b32_measured)})
    return out


def sweep_rows() -> list[dict]:
    """The CS-3 Llama-2-7B batch sweep: measured, the model as it is, and the fixed-cost fit."""
    sh = B.shape()
    fit = B.fit_step_cost(B.sweep_rows())
    res = dict(fit.residuals)
    return [{"batch": r.batch, "label": r.label, "measured_samples_per_s": r.samples_per_s,
             "predicted_samples_per_s": sh["predicted"][r.batch], "error": sh["errors"][r.batch],
             "relative_measured": sh["relative_measured"][r.batch],
             "relative_predicted": sh["relative_predicted"][r.batch],
             "step_fit_samples_per_s": fit.samples_per_s(r.batch), "step_fit_residual": res[r.batch]}
            for r in B.sweep_rows()]


def pooled_row() -> dict:
    """The one parameter fitted on every measured row (a check: not the model's development set)."""
    p = X.pooled()
    e = p["errors"]
    zhang = max(abs(v) for k, v in e.items() if "ALCF" not in k)
    return {"candidate": "pooled", "meaning": f"no mechanism; the peak fraction fitted on all {len(e)} rows",
            "matmul_peak_fraction": p["matmul_peak_fraction"], "zhang_worst": zhang,
            "gptj_cs3": e[GPTJ_CS3], "gptj_cs2": e[GPTJ_CS2], "llama_cs3": e[X.LLAMA_CS3],
            "llama_cs2": e[LLAMA_CS2], "gpt2_cs2": e["GPT-2 small b112 (ALCF)"], "llama3_cs3": e[L3],
            "gptj_ratio": X.ratio(e, GPTJ_CS3, GPTJ_CS2)[1], "llama_ratio": X.ratio(e, X.LLAMA_CS3, LLAMA_CS2)[1],
            "verdict": f"rejected: a Zhang point at {zhang:.1%}; CS-3 Llama left out "
                       f"{p['cs3_leave_one_out'][X.LLAMA_CS3]:+.1%}"}


def batch_curve(batches: list[int]) -> list[dict]:
    out = []
    for name in ("gpt-j-6b", "llama-2-7b"):
        for gen in ("cs2", "cs3"):
            cluster = generations.preset(gen)
            rows = []
            for b in batches:
                rep = closed_form.step_time(TrainingJob(zoo.get(name), seq=2048, batch_seqs=b), cluster)
                rows.append({"model": name, "generation": gen, "batch": b, "samples_per_s": b / rep.step_time_s,
                             "tokens_per_micro_batch": 2048 * b / rep.micro_batches,
                             "micro_batches": rep.micro_batches, "recompute": rep.recompute,
                             "bottleneck": "wafer compute" if rep.compute_bound else "weight streaming",
                             "balance_tokens": rep.balance_tokens_per_system})
            top = max(r["samples_per_s"] for r in rows)
            out += [r | {"relative": r["samples_per_s"] / top} for r in rows]
    return out


def plot(curve: list[dict], sweep: list[dict], out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from wsim.studies.plots import figure, save

    fig, ax = figure(width=7, height=4.5)
    for name in dict.fromkeys(r["model"] for r in curve):
        for gen, style in (("cs2", "o-"), ("cs3", "s--")):
            sel = [r for r in curve if r["model"] == name and r["generation"] == gen]
            ax.plot([r["batch"] for r in sel], [r["relative"] for r in sel], style, label=f"{name}, {gen.upper()}")
    ax.plot([r["batch"] for r in sweep], [r["relative_measured"] for r in sweep], "k*", ms=9,
            label="llama-2-7b, 1 CS-3, measured (ALCF course logs)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch (sequences of 2048) on one system")
    ax.set_ylabel("throughput relative to the largest batch")
    ax.set_title("Small batches: weights streamed for few tokens (closed form, best plan)")
    ax.legend(fontsize=8)
    return save(fig, out / "cs3_batch_curve.png")


def main(argv=None) -> list[str]:
    args = parser("cs3_llama", __doc__).parse_args(argv)
    out = Path(args.out)
    with Timer("cs3_llama"):
        rows = mechanism_rows(args.quick) + ([] if args.quick else [pooled_row()])
        curve = batch_curve(QUICK_BATCHES if args.quick else BATCHES)
        sweep = sweep_rows()
        paths = [write_csv(out / "cs3_mechanisms.csv", rows, COLUMNS),
                 write_csv(out / "cs3_batch_sweep.csv", sweep, SWEEP),
                 write_csv(out / "cs3_batch_curve.csv", curve, CURVE), plot(curve, sweep, out)]
    log("wrote " + ", ".join(paths))
    return paths


def half_batch(curve: list[dict], name: str, gen: str) -> int | None:
    """The smallest batch reaching 90% of the largest batch's throughput."""
    sel = [r for r in curve if r["model"] == name and r["generation"] == gen and r["relative"] >= 0.9]
    return min((r["batch"] for r in sel), default=None)


def reading(out: Path) -> str:
    out = Path(out)
    rows = read_csv(out / "cs3_mechanisms.csv")
    curve = read_csv(out / "cs3_batch_curve.csv")
    sweep = read_csv(out / "cs3_batch_sweep.csv")
    lines = ["## CS-3 and Llama: candidate mechanisms", "",
             "Data: [cs3_mechanisms.csv](cs3_mechanisms.csv), [cs3_batch_sweep.csv](cs3_batch_sweep.csv), "
             "[cs3_batch_curve.csv](cs3_batch_curve.csv). Each candidate acts on every row and both "
             "generations; the one fitted parameter is refitted on the development set each time; a "
             "magnitude marked solved is the one that makes its target row exact (the CS-3 Llama-2-7B b1024 "
             "row, or Llama-3-8B for the head), the most favourable case for the candidate; the per-step "
             "candidates take the fixed cost fitted to the CS-3 batch sweep. b32: predicted throughput at "
             "batch 32 over batch 2048 (measured 0.84).", "",
             "| candidate | magnitude | refitted peak fraction | worst Zhang | CS-3 GPT-J | CS-3 Llama-2 | "
             "CS-2 LLaMA | CS-3 Llama-3 | GPT-J CS-3/CS-2 | Llama CS-3/CS-2 | b32 | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("zhang_worst") in (None, ""):
            lines.append(f"| {r['meaning']} | — | — | — | — | — | — | — | — | — | — | {r['verdict']} |")
            continue
        mag = "" if r["magnitude"] in (None, "") else f"{r['magnitude']:.3g}{' (solved)' if r['solved'] else ''}"
        b32 = "" if r.get("b32_relative") in (None, "") else f"{r['b32_relative']:.2f}"
        lines.append(f"| {r['meaning']} | {mag} | {r['matmul_peak_fraction']:.4g} | {r['zhang_worst']:.1%} | "
                     f"{r['gptj_cs3']:+.1%} | {r['llama_cs3']:+.1%} | {r['llama_cs2']:+.1%} | "
                     f"{r['llama3_cs3']:+.1%} | {r['gptj_ratio']:.2f} (2.05) | {r['llama_ratio']:.2f} (1.56) | "
                     f"{b32} | {r['verdict']} |")
    survivors = [r["meaning"] for r in rows if r.get("verdict") == "explains the rows"]
    lines += ["", "Reading: " + (f"{', '.join(survivors)} explain(s) the rows." if survivors else
              "no candidate explains the CS-3 Llama rows without moving another: the CS-3 GPT-J and "
              "Llama-2-7B rows are the same shape to the wafer (4096 wide, 28 or 32 layers, the same FLOPs "
              "a token, the same plan), so whatever brings Llama down brings GPT-J down with it, and the "
              "Llama-specific element-wise work is a thousandth of a step; the head of Llama-3's 128k "
              "vocabulary is 6% of its FLOPs; a per-step cost that gives the batch-32 fall is refused by "
              "Zhang et al.'s batch-128/256 pairs on the CS-2."), ""]
    lines += ["Llama-2-7B on one CS-3 against batch (course logs, R2.6.0; the model as it is, and the "
              "fixed-cost fit t(B) = t0 + B / r):", "",
              "| batch | measured | wsim | error | measured / b2048 | wsim / b2048 | fixed-cost fit | residual |",
              "|---|---|---|---|---|---|---|---|"]
    for r in sweep:
        lines.append(f"| {r['batch']} | {r['measured_samples_per_s']:.2f} | {r['predicted_samples_per_s']:.2f} | "
                     f"{r['error']:+.1%} | {r['relative_measured']:.3f} | {r['relative_predicted']:.3f} | "
                     f"{r['step_fit_samples_per_s']:.2f} | {r['step_fit_residual']:+.1%} |")
    lines.append("")
    lines += ["![throughput against batch, CS-2 and CS-3](cs3_batch_curve.png)", ""]
    gj2, gj3 = half_batch(curve, "gpt-j-6b", "cs2"), half_batch(curve, "gpt-j-6b", "cs3")
    ll2, ll3 = half_batch(curve, "llama-2-7b", "cs2"), half_batch(curve, "llama-2-7b", "cs3")
    one = {(r["model"], r["generation"]): r for r in curve if r["batch"] == 1}
    lines += [f"Batch dependence (structure, not fitted): a step streams every weight at least twice "
              f"whatever the batch, so with few sequences per system the stream, not the wafer, sets "
              f"the step. 90% of the large-batch throughput needs {gj2} sequences of 2048 per CS-2 and "
              f"{gj3} per CS-3 for GPT-J 6B ({ll2} and {ll3} for Llama-2-7B): the CS-3 doubles the FLOPs "
              f"on 1.3x the I/O, so it needs about twice the tokens a pass (the closed form's balance point, "
              f"where a layer's compute equals its weight stream: "
              f"{one[('gpt-j-6b', 'cs2')]['balance_tokens']:,.0f} tokens on a CS-2, "
              f"{one[('gpt-j-6b', 'cs3')]['balance_tokens']:,.0f} on a CS-3, for GPT-J). At one sequence a system "
              f"throughput is {one[('gpt-j-6b', 'cs2')]['relative']:.0%} (CS-2) and "
              f"{one[('gpt-j-6b', 'cs3')]['relative']:.0%} (CS-3) of its plateau "
              f"({one[('gpt-j-6b', 'cs3')]['bottleneck']}). The measured CS-3 sweep falls at 32 to 128 "
              f"sequences, where every plan of the model is compute-bound (32 sequences of 2048 are 65,536 "
              f"tokens a pass, above the balance point): the model's fall, from the weight stream, starts "
              f"below 16 sequences, so it does not reproduce the measured one (a named miss, above).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
