"""GPU cost models: what a GPU cluster takes for the same training step (Megatron-LM PTD-P,
Megatron-Core, DeepSpeed ZeRO, PyTorch FSDP), validated against published runs.

``estimate(model, seq=, batch=, gpus=, gpu=, tp=, pp=, ...) -> GpuReport`` and
``search(model, seq=, batch=, gpus=, gpu=) -> GpuReport`` (the fastest plan that fits, with the
validated regime it falls in). The model's parameters, sources and validation: docs/gpu-model.md.
Never imports ``wsim.engine`` (rule of the house).
"""

from wsim.gpu.calibration import EFFICIENCY, STACKS, Efficiency, Stack
from wsim.gpu.estimate import estimate
from wsim.gpu.flops import hardware_flops_per_step, megatron_flops_per_step, model_flops_per_step
from wsim.gpu.memory import MemoryBreakdown
from wsim.gpu.plan import RECOMPUTE, Plan, check_plan
from wsim.gpu.report import GpuReport
from wsim.gpu.search import search
from wsim.gpu.specs import GPUS, GpuSpec, gpu_spec
from wsim.gpu.consts import ATTENTION, PRECISION

__all__ = [
    "estimate", "search", "GpuReport", "Plan", "check_plan", "RECOMPUTE", "ATTENTION", "PRECISION",
    "GpuSpec", "GPUS", "gpu_spec", "Efficiency", "EFFICIENCY", "Stack", "STACKS", "MemoryBreakdown",
    "model_flops_per_step", "hardware_flops_per_step", "megatron_flops_per_step",
]
