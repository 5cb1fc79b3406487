"""Data parallelism: gradient reduction, ZeRO-1/2/3 and FSDP traffic, and the optimizer step.

Per step, on every pipeline stage at once, over the data-parallel group (x the context-parallel
ranks under Megatron-Core, which reduces gradients over both):

- **ZeRO-0** (DDP): one all-reduce of the gradients; the stack's ``dp_overlap`` fraction of the last
  micro-batch's backward hides it (Megatron-LM 2021 and DeepSpeed's defaults: none; Megatron-Core
  --overlap-grad-reduce: all of it), at a compute slowdown while both run.
- **ZeRO-1** / Megatron's distributed optimizer: a reduce-scatter of the gradients (hidden the same
  way) and, after the optimizer, an all-gather of the updated 16-bit weights, hidden under the next
  forward with Megatron-Core's --overlap-param-gather, exposed otherwise.
- **ZeRO-2** (DeepSpeed, FSDP SHARD_GRAD_OP): every micro-batch reduce-scatters its gradients,
  under its own backward where the stack overlaps (FSDP; DeepSpeed only with overlap_comm, off by
  default below ZeRO-3); the updated weights are all-gathered once per step.
- **ZeRO-2 with pipeline parallelism** (``Stack.zero2_pipeline``, Meta's Llama 3 stack): each
  model chunk accumulates its fp32 gradient over a round of pp micro-batches (the interleaved
  schedule runs a chunk's backward for pp consecutive micro-batches: Megatron-LM's
  microbatch_group_size_per_vp_stage, "the number of micro-batches that are executed at a time for
  a given virtual stage", default pipeline_parallel_size, megatron/core/model_parallel_config.py @
  02aa3ee4; Llama 3's N, sec. 3.3.2, whose depth-first setting is N = PP) and then reduce-scatters it
  into the shard (ASSUMPTION: the paper states fp32 accumulation over micro-batches and fp32
  reduce-scatter, not when): ceil(m / pp) reduce-scatters of the stage's gradients a step, each but
  the last under the next round's compute, the last as ZeRO-1's; m <= pp is ZeRO-1's traffic.
- **ZeRO-3** (DeepSpeed stage 3, FSDP FULL_SHARD): per block and per micro-batch, an all-gather of
  its weights before the forward and before the backward (again before a recomputed forward when
  the stack releases them after the forward: DeepSpeed 2021), and a reduce-scatter of its
  gradients after the backward. Both stacks prefetch the next block's gather while the current one
  computes (DeepSpeed ``stage3_prefetch_bucket_size``; FSDP ``forward_prefetch`` and
  ``BackwardPrefetch.BACKWARD_PRE``): per block the time is max(compute, communication) plus the
  compute slowdown while they overlap; the first gather of each micro-batch is exposed. At one
  sequence per GPU a block's compute shrinks with the GPU count while its gather does not: the
  collapse of SC21 Table 2.

Bucketed reductions (ZeRO-0/1/2) use NCCL's rings over the group's members in each node
(multi-rail); ZeRO-3/FSDP gathers use the stack's ``sharded_nics``. One collective per block and
pass: FSDP's flat parameter; DeepSpeed gathers per module, but with NCCL's ring latency paid per
module the SC21 rows at 1,536 GPUs would come out ~27% slower than measured, so its prefetched
module gathers are modelled as one per block. The optimizer (Adam) reads
and writes its state once per local (sharded) parameter: memory-bound.
"""

from __future__ import annotations

from wsim.gpu.calibration import Stack
from wsim.gpu.memory import GRAD_BYTES, OPTIMIZER_BYTES, WEIGHT_BYTES

ADAM_BYTES_PER_PARAM = 2 * (WEIGHT_BYTES + GRAD_BYTES + OPTIMIZER_BYTES)  # read + write, assumption


class DataParallel:
    __slots__ = ("per_micro_batch_s", "exposed_s", "optimizer_s")


def _overlap(comm_s: float, window_s: float, penalty: float) -> float:
    """Time added by ``comm_s`` of communication overlapped with ``window_s`` of compute: the part
    that does not fit under it, plus the compute slowdown while both run."""
    hidden = min(comm_s, window_s)
    return comm_s - hidden + penalty * hidden


