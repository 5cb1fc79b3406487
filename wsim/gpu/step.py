"""Step time of one plan: compute at shape-dependent GEMM efficiency, attention (eager or flash),
tensor- and context-parallel communication, pipeline sends and bubble, data parallelism (DDP,
ZeRO-1/2/3, FSDP: ``dataparallel``), optimizer.

Per micro-batch each stage runs forward, backward and recomputation. A block's forward is its linear
GEMMs (BF16, or FP8 at the FP8 peak with Transformer Engine's casts), its attention core and its
memory-bound element-wise kernels; backward is 2x the linear GEMMs and element-wise traffic, and
its own attention backward: eager attention 2x its two GEMMs, FlashAttention-2 five GEMM-sized
products (2.5x its forward, FA-2 paper sec. 3.1) at its own efficiency, skipping the causally
masked half (FA-2 sec. 3.1.1, "causal masking"; Megatron-Core's context parallelism balances it).
Each block does 2 all-reduces of b*s*h 16-bit activations in forward and 2 in backward (Megatron-LM
SC21 sec. 3.3; with sequence parallelism a reduce-scatter + all-gather pair of the same volume,
Korthikanti et al. 2022 sec. 4.2.2), and 2 more when full recompute reruns the forward. Context
parallelism passes K and V around a ring of cp ranks, each of the cp - 1 transfers overlapped with
one ring step's share of the attention core (Megatron-Core docs, "context parallelism"; Transformer
Engine's AttnFuncWithCPAndKVP2P), and every ring step costs kernels (``wsim.gpu.knobs``).
With ``tau`` the time one stage spends per micro-batch
(all its v chunks, sends included) the pipeline takes ``m * tau_max + (p - 1) / v * tau_mean``: for
equal stages Megatron's bubble ``(p-1)/(v m)`` (SC21 sec. 2.2), matched by the simpy schedule in
``pipeline_sim``. The last stage also runs the LM head (not recomputed). A stack's layers run at its
``kernel_efficiency`` relative to Megatron-LM's.

``wsim.gpu`` never imports ``wsim.engine`` (rule of the house).
"""

from __future__ import annotations

from wsim.gpu import comm
from wsim.gpu import moe as moe_cost
from wsim.gpu import mtp as mtp_cost
from wsim.gpu.calibration import STACKS, Stack
from wsim.gpu.consts import Consts
from wsim.gpu.dataparallel import _overlap, data_parallel
from wsim.gpu.knobs import (KERNELS_PER_BLOCK_BWD, KERNELS_PER_BLOCK_FWD, KERNELS_PER_CP_STEP_BWD,
                             KERNELS_PER_CP_STEP_FWD, Knobs, resolve)
from wsim.gpu.memory import memory
from wsim.gpu.offload import exposed_s as offload_exposed_s, layer_bytes as offload_layer_bytes
from wsim.gpu.recompute import mla_up_proj_fwd_s, mla_up_proj_gather_s, mlp_fwd_s, norm_fwd_s
from wsim.gpu.stages import edge_balanced

# bytes of HBM traffic per element of one ring step's merge (context parallelism, Transformer
# Engine context_parallel.py @ d0067d0d; see ``_layer``)
CP_OUT_CORRECTION_BYTES = 6.0
CP_DQ_BYTES = 10.0
CP_DKV_BYTES = 6.0


class Evaluation:
    """One plan's timing and memory (plain attributes; ``report.GpuReport`` is the public view)."""

    __slots__ = ("step_s", "compute_s", "recompute_s", "tp_comm_s", "cp_comm_s", "pp_comm_s",
                 "dp_comm_s", "bubble_s", "optimizer_s", "launch_s", "bubble_fraction", "memory",
                 "m", "knobs", "ep_comm_s", "offload_s")


