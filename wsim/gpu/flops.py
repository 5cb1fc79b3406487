"""FLOPs of one training step, model and hardware, in the conventions of Megatron-LM.

Conventions (the same as ``models.spec``): a multiply-add is 2 FLOPs, attention is counted
non-causal (full s x s scores), backward is 2x forward, element-wise work and the embedding lookup
are not counted. Per token and per block the forward is ``2(4h^2 + 2hf) + 4sh`` FLOPs (QKV, output
projection, MLP, then scores and the value product), the LM head ``2Vh``.

- **model FLOPs** count each matmul 3x its forward (no recompute). For f = 4h this is
  ``72 B s l h^2 (1 + s/(6h) + V/(12 l h))`` (Korthikanti et al. 2022, arXiv 2205.05198, sec. 6).
- **hardware FLOPs** add what recomputation does again: the whole block forward for ``full``
  (Narayanan et al. SC21 eq. (3): ``96 B s l h^2 (1 + s/(6h) + V/(16 l h))``, the formula of
  SC21 Table 1; the LM head is not recomputed), the attention core (``4 s h`` per token per layer,
  scores and value product) for ``selective``, nothing for ``none``.
"""

from __future__ import annotations

from models.spec import ModelSpec


def block_fwd_flops_per_token(model: ModelSpec, seq: int) -> float:
    h, f = model.hidden, model.ffn
    return 2.0 * (4 * h * h + 2 * h * f) + 4.0 * seq * h


def attention_core_fwd_flops_per_token(model: ModelSpec, seq: int) -> float:
    return 4.0 * seq * model.hidden


def head_fwd_flops_per_token(model: ModelSpec) -> float:
    return 2.0 * model.vocab * model.hidden


def recompute_fwd_flops_per_token(model: ModelSpec, seq: int, recompute: str) -> float:
    """Extra forward FLOPs per token per block that the recompute policy runs again."""
    if recompute == "full":
        return block_fwd_flops_per_token(model, seq)
    if recompute == "selective":
        return attention_core_fwd_flops_per_token(model, seq)
    return 0.0


def model_flops_per_step(model: ModelSpec, *, seq: int, batch: int) -> float:
    tokens = float(batch) * seq
    return tokens * 3.0 * (model.layers * block_fwd_flops_per_token(model, seq)
                           + head_fwd_flops_per_token(model))


def hardware_flops_per_step(model: ModelSpec, *, seq: int, batch: int, recompute: str) -> float:
    tokens = float(batch) * seq
    extra = tokens * model.layers * recompute_fwd_flops_per_token(model, seq, recompute)
    return model_flops_per_step(model, seq=seq, batch=batch) + extra


def megatron_flops_per_step(*, batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """SC21 eq. (3), full recompute, f = 4h: the closed form that Table 1's TFLOP/s count."""
    B, s, l, h, V = batch, seq, layers, hidden, vocab
    return 96.0 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))
