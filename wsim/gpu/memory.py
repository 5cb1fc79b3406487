"""Memory per GPU: weights, gradients, optimizer state, activations; does a plan fit?

- Model states (ZeRO, Rajbhandari et al. 2020, arXiv 1910.02054, sec. 3.1): mixed-precision Adam
  keeps 2 bytes of 16-bit weights, 2 of 16-bit gradients and 12 of fp32 master weights, momentum and
  variance per parameter. Megatron-Core accumulates gradients in fp32 (4 bytes; its docs' table
  "bf16 param, fp32 grads: 18 bytes, distributed optimizer 6 + 12/d"). ZeRO-1 (Megatron's
  distributed optimizer) shards the 12 over the data-parallel ranks (x context-parallel ranks, the
  group Megatron-Core reduces over), ZeRO-2 also the gradients, ZeRO-3/FSDP also the weights, keeping
  two gathered blocks (the one computing and the prefetched one) and one block's unsharded gradient.
  FP8 (Transformer Engine) keeps an FP8 copy of each local weight: 1 more byte (assumption), unless
  the weights are kept in FP8 only (--fp8-param-gather: 1 byte). The gradient buffer is 4 bytes
  (fp32) or 2 (bf16) as the plan's ``grad_reduce_fp32`` says (``wsim.gpu.knobs``).
  ZeRO-2 with pipeline parallelism (``Stack.zero2_pipeline``: Meta's Llama 3 stack) keeps the
  sharded fp32 gradient (4/d bytes a parameter) plus one model chunk's unsharded fp32 gradient
  (L/v layers: the chunk whose backward is accumulating a round of micro-batches before its
  reduce-scatter; ASSUMPTION, ``wsim.gpu.dataparallel``).
- Activations per block, per token, 16-bit (Korthikanti et al. 2022, arXiv 2205.05198, sec. 4),
  generalised to FFN width f, grouped-query attention and gated MLPs: a part replicated across
  tensor ranks unless sequence parallelism splits it (LayerNorm inputs, dropout masks, inputs of QKV
  and of the first MLP matmul: 10h with dropout, 8h without), a part split by tensor parallelism
  (Q, K, V and the projection input: 4h + 4 kv_heads x head_dim; the MLP: 4f, or 6f gated) and the
  attention-scores part (5as with dropout, 2as without), which selective recompute drops and which
  FlashAttention never stores (it keeps a float32 log-sum-exp per head: 4a bytes). Full recompute
  keeps only each block's input (2h, split by sequence parallelism) plus, during backward, one
  block's full activations for one micro-batch. Context parallelism splits every token count by cp.
  Multi-head latent attention (DeepSeek-V3): its latents (4 q_lora_rank + 4 kv_lora_rank) join the
  replicated part, Q, K, V and the projection input (4 heads (d_qk + d_v)) the split part
  (``models.per_layer``); its down projections' weights are held whole on every tensor rank
  (``Consts.replicated_tp``, Megatron-Core's duplicated linears).
- Micro-batches in flight on the first stage: min(m, p) for 1F1B; for the interleaved schedule
  Megatron-LM's warm-up keeps (v-1)p + 2(p-1) + 1 chunks of L/(pv) layers.
- Activation offloading (``wsim.gpu.offload``, pp 1 only): the stage stores (layers - offloaded)
  layers' activations.
- Edge-balanced stages (``wsim.gpu.stages``): the first and the last stage hold one layer fewer; the
  fullest of the first, the second and the last stage is reported.
- The last stage also holds the logits: 2 bytes (16-bit) + 4 bytes (fp32 copy for the cross-entropy,
  Megatron's vocab-parallel loss) per token per vocabulary entry / tp.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from wsim.gpu import mtp as mtp_cost
from wsim.gpu.recompute import (DEFAULT as DEFAULT_RECOMPUTE, mla_latent_norm_bytes,
                                mla_up_proj_bytes_per_token, mlp_bytes, norm_bytes)
from wsim.gpu.stages import edge_balanced

WEIGHT_BYTES = 2.0  # 16-bit weights (ZeRO sec. 3.1)
GRAD_BYTES = 2.0  # 16-bit gradients (ZeRO sec. 3.1); Megatron-Core: Stack.grad_reduce_bytes = 4
OPTIMIZER_BYTES = 12.0  # fp32 master weights + Adam momentum + variance (ZeRO sec. 3.1)
OPTIMIZER_BF16_BYTES = 6.0  # the same three in bf16 (Apex DistributedFusedAdam dtype bf16; knobs)
FP8_WEIGHT_BYTES = 1.0  # Transformer Engine's FP8 weight copy (assumption)
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


def state_bytes_per_param(zero: int, shards: int, grad_bytes: float = GRAD_BYTES,
                          fp8: bool = False, fp8_params: bool = False,
                          optimizer_bytes: float = OPTIMIZER_BYTES) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes per local parameter under ZeRO stage ``zero``:
    16-bit weights (plus Transformer Engine's FP8 copy under FP8), or FP8 weights alone
    (``fp8_params``: --fp8-param-gather, the fp32 master copy is in the optimizer state)."""
    w = FP8_WEIGHT_BYTES if fp8_params else WEIGHT_BYTES + (FP8_WEIGHT_BYTES if fp8 else 0.0)
    if zero >= 3:
        w /= shards
    g = grad_bytes / shards if zero >= 2 else grad_bytes
    o = optimizer_bytes / shards if zero >= 1 else optimizer_bytes
    return w, g, o