def evaluate(c: Consts, tp: int, pp: int, dp: int, b: int, v: int, recompute: str, sp: bool,
             zero: int, cp: int = 1, stack: Stack | None = None,
             kn: Knobs | None = None, moe: tuple | None = None) -> Evaluation:
    """Time and memory of one (already validated) plan (``stack`` None: Megatron-LM; ``kn`` None:
    the stack's default options, ``wsim.gpu.knobs``; ``moe``: (ep, etp, load, moe.Dispatch)
    of a mixture of experts, None: (1, tp, 1, moe.PLAIN), ``wsim.gpu.moe``). Everything but the
    pipeline sends, the bubble and the in-flight activations is the same for every interleave
    ``v``: it is computed once per plan without ``v`` (``_stage``, cached on ``c``) and reused."""
    st = stack if stack is not None else STACKS["megatron"]
    if kn is None:
        kn = resolve(st, fp8=c.fp8, sp=sp, zero=zero)
    s = _stage(c, tp, pp, dp, b, recompute, sp, zero, cp, st, kn, moe)
    pen = c.eff.overlap_compute_penalty
    send = 2.0 * v * s.send_one if pp > 1 else 0.0
    if s.kn.p2p_overlap and v > 1:  # each chunk's send runs under the next chunk's compute
        send = _overlap(send, s.compute, pen)
    m = s.m
    step, bubble = _pipeline(s, pp, v, send)

    ev = Evaluation()
    ev.m = m
    ev.compute_s = s.compute_s
    ev.recompute_s = s.recompute_s
    ev.tp_comm_s = s.tp_comm_s
    ev.launch_s = s.launch_s
    ev.knobs = s.kn
    ev.cp_comm_s = s.cp_comm_s
    ev.pp_comm_s = m * send
    ev.bubble_s = bubble
    ev.dp_comm_s = s.dp_comm_s
    ev.optimizer_s = s.optimizer_s
    ev.ep_comm_s = s.ep_comm_s
    ev.offload_s = s.offload_s
    ev.step_s = step
    ev.bubble_fraction = (pp - 1) / (v * m)
    ev.memory = memory(c, tp, pp, dp, b, v, recompute, sp, zero, m, cp, st, s.kn, s.sparse_mem)
    return ev


def _pipeline(s: "_Stage", pp: int, v: int, send: float) -> tuple[float, float]:
    """(step seconds, bubble seconds) of a stage ``s`` with ``v`` chunks and ``send`` seconds of
    pipeline sends per micro-batch: ``m tau_max + (p-1)/v tau_mean`` plus data parallelism and
    the optimizer. Non-decreasing in ``send`` (every operation is, rounding included)."""
    tau = s.tau_before_send + send + s.L_launch
    # the last stage's head, its multi-token-prediction modules and the layers it holds fewer than
    # the fullest stage (wsim.gpu.mtp; 0.0 and 0.0 without them: the sums are unchanged)
    head = s.head_extra + s.mtp_extra - s.last_short
    if pp == 1:
        tau_max = tau_mean = tau + head + s.embed_extra
    elif s.edge_layer:  # edge-balanced stages (wsim.gpu.stages): the edges one layer short
        tau_max = max(tau, tau - s.edge_layer + max(head, s.embed_extra))
        tau_mean = tau + (head + s.embed_extra - 2.0 * s.edge_layer) / pp
    else:
        tau_max = tau + max(head, s.embed_extra)
        tau_mean = tau + (head + s.embed_extra) / pp
    if s.sparse_mem is not None:  # a mixture of experts' sparse blocks (fullest, mean stage)
        tau_max += s.sparse_max
        tau_mean += s.sparse_mean
    tau_max += s.dp_per_mb
    tau_mean += s.dp_per_mb
    bubble = (pp - 1) / v * tau_mean
    pipe = s.m * tau_max + bubble
    return pipe + s.dp_exposed + s.optimizer_s, bubble


