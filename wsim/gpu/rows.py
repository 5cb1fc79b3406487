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
