"""The GPU half of the MoE study (experiments/moe_scaling.py): the best GPU plan for each MoE model at
the study's global batch and sequence, and the CS clusters it is compared with.

GPU rows: ``wsim.gpu.search`` (the fastest plan that fits: TP/CP/PP/DP, EP/ETP, micro-batch, interleave,
recompute, ZeRO, stack) at the time-to-train table's global batch (4096 x 4096, BF16, flash attention)
on H100 counts that span the CS clusters' compute (64 ... 2048; one H100 has 1/16 of a CS-3's dense
peak) and on B200. Each row carries the regime the GPU model puts the plan in (``wsim.gpu.regimes``);
the headline figure of a count is the fastest plan inside a validated regime where one exists, the
fastest plan of any regime beside it, labelled (as experiments/gpu_comparison.py does). The fastest
validated plan is the search's ``validated_alternative``, or, where the search returns none, a search
restricted to each validated mixture-of-experts regime's fixed conditions (its stack, ZeRO class and
the tp/cp/pp/recompute/sequence-parallel values its rows all share), kept only if the result
classifies as validated.

DeepSeek-V3 is also run as it was trained (arXiv 2412.19437: 2,048 H800, FP8, batch 15,360 x 4,096):
the searched plan and the published plan (PP 16 x EP 64, ``wsim.gpu.published_moe``), beside the
published 180K H800 GPU-hours per 10^12 tokens (Table 1).

CS against GPU: each H100 count against as many CS-2 / CS-3 (matched device count) and against the CS
cluster of the same dense 16-bit peak (matched peak FLOPs: round(GPUs x 989 TFLOP/s / CS peak)), closed
form, the faster of conventional and BTA batching.
"""

from __future__ import annotations

from experiments.common import days
from wsim.errors import ConfigError
from wsim.gpu import estimate, gpu_spec, search
from wsim.gpu.knobs import KNOBS as _ALL_KNOBS

# the options written per plan (recompute_modules: its own column, the selective set as "a+b";
# recompute_early_stop: an fsdp-stack option, which no MoE plan runs on)
KNOBS = tuple(k for k in _ALL_KNOBS if k not in ("recompute_modules", "recompute_early_stop"))

SEQ = 4096
BATCH = 4096
ATTENTION = "flash"
TOKENS = 1e12
# (gpu, count, precision): H100 counts from 4 to 128 CS-3 of dense peak; B200 at the middle of them
GPU_GRID = [("h100-80gb", 64), ("h100-80gb", 256), ("h100-80gb", 1024), ("h100-80gb", 2048),
            ("b200-180gb", 256), ("b200-180gb", 1024)]
QUICK_GPU_GRID = [("h100-80gb", 64)]
# DeepSeek-V3 as trained: arXiv 2412.19437, sec. 3.2 (2,048 H800), sec. 3.3 (FP8), sec. 4.2 (batch 15,360)
DSV3_TRAINED = ("deepseek-v3", "h800-80gb", 2048, 15360, "fp8")
DSV3_PUBLISHED_GPU_HOURS = 180e3  # per 10^12 tokens, arXiv 2412.19437 Table 1 (2.788M H800 h / 14.8T)
PLAN_KEYS = ("tp", "pp", "dp", "cp", "ep", "etp", "micro_batch", "interleave", "recompute", "zero",
             "sequence_parallel", "stack")
COLUMNS = ["model", "gpu", "gpus", "batch_seqs", "precision", "source", "peak_pflops", *PLAN_KEYS,
           "recompute_modules", *KNOBS,
           "step_time_s", "tokens_per_s", "days_per_1e12_tokens", "gpu_hours_per_1e12_tokens",
           "published_gpu_hours_per_1e12_tokens", "mfu", "memory_per_gpu_gib", "bound", "bound_share",
           "ep_comm_share", "bubble_share", "regime", "regime_name", "note"]
MATCH_COLUMNS = ["model", "gpu", "gpus", "source", "gpu_days", "gpu_bound", "gpu_regime", "match", "cs", "cs_systems",
                 "cs_days", "cs_bound", "cs_bta", "faster", "gpu_over_cs_days"]


