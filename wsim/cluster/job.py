"""What is trained and how: model, sequence, global batch, precision, micro-batching, steps."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from models.spec import LayerSpec, ModelSpec
from wsim.cluster import moe, sparsity
from wsim.errors import ConfigError, positive, require
from wsim.cluster.hardware import MemoryXSpec
from wsim.cluster.sparsity import Density, LayerTraffic


MICRO_BATCH_POLICIES = ("best", "fit", "auto")


@dataclass(frozen=True)
class TrainingJob:
    model: ModelSpec
    seq: int = 2048
    batch_seqs: int = 1  # global batch, in sequences
    # per system: "best" (the shortest step, micro-batch count and recompute chosen jointly by the
    # closed form, wsim.engine.closed_form.choose_plan), "fit" (the fewest that fit without recompute; "auto"
    # is its older name) or a count
    micro_batches: int | str = "best"
    steps: int = 1
    # 16-bit weights and activations (Cerebras-GPT trains in mixed precision, Dey et al. 2023 sec. 3).
    bytes_per_element: int = 2
    # Assumption: gradients leave the wafer in the same 16-bit format (SwarmX sums them in floating
    # point at line rate, glossary "SwarmX"); set 4 to model fp32 gradients.
    grad_bytes_per_param: int = 2
    # Nonzero fraction of the weight matrices (wsim/cluster/sparsity.py): one number for every layer kind,
    # a mapping {"embedding" | "block" | "head": d}, or a Density; 1 is dense. Stored as a Density.
    density: float | dict | Density = 1.0
    # mixture of experts (wsim/cluster/moe.py): a measured routing distribution, one share (or count)
    # per expert, normalised; None: uniform routing (an assumption, T k / E tokens per expert)
    expert_shares: tuple[float, ...] | None = None
    # Batch Tiling on Attention: attention runs on tiles of this many sequences (its s x s activations
    # held for one tile, recomputed in the backward); 0: off (wsim/cluster/moe.py)
    attention_tile_seqs: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSpec):
            raise ConfigError(f"model must be a ModelSpec, got {type(self.model).__name__}")
        positive("seq", self.seq, integer=True)
        try:
            self.model.check_seq(self.seq)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        positive("batch", self.batch_seqs, integer=True)
        if isinstance(self.micro_batches, str):
            require(self.micro_batches in MICRO_BATCH_POLICIES,
                    f"micro_batches must be a positive integer or one of {', '.join(MICRO_BATCH_POLICIES)}, "
                    f"got {self.micro_batches!r}")
        else:
            positive("micro_batches", self.micro_batches, integer=True)
        positive("steps", self.steps, integer=True)
        require(self.bytes_per_element in (1, 2, 4),
                f"bytes_per_element must be 1, 2 or 4, got {self.bytes_per_element!r}")
        require(self.grad_bytes_per_param in (1, 2, 4),
                f"grad_bytes_per_param must be 1, 2 or 4, got {self.grad_bytes_per_param!r}")
        object.__setattr__(self, "density", Density.of(self.density))
        object.__setattr__(self, "expert_shares", moe.check_shares(self.expert_shares, self.model))
        if self.attention_tile_seqs != 0:
            positive("attention_tile_seqs", self.attention_tile_seqs, integer=True)
        sparsity.check_tied(self.density, self.model)

    @property
    def tokens_per_step(self) -> int:
        return self.seq * self.batch_seqs

    @cached_property
    def _layer_specs(self) -> tuple[LayerSpec, ...]:
        return tuple(self.model.layer_specs(self.seq, self.bytes_per_element))

    def layers(self) -> list[LayerSpec]:
        return list(self._layer_specs)

    def layer_densities(self) -> list[float]:
        """Each layer's weight density, in layer order."""
        return sparsity.densities(self.layers(), self.density)

    def traffic(self, memoryx: MemoryXSpec | None = None) -> list[LayerTraffic]:
        """Each layer's streamed, gradient and MemoryX bytes and updated parameters at the job's
        density, in ``memoryx``'s sparse format (default: MemoryXSpec's)."""
        mx = memoryx if memoryx is not None else MemoryXSpec()
        key = (mx.bytes_per_param, mx.sparse_mask_bits_per_weight, mx.sparse_index_bits_per_nonzero)
        if key not in self._traffic:
            self._traffic[key] = tuple(
                sparsity.layer_traffic(l, self.model, d, bytes_per_element=self.bytes_per_element,
                                       grad_bytes_per_param=self.grad_bytes_per_param,
                                       bytes_per_param=mx.bytes_per_param,
                                       mask_bits=mx.sparse_mask_bits_per_weight,
                                       index_bits=mx.sparse_index_bits_per_nonzero)
                for l, d in zip(self.layers(), self.layer_densities()))
        return list(self._traffic[key])

    @cached_property
    def _traffic(self) -> dict:
        return {}

    def model_flops_per_step(self) -> float:
        """Forward + backward, no recompute: the FLOPs that MFU-style utilisation counts; a sparse
        model counts its nonzero weights only (``dense_model_flops_per_step`` counts them all)."""
        if self.density.dense:
            return self.dense_model_flops_per_step()
        per_token = sum(sparsity.flops_per_token(l, d, "fwd") + sparsity.flops_per_token(l, d, "bwd")
                        for l, d in zip(self.layers(), self.layer_densities()))
        return per_token * self.tokens_per_step

    def dense_model_flops_per_step(self) -> float:
        return self.model.flops_per_token(self.seq) * self.tokens_per_step

    def seqs_per_system(self, systems: int) -> int:
        require(self.batch_seqs >= systems,
                f"batch {self.batch_seqs} is smaller than the number of systems {systems}: "
                f"every CS-2 needs at least one sequence")
        require(self.batch_seqs % systems == 0,
                f"batch {self.batch_seqs} is not divisible by systems {systems} "
                f"(pure data parallelism gives every CS-2 the same number of sequences)")
        return self.batch_seqs // systems
