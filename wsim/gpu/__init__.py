"""GPU cost models: what a GPU cluster takes for the same training step (Megatron-LM PTD-P, ZeRO/FSDP).

``estimate(model, seq=, batch=, gpus=, gpu=, tp=, pp=, ...) -> GpuReport`` and
``search(model, seq=, batch=, gpus=, gpu=) -> GpuReport`` (the fastest plan that fits).
Never imports ``wsim.engine`` (rule of the house).
"""

from wsim.gpu.estimate import estimate
from wsim.gpu.flops import hardware_flops_per_step, megatron_flops_per_step, model_flops_per_step
from wsim.gpu.memory import MemoryBreakdown
from wsim.gpu.plan import RECOMPUTE, Plan, check_plan
from wsim.gpu.report import GpuReport
from wsim.gpu.search import search
from wsim.gpu.specs import EFFICIENCY, GPUS, Efficiency, GpuSpec, gpu_spec

__all__ = [
    "estimate", "search", "GpuReport", "Plan", "check_plan", "RECOMPUTE", "GpuSpec", "GPUS",
    "gpu_spec", "Efficiency", "EFFICIENCY", "MemoryBreakdown", "model_flops_per_step",
    "hardware_flops_per_step", "megatron_flops_per_step",
]
