"""Where the bytes live: activations on the wafer, weights and optimizer state in MemoryX.

The wafer keeps activations only (Hot Chips 34, "weights are never stored on the wafer"): the
stored activations of one micro-batch for every layer, plus the weight buffer that the stream fills
ahead of compute. When the system's share of the batch does not fit, it is split into micro-batches
(gradient accumulation); when even one sequence does not fit, activation checkpointing keeps only
each layer's input and recomputes the layer's forward in the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsim.errors import ConfigError
from wsim.cluster.hardware import ClusterSpec
from wsim.cluster import moe
from wsim.cluster.job import TrainingJob


@dataclass(frozen=True)
class WaferPlan:
    seqs_per_system: int
    micro_batches: int
    seqs_per_micro_batch: int  # the largest micro-batch
    recompute: bool
    activation_bytes: float  # peak stored activations per CS-2
    weight_buffer_bytes: float
    usable_bytes: float

    @property
    def micro_batch_seqs(self) -> list[int]:
        """Sizes of the micro-batches: the system's sequences split as evenly as possible."""
        return split(self.seqs_per_system, self.micro_batches)

    @property
    def peak_bytes(self) -> float:
        return self.activation_bytes + self.weight_buffer_bytes

    def to_dict(self) -> dict:
        return {
            "seqs_per_system": self.seqs_per_system,
            "micro_batches": self.micro_batches,
            "seqs_per_micro_batch": self.seqs_per_micro_batch,
            "micro_batch_seqs": self.micro_batch_seqs if self.micro_batches <= 64 else None,
            "recompute": self.recompute,
            "activation_bytes": self.activation_bytes,
            "weight_buffer_bytes": self.weight_buffer_bytes,
            "peak_bytes": self.peak_bytes,
        }


def attention_tile_bytes_per_seq(job: TrainingJob) -> float:
    """Batch Tiling on Attention (wsim/cluster/moe.py): one block's s x s attention activations per
    sequence, held for one tile only; 0 without tiling."""
    if not job.attention_tile_seqs:
        return 0.0
    m = job.model
    return job.seq * job.bytes_per_element / 2.0 * m.block_activations(job.seq, False).attention


def expert_padding_bytes_per_token(job: TrainingJob) -> float:
    """What padding every expert to the most loaded one adds to an MoE block's stored activations
    per token (a measured routing distribution, wsim/cluster/moe.py): the experts' inner activations
    (6 f_e bytes per routed slot at 16-bit, ``ModelSpec.block_activations``) for the padded slots."""
    m = job.model
    if not m.experts or job.expert_shares is None:
        return 0.0
    _, slots = moe.expert_sub_passes(m.experts, m.experts_per_token, job.expert_shares)
    return (slots - m.experts_per_token) * (6 if m.gated_mlp else 4) * m.expert_ffn * job.bytes_per_element / 2.0


def activation_bytes_per_seq(job: TrainingJob, recompute: bool) -> float:
    """Peak stored activation bytes for one sequence on one CS-2 (with Batch Tiling on Attention,
    without the s x s attention activations: ``activation_bytes`` adds one tile's).

    Without recompute: every layer's stored activations. With checkpointing: every layer's input,
    plus the one layer being recomputed held in full."""
    layers = job.layers()
    attn = attention_tile_bytes_per_seq(job)
    padded = expert_padding_bytes_per_token(job)
    if not recompute:
        return job.seq * (sum(l.act_bytes_per_token for l in layers) + padded * len(job.model.sparse_layers)) \
            - attn * job.model.layers
    inputs = sum(l.input_bytes_per_token for l in layers)
    return job.seq * (inputs + max(l.act_bytes_per_token for l in layers) + padded) - attn


def activation_bytes(job: TrainingJob, recompute: bool, seqs: int) -> float:
    """Peak stored activations of a micro-batch of ``seqs`` sequences: per sequence, plus one
    attention tile (of at most ``seqs`` sequences) with Batch Tiling on Attention."""
    return activation_bytes_per_seq(job, recompute) * seqs + attention_tile_bytes_per_seq(job) * min(
        seqs, job.attention_tile_seqs)


