"""The reference trainer: what weight-streamed training must reproduce (docs/design.md, "Numerical
equivalence"). One ``nn.Module`` (``models.decoder.CausalLM``, any family), the whole global batch on
one device, ``torch.optim.AdamW``.

Data contract (docs/design.md, ``wsim train``): ``data`` is (rows, seq+1) token ids; step k uses rows
k*B … (k+1)*B-1, inputs ``row[:-1]``, targets ``row[1:]``; the loss is the mean cross-entropy over
all B*seq targets. Weight decay applies to every tensor of 2 or more dimensions (matrices and
embeddings), not to biases or norm gains (LayerNorm, RMSNorm; the GPT-2/nanoGPT convention;
Loshchilov & Hutter 2019 for decoupled decay). No gradient clipping unless ``grad_clip`` is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from models.decoder import CausalLM, DecoderConfig


def adamw_param_groups(named_params: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]],
                       weight_decay: float) -> list[dict]:
    """Two AdamW groups: tensors with ndim >= 2 decay, the rest (biases, LayerNorm) do not.
    Each group also lists its parameter ``names`` (torch keeps extra keys in a group)."""
    items = named_params.items() if isinstance(named_params, Mapping) else named_params
    decay: dict[str, Tensor] = {}
    no_decay: dict[str, Tensor] = {}
    for name, p in items:
        (decay if p.dim() >= 2 else no_decay)[name] = p
    groups = [
        {"params": list(decay.values()), "names": list(decay), "weight_decay": weight_decay},
        {"params": list(no_decay.values()), "names": list(no_decay), "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def step_batch(data: Tensor, step: int, batch: int) -> tuple[Tensor, Tensor]:
    """Inputs and targets (B, seq) of ``step``: rows step*B … (step+1)*B-1."""
    rows = data[step * batch:(step + 1) * batch]
    return rows[:, :-1], rows[:, 1:]


def _check(data: Tensor, steps: int, batch: int, cfg: DecoderConfig) -> None:
    if not isinstance(data, Tensor) or data.dim() != 2 or data.dtype not in (torch.int64, torch.int32):
        raise ValueError("data must be an integer tensor of shape (rows, seq+1)")
    for name, v in (("steps", steps), ("batch", batch)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if data.size(0) < steps * batch:
        raise ValueError(f"data has {data.size(0)} rows; {steps} steps of batch {batch} need {steps * batch}")
    if not 2 <= data.size(1) <= cfg.max_positions + 1:
        raise ValueError(f"data rows hold {data.size(1)} tokens; need 2 … positions+1 "
                         f"= {cfg.max_positions + 1}")
    if data.numel() and (int(data.min()) < 0 or int(data.max()) >= cfg.vocab_size):
        raise ValueError(f"data token ids must lie in [0, {cfg.vocab_size})")


def reference_train(cfg: DecoderConfig, init_weights: dict[str, Tensor], data: Tensor, steps: int, batch: int,
                    lr: float, betas: tuple[float, float], eps: float, weight_decay: float,
                    dtype: torch.dtype,
                    grad_clip: float | None = None) -> tuple[list[float], dict[str, Tensor]]:
    """Train ``steps`` AdamW steps from ``init_weights``; returns (loss per step, final weights by HF
    name, detached copies). The caller's tensors are not modified."""
    _check(data, steps, batch, cfg)
    model = CausalLM(cfg, init_weights, dtype=dtype)
    # foreach=False: the per-tensor loop, the same arithmetic as a per-layer optimizer on MemoryX
    opt = torch.optim.AdamW(adamw_param_groups(model.named_parameters(), weight_decay),
                            lr=lr, betas=tuple(betas), eps=eps, foreach=False)
    losses: list[float] = []
    for k in range(steps):
        x, y = step_batch(data, k, batch)  # (B, seq) each
        opt.zero_grad(set_to_none=True)
        _, loss = model(x.long(), y.long())
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        losses.append(loss.item())
    return losses, {n: p.detach().clone() for n, p in model.named_parameters()}