def plan_lower_bound_s(c: Consts, tp: int, pp: int, dp: int, b: int, v: int, recompute: str,
                       sp: bool, zero: int, cp: int, st: Stack, kn: Knobs,
                       moe: tuple | None = None) -> float:
    """No more than ``evaluate(...).step_s`` of the same plan, without its pipeline sends or
    memory: the same sums in the same order with the sends at 0 (floating-point rounding is
    monotone, so the bound holds exactly; the search cuts a plan with it)."""
    return _pipeline(_stage(c, tp, pp, dp, b, recompute, sp, zero, cp, st, kn, moe), pp, v, 0.0)[0]


def plan_lower_bounds_s(c: Consts, tp: int, pp: int, dp: int, b: int, vs, recompute: str,
                        sp: bool, zero: int, cp: int, st: Stack, kn: Knobs,
                        moe: tuple | None = None) -> list[float]:
    """``plan_lower_bound_s`` for each interleave in ``vs`` (one stage, many bubbles)."""
    s = _stage(c, tp, pp, dp, b, recompute, sp, zero, cp, st, kn, moe)
    return [_pipeline(s, pp, v, 0.0)[0] for v in vs]


class _Stage:
    """The part of a plan's evaluation that does not depend on its interleave (``_stage``)."""

    __slots__ = ("kn", "m", "compute", "send_one", "tau_before_send", "L_launch", "head_extra",
                 "embed_extra", "dp_per_mb", "dp_exposed", "compute_s", "recompute_s",
                 "tp_comm_s", "launch_s", "cp_comm_s", "dp_comm_s", "optimizer_s", "ep_comm_s",
                 "sparse_max", "sparse_mean", "sparse_mem", "offload_s", "edge_layer", "mtp_extra",
                 "last_short")


