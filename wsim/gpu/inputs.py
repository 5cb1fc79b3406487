"""What every GPU estimate starts from: the checked inputs (``Consts``) and the stacks that can run a plan."""

from __future__ import annotations

import dataclasses

from models.spec import ModelSpec
from wsim.errors import ConfigError, positive, require
from models.suggest import close
from wsim.gpu.calibration import STACKS, Efficiency, efficiency_for
from wsim.gpu.specs import gpu_spec, with_network
from wsim.gpu.consts import ATTENTION, PRECISION, Consts

MAX_GPUS = 2**20
MAX_BATCH_SEQS = 2**24


def choice(name: str, value, allowed) -> None:
    if value not in allowed:
        near = close(value, map(str, allowed)) if isinstance(value, str) else []
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(map(str, allowed))}"
                          + (f"; did you mean {' or '.join(near)}?" if near else ""))


def _bandwidth(name: str, value) -> float | None:
    if value is None:
        return None
    positive(name, value)
    return float(value)


def with_dropout(model: ModelSpec, dropout: float | None) -> ModelSpec:
    """``model`` with dropout on (p > 0) or off (p = 0); None keeps the model's own setting."""
    if dropout is None:
        return model
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    return dataclasses.replace(model, dropout=dropout > 0)


def make_consts(model: ModelSpec, *, seq: int, batch: int, gpus: int, gpu,
                efficiency: Efficiency | None, attention: str = "eager", precision: str = "bf16",
                dropout: float | None = None, nic_bytes_per_s: float | None = None,
                nvlink_bytes_per_s: float | None = None, fabric: str | None = None) -> Consts:
    if not isinstance(model, ModelSpec):
        raise ConfigError(f"model must be a models.spec.ModelSpec, got {type(model).__name__}")
    positive("seq", seq, integer=True)
    positive("batch", batch, integer=True)
    positive("gpus", gpus, integer=True)
    # Plans are enumerated over divisors (trial division, O(sqrt n)): bound the counts so that a
    # search ends in seconds. Both limits are far beyond any published run.
    require(gpus <= MAX_GPUS, f"gpus {gpus} exceeds {MAX_GPUS:,}, the largest cluster the planner enumerates")
    require(batch <= MAX_BATCH_SEQS,
            f"batch {batch} exceeds {MAX_BATCH_SEQS:,} sequences, the largest the planner enumerates")
    choice("attention", attention, ATTENTION)
    choice("precision", precision, PRECISION)
    model = with_dropout(model, dropout)
    try:
        model.check_seq(seq)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    spec = with_network(gpu_spec(gpu), nic_bytes_per_s=_bandwidth("nic_bytes_per_s", nic_bytes_per_s),
                        nvlink_bytes_per_s=_bandwidth("nvlink_bytes_per_s", nvlink_bytes_per_s),
                        fabric=fabric)
    spec.peak_for(precision)  # refuses fp8 on a GPU without FP8 tensor cores
    return Consts(model, spec, efficiency_for(spec, efficiency), seq=seq, batch=batch, gpus=gpus,
                  attention=attention, precision=precision)


def cp_runs(c: Consts, st) -> bool:
    """Can ``st`` run context parallelism with ``c``'s attention? Transformer Engine's ring
    attention (Megatron-Core, NeMo) needs its flash or fused backend: "Disabling
    UnfusedDotProductAttention as it does not support context parallelism"
    (transformer_engine/pytorch/attention/dot_product_attention/utils.py @ d0067d0d, line 1171).
    ASSUMPTION for Meta's all-gather CP (Llama 3, arXiv 2407.21783 sec. 3.3.2): the same; the
    paper does not say, and its CP runs only long sequences, where eager attention's s x s
    scores would not fit."""
    return c.flash and st.context_parallel


def stacks_for(c: Consts, stack: str | None, *, zero=None, pp=None, cp=None,
               interleave=None) -> list:
    """The stacks to try: the one given, else every stack that can run these options (a mixture of
    experts: those with expert parallelism) and is chosen automatically (``Stack.auto``: not
    meta-llama3, Meta's in-house stack, whose speed is an unfitted prior)."""
    if stack is not None:
        choice("stack", stack, tuple(STACKS))
        st = STACKS[stack]
        if c.fp8 and not st.fp8:
            raise ConfigError(f"stack {stack} has no FP8 training; use --precision bf16 or stack "
                              "megatron-core or fsdp")
        if cp is not None and cp > 1 and st.context_parallel and not cp_runs(c, st):
            raise ConfigError(f"cp {cp} needs --attention flash: context parallelism runs on "
                              "Transformer Engine's flash / fused attention backends only")
        return [st]
    out = [st for st in STACKS.values()
           if st.auto and (not c.fp8 or st.fp8) and (zero is None or zero in st.zero_stages)
           and (pp is None or pp == 1 or st.pipeline)
           and (cp is None or cp == 1 or cp_runs(c, st))
           and (interleave is None or interleave == 1 or st.interleave)
           and (c.moe is None or st.expert_parallel)]
    if not out:
        raise ConfigError("no software stack runs these options together (zero "
                          f"{zero}, pp {pp}, cp {cp}, interleave {interleave}, precision "
                          f"{c.precision}); see --stack")
    return out