def _status(rep) -> str:
    return rep.regime.get("status") or ("validated" if rep.validated else "extrapolated")


def gpu_row(model, name: str, gpu: str, gpus: int, batch: int, precision: str, source: str, rep) -> dict:
    """One GPU row from a ``GpuReport`` (the bound: the largest term of the step's breakdown)."""
    b = rep.breakdown_s
    bound = max(b, key=b.get)
    tps = rep.tokens_per_s
    return {"model": name, "gpu": gpu, "gpus": gpus, "batch_seqs": batch, "precision": precision,
            "source": source, "peak_pflops": gpus * gpu_spec(gpu).peak_for(precision) / 1e15,
            **{k: getattr(rep.plan, k) for k in PLAN_KEYS + KNOBS},
            "recompute_modules": "+".join(rep.plan.recompute_modules)
            if rep.plan.recompute == "selective" else "",
            "step_time_s": rep.step_time_s, "tokens_per_s": tps, "days_per_1e12_tokens": days(TOKENS / tps),
            "gpu_hours_per_1e12_tokens": TOKENS / tps * gpus / 3600, "mfu": rep.mfu,
            "memory_per_gpu_gib": rep.memory.total_bytes / 2**30, "bound": bound.removesuffix("_s"),
            "bound_share": b[bound] / rep.step_time_s, "ep_comm_share": b["ep_comm_s"] / rep.step_time_s,
            "bubble_share": b["bubble_s"] / rep.step_time_s, "regime": _status(rep),
            "regime_name": rep.regime.get("name") or rep.regime.get("nearest")}


def _validated_alternative(model, fastest, *, gpu, gpus, batch, precision):
    alt = fastest.search.get("validated_alternative")  # the search's own, exact (tests/gpu)
    if alt is None:
        return None
    plan = {k: v for k, v in alt["plan"].items() if k not in ("dp", "chosen")}
    return estimate(model, seq=SEQ, batch=batch, gpus=gpus, gpu=gpu, attention=ATTENTION,
                    precision=precision, **plan)


def gpu_rows(models: dict, grid, trained: bool) -> list[dict]:
    """``models``: name -> ModelSpec. Per (model, gpu, count): the fastest plan, and the fastest
    validated one where it is another plan; a count where nothing fits is a row saying so."""
    rows = []
    for name, model in models.items():
        for gpu, n in grid:
            try:
                rep = search(model, seq=SEQ, batch=BATCH, gpus=n, gpu=gpu, attention=ATTENTION)
            except ConfigError as e:
                rows.append({"model": name, "gpu": gpu, "gpus": n, "batch_seqs": BATCH, "precision": "bf16",
                             "source": "search", "peak_pflops": n * gpu_spec(gpu).peak_for("bf16") / 1e15,
                             "note": str(e).split(";")[0]})
                continue
            rows.append(gpu_row(model, name, gpu, n, BATCH, "bf16", "search", rep))
            if not rep.validated:
                v = _validated_alternative(model, rep, gpu=gpu, gpus=n, batch=BATCH, precision="bf16")
                if v is not None:
                    rows.append(gpu_row(model, name, gpu, n, BATCH, "bf16", "search (validated regime)", v))
    if trained and DSV3_TRAINED[0] in models:
        rows += dsv3_as_trained(models[DSV3_TRAINED[0]])
    return rows


def dsv3_as_trained(model) -> list[dict]:
    """DeepSeek-V3 on 2,048 H800 in FP8 at its batch: the searched plan and the published one."""
    from wsim.gpu.published_moe import validation_rows
    from wsim.gpu.validation import predict

    name, gpu, n, batch, prec = DSV3_TRAINED
    rep = search(model, seq=SEQ, batch=batch, gpus=n, gpu=gpu, attention=ATTENTION, precision=prec)
    row = next(r for r in validation_rows() if r.group == "deepseek-v3")
    pub = predict(row).report
    out = [gpu_row(model, name, gpu, n, batch, prec, "search (as trained: batch, GPUs, FP8)", rep),
           gpu_row(model, name, gpu, n, batch, prec, "published plan (PP 16 x EP 64)", pub)]
    for r in out:
        r["published_gpu_hours_per_1e12_tokens"] = DSV3_PUBLISHED_GPU_HOURS
    return out