def _layer(c: Consts, tp: int, b: int, recompute: str, sp: bool, cp: int, st: Stack,
           kn: Knobs) -> tuple:
    """One layer's forward, backward, recompute, tensor- and context-parallel communication and
    launch floor per micro-batch: the same on every pipeline stage and data-parallel layout."""
    eff = c.eff
    pen = eff.overlap_compute_penalty
    ke = st.kernel_efficiency
    linear, core_f, core_b, head = c.gemm_times(tp, b, cp, sp)
    ew, ew_core, ew_head = c.elementwise_times(tp, b, sp, cp)
    tpg = c.group(tp, 1)
    if kn.tp_comm_overlap and tpg.nodes > 1:
        # userbuffers map the peers' memory through CUDA IPC / fabric handles: one NVLink domain
        # (transformer_engine/common/comm_gemm_overlap/userbuffers/userbuffers-host.cpp @ d0067d0d)
        kn = kn._replace(tp_comm_overlap=False)
    act_bytes = b * c.seq / cp * c.h * 2.0
    ar = tpg.all_reduce_s(act_bytes) if tp > 1 else 0.0

    # per micro-batch, per layer
    fwd = (linear + core_f + ew) / ke
    bwd = (2.0 * linear + core_b + 2.0 * ew) / ke
    if recompute == "full":
        rec, rec_ar = fwd, c.ar_fwd * ar
        if kn.recompute_early_stop and c.moe is None:
            # PyTorch 2.1+ early stop (wsim.gpu.knobs): the recompute ends where autograd saves
            # the down projection's input, before that GEMM (row-parallel: its all-reduce too)
            rec = fwd - c.down_proj_s(tp, b, cp) / ke
            rec_ar = (c.ar_fwd - 1.0) * ar
    elif recompute == "selective":  # the modules Megatron-Core's --recompute-modules names
        mods, T = kn.recompute_modules, b * c.seq / cp
        rec, rec_ar = ((core_f + ew_core) / ke if "core_attn" in mods else 0.0), 0.0
        if "mla_up_proj" in mods:  # the up projections, latent norms, rotary (wsim.gpu.recompute)
            rec += mla_up_proj_fwd_s(c, T, tp, sp) / ke
            rec_ar += mla_up_proj_gather_s(c, T, tp, sp)
        if "layernorm" in mods and c.mla:  # the input norm, its own module under MLA
            rec += norm_fwd_s(c, T, tp if sp else 1) / ke
        if "mlp" in mods:  # the dense MLP's forward and its collective
            rec += mlp_fwd_s(c, T, tp, sp, moe_cost.dense_mlp_s(c, T, tp)) / ke
            rec_ar += (c.ar_fwd - 1.0) * ar
    else:
        rec, rec_ar = 0.0, 0.0
    cp_exposed = fwd_cp = bwd_cp = 0.0
    if cp > 1:
        cpg = c.group(cp, tp)
        kv_bytes = b * c.seq / cp * 2.0 * c.kv * c.hd * 2.0 / tp  # K and V, 16-bit
        if c.mla:  # every head's key (d_qk wide) and value (d_v wide)
            kv_bytes = b * c.seq / cp * c.a * (c.hd + c.shape.v_head) * 2.0 / tp
        # one P2P send per ring step: NCCL's base latency plus one hop (over the network when the
        # ring leaves the node)
        hop = kv_bytes / cpg.bw + eff.collective_base_latency_s + (
            eff.network_hop_latency_s if cpg.nodes > 1 else eff.nvlink_hop_latency_s)
        # a ring of cp steps, each computing 1/cp of the (load-balanced causal) attention while the
        # next step's K, V arrive (backward: K, V and dK, dV): each of the cp - 1 transfers hides
        # under one step's compute only, never under the whole attention
        if st.cp_allgather:  # all-gather K, V first, then the local queries' attention (exposed)
            fwd_cp = cpg.all_gather_s(kv_bytes * cp)
            bwd_cp = fwd_cp + cpg.reduce_scatter_s(kv_bytes * cp)  # again, and dK, dV back
        else:
            fwd_cp = (cp - 1) * max(0.0, hop - core_f / ke / cp)
            bwd_cp = (cp - 1) * max(0.0, 2.0 * hop - core_b / ke / cp)
            # merging the steps' partial results, memory-bound on HBM (context_parallel.py @
            # d0067d0d): forward, each step's output rescaled by its log-sum-exp and added
            # (flash_attn_fwd_out_correction: out_per_step read, out read and written, 16-bit:
            # 6 bytes a query element); backward, each step's dQ added into an fp32 dQ (dq.add_:
            # read 2 + 4, write 4) and dK, dV added into the buffer sent on (read 2 + 2, write 2).
            # The slowest rank (the last: every step "lower-triangle", all its queries) decides.
            q_elems = b * c.seq / cp * c.h / tp
            kv_elems = b * c.seq / cp * 2.0 * c.kv * c.hd / tp
            if c.mla:  # the output is heads x d_v wide, K d_qk and V d_v per head
                q_elems = b * c.seq / cp * c.a * c.shape.v_head / tp
                kv_elems = b * c.seq / cp * c.a * (c.hd + c.shape.v_head) / tp
            hbm = c.gpu.hbm_bytes_per_s
            merge_f = (cp - 1) * CP_OUT_CORRECTION_BYTES * q_elems / hbm / ke
            fwd = fwd + merge_f
            bwd = bwd + (cp - 1) * (CP_DQ_BYTES * q_elems + CP_DKV_BYTES * kv_elems) / hbm / ke
            if recompute == "full":
                rec = fwd
            elif recompute == "selective" and "core_attn" in kn.recompute_modules:
                rec = rec + merge_f
        # a recompute reruns the forward's ring: full recompute the whole block, selective the
        # core attention (Megatron-Core's "core_attn" is Transformer Engine's DotProductAttention,
        # ring included)
        reruns = recompute == "full" or (recompute == "selective"
                                         and "core_attn" in kn.recompute_modules)
        cp_exposed = fwd_cp * (2.0 if reruns else 1.0) + bwd_cp
    # tensor-parallel collectives, exposed or overlapped with the block's own linear GEMMs
    if kn.tp_comm_overlap and tp > 1:
        tp_f = _overlap(c.ar_fwd * ar, linear / ke, pen)
        tp_b = _overlap(2.0 * ar, 2.0 * linear / ke, pen)
        tp_r = _overlap(rec_ar, linear / ke, pen) if rec_ar else 0.0
    else:
        tp_f, tp_b, tp_r = c.ar_fwd * ar, 2.0 * ar, rec_ar
    layer_fwd = fwd + tp_f
    layer_bwd = bwd + rec + tp_b + tp_r
    # the host issues every kernel unless CUDA graphs replay them: a block is never faster
    # (CUDA graphs remove the host's part; the device still pays its gap between kernels), and
    # context parallelism adds the kernels of every ring step
    per_kernel = eff.kernel_gap_s if kn.cuda_graphs else max(eff.host_s_per_kernel, eff.kernel_gap_s)
    launch = 0.0
    n_f = n_b = 0.0
    if per_kernel:
        ring = cp > 1 and not st.cp_allgather
        n_f = KERNELS_PER_BLOCK_FWD + (cp * KERNELS_PER_CP_STEP_FWD if ring else 0.0)
        n_b = KERNELS_PER_BLOCK_BWD + (cp * KERNELS_PER_CP_STEP_BWD if ring else 0.0)
        if recompute == "full":
            n_b += n_f
        launch = max(0.0, n_f * per_kernel - layer_fwd - fwd_cp) \
            + max(0.0, n_b * per_kernel - layer_bwd - bwd_cp)

    head_t = (head + ew_head) / ke
    return (kn, fwd, bwd, rec, tp_f, tp_b, tp_r, cp_exposed, launch, layer_fwd, layer_bwd, head_t,
            ar, act_bytes, tpg, linear, (per_kernel, n_f, n_b, fwd_cp, bwd_cp))


