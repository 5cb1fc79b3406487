"""``estimate``: one plan's step time and memory, choosing the options the caller left open, with
the validated regime the plan falls in."""

from __future__ import annotations

from models.spec import ModelSpec
from wsim.gpu.calibration import Efficiency
from wsim.gpu.fixed_plan import best_for_plan
from wsim.gpu.regimes import classify
from wsim.gpu.report import GpuReport, build_report


def estimate(model: ModelSpec, *, seq: int = 2048, batch: int, gpus: int, gpu="a100-80gb",
             tp: int = 1, pp: int = 1, cp: int = 1, micro_batch: int | str | None = "auto",
             interleave: int | None = None, recompute: str = "full",
             sequence_parallel: bool = False, zero: int = 0, stack: str | None = None,
             attention: str = "eager", precision: str = "bf16", dropout: float | None = None,
             nic_bytes_per_s: float | None = None, nvlink_bytes_per_s: float | None = None,
             fabric: str | None = None,
             efficiency: Efficiency | None = None, allow_oom: bool = False, **knobs) -> GpuReport:
    """Step time, throughput and memory per GPU of ``model`` on ``gpus`` GPUs with plan
    tp x cp x pp (x dp, the rest).

    ``micro_batch`` ("auto"/None), ``interleave`` (None) and ``stack`` (None) left open take the
    fastest value that fits; the report's ``chosen`` names them, its ``regime`` the validated regime
    the plan falls in (``wsim.gpu.regimes``). A plan that cannot fit raises ``ConfigError`` unless
    ``allow_oom`` (then the report has ``fits`` False). ``knobs``: ``tp_comm_overlap``,
    ``grad_reduce_fp32``, ``fp8_param_gather``, ``cuda_graphs``, ``p2p_overlap`` (``wsim.gpu.knobs``;
    None: the stack's default).
    """
    c, plan, ev, chosen = best_for_plan(
        model, seq=seq, batch=batch, gpus=gpus, gpu=gpu, tp=tp, pp=pp, cp=cp, micro_batch=micro_batch,
        interleave=interleave, recompute=recompute, sequence_parallel=sequence_parallel, zero=zero,
        stack=stack, attention=attention, precision=precision, dropout=dropout,
        nic_bytes_per_s=nic_bytes_per_s, nvlink_bytes_per_s=nvlink_bytes_per_s, fabric=fabric,
        efficiency=efficiency,
        allow_oom=allow_oom, **knobs)
    return build_report(c, plan, ev, chosen=chosen, regime=classify(c, plan))
