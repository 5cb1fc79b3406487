"""What is trained and how: model, sequence, global batch, precision, micro-batching, steps."""

from __future__ import annotations

from dataclasses import dataclass

from models.spec import LayerSpec, ModelSpec
from wsim.errors import ConfigError, positive, require


MICRO_BATCH_POLICIES = ("best", "fit", "auto")


@dataclass(frozen=True)
class TrainingJob:
    model: ModelSpec
    seq: int = 2048
    batch_seqs: int = 1  # global batch, in sequences
    # per system: "best" (the shortest step, micro-batch count and recompute chosen jointly by the
    # closed form, wsim.analytic.choose_plan), "fit" (the fewest that fit without recompute; "auto"
    # is its older name) or a count
    micro_batches: int | str = "best"
    steps: int = 1
    # 16-bit weights and activations (Cerebras-GPT trains in mixed precision, Dey et al. 2023 sec. 3).
    bytes_per_element: int = 2
    # Assumption: gradients leave the wafer in the same 16-bit format (SwarmX sums them in floating
    # point at line rate, glossary "SwarmX"); set 4 to model fp32 gradients.
    grad_bytes_per_param: int = 2

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

    @property
    def tokens_per_step(self) -> int:
        return self.seq * self.batch_seqs

    def layers(self) -> list[LayerSpec]:
        return self.model.layer_specs(self.seq, self.bytes_per_element)

    def model_flops_per_step(self) -> float:
        """Forward + backward, no recompute: the FLOPs that MFU-style utilisation counts."""
        return self.model.flops_per_token(self.seq) * self.tokens_per_step

    def seqs_per_system(self, systems: int) -> int:
        require(self.batch_seqs >= systems,
                f"batch {self.batch_seqs} is smaller than the number of systems {systems}: "
                f"every CS-2 needs at least one sequence")
        require(self.batch_seqs % systems == 0,
                f"batch {self.batch_seqs} is not divisible by systems {systems} "
                f"(pure data parallelism gives every CS-2 the same number of sequences)")
        return self.batch_seqs // systems
