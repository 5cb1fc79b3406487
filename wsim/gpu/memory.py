"""Memory per GPU: weights, gradients, optimizer state, activations; does a plan fit?

- Model states (ZeRO, Rajbhandari et al. 2020, arXiv 1910.02054, sec. 3.1): mixed-precision Adam
  keeps 2 bytes of 16-bit weights, 2 of 16-bit gradients and 12 of fp32 master weights, momentum and
  variance per parameter. ZeRO-1 shards the 12 over data-parallel ranks, ZeRO-2 also the gradients,
  ZeRO-3 (FSDP) also the weights, keeping two gathered layers (the one computing and the prefetched).
- Activations per block, per token, 16-bit (Korthikanti et al. 2022, arXiv 2205.05198, sec. 4),
  generalised to FFN width f as in ``models.spec``: a part replicated across tensor ranks unless
  sequence parallelism splits it (LayerNorm inputs, dropout masks, inputs of QKV and the first MLP
  matmul: 10h with dropout, 8h without), a part split by tensor parallelism (8h + 4f) and the
  attention scores part split too (5as with dropout, 2as without), which selective recompute drops.
  Full recompute keeps only each block's input (2h, split by sequence parallelism) plus, during
  backward, one block's full activations for one micro-batch.
- Micro-batches in flight on the first stage: min(m, p) for 1F1B; for the interleaved schedule
  Megatron-LM's warm-up keeps (v-1)p + 2(p-1) + 1 chunks of L/(pv) layers, i.e. Korthikanti's factor
  1 + (p-1)/(pv) over 1F1B.
- The last stage also holds the logits: 2 bytes (16-bit) + 4 bytes (fp32 copy for the cross-entropy,
  Megatron's vocab-parallel loss) per token per vocabulary entry / tp.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

WEIGHT_BYTES = 2.0  # 16-bit weights (ZeRO sec. 3.1)
GRAD_BYTES = 2.0  # 16-bit gradients (ZeRO sec. 3.1)
OPTIMIZER_BYTES = 12.0  # fp32 master weights + Adam momentum + variance (ZeRO sec. 3.1)
LOGIT_BYTES = 6.0  # 16-bit logits + fp32 copy in the loss (Megatron vocab-parallel cross entropy)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per GPU on the fullest pipeline stage."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    reserved_bytes: float
    capacity_bytes: float
    stage: int  # which pipeline stage is fullest

    @property
    def total_bytes(self) -> float:
        return (self.weights_bytes + self.gradients_bytes + self.optimizer_bytes
                + self.activations_bytes + self.reserved_bytes)

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.capacity_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_bytes"] = self.total_bytes
        return d


def state_bytes_per_param(zero: int, dp: int) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes per local parameter under ZeRO stage ``zero``."""
    w = WEIGHT_BYTES / dp if zero >= 3 else WEIGHT_BYTES
    g = GRAD_BYTES / dp if zero >= 2 else GRAD_BYTES
    o = OPTIMIZER_BYTES / dp if zero >= 1 else OPTIMIZER_BYTES
    return w, g, o


def act_bytes_per_token_layer(c, tp: int, recompute: str, sp: bool) -> float:
    """Stored activation bytes per token per block (``c`` is a ``step.Consts``)."""
    rep_div = tp if sp else 1
    if recompute == "full":
        return 2.0 * c.h / rep_div
    par = c.act_par / tp
    if recompute == "none":
        par += c.act_attn / tp
    return c.act_rep / rep_div + par


def inflight_layers(layers_per_stage: int, pp: int, v: int, m: int) -> float:
    """Layer-micro-batches of activations the first stage holds at its peak."""
    if pp == 1:
        return float(layers_per_stage)
    if v == 1:
        return float(min(m, pp) * layers_per_stage)
    chunks = min(m * v, (v - 1) * pp + 2 * (pp - 1) + 1)
    return chunks * layers_per_stage / v


def memory(c, tp: int, pp: int, dp: int, b: int, v: int, recompute: str, sp: bool, zero: int,
           m: int) -> MemoryBreakdown:
    """The fullest stage's memory for this plan (``c`` is a ``step.Consts``)."""
    L = c.layers // pp
    w, g, o = state_bytes_per_param(zero, dp)
    tokens = b * c.seq
    per_layer_full = tokens * act_bytes_per_token_layer(c, tp, "none", sp)
    stored = tokens * act_bytes_per_token_layer(c, tp, recompute, sp)
    working = per_layer_full if recompute == "full" else 0.0
    if recompute == "selective":
        working = tokens * c.act_attn / tp  # one block's attention core, recomputed in backward
    gathered = 2 * c.block_params / tp * WEIGHT_BYTES if zero >= 3 else 0.0
    logits = tokens * c.vocab / tp * LOGIT_BYTES

    body = L * c.block_params / tp
    first_params = body + c.embed_params_tp(tp)
    last_params = body + c.head_params_tp(tp, pp)
    first_act = inflight_layers(L, pp, v, m) * stored + working
    last_act = L * stored + working + logits
    if pp == 1:
        first_params += c.head_params_tp(tp, pp)
        first_act += logits
        last_params, last_act = first_params, first_act
    best = None
    for stage, params, act in ((0, first_params, first_act), (pp - 1, last_params, last_act)):
        mb = MemoryBreakdown(params * w + gathered, params * g, params * o, act,
                             c.reserved_bytes, c.capacity_bytes, stage)
        if best is None or mb.total_bytes > best.total_bytes:
            best = mb
    return best


def states_lower_bound(c, tp: int, pp: int, dp: int, zero: int) -> float:
    """A lower bound on any plan's memory with this tp, pp, dp and ZeRO stage (for pruning)."""
    w, g, o = state_bytes_per_param(zero, dp)
    L = c.layers // pp
    params = L * c.block_params / tp + min(c.embed_params_tp(tp), c.head_params_tp(tp, pp))
    return params * (w + g + o) + c.reserved_bytes