def match_rows(gpu: list[dict], cs_point) -> list[dict]:
    """Each H100 search row (the fastest of any regime and, where there is one, the validated) against
    CS-2 and CS-3 at the same count and at the same dense peak; ``cs_point(model, preset, n)`` -> the
    faster of conventional and BTA batching (a time-to-train row), or None beyond the cluster's size."""
    from wsim.cluster import generations

    out = []
    for g in gpu:
        if g["gpu"] != "h100-80gb" or g.get("tokens_per_s") is None or g["batch_seqs"] != BATCH:
            continue
        for preset in ("cs2", "cs3"):
            per = generations.preset(preset, 1).cs2.peak_flops_per_s / 1e15
            counts = {"device count": g["gpus"], "peak FLOPs": max(1, round(g["peak_pflops"] / per))}
            for match, n in counts.items():
                c = cs_point(g["model"], preset, n)
                if c is None:
                    continue
                gd, cd = g["days_per_1e12_tokens"], c["days_per_1e12_tokens"]
                out.append({"model": g["model"], "gpu": g["gpu"], "gpus": g["gpus"], "source": g["source"],
                            "gpu_days": gd,
                            "gpu_bound": g["bound"], "gpu_regime": g["regime"], "match": match,
                            "cs": preset, "cs_systems": n, "cs_days": cd, "cs_bound": c["bound"],
                            "cs_bta": c["bta"], "faster": "GPU" if gd < cd else "CS",
                            "gpu_over_cs_days": gd / cd})
    return out


def _cs_points(train: list[dict], match: list[dict], model: str, preset: str) -> list[tuple]:
    """(systems, days) of the faster batching, from the time-to-train table and the matched rows."""
    pts: dict = {}
    for r in train:
        if r["model"] == model and r["cluster"] == preset:
            pts[r["systems"]] = min(pts.get(r["systems"], float("inf")), r["days_per_1e12_tokens"])
    for m in match:
        if m["model"] == model and m["cs"] == preset:
            pts[m["cs_systems"]] = min(pts.get(m["cs_systems"], float("inf")), m["cs_days"])
    return sorted(pts.items())


def plot(train: list[dict], gpu: list[dict], match: list[dict], out) -> str:
    from wsim.studies.plots import figure, log2_axis, save

    models = list(dict.fromkeys(r["model"] for r in train))
    fig, axes = figure(1, len(models), width=5.2, height=4.6, squeeze=False)
    top = max([r["systems"] for r in train] + [r["gpus"] for r in gpu] + [1])
    for ax, m in zip(axes[0], models):
        for preset, colour in (("cs2", "tab:green"), ("cs3", "tab:red")):
            pts = _cs_points(train, match, m, preset)
            if pts:
                ax.plot(*zip(*pts), "s-", color=colour, label=f"{preset.upper().replace('CS', 'CS-')} "
                        "(faster of conventional / BTA)")
        for dev, colour in (("h100-80gb", "tab:blue"), ("b200-180gb", "tab:purple"), ("h800-80gb", "tab:orange")):
            rows = [r for r in gpu if r["model"] == m and r["gpu"] == dev and r.get("tokens_per_s")]
            fastest = sorted((r for r in rows if r["source"] == "search"), key=lambda r: r["gpus"])
            if fastest:
                ax.plot([r["gpus"] for r in fastest], [r["days_per_1e12_tokens"] for r in fastest], "o--",
                        color=colour, mfc="none", label=f"{dev.upper()} fastest plan (extrapolated)")
            for r in rows:
                if r["regime"] == "validated":
                    ax.plot([r["gpus"]], [r["days_per_1e12_tokens"]], "o", color=colour, ms=8,
                            label=f"{dev.upper()} fastest validated plan")
                elif r["source"] != "search":
                    ax.plot([r["gpus"]], [r["days_per_1e12_tokens"]], "D", color=colour, mfc="none",
                            label=f"{dev.upper()} {r['batch_seqs']} x {SEQ}, {r['precision']}: {r['source']}")
        log2_axis(ax, top, "x")
        ax.set_yscale("log")
        ax.set_xlabel("devices (CS systems or GPUs)")
        ax.set_ylabel("days per 10^12 tokens")
        ax.set_title(m, fontsize=9)
        ax.legend(fontsize=5.5, loc="lower left")
    return save(fig, out / "moe_gpu_vs_cs.png")


