"""GPU cost model validation: every published run, predicted vs published, by group.

The development rows (SC21 Tables 1 and 2, MT-NLG, BLOOM, OPT, GPT-NeoX; the Megatron-LM r0.8 H100
table, NeMo 24.07 FP8, DGX Cloud recipes v24.11.1) fitted the global parameters
(``wsim.gpu.validation.fit``); the validation rows (FlashAttention repository, MosaicML LLM
Foundry, DGX Cloud recipes v25.04, Megatron-Bridge H100/B200/GB200, Llama 3 Table 4) were not used
to fit anything. For each development group the
leave-one-group-out error refits without the group and predicts it. The alternatives table shows
what the structural choices do: the NICs ZeRO-3 gathers use, and the compute slowdown while
communication overlaps. Writes ``gpu_validation.csv`` (every row), ``gpu_validation_groups.csv``
(per group, with leave-one-group-out), ``gpu_validation_alternatives.csv``,
``gpu_validation_moe.csv`` (the mixture-of-experts rows, all validation, kept apart:
docs/gpu-model.md section 8) and ``gpu_validation.png``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from experiments.common import Timer, log, parser, read_csv, write_csv
from wsim.gpu import validation as V
from wsim.gpu.calibration import EFFICIENCY, STACKS

ROW_COLUMNS = ["group", "name", "role", "model", "gpu", "gpus", "batch", "seq", "metric", "published",
               "predicted", "error", "tp", "cp", "pp", "dp", "micro_batch", "interleave", "zero",
               "stack", "recompute", "attention", "precision", "fits", "source", "notes"]
# the mixture-of-experts rows (wsim.gpu.published_moe, docs/gpu-model.md section 8), apart
MOE_COLUMNS = ROW_COLUMNS[:15] + ["ep", "etp"] + ROW_COLUMNS[15:]
GROUP_COLUMNS = ["group", "role", "rows", "mean_abs_error", "worst_error", "logo_mean_abs_error",
                 "logo_worst_error", "logo_refit"]
ALT_COLUMNS = ["alternative", "group", "role", "mean_abs_error", "worst_error"]


def alternatives() -> dict:
    """Structural alternatives to the shipped choices: name -> (Efficiency, stacks)."""
    def stacks(**changes):
        out = dict(STACKS)
        for name, kw in changes.items():
            out[name] = dataclasses.replace(STACKS[name], **kw)
        return out

    return {
        "shipped": (EFFICIENCY, dict(STACKS)),
        "deepspeed ZeRO-3 gathers multi-rail (sharded_nics node)":
            (EFFICIENCY, stacks(deepspeed=dict(sharded_nics="node"))),
        "FSDP gathers through each GPU's own NIC (sharded_nics gpu)":
            (EFFICIENCY, stacks(fsdp=dict(sharded_nics="gpu"))),
        "no compute slowdown while overlapping (overlap_compute_penalty 0)":
            (dataclasses.replace(EFFICIENCY, overlap_compute_penalty=0.0), dict(STACKS)),
        "overlap_compute_penalty 0.3": (dataclasses.replace(EFFICIENCY, overlap_compute_penalty=0.3),
                                        dict(STACKS)),
        "elementwise_passes 3.0": (dataclasses.replace(EFFICIENCY, elementwise_passes=3.0),
                                   dict(STACKS)),
    }


def main(argv=None) -> list[str]:
    args = parser("gpu_validation", __doc__).parse_args(argv)
    out = Path(args.out)
    with Timer("gpu_validation"):
        preds = V.current()
        rows = [p.to_dict() for p in preds]
        summary = V.summary(preds)
        logo = {} if args.quick else V.leave_one_group_out(sweeps=2)
        groups = []
        for g, s in summary.items():
            row = {"group": g, **s}
            if g in logo:
                errs = [p.error for p in logo[g]["predictions"]]
                row |= {"logo_mean_abs_error": sum(map(abs, errs)) / len(errs),
                        "logo_worst_error": max(errs, key=abs),
                        "logo_refit": "; ".join(f"{k} {v:.3g}" for k, v in logo[g]["values"].items())}
            groups.append(row)
        alts = []
        for name, (eff, stacks) in (list(alternatives().items())[:1] if args.quick
                                    else alternatives().items()):
            log(f"alternative: {name}")
            for g, s in V.summary(V.predict_all(eff=eff, stacks=stacks)).items():
                alts.append({"alternative": name, "group": g, **s})
        moe = [p.to_dict() for p in V.current_moe()]
    paths = [write_csv(out / "gpu_validation.csv", rows, ROW_COLUMNS),
             write_csv(out / "gpu_validation_moe.csv", moe, MOE_COLUMNS),
             write_csv(out / "gpu_validation_groups.csv", groups, GROUP_COLUMNS),
             write_csv(out / "gpu_validation_alternatives.csv", alts, ALT_COLUMNS),
             plot(rows, out / "gpu_validation.png")]
    for p in paths:
        log(f"wrote {p}")
    return paths


def plot(rows: list[dict], path: Path) -> str:
    from wsim.studies.plots import COLOURS, figure, save

    fig, (a1, a2) = figure(1, 2, width=6.0, height=5.0)
    tf = [r for r in rows if r["metric"].startswith("tflops")]
    for role, colour, marker in (("development", COLOURS[0], "o"), ("validation", COLOURS[1], "s")):
        pts = [r for r in tf if r["role"] == role]
        if pts:
            a1.scatter([r["published"] for r in pts], [r["predicted"] for r in pts], s=18,
                       color=colour, marker=marker, label=role)
    lo = min(min(r["published"], r["predicted"]) for r in tf) * 0.9
    hi = max(max(r["published"], r["predicted"]) for r in tf) * 1.1
    a1.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    for f in (0.9, 1.1):
        a1.plot([lo, hi], [lo * f, hi * f], color="grey", lw=0.6, ls="--")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("published TFLOP/s per GPU")
    a1.set_ylabel("predicted TFLOP/s per GPU")
    a1.set_title("TFLOP/s rows (dashed: +-10%)")
    a1.legend(fontsize=7)
    groups = list(dict.fromkeys(r["group"] for r in rows))
    for i, g in enumerate(groups):
        pts = [r for r in rows if r["group"] == g]
        colour = COLOURS[0] if pts[0]["role"] == "development" else COLOURS[1]
        a2.scatter([100 * r["error"] for r in pts], [i] * len(pts), s=14, color=colour)
    for x in (-15, -5, 5, 15):
        a2.axvline(x, color="grey", lw=0.6, ls="--")
    a2.axvline(0, color="black", lw=0.8)
    a2.set_yticks(range(len(groups)))
    a2.set_yticklabels(groups, fontsize=7)
    a2.invert_yaxis()
    a2.set_xlabel("throughput error, predicted / published - 1 (%)")
    a2.set_title("every row (blue: development, orange: validation)")
    fig.tight_layout()
    return save(fig, path)


def _pct(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}%"


def reading(out: Path) -> str:
    out = Path(out)
    rows = read_csv(out / "gpu_validation.csv")
    groups = read_csv(out / "gpu_validation_groups.csv")
    lines = ["## 4b. GPU cost model: predicted vs published", "", "![gpu validation](gpu_validation.png)",
             "", "Data: [gpu_validation.csv](gpu_validation.csv) (every row, with its source), "
             "[gpu_validation_groups.csv](gpu_validation_groups.csv) (per group, with "
             "leave-one-group-out), [gpu_validation_alternatives.csv](gpu_validation_alternatives.csv) "
             "(structural alternatives). Errors: predicted / published throughput - 1.", "",
             "| group | role | rows | mean abs error | worst | leave-one-group-out worst |",
             "|---|---|---|---|---|---|"]
    for g in groups:
        lines.append(f"| {g['group']} | {g['role']} | {g['rows']} | "
                     f"{100 * g['mean_abs_error']:.1f}% | {_pct(g['worst_error'])} | "
                     f"{_pct(g.get('logo_worst_error'))} |")
    lines += ["", "| row | role | published | predicted | error | plan |", "|---|---|---|---|---|---|"]
    for r in rows:
        plan = (f"tp {r['tp']} cp {r['cp']} pp {r['pp']} dp {r['dp']} mb {r['micro_batch']} "
                f"v {r['interleave']} ZeRO-{r['zero']} {r['stack']}")
        lines.append(f"| {r['group']}/{r['name']} | {r['role'][:3]} | {r['published']:.4g} "
                     f"({r['metric']}) | {r['predicted']:.4g} | {_pct(r['error'])} | {plan} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
