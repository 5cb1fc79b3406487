"""``estimate``: one plan's step time and memory, choosing the options the caller left open, with
the validated regime the plan falls in."""

from __future__ import annotations

import inspect

from models.spec import ModelSpec
from wsim.gpu.fixed_plan import best_for_plan
from wsim.gpu.regimes import classify
from wsim.gpu.report import GpuReport, build_report


def estimate(model: ModelSpec, **options) -> GpuReport:
    """Step time, throughput and memory per GPU of ``model`` on ``gpus`` GPUs with plan
    tp x cp x pp (x dp, the rest); the options are those of ``wsim.gpu.fixed_plan.best_for_plan``
    (``seq``, ``batch``, ``gpus``, ``gpu``, ``tp``, ``pp``, ``cp``, ``micro_batch``, ``interleave``,
    ``recompute``, ``sequence_parallel``, ``zero``, ``stack``, ``attention``, ``precision``,
    ``dropout``, network bandwidths, ``fabric``, ``efficiency``, ``allow_oom``, and the knobs).

    ``micro_batch`` ("auto"/None), ``interleave`` (None) and ``stack`` (None) left open take the
    fastest value that fits; the report's ``chosen`` names them, its ``regime`` the validated regime
    the plan falls in (``wsim.gpu.regimes``). A plan that cannot fit raises ``ConfigError`` unless
    ``allow_oom`` (then the report has ``fits`` False). ``knobs``: ``tp_comm_overlap``,
    ``grad_reduce_fp32``, ``fp8_param_gather``, ``cuda_graphs``, ``p2p_overlap`` (``wsim.gpu.knobs``;
    None: the stack's default).
    """
    c, plan, ev, chosen = best_for_plan(model, **options)
    return build_report(c, plan, ev, chosen=chosen, regime=classify(c, plan))


# help(estimate) and IDEs show the options by name, as before the split
estimate.__signature__ = inspect.signature(best_for_plan).replace(return_annotation="GpuReport")
