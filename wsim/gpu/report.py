"""``GpuReport``: the public result of ``estimate`` and ``search``; ``to_dict()`` is the JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

from wsim.gpu.flops import hardware_flops_per_step, model_flops_per_step
from wsim.gpu.memory import MemoryBreakdown
from wsim.gpu.plan import Plan
from wsim.gpu.consts import Consts
from wsim.gpu.step import Evaluation


@dataclass(frozen=True)
class GpuReport:
    """One training step of ``model`` on ``gpus`` GPUs under ``plan``.

    ``model_tflops_per_gpu`` counts model FLOPs (3x forward, no recompute);
    ``hardware_tflops_per_gpu`` adds the recomputed forward work (SC21 Table 1 counts these).
    ``bubble_fraction`` is Megatron's (p-1)/(v m): bubble time over the ideal (bubble-free) time.
    ``regime`` says which validated regime of the cost model the plan falls in (None: outside all
    of them, the prediction is an extrapolation; ``wsim.gpu.regimes``).
    """

    model: str
    gpu: str
    gpus: int
    seq: int
    batch: int
    plan: Plan
    step_time_s: float
    model_flops_per_step: float
    hardware_flops_per_step: float
    peak_flops_per_s: float
    bubble_fraction: float
    micro_batches: int
    breakdown_s: dict
    memory: MemoryBreakdown
    chosen: tuple = ()  # plan options chosen by wsim (not given by the user)
    search: dict = field(default_factory=dict)  # search statistics, when from ``search``
    attention: str = "eager"
    precision: str = "bf16"
    dropout: bool = False
    network: dict = field(default_factory=dict)
    node_power_w: float = 0.0
    gpus_per_node: int = 8
    regime: dict = field(default_factory=dict)

    @property
    def model_tflops_per_gpu(self) -> float:
        return self.model_flops_per_step / self.step_time_s / self.gpus / 1e12

    @property
    def hardware_tflops_per_gpu(self) -> float:
        return self.hardware_flops_per_step / self.step_time_s / self.gpus / 1e12

    @property
    def mfu(self) -> float:
        return self.model_tflops_per_gpu * 1e12 / self.peak_flops_per_s

    @property
    def hfu(self) -> float:
        return self.hardware_tflops_per_gpu * 1e12 / self.peak_flops_per_s

    @property
    def fits(self) -> bool:
        return self.memory.fits

    @property
    def tokens_per_s(self) -> float:
        return self.batch * self.seq / self.step_time_s

    @property
    def power_w(self) -> float:
        """Maximum power of the nodes the job occupies (node datasheet figure x nodes)."""
        return self.node_power_w * self.gpus / self.gpus_per_node

    @property
    def energy_per_step_j(self) -> float:
        return self.power_w * self.step_time_s

    @property
    def validated(self) -> bool:
        return bool(self.regime.get("validated"))

    def to_dict(self) -> dict:
        plan = self.plan.to_dict()
        plan["chosen"] = list(self.chosen)
        d = {
            "model": self.model, "gpu": self.gpu, "gpus": self.gpus, "seq": self.seq,
            "batch": self.batch,
            "attention": self.attention, "precision": self.precision, "dropout": self.dropout,
            "network": dict(self.network),
            "step_time_s": self.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "model_flops_per_step": self.model_flops_per_step,
            "hardware_flops_per_step": self.hardware_flops_per_step,
            "model_tflops_per_gpu": self.model_tflops_per_gpu,
            "hardware_tflops_per_gpu": self.hardware_tflops_per_gpu,
            "mfu": self.mfu, "hfu": self.hfu,
            "memory_per_gpu_bytes": self.memory.total_bytes,
            "memory_capacity_bytes": self.memory.capacity_bytes,
            "fits": self.fits,
            "bubble_fraction": self.bubble_fraction,
            "micro_batches": self.micro_batches,
            "plan": plan,
            "breakdown": dict(self.breakdown_s),
            "memory": self.memory.to_dict(),
            "power_w": self.power_w,
            "energy_per_step_j": self.energy_per_step_j,
            "regime": dict(self.regime),
        }
        if self.search:
            d["search"] = dict(self.search)
        return d


def build_report(c: Consts, plan: Plan, ev: Evaluation, chosen=(), search=None,
                 regime: dict | None = None) -> GpuReport:
    model = c.model
    breakdown = {
        "compute_s": ev.compute_s, "recompute_s": ev.recompute_s, "tp_comm_s": ev.tp_comm_s,
        "cp_comm_s": ev.cp_comm_s, "ep_comm_s": ev.ep_comm_s, "pp_comm_s": ev.pp_comm_s, "bubble_s": ev.bubble_s,
        "dp_comm_s": ev.dp_comm_s, "optimizer_s": ev.optimizer_s, "launch_s": ev.launch_s,
        "offload_s": ev.offload_s,
    }
    network = {"nic_bytes_per_s": c.gpu.nic_bytes_per_s, "fabric": c.gpu.fabric,
               "nvlink_bytes_per_s": c.gpu.nvlink_bytes_per_s,
               "gpus_per_node": c.gpu.gpus_per_node}
    return GpuReport(
        model=model.name, gpu=c.gpu.name, gpus=c.gpus, seq=c.seq, batch=c.batch, plan=plan,
        step_time_s=ev.step_s,
        model_flops_per_step=model_flops_per_step(model, seq=c.seq, batch=c.batch,
                                                  mtp_layers=plan.mtp_layers),
        hardware_flops_per_step=hardware_flops_per_step(model, seq=c.seq, batch=c.batch,
                                                        recompute=plan.recompute,
                                                        modules=plan.recompute_modules,
                                                        mtp_layers=plan.mtp_layers),
        peak_flops_per_s=c.gpu.peak_for(c.precision), bubble_fraction=ev.bubble_fraction,
        micro_batches=ev.m, breakdown_s=breakdown, memory=ev.memory, chosen=tuple(chosen),
        search=dict(search or {}), attention=c.attention, precision=c.precision,
        dropout=bool(model.dropout), network=network, node_power_w=c.gpu.node_power_w,
        gpus_per_node=c.gpu.gpus_per_node, regime=dict(regime or {}),
    )