def _plan(r: dict) -> str:
    s = f"TP {r['tp']} x CP {r['cp']} x PP {r['pp']} x DP {r['dp']}, EP {r['ep']} (ETP {r['etp']}), mb {r['micro_batch']}"
    if r["interleave"] and r["interleave"] > 1:
        s += f", VP {r['interleave']}"
    s += f", recompute {r['recompute']}, ZeRO-{r['zero']}" + (", SP" if r["sequence_parallel"] else "")
    return s + f", {r['stack']}"


def _cs_name(preset: str) -> str:
    return preset.upper().replace("CS", "CS-")


def reading_lines(gpu: list[dict], match: list[dict]) -> list[str]:
    lines = ["", "### GPU against CS", "", "![moe gpu vs cs](moe_gpu_vs_cs.png)", "",
             "Data: [moe_gpu.csv](moe_gpu.csv), [moe_gpu_vs_cs.csv](moe_gpu_vs_cs.csv). GPU: `wsim.gpu.search` "
             f"at the same global batch ({BATCH} x {SEQ}, BF16, flash attention); bound: the largest term of the "
             "step's breakdown (compute, all-to-all = ep_comm, bubble, ...). Regime: where the GPU model was "
             "validated (`wsim.gpu.regimes`): the only validated mixture-of-experts regime is Megatron-Core "
             "Mixtral 8x7B on 32-128 H100 in BF16 (TP 1, PP 4, no recompute; one row, -6.9%); every other "
             "row is an extrapolation of the cost model, not a headline.", "",
             "| model | GPUs | source | plan | tokens/s | days per 10^12 tokens | GPU-hours per 10^12 "
             "(published) | MFU | bound (all-to-all, bubble) | GiB per GPU | regime |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in gpu:
        if r.get("tokens_per_s") is None:
            lines.append(f"| {r['model']} | {r['gpus']} {r['gpu']} | {r['source']} | {r['note']} | | | | | | | |")
            continue
        pub = (f" ({r['published_gpu_hours_per_1e12_tokens'] / 1e3:.0f}K)"
               if r.get("published_gpu_hours_per_1e12_tokens") else "")
        lines.append(f"| {r['model']} | {r['gpus']} {r['gpu']} | {r['source']} ({r['batch_seqs']} x {SEQ}, "
                     f"{r['precision']}) | {_plan(r)} | {r['tokens_per_s']:.4g} | {r['days_per_1e12_tokens']:.3g} | "
                     f"{r['gpu_hours_per_1e12_tokens'] / 1e3:.0f}K{pub} | {r['mfu']:.1%} | {r['bound']} "
                     f"{r['bound_share']:.0%} ({r['ep_comm_share']:.0%}, {r['bubble_share']:.0%}) | "
                     f"{r['memory_per_gpu_gib']:.1f} | {r['regime']} |")
    lines += ["", "Matched (H100 against CS; CS: the faster of conventional and BTA batching, closed form; "
              "matched peak: as many CS systems as give the H100 cluster's dense 16-bit peak, 989 TFLOP/s per "
              "H100 against 7.5 PFLOP/s per CS-2 and 15.8 per CS-3):", "",
              "| model | H100 (regime) | match | CS | days H100 | days CS | faster | H100 / CS days | "
              "bound H100 / CS |", "|---|---|---|---|---|---|---|---|---|"]
    for m in match:
        lines.append(f"| {m['model']} | {m['gpus']} ({m['gpu_regime']}) | {m['match']} | {m['cs_systems']} "
                     f"{_cs_name(m['cs'])}{' BTA' if m['cs_bta'] else ''} | {m['gpu_days']:.3g} | "
                     f"{m['cs_days']:.3g} | {m['faster']} | {m['gpu_over_cs_days']:.2f} | "
                     f"{m['gpu_bound']} / {m['cs_bound']} |")
    lines += ["", "Reading (GPU against CS): " + " ".join(_model_notes(gpu, match)) + _dsv3_note(gpu), ""]
    return lines


def _headline(gpu: list[dict], model: str, n: int) -> dict | None:
    """The H100 figure of a count at the study's batch: the fastest validated plan where there is one,
    else the fastest of any regime (labelled extrapolated)."""
    rows = [r for r in gpu if r["model"] == model and r["gpu"] == "h100-80gb" and r["gpus"] == n
            and r["batch_seqs"] == BATCH and r.get("tokens_per_s")]
    return next((r for r in rows if r["regime"] == "validated"), rows[0] if rows else None)


def _model_notes(gpu: list[dict], match: list[dict]) -> list[str]:
    notes = []
    for model in dict.fromkeys(m["model"] for m in match):
        parts = []
        for kind in ("device count", "peak FLOPs"):
            for preset in ("cs2", "cs3"):
                sel = [m for m in match if m["model"] == model and m["match"] == kind and m["cs"] == preset
                       and m["source"] == _headline(gpu, model, m["gpus"])["source"]]
                if not sel:
                    continue
                sides = []
                for side in ("GPU", "CS"):
                    at = [f"{m['gpus']} H100 ({m['gpu_regime']}) / {m['cs_systems']} {_cs_name(preset)}: "
                          f"{m['gpu_over_cs_days']:.2f}" for m in sel if m["faster"] == side]
                    if at:
                        sides.append(f"{'the GPUs' if side == 'GPU' else _cs_name(preset)} faster at " + ", ".join(at))
                parts.append(f"matched {kind} against {_cs_name(preset)} (H100 / CS days): " + "; ".join(sides)
                             + f" [CS bound: {', '.join(sorted({m['cs_bound'] for m in sel}))}]")
        counts = sorted({r["gpus"] for r in gpu if r["model"] == model and r["gpu"] == "h100-80gb"})
        heads = [h for h in (_headline(gpu, model, n) for n in counts) if h]
        bounds = ", ".join(f"{r['gpus']}: {r['bound']} {r['bound_share']:.0%}, all-to-all "
                           f"{r['ep_comm_share']:.0%}, bubble {r['bubble_share']:.0%} ({r['regime']})" for r in heads)
        none = [f"{r['gpus']} {r['gpu']}" for r in gpu if r["model"] == model and r.get("tokens_per_s") is None]
        notes.append(f"**{model}**: " + "; ".join(parts) + f". H100 step: {bounds}"
                     + (f"; no plan fits on {', '.join(none)}" if none else "") + ".")
    return notes


def _dsv3_note(gpu: list[dict]) -> str:
    rows = [r for r in gpu if r.get("published_gpu_hours_per_1e12_tokens")]
    if not rows:
        return ""
    pub = rows[0]["published_gpu_hours_per_1e12_tokens"]
    return (" Check against DeepSeek-V3's own run (2,048 H800, FP8, batch 15,360 x 4,096; published "
            f"{pub / 1e3:.0f}K H800 GPU-hours per 10^12 tokens, arXiv 2412.19437 Table 1): "
            + "; ".join(f"{r['source']}: {r['gpu_hours_per_1e12_tokens'] / 1e3:.0f}K "
                        f"({r['gpu_hours_per_1e12_tokens'] / pub - 1:+.0%}, {r['bound']}-bound, all-to-all "
                        f"{r['ep_comm_share']:.0%} of the step)" for r in rows)
            + ". The published plan carries the report's node-limited routing and FP8 dispatch (the "
              "deepseek-v3 row of wsim/gpu/published_moe.py); DualPipe's overlap and MLA's partial recompute "
              "(mla_up_proj) are not modelled (docs/gpu-model.md section 8); the searched plan is not the "
              "one DeepSeek ran.")
