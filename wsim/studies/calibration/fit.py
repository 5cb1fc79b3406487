"""Fit the wafer compute model; predict measured rows; leave-one-out.

The objective is the sum of squared log errors of predicted samples/s over the development rows,
each prediction a closed-form step (``wsim.engine.closed_form``) with the default micro-batch policy
(``best``), so the plan the simulator would choose is the plan that is fitted. The fitted parameter
is ``matmul_peak_fraction``, solved by a fixed-point iteration (compute-bound predictions scale with
it, so the mean log error shifts by its log). ``free_half_dim=True`` also fits ``matmul_half_dim``
(golden section), as a check on its structural value sqrt(cores).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from wsim.engine import closed_form
from wsim.cluster import generations
from wsim.studies.calibration.measured import MeasuredRun
from wsim.cluster.hardware import ClusterSpec, CS2Spec
from wsim.cluster.job import TrainingJob

HALF_DIM_RANGE = (0.0, 4000.0)  # searched for matmul_half_dim (elements)
PEAK_FRACTION_RANGE = (0.02, 1.0)


@dataclass(frozen=True)
class Prediction:
    row: MeasuredRun
    samples_per_s: float
    micro_batches: int
    recompute: bool
    compute_utilization: float

    @property
    def error(self) -> float:
        """predicted / measured - 1"""
        return self.samples_per_s / self.row.samples_per_s - 1.0


def cluster_for(row: MeasuredRun, cs2: CS2Spec) -> ClusterSpec:
    """A CS-2 row runs on ``cs2``; a row of another generation on its preset, carrying over the
    (possibly refitted) matmul peak fraction, as the CS-3 preset carries over the CS-2's."""
    if row.cluster == "cs2":
        return ClusterSpec(name="cs2", systems=row.systems, cs2=cs2)
    base = generations.preset(row.cluster, row.systems)
    return dataclasses.replace(base, cs2=dataclasses.replace(
        base.cs2, matmul_peak_fraction=cs2.matmul_peak_fraction, compute_efficiency=cs2.compute_efficiency))


def predict(row: MeasuredRun, cs2: CS2Spec = CS2Spec(), method: str = "analytic") -> Prediction:
    """Samples/s of ``row``'s job with the default policy, by the closed form or the engine."""
    job = TrainingJob(row.model, seq=row.seq, batch_seqs=row.batch)
    cluster = cluster_for(row, cs2)
    if method == "engine":
        from wsim.engine.run import simulate

        r = simulate(job, cluster)
        return Prediction(row, row.batch / r.step_time_s, r.micro_batches, r.recompute, r.compute_utilization)
    rep = closed_form.step_time(job, cluster)
    return Prediction(row, row.batch / rep.step_time_s, rep.micro_batches, rep.recompute,
                      rep.compute_utilization)


def _log_errors(rows: list[MeasuredRun], cs2: CS2Spec) -> list[float]:
    return [math.log(predict(r, cs2).samples_per_s / r.samples_per_s) for r in rows]


def _with(cs2: CS2Spec, peak_fraction: float, half_dim: float | None) -> CS2Spec:
    return dataclasses.replace(cs2, matmul_peak_fraction=peak_fraction, matmul_half_dim=half_dim,
                               compute_efficiency=None)


def _best_peak_fraction(rows, cs2: CS2Spec, half_dim: float, start: float) -> tuple[float, float]:
    """The peak fraction minimising the squared log errors at ``half_dim``, and that sum."""
    lo, hi = PEAK_FRACTION_RANGE
    eta = start
    for _ in range(8):
        errs = _log_errors(rows, _with(cs2, eta, half_dim))
        step = sum(errs) / len(errs)
        new = min(hi, max(lo, eta * math.exp(-step)))
        if abs(new / eta - 1) < 1e-6:
            eta = new
            break
        eta = new
    errs = _log_errors(rows, _with(cs2, eta, half_dim))
    return eta, sum(e * e for e in errs)


@dataclass(frozen=True)
class Fit:
    matmul_peak_fraction: float
    matmul_half_dim: float | None  # None: structural (sqrt(cores)), not fitted
    rms_log_error: float
    rows: tuple[str, ...]


def fit(rows: list[MeasuredRun], cs2: CS2Spec = CS2Spec(), *, free_half_dim: bool = False,
        tol: float = 0.5) -> Fit:
    """Least squares on log samples/s over ``rows``: the peak fraction, and with
    ``free_half_dim`` also n_1/2 (golden section over ``HALF_DIM_RANGE`` to ``tol``)."""
    start = cs2.matmul_peak_fraction
    if not free_half_dim:
        eta, sse = _best_peak_fraction(rows, cs2, cs2.matmul_half_dim, start)
        return Fit(eta, cs2.matmul_half_dim, math.sqrt(sse / len(rows)), tuple(r.label for r in rows))
    cache: dict[float, tuple[float, float]] = {}

    def cost(h: float) -> float:
        if h not in cache:
            cache[h] = _best_peak_fraction(rows, cs2, h, start)
        return cache[h][1]

    a, b = HALF_DIM_RANGE
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    while b - a > tol:
        if cost(c) <= cost(d):
            b, d = d, c
            c = b - g * (b - a)
        else:
            a, c = c, d
            d = a + g * (b - a)
    best = min(cache, key=lambda h: cache[h][1])
    eta, sse = cache[best]
    return Fit(eta, best, math.sqrt(sse / len(rows)), tuple(r.label for r in rows))


def fitted_cs2(f: Fit, cs2: CS2Spec = CS2Spec()) -> CS2Spec:
    return _with(cs2, f.matmul_peak_fraction, f.matmul_half_dim)


def leave_one_out(rows: list[MeasuredRun], cs2: CS2Spec = CS2Spec(), group=lambda r: r.model.name,
                  free_half_dim: bool = False) -> list[tuple]:
    """For each group (default: each model), refit without its rows and predict them:
    ``[(group, row, Prediction, Fit), ...]``."""
    out = []
    for g in dict.fromkeys(group(r) for r in rows):
        f = fit([r for r in rows if group(r) != g], cs2, free_half_dim=free_half_dim)
        for r in rows:
            if group(r) == g:
                out.append((g, r, predict(r, fitted_cs2(f, cs2)), f))
    return out
