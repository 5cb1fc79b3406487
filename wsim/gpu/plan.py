"""How a training step is executed on GPUs: the parallel plan, and its checks against a model.

A ``Plan`` is Megatron-LM's PTD-P (Narayanan et al., SC21, arXiv 2104.04473) plus ZeRO/FSDP:
``tp`` tensor-parallel ranks (within a node when tp <= 8), ``pp`` pipeline stages, ``dp`` data-parallel
replicas (gpus = tp * pp * dp), ``micro_batch`` sequences per micro-batch, ``interleave`` model chunks
per stage (1 = plain 1F1B), ``recompute`` of activations, Megatron sequence parallelism, ZeRO stage.
Rank order is tensor-fastest, then data, then pipeline (Megatron's default), which decides which
groups share a node.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from models.spec import ModelSpec
from wsim.errors import ConfigError, positive

RECOMPUTE = ("none", "selective", "full")
ZERO_STAGES = (0, 1, 2, 3)


@dataclass(frozen=True)
class Plan:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    micro_batch: int = 1
    interleave: int = 1
    recompute: str = "full"
    sequence_parallel: bool = False
    zero: int = 0

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "micro_batch", "interleave"):
            positive(f"plan.{name}", getattr(self, name), integer=True)
        if self.recompute not in RECOMPUTE:
            raise ConfigError(f"plan.recompute {self.recompute!r} is not one of {', '.join(RECOMPUTE)}")
        if not isinstance(self.sequence_parallel, bool):
            raise ConfigError(f"plan.sequence_parallel must be true or false, got {self.sequence_parallel!r}")
        if self.zero not in ZERO_STAGES or isinstance(self.zero, bool):
            raise ConfigError(f"plan.zero {self.zero!r} is not one of 0, 1, 2, 3")
        if self.interleave > 1 and self.pp == 1:
            raise ConfigError(f"plan.interleave {self.interleave} needs pipeline parallelism (pp > 1); "
                              "use interleave 1 with pp 1")
        if self.zero >= 2 and self.pp > 1:
            raise ConfigError(f"plan.zero {self.zero} does not combine with pipeline parallelism "
                              f"(pp {self.pp}): ZeRO-2/3 shard gradients that 1F1B accumulates across "
                              "micro-batches (DeepSpeed refuses it); use zero 0 or 1, or pp 1")
        if self.sequence_parallel and self.tp == 1:
            raise ConfigError("plan.sequence_parallel needs tensor parallelism (tp > 1)")

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    def micro_batches(self, batch: int) -> int:
        return batch // (self.dp * self.micro_batch)

    def to_dict(self) -> dict:
        return asdict(self)


def check_plan(plan: Plan, model: ModelSpec, *, batch: int, gpus: int) -> None:
    """Raise ConfigError naming the first way ``plan`` cannot run ``model`` with this batch and GPUs."""
    if plan.gpus != gpus:
        raise ConfigError(f"gpus {gpus} is not tp x pp x dp = {plan.tp} x {plan.pp} x {plan.dp} = "
                          f"{plan.gpus}; choose tp and pp whose product divides the GPU count")
    if model.heads % plan.tp:
        raise ConfigError(f"tp {plan.tp} does not divide the model's {model.heads} attention heads; "
                          f"allowed tp: {', '.join(map(str, divisors(model.heads)))}")
    if model.ffn % plan.tp:
        raise ConfigError(f"tp {plan.tp} does not divide the model's FFN width {model.ffn}")
    if model.layers % plan.pp:
        raise ConfigError(f"pp {plan.pp} does not divide the model's {model.layers} layers; "
                          f"allowed pp: {', '.join(map(str, divisors(model.layers)))}")
    per_stage = model.layers // plan.pp
    if per_stage % plan.interleave:
        raise ConfigError(f"interleave {plan.interleave} does not divide the {per_stage} layers per "
                          f"pipeline stage; allowed: {', '.join(map(str, divisors(per_stage)))}")
    if batch % plan.dp:
        raise ConfigError(f"batch {batch} is not divisible by dp {plan.dp} (= gpus / (tp x pp))")
    local = batch // plan.dp
    if local % plan.micro_batch:
        raise ConfigError(f"micro_batch {plan.micro_batch} does not divide the {local} sequences per "
                          f"data-parallel replica; allowed: {', '.join(map(str, divisors(local)))}")
    m = local // plan.micro_batch
    if plan.interleave > 1 and m % plan.pp:
        raise ConfigError(f"the interleaved schedule needs the number of micro-batches ({m}) to be a "
                          f"multiple of pp ({plan.pp}) (Megatron-LM); use interleave 1 or a smaller "
                          "micro_batch")


def divisors(n: int) -> list[int]:
    small, large = [], []
    i = 1
    while i * i <= n:
        if n % i == 0:
            small.append(i)
            if i * i != n:
                large.append(n // i)
        i += 1
    return small + large[::-1]