def act_bytes_per_token_layer(c, tp: int, recompute: str, sp: bool,
                              modules: tuple = DEFAULT_RECOMPUTE) -> float:
    """Stored activation bytes per token per block (``c`` is a ``consts.Consts``; ``modules``:
    those a selective recompute reruns, ``wsim.gpu.recompute``)."""
    rep_div = tp if sp else 1
    if recompute == "full":
        return 2.0 * c.h / rep_div
    par = c.act_par / tp
    if recompute == "none":
        par += c.act_attn / tp
    elif c.flash or "core_attn" not in modules:  # nothing to drop under FlashAttention
        par += c.act_attn / tp
    if recompute == "selective" and "mla_up_proj" in modules:  # Q, K, V discarded
        par -= mla_up_proj_bytes_per_token(c) / tp
    if recompute == "selective" and "mlp" in modules:  # a dense block's MLP and its fused norm
        par -= mlp_bytes(c, tp, sp)
    if recompute == "selective" and c.mla and ("layernorm" in modules or "mla_up_proj" in modules):
        rep = c.act_rep
        if "layernorm" in modules:  # the input norm's output
            rep -= norm_bytes(c)
        if "mla_up_proj" in modules:  # the latent norms' outputs (fused into the up projections)
            rep -= mla_latent_norm_bytes(c)
        return rep / rep_div + par
    return c.act_rep / rep_div + par


def inflight_layers(layers_per_stage: int, pp: int, v: int, m: int, rank: int = 0) -> float:
    """Layer-micro-batches of activations pipeline stage ``rank`` (0: the first) holds at its
    peak: 1F1B's pp - rank micro-batches, or Megatron-LM's interleaved warm-up of
    (v-1)p + 2(p-1-rank) + 1 chunks (schedules.py, num_warmup_microbatches, plus the one in
    steady state)."""
    if pp == 1:
        return float(layers_per_stage)
    if v == 1:
        return float(min(m, pp - rank) * layers_per_stage)
    chunks = min(m * v, (v - 1) * pp + 2 * (pp - 1 - rank) + 1)
    return chunks * layers_per_stage / v