def _stage(c: Consts, tp: int, pp: int, dp: int, b: int, recompute: str, sp: bool, zero: int,
           cp: int, st: Stack, kn: Knobs, moe: tuple | None = None) -> _Stage:
    """One stage's per-micro-batch work, communication and data parallelism without the
    interleave (memoised per stack object and plan on ``c``: pure). A mixture of experts: ``moe``
    (ep, etp, load, moe.Dispatch) is part of every key; a dense model ignores it."""
    per_stack = c._stage.get(id(st))
    if per_stack is None or per_stack[0] is not st:
        # holding st keeps its id from being reused; dicts: stages, layers, sparse blocks' deltas
        per_stack = c._stage[id(st)] = (st, {}, {}, {})
    if c.moe is not None:
        moe = moe if moe is not None else (1, tp, 1.0, moe_cost.PLAIN)
    else:
        moe = None
    key = (tp, pp, dp, b, recompute, sp, zero, cp, kn, moe)
    s = per_stack[1].get(key)
    if s is not None:
        return s
    lkey = (tp, b, recompute, sp, cp, kn)
    lay = per_stack[2].get(lkey)
    if lay is None:
        lay = per_stack[2][lkey] = _layer(c, tp, b, recompute, sp, cp, st, kn)
    (kn, fwd, bwd, rec, tp_f, tp_b, tp_r, cp_exposed, launch, layer_fwd, layer_bwd, head_t, ar,
     act_bytes, tpg, linear, launch_in) = lay
    gpu, eff = c.gpu, c.eff
    m = c.batch // (dp * b)
    L = -(-c.layers // pp)  # the fullest stage (uneven stages: DeepSpeed)
    D, last_given = kn.mtp_layers, kn.last_stage_layers  # wsim.gpu.mtp
    L_last = L
    if last_given is not None and pp > 1:  # the last stage's layers given, the rest split evenly
        L, L_last = mtp_cost.stage_split(c.layers, pp, last_given)
    sparse = None
    if moe is not None:  # a mixture of experts: what each sparse block adds (wsim.gpu.moe)
        ep, etp, ld, route = moe  # route: moe.Dispatch (overlap, node limit, FP8, padded)
        skey = lkey + moe
        sparse = per_stack[3].get(skey)
        if sparse is None:
            sparse = per_stack[3][skey] = moe_cost.block_delta(
                c, st.kernel_efficiency, kn, tp, b, cp, ep, etp, ld, recompute, ar, linear,
                (fwd, bwd, rec, tp_f, tp_b, tp_r, launch, layer_fwd, layer_bwd), launch_in,
                _overlap, route)
        Lm, Lmean = c.moe.stage_layers(L, pp)
    # the stage's micro-batch time (all v chunks) but for the interleave's sends
    compute = L * (fwd + bwd)
    tp_comm = L * (tp_f + tp_b + tp_r)
    s = _Stage()
    s.kn, s.m, s.compute = kn, m, compute
    s.send_one = comm.pp_send_s(act_bytes, gpu, eff, tp * cp * dp, tpg) if pp > 1 else 0.0
    s.head_extra = 3.0 * head_t + ar  # LM head fwd + bwd; its input-gradient all-reduce
    s.embed_extra = ar  # vocab-parallel embedding all-reduce in forward
    # activation offloading (pp 1, no recompute: plan.check_offload): the stage's layers wait for
    # the copies their compute does not hide (wsim.gpu.offload)
    offload = 0.0
    if kn.cpu_offload_layers:
        copy = offload_layer_bytes(c, tp, b, cp, sp) / gpu.host_link_bytes_per_s
        offload = offload_exposed_s(L, kn.cpu_offload_layers, copy, layer_fwd, layer_bwd)
    # tau = compute + L rec + tp_comm + L cp_exposed + offload + send + L launch, in this order
    s.tau_before_send = compute + L * rec + tp_comm + L * cp_exposed + offload
    s.L_launch = L * launch
    # the edge-balanced split (wsim.gpu.stages): middle stages of L layers, the first and the last
    # of L - 1 and the embedding or the head; the breakdown describes the slower of the two kinds
    s.edge_layer = 0.0
    Lb, head_in = L, True
    if sparse is None and st.uneven_stages and last_given is None and edge_balanced(c.layers, pp):
        s.edge_layer = (s.tau_before_send + s.L_launch) / L  # one layer's share of the stage
        if max(s.head_extra, s.embed_extra) > s.edge_layer:
            Lb = L - 1
        else:
            head_in = False

    stage_bwd = L * layer_bwd + (2.0 * head_t if pp == 1 else 0.0)
    stage_fwd = L * layer_fwd
    experts = None
    s.sparse_max = s.sparse_mean = s.sparse_mem = None
    if sparse is not None:
        s.sparse_max = Lm * sparse.total
        s.sparse_mean = Lmean * sparse.total
        stage_bwd += Lm * sparse.bwd
        stage_fwd += Lm * sparse.fwd
        experts = (Lm * moe_cost.expert_params_local(c, ep, etp),
                   moe_cost.expert_group(c, tp, cp, dp, ep, etp))
    dpres = data_parallel(c, st, tp=tp, pp=pp, dp=dp, cp=cp, m=m, L=L, zero=zero,
                          recompute=recompute, layer_fwd=layer_fwd, layer_bwd=layer_bwd,
                          stage_bwd=stage_bwd, stage_fwd=stage_fwd, head_s=3.0 * head_t, kn=kn,
                          experts=experts)
    s.dp_per_mb = dpres.per_micro_batch_s
    s.dp_exposed = dpres.exposed_s
    if Lb == L and head_in:
        s.compute_s = m * (compute + 3.0 * head_t)  # the last stage (head_extra >= embed_extra)
        s.recompute_s = m * L * rec
        s.tp_comm_s = m * (tp_comm + (ar if pp > 1 else 2.0 * ar))
        s.launch_s = m * L * launch
        s.cp_comm_s = m * L * cp_exposed
    else:  # edge-balanced: the last stage (L - 1 layers and the head) or a middle one (L, none)
        s.compute_s = m * (Lb * (fwd + bwd) + (3.0 * head_t if head_in else 0.0))
        s.recompute_s = m * Lb * rec
        s.tp_comm_s = m * (Lb * (tp_f + tp_b + tp_r) + (ar if head_in else 0.0))
        s.launch_s = m * Lb * launch
        s.cp_comm_s = m * Lb * cp_exposed
    s.dp_comm_s = dpres.exposed_s + m * dpres.per_micro_batch_s
    s.ep_comm_s = 0.0
    s.offload_s = m * offload
    if sparse is not None:
        s.compute_s += m * Lm * sparse.compute
        s.recompute_s += m * Lm * sparse.rec
        s.tp_comm_s += m * Lm * sparse.tp
        s.launch_s += m * Lm * sparse.launch
        s.ep_comm_s = m * Lm * sparse.ep
    _last_stage(s, c, pp, m, L, L_last, D, (fwd, bwd, rec, tp_f, tp_b, tp_r, cp_exposed, launch),
                sparse, Lm if sparse is not None else 0, ar, head_t,
                mtp_cost.extra(c, tp, b, cp, sp, recompute, st.kernel_efficiency, ar) if D else None)
    # Transformer Engine casts the weights to FP8 on the first micro-batch of a step and caches
    # them (Linear.forward is_first_microbatch: "caching of FP8 versions of the weights"); none
    # to cast when they are kept in FP8 (fp8_param_gather)
    weight_cast = ((L * c.block_params / tp + L * c.replicated_tp(tp)) * eff.fp8_cast_bytes / gpu.hbm_bytes_per_s
                   if c.fp8 and not kn.fp8_param_gather else 0.0)
    if experts is not None and c.fp8 and not kn.fp8_param_gather:
        weight_cast += experts[0] * eff.fp8_cast_bytes / gpu.hbm_bytes_per_s
    s.optimizer_s = dpres.optimizer_s + weight_cast
    if sparse is not None:  # memory.memory's ``sparse``
        s.sparse_mem = (Lm, experts[0], experts[1].size,
                        moe_cost.stored_bytes_per_token(
                            c, tp, etp, ld, kn.recompute_modules if recompute == "selective" else (),
                            sp),
                        moe_cost.working_bytes(c, tp, b, cp, ep, etp, ld))
    per_stack[1][key] = s
    return s


def _last_stage(s: _Stage, c: Consts, pp: int, m: int, L: int, L_last: int, D: int, lay: tuple,
                sparse, Lm: int, ar: float, head_t: float, own) -> None:
    """The last stage's multi-token-prediction modules and its layers short of the fullest stage
    (``wsim.gpu.mtp``): ``s.mtp_extra`` and ``s.last_short`` per micro-batch (seconds), and the
    modules' parts of the breakdown (which describes the last stage). ``lay``: one dense layer's
    fwd, bwd, rec, tp_f, tp_b, tp_r, cp_exposed, launch; ``own``: ``mtp.extra`` (None when D 0)."""
    fwd, bwd, rec, tp_f, tp_b, tp_r, cp_exposed, launch = lay
    layer_s = fwd + bwd + rec + tp_f + tp_b + tp_r + cp_exposed + launch
    s.last_short = 0.0
    if L_last != L:
        s.last_short = (L - L_last) * layer_s
        if sparse is not None:
            s.last_short += (Lm - mtp_cost.sparse_on_last(c.model, L_last)) * sparse.total
    s.mtp_extra = 0.0
    if not D:
        return
    own_c, own_r, own_tp = own
    blk = sparse if sparse is not None and mtp_cost.last_is_sparse(c.model) else None
    block_s = layer_s + (blk.total if blk is not None else 0.0)
    s.mtp_extra = D * (block_s + own_c + own_r + own_tp + s.head_extra + s.embed_extra)
    s.compute_s += m * D * (fwd + bwd + own_c + 3.0 * head_t
                            + (blk.compute if blk is not None else 0.0))
    s.recompute_s += m * D * (rec + own_r + (blk.rec if blk is not None else 0.0))
    s.tp_comm_s += m * D * (tp_f + tp_b + tp_r + own_tp + s.head_extra - 3.0 * head_t
                            + s.embed_extra + (blk.tp if blk is not None else 0.0))
    s.launch_s += m * D * (launch + (blk.launch if blk is not None else 0.0))
    s.cp_comm_s += m * D * cp_exposed
    if blk is not None:
        s.ep_comm_s += m * D * blk.ep


def compute_lower_bound_s(c: Consts, tp: int, pp: int, dp: int, cp: int = 1) -> float:
    """No plan with this layout is faster: the fullest stage's linear GEMMs at the best GEMM
    efficiency, the attention core causally halved at the 16-bit peak, no recompute, no
    communication, no bubble, the fastest stack."""
    tokens = c.batch / dp * c.seq / cp
    core = (c.block_fwd_flops - c.linear_fwd_flops if c.mla else 4.0 * c.seq * c.q) * 0.5
    per_token = 3.0 * (c.layers / pp * c.linear_fwd_flops + 2.0 * c.vocab * c.h / pp) / c.peak \
        + 3.0 * c.layers / pp * core / c.peak16
    return tokens * per_token / tp / c.eff.matmul_peak_fraction / _fastest_stack()


def step_lower_bound_s(c: Consts, tp: int, pp: int, dp: int, b: int, cp: int = 1,
                       moe: tuple | None = None) -> float:
    """No plan with this layout and micro-batch ``b`` is faster, whatever its recompute, sequence
    parallelism, ZeRO stage, interleaving or stack: the last stage's forward and backward work
    (at sequence-parallel minimum and the fastest stack) and its all-reduces per layer. A mixture
    of experts: for any expert layout, or for ``moe`` = (ep, etp, load, moe.Dispatch)."""
    m = c.batch // (dp * b)
    L = -(-c.layers // pp)  # the fullest stage (uneven stages: DeepSpeed)
    linear, core_f, core_b, head = c.gemm_times(tp, b, cp)
    ew, _, ew_head = c.elementwise_times(tp, b, tp > 1, cp)
    ar = c.group(tp, 1).all_reduce_s(b * c.seq / cp * c.h * 2.0) if tp > 1 else 0.0
    if c.moe is not None:  # sparse blocks: their GEMMs, element-wise work and (given the expert
        # layout) dispatch at least once each way in forward and backward (wsim.gpu.moe)
        Lm, _ = c.moe.stage_layers(L, pp)
        lin = linear - moe_cost.dense_mlp_s(c, b * c.seq / cp, tp)
        if moe is None:
            x = moe_cost.layer(c, tp, b, cp, 1, 1, 1.0)
            lin += moe_cost.sparse_linear_lower_bound_s(c, tp, b, cp)
            dispatch = 0.0
        else:
            x = moe_cost.layer(c, tp, b, cp, *moe)
            lin += x.linear
            # exposed (at least twice) unless overlapped, then at least its compute slowdown
            dispatch = 2.0 * (2.0 * x.a2a + x.etp_comm) * (
                min(1.0, c.eff.overlap_compute_penalty) if moe[3].overlap else 1.0)
        return m * ((L - Lm) * (3.0 * (linear + ew) + core_f + core_b)
                    + Lm * (3.0 * (lin + ew + x.elementwise) + core_f + core_b + dispatch)
                    + 3.0 * (head + ew_head)) / _fastest_stack()
    # tensor-parallel communication overlapped with the GEMMs still costs at least its penalty
    ar *= min(1.0, c.eff.overlap_compute_penalty)
    per_layer = 3.0 * (linear + ew) + core_f + core_b + (c.ar_fwd + 2.0) * ar
    head_work = 3.0 * (head + ew_head)
    if edge_balanced(c.layers, pp):  # a stack may put the head in a layer's place (stages.py)
        return m * max(L * per_layer, (L - 1) * per_layer + head_work) / _fastest_stack()
    return m * (L * per_layer + head_work) / _fastest_stack()


def _fastest_stack() -> float:
    """The largest kernel_efficiency of any stack (a stack may be faster than Megatron-LM 2021)."""
    return max(1.0, max(st.kernel_efficiency for st in STACKS.values()))