def _fit(job: TrainingJob, recompute: bool, usable: float) -> int:
    """The most sequences whose activations fit ``usable`` bytes."""
    per, tile = activation_bytes_per_seq(job, recompute), attention_tile_bytes_per_seq(job)
    b = job.attention_tile_seqs
    small = int(usable // (per + tile))
    return small if not tile or small < b else int((usable - b * tile) // per)


def memoryx_bytes(job: TrainingJob, cluster: ClusterSpec) -> float:
    """Weights and optimizer state in MemoryX (a sparse job: its nonzeros and mask, wsim/cluster/sparsity.py)."""
    if job.density.dense:
        return job.model.params * cluster.memoryx.bytes_per_param
    return sum(t.memoryx_bytes for t in job.traffic(cluster.memoryx))


def check_memoryx(job: TrainingJob, cluster: ClusterSpec) -> None:
    need = memoryx_bytes(job, cluster)
    if need > cluster.memoryx.capacity_bytes:
        raise ConfigError(
            f"model {job.model.name} needs {need / 1e12:.4g} TB of MemoryX "
            f"({job.model.params:.4g} params x {cluster.memoryx.bytes_per_param:g} B"
            f"{'' if job.density.dense else ', at its density'}) but memoryx."
            f"capacity_bytes is {cluster.memoryx.capacity_bytes / 1e12:.4g} TB"
        )


def split(seqs: int, parts: int) -> list[int]:
    """``seqs`` sequences in ``parts`` micro-batches whose sizes differ by at most one."""
    base, extra = divmod(seqs, parts)
    return [base + 1] * extra + [base] * (parts - extra)


def _usable(cluster: ClusterSpec) -> float:
    buffer = cluster.cs2.weight_buffer_bytes
    usable = cluster.cs2.usable_sram_bytes - buffer
    if usable <= 0:
        raise ConfigError(
            f"cs2.weight_buffer_bytes ({buffer:g}) leaves no SRAM for activations "
            f"(usable {cluster.cs2.usable_sram_bytes:g} bytes)"
        )
    return usable


def _make(job: TrainingJob, cluster: ClusterSpec, m: int, recompute: bool) -> WaferPlan:
    seqs = job.seqs_per_system(cluster.systems)
    largest = -(-seqs // m)
    return WaferPlan(seqs, m, largest, recompute, activation_bytes(job, recompute, largest),
                     cluster.cs2.weight_buffer_bytes, _usable(cluster))


def fewest(job: TrainingJob, cluster: ClusterSpec, recompute: bool) -> WaferPlan:
    """The fewest micro-batches that fit the wafer with (or without) activation recompute: the
    largest micro-batch that fits, the system's sequences split evenly (sizes may differ by one)."""
    seqs = job.seqs_per_system(cluster.systems)
    usable = _usable(cluster)
    per = activation_bytes(job, recompute, 1)
    fit = _fit(job, recompute, usable)
    if fit < 1:
        how = "even with activation recompute" if recompute else "without activation recompute"
        raise ConfigError(
            f"one sequence of {job.seq} tokens needs {per / 1e9:.3g} GB of activations {how}, more "
            f"than the wafer's {usable / 1e9:.3g} GB usable SRAM"
            + (": shorten --seq" if recompute else ""))
    return _make(job, cluster, -(-seqs // min(fit, seqs)), recompute)


def plan(job: TrainingJob, cluster: ClusterSpec) -> WaferPlan:
    """Micro-batching (and recompute) for the policies that need no timing: ``fit`` (alias
    ``auto``), the fewest micro-batches that fit without recompute, with activation checkpointing
    only when even one sequence does not fit; or a forced count M, the system's sequences split
    into M micro-batches, recompute only if they do not fit without. The default policy ``best``
    weighs step times: ``wsim.engine.closed_form.choose_plan``."""
    if job.micro_batches == "best":
        raise ConfigError("the micro-batch policy 'best' is chosen by the closed form: "
                          "use wsim.engine.closed_form.choose_plan")
    seqs = job.seqs_per_system(cluster.systems)
    usable = _usable(cluster)
    if job.micro_batches in ("fit", "auto"):
        try:
            return fewest(job, cluster, recompute=False)
        except ConfigError:
            return fewest(job, cluster, recompute=True)
    m = job.micro_batches
    if m > seqs:
        raise ConfigError(
            f"micro_batches {m} exceeds the {seqs} sequences each CS-2 gets "
            f"(batch {job.batch_seqs} / {cluster.systems} systems)"
        )
    largest = -(-seqs // m)
    if activation_bytes(job, False, largest) <= usable:
        return _make(job, cluster, m, False)
    ckpt = activation_bytes(job, True, largest)
    if ckpt <= usable:
        return _make(job, cluster, m, True)
    fit = _fit(job, True, usable)
    hint = f"use --micro-batches {-(-seqs // fit)} or more, or best" if fit else "shorten --seq"
    raise ConfigError(
        f"micro_batches {m}: {largest} sequences need {ckpt / 1e9:.3g} GB of "
        f"activations even with checkpointing, over the wafer's {usable / 1e9:.3g} GB: {hint}"
    )
