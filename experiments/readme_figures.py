"""The README's validation figures, computed rather than typed: ``--write`` puts them in README.md.

Every figure in the README's "Validation" block comes from here, by running the code the block
names. ``python -m experiments.readme_figures --write`` regenerates the block between the markers;
``--check`` exits 1 if the README differs from what the code gives now (a slow test runs it), so a
figure cannot drift from the code. Each figure is also pinned, at the precision printed, by the
test named next to it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from experiments import marked_blocks as MB

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- validation figures: begin (python -m experiments.readme_figures --write) -->", \
    "<!-- validation figures: end -->"


def wafer() -> dict:
    from wsim.studies.calibration import fit as F
    from wsim.studies.calibration import measured
    from wsim.cluster.hardware import CS2Spec

    zhang = [r for r in measured.rows() if "Zhang" in r.source]
    engine = [F.predict(r, method="engine").error for r in zhang]
    loo = [p.error for _, _, p, _ in F.leave_one_out(measured.rows("development"))]
    other = {r.label: F.predict(r, method="engine").error for r in measured.rows() if "Zhang" not in r.source}
    from wsim.studies.calibration import mechanisms as X

    ratios = {"GPT-J 6B": X.ratio(other, "GPT-J 6B b120 on 1 CS-3 (ALCF)", "GPT-J 6B b120 on 2 CS-2 (ALCF)"),
              "Llama 7B": X.ratio(other, X.LLAMA_CS3, "LLaMA-7B b99 (ALCF)")}
    return {"eta": CS2Spec().matmul_peak_fraction, "worst": max(map(abs, engine)), "n": len(zhang),
            "loo": max(map(abs, loo)), "other": other, "ratios": ratios}


def scaling_13() -> dict:
    from models import zoo
    from wsim.cluster import generations
    from wsim.engine.run import simulate
    from wsim.cluster.job import TrainingJob

    job = TrainingJob(zoo.get("cerebras-gpt-1.3b"), seq=2048, batch_seqs=528)
    one, sixteen = simulate(job, generations.preset("cs2", 1)), simulate(job, generations.preset("cs2", 16))
    return {"t1": one.step_time_s, "t16": sixteen.step_time_s, "speedup": one.step_time_s / sixteen.step_time_s,
            "mb16": sixteen.micro_batches, "rc16": sixteen.recompute}


def time_to_train_13b() -> dict:
    from models import zoo
    from wsim.studies.compare import cs2_time_to_train, published_phases

    r = cs2_time_to_train(zoo.get("cerebras-gpt-13b"), published_phases("cerebras-gpt-13b"))
    last = r["phases"][-1]
    return {"days": r["time_to_train_s"] / 86400, "step": last["step_time_s"], "mb": last["micro_batches"],
            "rc": last["recompute"]}


def trillion() -> dict:
    from models.spec import ModelSpec
    from wsim.cluster import generations
    from wsim.cluster.job import TrainingJob
    from wsim.engine.run import simulate

    r = simulate(TrainingJob(ModelSpec("1t", layers=128, hidden=25600, heads=160), seq=2048, batch_seqs=1),
                 generations.preset("cs2", 1))
    return {"params": r.params, "wafer_gb": r.wafer_memory_bytes / 1e9, "memoryx_tb": r.memoryx_bytes / 1e12,
            "recompute": r.recompute}


def gpu() -> dict:
    from wsim.gpu import validation as V

    summary = V.summary(V.current())
    return {g: {"mean": s["mean_abs_error"], "worst": s["worst_error"], "rows": s["rows"]}
            for g, s in summary.items()}


def equivalence() -> dict:
    """The float64 equivalence run of the report (experiments/equivalence.py, quick grid)."""
    import tempfile

    from experiments import equivalence as E
    from experiments.common import read_csv

    with tempfile.TemporaryDirectory() as out:
        E.main(["--out", out])
        losses = read_csv(Path(out) / "equivalence_losses.csv")
        params = read_csv(Path(out) / "equivalence_params.csv")
    # the decade above each worst difference: the printed figure must not move with summation order
    decade = lambda x: 10.0 ** math.ceil(math.log10(x)) if x > 0 else 0.0  # noqa: E731
    return {"loss": decade(max(r["relative_difference"] for r in losses)),
            "param": decade(max(r["relative_difference"] for r in params)),
            "loss_tol": E.LOSS_TOL, "param_tol": E.PARAM_TOL, "layers": E.CFG["n_layer"], "systems": E.SYSTEMS,
            "steps": E.STEPS}


def compute() -> dict:
    return {"wafer": wafer(), "scaling": scaling_13(), "ttt13": time_to_train_13b(), "trillion": trillion(),
            "gpu": gpu(), "equivalence": equivalence()}


def render(f: dict) -> str:
    w, s, t, tr, g, e = f["wafer"], f["scaling"], f["ttt13"], f["trillion"], f["gpu"], f["equivalence"]
    other = "; ".join(f"{k} {v:+.1%}" for k, v in w["other"].items())
    lines = [
        f"- Measured CS-2 and CS-3 throughput (`python -m experiments.wafer_validation`, `tests/studies/`): "
        f"all {w['n']} points of Zhang et al. 2024 (six models, batches 128 and 256, one CS-2) within "
        f"{w['worst']:.1%} with `wsim simulate` defaults, one fitted parameter "
        f"(`matmul_peak_fraction` = {w['eta']:.4g}); leave-one-model-out within {w['loo']:.1%}. "
        f"Validation on another release: {other}. Per system, CS-3 over CS-2: "
        + "; ".join(f"{k} {m:.2f} measured, {p:.2f} predicted" for k, (m, p) in w["ratios"].items())
        + " (`python -m experiments.cs3_llama` tries every candidate mechanism on the Llama row).",
        f"- Cerebras-GPT 1.3B at its batch 528 × 2048 (`tests/engine/test_engine.py`): "
        f"{s['t1']:.4g} s per step on 1 CS-2, {s['t16']:.4g} s on 16: speedup {s['speedup']:.3g} "
        f"({s['mb16']} micro-batches per CS-2 on 16{' with recompute' if s['rc16'] else ''}).",
        f"- Cerebras-GPT 13B on its published 8 → 12 CS-2 with default options "
        f"(`tests/engine/test_engine.py`): {t['days']:.3g} days ({t['step']:.4g} s per step, "
        f"{t['mb']} micro-batches{' with recompute' if t['rc'] else ''}).",
        f"- A {tr['params'] / 1e12:.3g}-trillion-parameter model (128 × 25,600) runs on one CS-2 "
        f"(`tests/engine/test_engine.py`): {tr['wafer_gb']:.4g} GB of wafer memory"
        f"{' with activation recompute' if tr['recompute'] else ''}, {tr['memoryx_tb']:.3g} TB in MemoryX.",
        f"- Functional mode (`python -m experiments.equivalence`, `tests/functional/`): weight-streamed "
        f"training equals `torch.optim.AdamW` on one `nn.Module` in float64, asserted within "
        f"{e['param_tol']:g} of each tensor's largest magnitude and {e['loss_tol']:g} relative on losses; "
        f"measured below {e['param']:.0e} and {e['loss']:.0e} ({e['layers']} layers, {e['systems']} CS-2, "
        f"{e['steps']} steps).",
        f"- GPU model (`python -m experiments.gpu_validation`, `tests/gpu/test_gpu_published.py`): SC21 "
        f"Table 1 mean {g['sc21-table1']['mean']:.1%}, worst {g['sc21-table1']['worst']:+.1%}; the ZeRO-3 "
        f"rows of Table 2 worst {g['sc21-zero3']['worst']:+.1%}; MT-NLG worst {g['mt-nlg']['worst']:+.1%}; "
        f"Megatron-Core / NeMo on H100 (fitted on): Megatron-LM r0.8 table mean "
        f"{g['mcore-h100']['mean']:.1%}, DGX Cloud recipes v24.11.1 mean {g['dgxc-24.11']['mean']:.1%}; "
        f"not fitted on: DGX Cloud recipes v25.04 mean {g['dgxc-25.04']['mean']:.1%}, worst "
        f"{g['dgxc-25.04']['worst']:+.1%}; Megatron-Bridge H100 worst {g['bridge-h100']['worst']:+.1%}, "
        f"B200/GB200 worst {g['bridge-blackwell']['worst']:+.1%}; Llama 3 Table 4 worst "
        f"{g['llama3-table4']['worst']:+.1%}; FlashAttention GPT-3 runs worst "
        f"{g['flash-attn']['worst']:+.1%}, MosaicML FSDP "
        f"worst {g['mosaic-a100']['worst']:+.1%} (A100) and {g['mosaic-h100']['worst']:+.1%} (H100).",
    ]
    return "\n".join(lines)


def block(text: str) -> str:
    return MB.block(BEGIN, END, text)


def current(readme: str) -> str:
    return MB.section(readme, BEGIN, END, "README.md")


def main(argv=None) -> int:
    return MB.cli(argv, "python -m experiments.readme_figures", __doc__.splitlines()[0], README,
                  lambda: [(BEGIN, END, render(compute()))])


if __name__ == "__main__":
    sys.exit(main())
