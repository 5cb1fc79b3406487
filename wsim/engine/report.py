"""What a simulation reports: ``StepReport`` (its ``to_dict`` keys are the JSON contract)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from wsim.cluster import moe, power
from wsim.cluster.memory import memoryx_bytes


@dataclass(frozen=True)
class StepReport:
    model: str
    params: int
    systems: int
    seq: int
    batch_seqs: int
    steps: int
    step_time_s: float
    step_times_s: list
    tokens_per_s: float
    model_flops_per_step: float
    hardware_flops_per_step: float
    model_flops_per_s: float
    compute_utilization: float
    bottleneck: str
    utilization_by_resource: dict  # busy fraction of the step for each candidate bottleneck
    wafer_memory_bytes: float  # peak per CS-2: stored activations + measured weight buffer
    wafer_memory: dict
    memoryx_bytes: float
    micro_batches: int
    recompute: bool
    events: int
    breakdown: dict  # seconds per step by phase, on the busiest CS-2; they sum to step_time_s
    chunk_bytes: float
    cluster: str
    generation: str  # "cs2" or "cs3"
    density: dict  # weight density per layer kind (wsim/cluster/sparsity.py); all 1.0 when dense
    power_w: float  # the cluster's draw: systems, MemoryX/SwarmX/input servers, network (wsim/cluster/power.py)
    energy_per_step_j: float  # power_w x step_time_s
    plan_choice: dict = field(default_factory=dict)  # the micro-batch policy, its choice and why
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _per_step(value: float, steps: int) -> float:
    return value / steps


def build_report(sim) -> StepReport:
    job, cluster, plan = sim.job, sim.cluster, sim.plan
    steps = job.steps
    layers = range(len(sim.schedule.layers))
    step_end = [max(sim.memoryx.update_end[(k, l)] for l in layers) for k in range(steps)]
    periods = [step_end[0]] + [step_end[k] - step_end[k - 1] for k in range(1, steps)]
    total = step_end[-1]
    step_time = total / steps
    # the busiest CS-2 (with symmetry, a class representative) defines the breakdown
    cs2 = max(sim.cs2s, key=lambda c: sum(c.busy_by_phase.values()))
    boundary = 0.0
    for k in range(steps):
        start = step_end[k - 1] if k else 0.0
        boundary += (cs2.first_start[k] - start) + (step_end[k] - cs2.last_bwd_end[k])
    busy = sum(cs2.busy_by_phase.values())
    breakdown = {
        "compute_forward_s": _per_step(cs2.busy_by_phase["fwd"], steps),
        "compute_recompute_s": _per_step(cs2.busy_by_phase["recompute"], steps),
        "compute_backward_s": _per_step(cs2.busy_by_phase["bwd"], steps),
        "weight_stall_s": _per_step(total - busy - boundary, steps),
        "step_boundary_s": _per_step(boundary, steps),
    }
    sx = sim.swarmx
    util = {
        "cs2_compute": busy / total,
        "weight_stream": max(l.busy_s for l in sx.links_down) / total,
        "gradient_stream": max(l.busy_s for l in sx.links_up) / total,
        "memoryx_optimizer": sim.memoryx.optimizer.busy_s / total,
    }
    if not cluster.memoryx.full_duplex:
        util["weight_stream"] = util["gradient_stream"] = max(util["weight_stream"], util["gradient_stream"])
    bottleneck = max(util, key=util.get)
    model_flops = job.model_flops_per_step()
    power_w = power.cluster_power_w(cluster)
    hw_flops = model_flops + sum(
        p.flops_per_system for p in sim.passes if p.phase == "recompute" and p.step == 0
    ) * cluster.systems
    peak_held = max(c.peak_held_bytes for c in sim.cs2s)
    wafer = plan.to_dict() | {"weight_buffer_bytes": peak_held, "weight_buffer_limit_bytes":
                              cluster.cs2.weight_buffer_bytes,
                              "peak_bytes": plan.activation_bytes + peak_held}
    return StepReport(
        model=job.model.name,
        params=job.model.params,
        systems=cluster.systems,
        seq=job.seq,
        batch_seqs=job.batch_seqs,
        steps=steps,
        step_time_s=step_time,
        step_times_s=periods,
        tokens_per_s=job.tokens_per_step / step_time,
        model_flops_per_step=model_flops,
        hardware_flops_per_step=hw_flops,
        model_flops_per_s=model_flops / step_time,
        compute_utilization=model_flops / step_time / (cluster.systems * cluster.cs2.peak_flops_per_s),
        bottleneck=bottleneck,
        utilization_by_resource=util,
        wafer_memory_bytes=plan.activation_bytes + peak_held,
        wafer_memory=wafer,
        memoryx_bytes=memoryx_bytes(job, cluster),
        micro_batches=plan.micro_batches,
        recompute=plan.recompute,
        events=sim.events,
        breakdown=breakdown,
        chunk_bytes=sim.schedule.chunk_bytes,
        cluster=cluster.name,
        generation=cluster.generation,
        density=job.density.to_dict(),
        power_w=power_w,
        energy_per_step_j=power_w * step_time,
        plan_choice=sim.choice.to_dict() if sim.choice is not None else
        {"policy": "given", "micro_batches": plan.micro_batches, "recompute": plan.recompute,
         "seqs_per_micro_batch": plan.seqs_per_micro_batch, "reason": "a plan given by the caller"},
        extra={
            "seqs_per_system": plan.seqs_per_system,
            "tokens_per_system": plan.seqs_per_system * job.seq,
            "simulated_cs2_classes": len(sim.cs2s),
            "swarmx_depth": sim.graph.graph["depth"],
            "memoryx_stream_bytes_per_step": sim.memoryx.egress.bytes / steps,
            "memoryx_ingest_bytes_per_step": sim.memoryx.ingress.bytes / steps
            if cluster.memoryx.full_duplex else None,
            "dense_model_flops_per_step": job.dense_model_flops_per_step(),
            "power_breakdown_w": power.power_breakdown_w(cluster),
            "engine_calls": sim.calls,
        } | ({"moe": moe_summary(job, plan)} if job.model.experts else {}),
    )


def moe_summary(job, plan) -> dict:
    """An MoE job's routing and tiling as timed (wsim/cluster/moe.py)."""
    m = job.model
    run, slots = moe.expert_sub_passes(m.experts, m.experts_per_token, job.expert_shares)
    return {"experts": m.experts, "experts_per_token": m.experts_per_token, "moe_layers": len(m.sparse_layers),
            "active_params": m.active_params,
            "routing": "uniform (assumption)" if job.expert_shares is None else "measured shares",
            "expert_sub_passes_per_layer_pass": run,
            "tokens_per_expert_product": moe.tokens_per_expert(plan.seqs_per_micro_batch * job.seq, m.experts,
                                                               m.experts_per_token, job.expert_shares),
            "attention_tile_seqs": job.attention_tile_seqs}