def memory(c, tp: int, pp: int, dp: int, b: int, v: int, recompute: str, sp: bool, zero: int,
           m: int, cp: int = 1, stack=None, kn=None, sparse=None) -> MemoryBreakdown:
    """The fullest stage's memory for this plan (``c`` is a ``consts.Consts``; ``kn`` the plan's
    ``wsim.gpu.knobs.Knobs``: the gradient buffer's width, FP8 parameters). ``sparse``: a mixture
    of experts' (sparse blocks on the stage, their expert weights on this GPU, the expert-data-
    parallel size that shards their optimizer state, extra stored bytes per token of a sparse
    block, one sparse block's transient dispatch buffers; ``wsim.gpu.moe``)."""
    (L, w, g, o, gathered, stored, working, logits, first_params, last_params,
     (ew, eg, eo), mid_params, chunk_grad, last) = _fixed(c, tp, pp, dp, b, recompute, sp, zero, cp,
                                                          stack, kn, sparse)
    if chunk_grad:  # ZeRO-2 with pipelining: one chunk's (L/v layers') unsharded gradient
        eg += -(-L // v) * chunk_grad
    if mid_params is not None:
        return _edge_balanced(c, L, w, g, o, gathered, stored, working, logits, first_params,
                              last_params, mid_params, pp, v, m, eg, last)
    # activation offloading (pp 1): the offloaded layers' activations are in host memory
    # (Transformer Engine's peak, (layers - offloaded) x one layer's; wsim.gpu.offload)
    kept = L - kn.cpu_offload_layers if kn is not None and kn.cpu_offload_layers else L
    first_act = inflight_layers(kept, pp, v, m) * stored + working
    last_act = L * stored + working + logits
    if pp == 1:
        first_act += logits
        last_act = first_act
    lw, lg, lo = ew, eg, eo  # the last stage's expert states
    if last is not None:  # wsim.gpu.mtp: its layers, the MTP modules, a second set of logits
        blocks, mtp_act, scale = last
        last_act = blocks * stored + mtp_act + working + logits
        lw, lg, lo = ew * scale, eg * scale, eo * scale
        if pp == 1:
            first_act += (last_act - L * stored - working - logits)  # offloaded layers stay out
            last_act = first_act
            first_params, ew, eg, eo = last_params, lw, lg, lo
    # the fuller of the first and the last stage (the first on a tie); totals summed as
    # MemoryBreakdown.total_bytes sums them (a dense model's expert states are 0.0: adding them
    # changes no bit)
    r = c.reserved_bytes
    first = (first_params * w + gathered + ew) + (first_params * g + eg) \
        + (first_params * o + eo) + first_act + r
    last = (last_params * w + gathered + lw) + (last_params * g + lg) \
        + (last_params * o + lo) + last_act + r
    if last > first:
        return MemoryBreakdown(last_params * w + gathered + lw, last_params * g + lg,
                               last_params * o + lo, last_act, r, c.capacity_bytes, pp - 1)
    return MemoryBreakdown(first_params * w + gathered + ew, first_params * g + eg,
                           first_params * o + eo, first_act, r, c.capacity_bytes, 0)


def _fixed(c, tp, pp, dp, b, recompute, sp, zero, cp, stack, kn, sparse) -> tuple:
    """What ``memory`` needs that does not depend on the interleave or the micro-batch count
    (memoised on ``c`` per stack object and ``sparse`` tuple: pure)."""
    key = (tp, pp, dp, b, recompute, sp, zero, cp, id(stack), kn, sparse)
    hit = c._mem.get(key)
    if hit is not None and hit[0] is stack:
        return hit[1]
    L = -(-c.layers // pp)  # the fullest stage (uneven stages: DeepSpeed)
    D = kn.mtp_layers if kn is not None else 0
    last_given = kn.last_stage_layers if kn is not None else None
    L_last = L
    if last_given is not None and pp > 1:  # wsim.gpu.mtp: the last stage's layers given
        L, L_last = mtp_cost.stage_split(c.layers, pp, last_given)
    if kn is not None:
        grad_bytes = kn.grad_bytes
    else:
        grad_bytes = stack.grad_reduce_bytes if stack is not None else GRAD_BYTES
    fp8_params = kn is not None and kn.fp8_param_gather
    ob = kn.optimizer_bytes if kn is not None else OPTIMIZER_BYTES
    w, g, o = state_bytes_per_param(zero, dp * cp, grad_bytes, c.fp8, fp8_params, ob)
    tokens = b * c.seq / cp
    per_layer_full = tokens * act_bytes_per_token_layer(c, tp, "none", sp)
    modules = kn.recompute_modules if kn is not None else DEFAULT_RECOMPUTE
    stored = tokens * act_bytes_per_token_layer(c, tp, recompute, sp, modules)
    working = per_layer_full if recompute == "full" else 0.0
    if recompute == "selective" and not c.flash and "core_attn" in modules:
        working = tokens * c.act_attn / tp  # one block's attention core, recomputed in backward
    if recompute == "selective" and "mla_up_proj" in modules:  # one block's Q, K, V, recomputed
        working += tokens * (mla_up_proj_bytes_per_token(c) / tp
                             + mla_latent_norm_bytes(c) / (tp if sp else 1))
    if recompute == "selective" and "mlp" in modules \
            and (sparse is None or sparse[0] < L):  # one dense block's MLP, recomputed
        working += tokens * mlp_bytes(c, tp, sp)
    if recompute == "selective" and "layernorm" in modules and c.mla:  # one norm's, recomputed
        working += tokens * norm_bytes(c) / (tp if sp else 1)
    # ZeRO-3 / FSDP: the computing and the prefetched block gathered, one block's full gradient
    # (DeepSpeed: at most its live-parameter limit gathered, gradients in buckets)
    gathered = 0.0
    if zero >= 3:
        block = c.block_params / tp + c.replicated_tp(tp)
        live = 2 * block if stack is None or stack.zero3_live_params is None \
            else min(2 * block, stack.zero3_live_params)
        bucket = block if stack is None or stack.zero3_grad_bucket is None \
            else min(block, stack.zero3_grad_bucket)
        gathered = live * (FP8_WEIGHT_BYTES if fp8_params else WEIGHT_BYTES) + bucket * grad_bytes
    # ZeRO-2 with pipelining (Stack.zero2_pipeline): one layer's unsharded gradient, times the
    # chunk's layers in ``memory`` (the only part that depends on the interleave)
    chunk_grad = (c.block_params / tp + c.replicated_tp(tp)) * grad_bytes \
        if zero == 2 and pp > 1 else 0.0
    logits = tokens * c.vocab / tp * LOGIT_BYTES
    expert_states = 0.0, 0.0, 0.0
    if sparse is not None:
        Lm, expert_params, edp, extra, buffers = sparse
        if recompute == "full":  # only the block input stored; one sparse block's in full
            working += (tokens * extra + buffers) if Lm else 0.0
        else:
            stored += Lm / L * tokens * extra  # the stage's mean block
            working += buffers if Lm else 0.0
        we, ge, oe = state_bytes_per_param(zero, edp, grad_bytes, c.fp8, fp8_params, ob)
        expert_states = expert_params * we, expert_params * ge, expert_params * oe

    body = L * c.block_params / tp + L * c.replicated_tp(tp)  # (MLA's un-split down projections)
    mid_params = None
    if sparse is None and stack is not None and stack.uneven_stages and last_given is None \
            and edge_balanced(c.layers, pp):  # wsim.gpu.stages: the edges one layer short
        mid_params = body
        body = (L - 1) * c.block_params / tp + (L - 1) * c.replicated_tp(tp)
    first_params = body + c.embed_params_tp(tp)
    last_params = body + c.head_params_tp(tp, pp)
    if pp == 1:
        first_params += c.head_params_tp(tp, pp)
        last_params = first_params
    last = None
    if D or L_last != L:  # wsim.gpu.mtp: (blocks, the modules' own activations, expert scale)
        if mid_params is not None:  # edge-balanced: the last stage one layer short
            L_last = L - 1
        block = c.block_params / tp + c.replicated_tp(tp)
        last_params = (L_last + D) * block + D * mtp_cost.params_tp(c, tp) + c.head_params_tp(tp, pp)
        last_params += c.embed_params_tp(tp)  # the embedding: the first stage's, or MTP's copy
        if pp > 1 and not D:
            last_params -= c.embed_params_tp(tp)
        scale = 1.0
        if sparse is not None and sparse[0]:
            Lm = sparse[0]
            last_sparse = mtp_cost.sparse_on_last(c.model, L_last) if L_last != L else Lm
            scale = (last_sparse + D * mtp_cost.last_is_sparse(c.model)) / Lm
        last = (L_last + D, D * tokens * mtp_cost.act_bytes_per_token(c, tp, sp) + D * logits,
                scale)
        if pp == 1:
            first_params = last_params
    out = (L, w, g, o, gathered, stored, working, logits, first_params, last_params, expert_states,
           mid_params, chunk_grad, last)
    c._mem[key] = (stack, out)
    return out


def _edge_balanced(c, L, w, g, o, gathered, stored, working, logits, first_params, last_params,
                   mid_params, pp, v, m, extra_grad: float = 0.0, last=None) -> MemoryBreakdown:
    """The fullest of the first (L - 1 layers, the embedding, the most micro-batches in flight),
    the second (L layers, one micro-batch fewer) and the last stage (L - 1 layers, the head, the
    logits) of an edge-balanced split (wsim.gpu.stages). The first stage's chunks are taken as
    (L - 1) / v layers each (the real split shortens its first chunk only). ``extra_grad``: bytes
    of gradient every stage holds besides its parameters' (ZeRO-2 with pipelining's chunk)."""
    r = c.reserved_bytes
    stages = (
        (0, first_params, inflight_layers(L - 1, pp, v, m) * stored + working),
        (1, mid_params, inflight_layers(L, pp, v, m, rank=1) * stored + working),
        (pp - 1, last_params, (L - 1) * stored + working + logits if last is None
         else last[0] * stored + last[1] + working + logits))
    best = None
    for stage, params, act in stages:
        total = (params * w + gathered) + (params * g + extra_grad) + params * o + act + r
        if best is None or total > best[0]:
            best = (total, stage, params, act)
    _, stage, params, act = best
    return MemoryBreakdown(params * w + gathered, params * g + extra_grad, params * o, act, r,
                           c.capacity_bytes, stage)


def states_lower_bound(c, tp: int, pp: int, dp: int, zero: int, cp: int = 1,
                       grad_bytes: float = GRAD_BYTES,
                       optimizer_bytes: float = OPTIMIZER_BYTES) -> float:
    """A lower bound on any plan's memory with this layout and ZeRO stage (for pruning)."""
    w, g, o = state_bytes_per_param(zero, dp * cp, min(grad_bytes, GRAD_BYTES), c.fp8, c.fp8,
                                    optimizer_bytes)
    L = -(-c.layers // pp)  # the fullest stage (uneven stages: DeepSpeed)
    params = L * c.block_params / tp + min(c.embed_params_tp(tp), c.head_params_tp(tp, pp)) + L * c.replicated_tp(tp)
    if edge_balanced(c.layers, pp) and c.moe is None:  # a middle stage, or an edge one short
        params = max(L * c.block_params / tp + L * c.replicated_tp(tp),
                     (L - 1) * c.block_params / tp + (L - 1) * c.replicated_tp(tp)
                     + min(c.embed_params_tp(tp), c.head_params_tp(tp, pp)))
    return params * (w + g + o) + c.reserved_bytes
