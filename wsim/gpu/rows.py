"""One published GPU training run as the validation uses it (``wsim.gpu.published``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.spec import ModelSpec

DEVELOPMENT, VALIDATION = "development", "validation"


@dataclass(frozen=True)
class Row:
    group: str
    name: str
    role: str
    model: ModelSpec
    gpu: str
    gpus: int
    batch: int
    seq: int
    metric: str  # tflops_megatron | tflops_model | tflops_hardware | step_s | tokens_per_s_per_gpu
    published: float
    source: str
    plan: dict = field(default_factory=dict)  # estimate() keyword arguments
    nic_bytes_per_s: float | None = None
    notes: str = ""

    @property
    def label(self) -> str:
        return f"{self.group}/{self.name}"


def moe_plan(tp, pp, vp, mbs, ep, precision, *, stack="nemo", etp=1, recompute=None,
             **extra) -> dict:
    """A mixture-of-experts row's plan as the Megatron-Bridge rows state it: the distributed
    optimizer (ZeRO-1), sequence parallelism with TP, flash attention, ETP 1 unless given."""
    return dict(tp=tp, pp=pp, cp=1, interleave=vp, micro_batch=mbs, recompute=recompute,
                sequence_parallel=tp > 1, zero=1, stack=stack, attention="flash",
                precision=precision, ep=ep, etp=etp, **extra)
