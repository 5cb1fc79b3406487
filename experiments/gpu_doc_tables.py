"""docs/gpu-model.md's validation tables, computed rather than typed: ``--write`` puts them in the doc.

Two blocks between HTML-comment markers: section 5's per-group table of the dense rows with its
summary sentence (``wsim.gpu.validation.current()``, ``summary()``, tolerances from
``validation.TOLERANCE``), and section 8's mixture-of-experts row table with its group table
(``current_moe()``). ``python -m experiments.gpu_doc_tables --write`` regenerates them; ``--check``
exits 1 if the doc differs from what the code gives now (``tests/experiments/test_gpu_doc_tables.py``
runs it; it takes well under a second). A third block prints the leave-one-group-out errors stored by
``experiments.gpu_logo`` (the refit takes about 35 s, so it is stored with a fingerprint of the
predictions it describes; ``gpu_logo --check`` says when it is stale).
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments import marked_blocks as MB

DOC = Path(__file__).resolve().parents[1] / "docs" / "gpu-model.md"
PROG = "python -m experiments.gpu_doc_tables"
DENSE = (f"<!-- dense validation table: begin ({PROG} --write) -->", "<!-- dense validation table: end -->")
MOE = (f"<!-- moe validation table: begin ({PROG} --write) -->", "<!-- moe validation table: end -->")
LOGO = (f"<!-- leave-one-group-out: begin ({PROG} --write) -->", "<!-- leave-one-group-out: end -->")
WITHIN = 0.15  # the "within 15%" count the doc quotes (the validated-regime threshold, wsim.gpu.regimes)
MOE_WITHIN = (0.15, 0.25)  # the MoE rows: within 15% and within 25% (tests/gpu/test_gpu_moe.py's 25%)

# group -> the name the doc prints
DENSE_NAMES = {
    "sc21-table1": "SC21 Table 1", "sc21-zero3": "SC21 Table 2 ZeRO-3", "sc21-ptdp": "SC21 Table 2 PTD-P",
    "mt-nlg": "MT-NLG 530B", "bloom": "BLOOM-176B", "opt": "OPT-175B", "neox": "GPT-NeoX-20B",
    "mcore-h100": "Megatron-LM r0.8 H100 table", "nemo-24.07": "NeMo 24.07 FP8 H100",
    "dgxc-24.11": "DGX Cloud recipes v24.11.1 (H100)", "flash-attn": "FlashAttention GPT-3 (A100)",
    "mosaic-a100": "MosaicML FSDP, A100", "mosaic-h100": "MosaicML FSDP, H100 (incl. FP8)",
    "dgxc-25.04": "DGX Cloud recipes v25.04 (H100)", "bridge-h100": "Megatron-Bridge 25.09/25.11 H100",
    "bridge-blackwell": "Megatron-Bridge B200 / GB200 NVL72",
    "bridge26-dense": "Megatron-Bridge 26.04.01 H100 / GB200 NVL72",
    "llama3-table4": "Llama 3 Table 4 (405B, 8K-16K H100)", "titan-a100": "torchtitan FSDP2, A100",
}
MOE_NAMES = {"mcore-moe": "mcore-moe (Megatron-Core README, Mixtral 8x7B)",
             "bridge-moe": "bridge-moe (Megatron-Bridge 25.09/25.11)",
             "bridge26-moe": "bridge26-moe (Megatron-Bridge 26.04.01)",
             "nemo-moe": "nemo-moe (NeMo 25.02/25.04, Mixtral)",
             "deepseek-v3": "deepseek-v3 (technical report)"}
UNITS = {"tflops_model": "TFLOP/s", "tokens_per_s_per_gpu": "tok/s/GPU"}


def pct(x: float) -> str:
    return f"{100 * abs(x):.1f}%"


def signed(x: float) -> str:
    return f"{100 * x:+.1f}%".replace("-", "\u2212")


def _name(names: dict, group: str) -> str:
    if group not in names:
        raise SystemExit(f"{DOC.name}: group {group!r} has no printed name in experiments/gpu_doc_tables.py")
    return names[group]


def _mean(preds) -> float:
    return sum(abs(p.error) for p in preds) / len(preds)


def _within(preds, tol: float) -> int:
    return sum(abs(p.error) <= tol for p in preds)


def dense() -> str:
    from wsim.gpu import validation as V
    from wsim.gpu.specs import generation, gpu_spec

    preds = V.current()
    out = ["| group | role | rows | mean abs error | worst | quoted tolerance |", "|---|---|---|---|---|---|"]
    for g, s in V.summary(preds).items():
        tol = f"{V.TOLERANCE[g]:.0%}"
        if g == "sc21-table1":
            tol = f"{tol} every row, mean {V.TABLE1_MEAN_TOLERANCE:.0%}"
        out.append(f"| {_name(DENSE_NAMES, g)} | {s['role']} | {s['rows']} | {pct(s['mean_abs_error'])} | "
                   f"{signed(s['worst_error'])} | {tol} |")
    dev = [p for p in preds if p.row.role == V.DEVELOPMENT]
    val = [p for p in preds if p.row.role != V.DEVELOPMENT]
    modern = [p for p in preds if generation(gpu_spec(p.row.gpu)) != "ampere"]
    out += ["", f"All {len(preds)} rows: mean absolute error {pct(_mean(preds))} ({100 * _mean(preds):.2f}%; "
            f"development {pct(_mean(dev))}, validation {pct(_mean(val))}), {_within(preds, WITHIN)} within "
            f"{WITHIN:.0%}; the {len(modern)} modern rows (H100, B200, GB200): mean {pct(_mean(modern))}, "
            f"{_within(modern, WITHIN)} within {WITHIN:.0%}."]
    return "\n".join(out)


def _recipe(p) -> str:
    pl = p.report.plan
    parts = [p.report.precision]
    parts += ["CUDA graphs"] * pl.cuda_graphs + ["router graphs"] * pl.moe_router_graphs
    parts += ["a2a overlap"] * pl.moe_ep_overlap
    parts += [f"max {pl.moe_max_nodes} nodes"] if pl.moe_max_nodes else []
    parts += ["FP8 dispatch"] * pl.moe_fp8_dispatch + ["padded"] * pl.moe_pad_to_capacity
    parts += [f"capacity {pl.moe_capacity_factor:.1f}"] if pl.moe_capacity_factor is not None else []
    parts += ["flex"] if pl.moe_dispatcher == "flex" else []
    return ", ".join(parts)


def _recompute(p) -> str:
    pl = p.report.plan
    if pl.recompute == "full" and pl.recompute_early_stop:
        return "full (early stop)"
    return f"selective: {', '.join(pl.recompute_modules)}" if pl.recompute == "selective" else pl.recompute


def moe() -> str:
    from wsim.gpu import validation as V

    preds = V.current_moe()
    out = ["| row | GPUs | plan (TP/PP/VP/EP/ETP, MBS, GBS) | precision, recipe | published | predicted | error | "
           "recompute (the recipe's; else the fastest that fits) |", "|---|---|---|---|---|---|---|---|"]
    for p in preds:
        r, pl = p.row, p.report.plan
        cp = f" CP{pl.cp}" if pl.cp > 1 else ""
        out.append(f"| {r.label} | {r.gpus} {r.gpu} | TP{pl.tp} PP{pl.pp}{cp} VP{pl.interleave} EP{pl.ep} ETP{pl.etp}, "
                   f"{pl.micro_batch}, {r.batch} | {_recipe(p)} | {r.published:,.0f} {UNITS[r.metric]} | "
                   f"{p.predicted:,.0f} | {signed(p.error)} | {_recompute(p)} |")
    lo, hi = MOE_WITHIN
    out += ["", "| group | rows | mean abs error | worst | within 15% |", "|---|---|---|---|---|"]
    for g, s in V.summary(preds).items():
        within = _within([p for p in preds if p.row.group == g], lo)
        out.append(f"| {_name(MOE_NAMES, g)} | {s['rows']} | {pct(s['mean_abs_error'])} | "
                   f"{signed(s['worst_error'])} | {within} |")
    out += ["", f"All {len(preds)} rows: mean |error| {pct(_mean(preds))}, {_within(preds, lo)} within {lo:.0%}, "
            f"{_within(preds, hi)} within {hi:.0%}."]
    return "\n".join(out)


def logo() -> str:
    """The stored leave-one-group-out refit (experiments.gpu_logo), one line per development group."""
    from experiments import gpu_logo as L

    stored = L.load()
    parts = [f"{_name(DENSE_NAMES, g)} {signed(d['worst_error'])} (mean {pct(d['mean_abs_error'])})"
             for g, d in stored["groups"].items()]
    return (f"Leave-one-group-out (each development group refitted without it, then predicted; "
            f"`python -m experiments.gpu_logo --write`, stored in `docs/data/gpu_logo.json`, "
            f"{stored['sweeps']} sweeps a refit), worst error: " + "; ".join(parts) + ".")


def blocks() -> list:
    return [(*DENSE, dense()), (*MOE, moe()), (*LOGO, logo())]


def main(argv=None) -> int:
    return MB.cli(argv, PROG, __doc__.splitlines()[0], DOC, blocks)


if __name__ == "__main__":
    sys.exit(main())