def data_parallel(c, st: Stack, *, tp: int, pp: int, dp: int, cp: int, m: int, L: int, zero: int,
                  recompute: str, layer_fwd: float, layer_bwd: float, stage_bwd: float,
                  stage_fwd: float, head_s: float, kn=None, experts=None) -> DataParallel:
    """``experts``: a mixture of experts' (expert weights on this GPU, the expert-data-parallel
    ``comm.Group``): their gradients are reduced over that group, in the same buckets and overlap
    window as the rest, and their optimizer state sharded over it (Megatron-Core's distributed
    optimizer keeps an expert-data-parallel instance: megatron/core/distributed/
    distributed_data_parallel.py, expert_data_parallel_group)."""
    k = c.eff.overlap_compute_penalty
    gb = kn.grad_bytes if kn is not None else st.grad_reduce_bytes
    wb = 1.0 if (kn is not None and kn.fp8_param_gather) else WEIGHT_BYTES  # FP8 all-gather
    ob = kn.optimizer_bytes if kn is not None else OPTIMIZER_BYTES
    optimizer_s, coll = _collectives(c, st, tp, pp, dp, cp, zero, recompute, gb, wb, experts, ob)
    out = DataParallel()
    out.per_micro_batch_s = 0.0
    out.exposed_s = 0.0
    out.optimizer_s = optimizer_s
    if coll is None:
        return out
    if zero == 3:
        gather, back, edge_comm = coll
        per_mb = gather  # the first block's gather has nothing to hide under
        per_mb += L * (_overlap(gather, layer_fwd, k) + _overlap(back, layer_bwd, k))
        per_mb += _overlap(edge_comm, head_s, k)
        out.per_micro_batch_s = per_mb
        return out
    if zero == 2 and pp > 1:  # a reduce-scatter per round of pp micro-batches (zero2_pipeline)
        rs, ag = coll
        rounds = -(-m // pp)
        out.exposed_s = (rounds - 1) * _overlap(rs, pp * (stage_fwd + stage_bwd), k) \
            + _overlap(rs, st.dp_overlap * stage_bwd, k) \
            + _overlap(ag, stage_fwd if st.param_gather_overlap else 0.0, k)
        return out
    if zero == 2:  # each micro-batch's reduce-scatter (under its backward if the stack overlaps)
        rs, ag = coll
        out.per_micro_batch_s = _overlap(rs, st.dp_overlap * stage_bwd, k)
        out.exposed_s = ag
        return out
    window = st.dp_overlap * stage_bwd
    if zero == 0:
        out.exposed_s = _overlap(coll[0], window, k)
        return out
    rs, ag = coll
    out.exposed_s = _overlap(rs, window, k) + _overlap(ag, stage_fwd if st.param_gather_overlap
                                                         else 0.0, k)
    return out


def _collectives(c, st: Stack, tp: int, pp: int, dp: int, cp: int, zero: int, recompute: str,
                 gb: float, wb: float, experts=None, ob: float = OPTIMIZER_BYTES) -> tuple:
    """(optimizer seconds, the data-parallel collectives' seconds or None): what does not depend
    on the micro-batch (memoised on ``c`` per stack object: pure). ``experts`` (weights, group):
    as ``data_parallel``; the key holds the group object itself (compared by identity: each
    ``Consts.group`` is built once and never changed)."""
    key = (tp, pp, dp, cp, zero, recompute if zero == 3 else None, gb, wb, id(st), experts, ob)
    hit = c._dp.get(key)
    if hit is not None and hit[0] is st:
        return hit[1]
    edge = c.head_params_tp(tp, pp) if pp > 1 else c.head_params_tp(tp, pp) + c.embed_params_tp(tp)
    L = -(-c.layers // pp)  # the fullest stage (uneven stages: DeepSpeed), as step passes it
    params = L * c.block_params / tp + edge + L * c.replicated_tp(tp)  # (MLA's down projections)
    reduce_over = dp * (cp if st.context_parallel else 1)
    shards = reduce_over if zero >= 1 else 1
    # the step reads and writes weights, gradients and state (bf16 state: 6 bytes, wsim.gpu.knobs)
    adam = ADAM_BYTES_PER_PARAM - 2.0 * (OPTIMIZER_BYTES - ob)
    optimizer_s = params / shards * adam / c.gpu.hbm_bytes_per_s
    e_ar = e_rs = e_ag = 0.0
    if experts is not None:
        e_params, eg = experts
        optimizer_s += (e_params / (eg.size if zero >= 1 else 1) * adam
                        / c.gpu.hbm_bytes_per_s)
        e_ar, e_rs, e_ag = (eg.all_reduce_s(e_params * gb), eg.reduce_scatter_s(e_params * gb),
                            eg.all_gather_s(e_params * wb))
    coll = None
    if reduce_over > 1 or e_ar or e_rs:
        grad_bytes = params * gb
        if zero == 3:
            g = c.group(dp, tp * cp, single_nic=st.sharded_nics == "gpu")
            blk = c.block_params / tp + c.replicated_tp(tp)
            gather = g.all_gather_s(blk * wb)
            scatter = g.reduce_scatter_s(blk * gb)
            regather = gather if (st.zero3_regather_on_recompute and recompute == "full") else 0.0
            back = gather + regather + scatter
            edge_comm = g.all_gather_s(edge * wb) * (2 if st.zero3_regather_on_recompute else 1) \
                + g.reduce_scatter_s(edge * gb)
            coll = (gather, back, edge_comm)
        else:
            g = c.group(reduce_over, tp)
            if zero == 2:
                coll = (g.reduce_scatter_s(grad_bytes), g.all_gather_s(params * WEIGHT_BYTES))
            elif zero == 0:
                ar = g.all_reduce_s(grad_bytes)
                coll = (ar + e_ar if experts is not None else ar,)
            else:
                rs, ag = g.reduce_scatter_s(grad_bytes), g.all_gather_s(params * wb)
                coll = (rs + e_rs, ag + e_ag) if experts is not None else (rs, ag)
    out = (optimizer_s, coll)
    c._dp[key] = (st, out)
    return out
