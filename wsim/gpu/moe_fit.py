"""The one parameter the mixture-of-experts rows fit: ``Efficiency.expert_host_s_per_kernel``.

Development set: ``published_moe.MOE_DEVELOPMENT`` (two dropless Megatron-Bridge 25.11 rows on
B200, Qwen3-30B-A3B and Qwen3-235B-A22B: their step is set by the host issuing the per-expert
loop after the dispatcher's synchronisation, ``moe._launch_floor``). Every dense parameter is held
at its shipped value (the dense fit, ``wsim.gpu.validation.fit``, never sees MoE rows). Objective:
the RMS log throughput error (``validation.objective``), minimised by golden-section search over
``BOUNDS``. Leave-one-out: fitted on each development row alone, the other predicted.

``python -m wsim.gpu.moe_fit`` prints the fit, the objective, the leave-one-out errors and every
MoE row's error at the fitted value.
"""

from __future__ import annotations

import dataclasses
import sys

from wsim.gpu.calibration import EFFICIENCY, STACKS, Efficiency
from wsim.gpu.rows import DEVELOPMENT

BOUNDS = (0.0, 200e-6)  # seconds; 0: no host cost beyond the device gap, 200 us: 20x eager
TOL = 0.1e-6


def development_rows() -> list:
    from wsim.gpu.published_moe import validation_rows
    return [r for r in validation_rows() if r.role == DEVELOPMENT]


def _objective(rows, value: float, base: Efficiency) -> float:
    from wsim.gpu.validation import objective
    return objective(rows, dataclasses.replace(base, expert_host_s_per_kernel=value), STACKS)


def fit(rows=None, base: Efficiency | None = None) -> tuple[float, float]:
    """(fitted expert_host_s_per_kernel, objective) on ``rows`` (default: the development set)."""
    from wsim.gpu.validation import _golden
    rows = development_rows() if rows is None else rows
    base = base or EFFICIENCY
    value = _golden(lambda v: _objective(rows, v, base), *BOUNDS, TOL)
    return value, _objective(rows, value, base)


def leave_one_out(base: Efficiency | None = None) -> dict:
    """{held-out row name: (value fitted without it, its error at that value)}."""
    from wsim.gpu.validation import predict
    base = base or EFFICIENCY
    dev = development_rows()
    out = {}
    for held in dev:
        value, _ = fit([r for r in dev if r is not held], base)
        eff = dataclasses.replace(base, expert_host_s_per_kernel=value)
        out[held.name] = (value, predict(held, eff).error)
    return out


def main(argv=None) -> int:
    from wsim.gpu.validation import current_moe
    value, obj = fit()
    print(f"expert_host_s_per_kernel fitted: {value * 1e6:.1f} us (objective {obj:.4f}; shipped "
          f"{EFFICIENCY.expert_host_s_per_kernel * 1e6:.1f} us)")
    for name, (v, err) in leave_one_out().items():
        print(f"leave-one-out {name}: fitted on the other row {v * 1e6:.1f} us, error {err:+.1%}")
    for p in current_moe():
        print(f"{p.row.role[:3]} {p.row.label:45} {p.error:+7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
