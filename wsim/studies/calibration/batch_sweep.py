"""The batch dependence of Llama-2-7B on one CS-3 (issue 18, item 3): the measured fall at small batch,
the shape that fits it, and what the model and each per-step candidate predict for it.

The measured rows (``measured.CS3_LLAMA_ROWS``: batch 32 to 2048, three homework logs of ALCF's
course, one config with only the batch changed) fall 16% from the plateau at batch 32. A step of B
sequences taking ``t(B) = t0 + B / r`` (a fixed cost per step ``t0`` plus a cost per sequence) is
fitted by least squares on the relative step-time error, which is linear in (t0, 1/r):
minimise sum_i ((t0 + B_i / r) / t_i - 1)^2, t_i = B_i / measured rate. The residuals say whether a
per-step cost is the shape; ``t0`` is what a mechanism would have to supply.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsim.studies.calibration import mechanisms as X
from wsim.studies.calibration.measured import MeasuredRun, rows as measured_rows

SWEEP_MODEL = "llama-2-7b"


def sweep_rows() -> list[MeasuredRun]:
    """The CS-3 Llama-2-7B rows of one config and release (the course's logs), by batch."""
    sel = [r for r in measured_rows() if r.generation == "cs3" and r.model.name == SWEEP_MODEL
           and r.release == "R2.6.0"]
    return sorted(sel, key=lambda r: r.batch)


@dataclass(frozen=True)
class StepFit:
    """``t(B) = fixed_s + B / plateau_samples_per_s`` fitted to the sweep."""

    fixed_s: float
    plateau_samples_per_s: float
    residuals: tuple[tuple[int, float], ...]  # (batch, predicted / measured rate - 1)

    @property
    def rms(self) -> float:
        return (sum(e * e for _, e in self.residuals) / len(self.residuals)) ** 0.5

    def samples_per_s(self, batch: int) -> float:
        return batch / (self.fixed_s + batch / self.plateau_samples_per_s)


def fit_step_cost(rows: list[MeasuredRun]) -> StepFit:
    """Least squares of ``t0 + B c`` on the relative step-time error (2 x 2 normal equations)."""
    xs = [(1.0 / (r.batch / r.samples_per_s), r.batch / (r.batch / r.samples_per_s)) for r in rows]
    a11 = sum(u * u for u, _ in xs)
    a12 = sum(u * v for u, v in xs)
    a22 = sum(v * v for _, v in xs)
    b1 = sum(u for u, _ in xs)
    b2 = sum(v for _, v in xs)
    det = a11 * a22 - a12 * a12
    t0 = (b1 * a22 - b2 * a12) / det
    c = (a11 * b2 - a12 * b1) / det
    fit = StepFit(t0, 1.0 / c, ())
    res = tuple((r.batch, fit.samples_per_s(r.batch) / r.samples_per_s - 1) for r in rows)
    return StepFit(t0, 1.0 / c, res)


def relative(values: dict[int, float]) -> dict[int, float]:
    """Throughput at each batch over the largest batch's."""
    top = values[max(values)]
    return {b: v / top for b, v in values.items()}


def shape(s: X.Setting = X.Setting()) -> dict:
    """Under candidate ``s`` (the peak fraction refitted on the development set, as
    ``mechanisms.errors``): each sweep row's predicted samples/s, error, and the predicted and
    measured throughput relative to the largest batch."""
    eta, errs = X.errors(s)
    rows = sweep_rows()
    pred = {r.batch: r.samples_per_s * (1 + errs[r.label]) for r in rows}
    meas = {r.batch: r.samples_per_s for r in rows}
    return {"matmul_peak_fraction": eta, "predicted": pred, "measured": meas,
            "errors": {r.batch: errs[r.label] for r in rows},
            "relative_predicted": relative(pred), "relative_measured": relative(meas), "all_errors": errs}


def leave_one_out(rows: list[MeasuredRun]) -> list[tuple[int, float, float]]:
    """Refit the fixed-cost shape without each row and predict it: ``(batch, fitted t0 without it,
    predicted / measured - 1)``."""
    out = []
    for i, r in enumerate(rows):
        f = fit_step_cost(rows[:i] + rows[i + 1:])
        out.append((r.batch, f.fixed_s, f.samples_per_s(r.batch) / r.samples_per_s - 1))
    return out


def zhang_step_costs() -> list[tuple[str, float, float]]:
    """The per-step fixed cost each Zhang et al. model shows on one CS-2, from its batch-128 and
    batch-256 steps (same plan per sequence): ``(model, params, 2 t_128 - t_256 seconds)``."""
    from wsim.studies.calibration.measured import PILE_SAMPLES, TABLE_V

    return [(tag, m.params, 2 * 128 * h128 * 3600 / PILE_SAMPLES - 256 * h256 * 3600 / PILE_SAMPLES)
            for tag, m, h128, h256 in TABLE_V]
