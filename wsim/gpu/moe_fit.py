"""The two parameters the mixture-of-experts rows fit: ``Efficiency.expert_host_s_per_kernel``
(the host's cost to issue one kernel of the per-expert loop) and
``Efficiency.expert_device_s_per_kernel`` (the GPU's fixed time for one such kernel).

Development set: ``published_moe.MOE_DEVELOPMENT``, four Megatron-Bridge rows on Blackwell: two
dropless rows whose step is set by the host issuing the per-expert loop after the dispatcher's
synchronisation (25.11, Qwen3-30B-A3B on 8 B200 and Qwen3-235B-A22B on 64 B200, ``moe._launch_floor``)
and two rows the host cannot bind (25.09, Qwen3-30B-A3B on 8 B200 at micro-batch 1 and on 8 GB200
at micro-batch 4, padded to capacity, whole blocks in CUDA graphs), whose two micro-batch sizes
separate a per-kernel device cost from one per token. Every dense parameter is held at its shipped
value (the dense fit, ``wsim.gpu.validation.fit``, never sees MoE rows). Objective: the RMS log
throughput error (``validation.objective``), minimised by coordinate descent, a golden-section
search over each parameter's ``BOUNDS`` in turn, until neither moves by more than ``TOL``.
Leave-one-out: fitted on three development rows, the fourth predicted.

``python -m wsim.gpu.moe_fit`` prints the fit, the objective, the leave-one-out errors and every
MoE row's error at the fitted values.
"""

from __future__ import annotations

import dataclasses
import sys

from wsim.gpu.calibration import EFFICIENCY, STACKS, Efficiency
from wsim.gpu.rows import DEVELOPMENT

PARAMETERS = ("expert_host_s_per_kernel", "expert_device_s_per_kernel")
# seconds: host 0 (no cost beyond the device gap) .. 200 us (20x an eager launch); device 0 .. 100 us
BOUNDS = {"expert_host_s_per_kernel": (0.0, 200e-6), "expert_device_s_per_kernel": (0.0, 100e-6)}
TOL = 0.1e-6
MAX_SWEEPS = 12


def development_rows() -> list:
    from wsim.gpu.published_moe import validation_rows
    return [r for r in validation_rows() if r.role == DEVELOPMENT]


def _objective(rows, base: Efficiency, **values) -> float:
    from wsim.gpu.validation import objective
    return objective(rows, dataclasses.replace(base, **values), STACKS)


def fit(rows=None, base: Efficiency | None = None) -> tuple[dict, float]:
    """({parameter: fitted value}, objective) on ``rows`` (default: the development set), from
    ``base``'s values."""
    from wsim.gpu.validation import _golden
    rows = development_rows() if rows is None else rows
    base = base or EFFICIENCY
    values = {p: getattr(base, p) for p in PARAMETERS}
    for _ in range(MAX_SWEEPS):
        moved = 0.0
        for p in PARAMETERS:
            others = {q: v for q, v in values.items() if q != p}
            new = _golden(lambda v: _objective(rows, base, **others, **{p: v}), *BOUNDS[p], TOL)
            moved = max(moved, abs(new - values[p]))
            values[p] = new
        if moved <= TOL:
            break
    return values, _objective(rows, base, **values)


def leave_one_out(base: Efficiency | None = None) -> dict:
    """{held-out row name: ({parameter: value fitted without it}, its error at those values)}."""
    from wsim.gpu.validation import predict
    base = base or EFFICIENCY
    dev = development_rows()
    out = {}
    for held in dev:
        values, _ = fit([r for r in dev if r is not held], base)
        out[held.name] = (values, predict(held, dataclasses.replace(base, **values)).error)
    return out


def _us(values: dict) -> str:
    return ", ".join(f"{p} {v * 1e6:.1f} us" for p, v in values.items())


def main(argv=None) -> int:
    from wsim.gpu.validation import current_moe
    values, obj = fit()
    print(f"fitted: {_us(values)} (objective {obj:.4f}); shipped: "
          f"{_us({p: getattr(EFFICIENCY, p) for p in PARAMETERS})}")
    for name, (v, err) in leave_one_out().items():
        print(f"leave-one-out {name}: fitted on the other rows {_us(v)}, error {err:+.1%}")
    for p in current_moe():
        print(f"{p.row.role[:3]} {p.row.label:45} {p.error:+7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
