"""Mixture of experts under weight streaming: what each expert receives, and Batch Tiling on Attention.

Bytes. MemoryX streams every expert of an MoE block to every system and takes every expert's
gradient back, whatever the routing (``MatmulOp.stored`` = E: ``wsim.cluster.sparsity.layer_traffic``
counts E experts, ``models.spec.ModelSpec.moe_params``); a token computes with k of them (the FLOPs).
So a block's bytes per FLOP grow by about E/k against a dense block of the same active width.

Tokens. A system's micro-batch of T tokens makes T x k (token, expert) pairs. *Assumption (uniform
routing)*: each expert receives T k / E of them, the balance the router's auxiliary loss aims at
(Fedus et al. 2021, arXiv 2101.03961, eq. 4); or a *measured* distribution, ``TrainingJob.
expert_shares``: expert e receives T k s_e (s summing to 1), the same shares on every system and
micro-batch (an assumption: a measured distribution is a whole-batch average).

How the wafer runs the experts. *Assumption (sequential experts, padded)*: the experts of a block
run one after another, each over the whole wafer as its own sub-pass (the loop over experts of
Cerebras' MoE guide, "MoE at Scale: Making Sparse Models Fast on Real Hardware", cerebras.ai blog,
2025-09-03, Figure 1, and its statement that on the WSE "experts see tiny per-expert batch sizes"),
and every expert's product has the shape of the most loaded expert's (a compiled graph has static
shapes and Cerebras does not describe dropping tokens): ``experts_run`` sub-passes of T k max(s)
tokens, each paying the pass's fill and drain (``CS2Spec.pass_overhead_cycles``, wsim/cluster/wafer.py).
An expert's product is (1 x h) @ (h x f_e) alone on the wafer, not k of them side by side. Under
uniform routing the padded work is T k, the routed work; a skewed distribution pays E T k max(s).
This is the token dimension of the wafer model for MoE: a product of t tokens runs at
t / (t + t_half) of its large-batch rate, t_half = fill / (seconds per token), the same fill and
drain assumption the dense pass already makes once per pass (so dense models are unchanged).

Batch Tiling on Attention (BTA; Cerebras' MoE guide above; "Batch Tiling on Attention: Efficient
Mixture of Experts Training on Wafer-Scale Processors", SC25 workshop FGAI4S): attention runs on tiles
of B sequences, G of them concatenated into the G x B batch the experts see. Modelled from that
mechanism: ``TrainingJob.attention_tile_seqs`` = B. Attention's s x s activations (softmax output,
``BlockActivations.attention``) are held for one tile of one block only, so the backward of every
block recomputes its attention core (score and value products, softmax) tile by tile, an
*assumption* of how the s x s memory is released (as selective recompute does, Korthikanti et al.
2022, arXiv 2205.05198, sec. 5). The wafer then holds more sequences per micro-batch: fewer
micro-batches, so fewer weight streams per step, and more tokens per expert sub-pass.
"""

from __future__ import annotations

import math

from models.spec import ModelSpec
from wsim.errors import ConfigError


def check_shares(shares, model: ModelSpec) -> tuple[float, ...] | None:
    """A measured routing distribution normalised to sum 1 (counts or shares, one per expert)."""
    if shares is None:
        return None
    if not model.experts:
        raise ConfigError(f"expert_shares given but model {model.name} has no experts")
    try:
        values = tuple(float(x) for x in shares)
    except (TypeError, ValueError):
        raise ConfigError(f"expert_shares must be numbers, one per expert, got {shares!r}") from None
    if len(values) != model.experts:
        raise ConfigError(f"expert_shares has {len(values)} entries but model {model.name} has "
                          f"{model.experts} experts")
    if not all(math.isfinite(x) and x >= 0 for x in values) or sum(values) <= 0:
        raise ConfigError("expert_shares must be non-negative with a positive sum")
    total = sum(values)
    return tuple(x / total for x in values)


def expert_sub_passes(experts: int, top_k: int, shares: tuple[float, ...] | None) -> tuple[int, float]:
    """(experts that run, per-token expert slots the wafer computes): under uniform routing (E, k);
    with shares s, (experts with s > 0, that count x k x max s), every product padded to the most
    loaded expert's."""
    if shares is None:
        return experts, float(top_k)
    run = sum(1 for s in shares if s > 0)
    return run, run * top_k * max(shares)


def tokens_per_expert(tokens: float, experts: int, top_k: int,
                      shares: tuple[float, ...] | None = None) -> float:
    """Tokens the most loaded expert's product sees in a pass of ``tokens`` tokens (uniform: T k / E)."""
    return tokens * top_k * (max(shares) if shares is not None else 1.0 / experts)
