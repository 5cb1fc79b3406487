"""Mixture-of-experts layers on GPUs: Megatron-Core's expert parallelism (``ep``, ``etp``), its
alltoall token dispatcher and grouped expert GEMMs, expert gradients over the expert-data-parallel
group. ``wsim.gpu.step`` adds what a sparse block costs beyond a dense one; docs/gpu-model.md,
"Mixture of experts", has the formulas and sources.

Per micro-batch a GPU holds T = b s / cp tokens; with tp > 1 the MoE layer's input is sequence
parallel (Megatron-Core requires it), so T_in = T / tp tokens enter the router on each GPU. In a
sparse block (Megatron-Core megatron/core/transformer/moe/, token_dispatcher.py
``MoEAlltoAllTokenDispatcher``: permute, A2A(EP), AG(ETP), experts, RS(ETP), A2A(EP), unpermute):

- **router**: one GEMM T_in x h x E (a plain linear, 16-bit), softmax/top-k element-wise;
- **dispatch and combine**: each GPU sends its T_in x k routed token copies (h wide, 16-bit) to the
  expert ranks, an all-to-all over the ``ep`` group (ranks ``etp`` apart, Megatron's ``tp-ep-dp-pp``
  order), then all-gathers them over the ``etp`` group; the combine reverses both (reduce-scatter,
  all-to-all). Forward 2 all-to-alls, backward 2 more (the gradients), again in a fully recomputed
  forward. Exposed: Megatron-Core's default (``--overlap-moe-expert-parallel-comm`` off), an
  assumption for the recipes that do not say;
- **experts**: E / ep local experts per GPU, each a gated FFN split ``etp`` ways, run as one grouped
  GEMM (``GroupedMLP`` / ``TEGroupedMLP``, experts.py) whose per-expert shape is
  m = T_in x k x etp x ep / E tokens (uniform routing, *assumption*; Megatron-Bridge's MoE benchmarks
  force-balance the routing) times the busiest rank's load: ``moe_imbalance`` (measured, >= 1),
  capped by ``moe_capacity_factor`` (tokens beyond capacity dropped: moe_utils.py,
  capacity = tokens x k x capacity_factor / E). Each expert GEMM runs at the dense step's GEMM
  efficiency for its shape (``Efficiency.gemm_efficiency(m, n, k)``): few tokens per expert are
  slower through m / (m + gemm_half_dim), not a new constant;
- **shared experts**: a dense tensor-parallel gated MLP over all T tokens (shared_experts.py), with
  its own tensor-parallel all-gather and reduce-scatter;
- **dispatch options** (``Dispatch``): ``moe_pad_to_capacity`` (drop-and-pad: every expert at its
  capacity, static shapes, no host synchronisation), and DeepSeek-V3's ``moe_max_nodes``
  (node-limited routing, ``comm.Group.node_limited_all_to_all_s``) and ``moe_fp8_dispatch`` (one
  all-to-all of each pair in FP8, arXiv 2412.19437 sec. 3.2.2, 3.3);
- **gradients**: the expert weights (E x 3 h f_e per sparse block, 1/(ep x etp) of them per GPU) are
  reduced over the expert-data-parallel group edp = tp x cp x dp / (ep x etp) (ranks etp x ep apart)
  and their optimizer state sharded over it by the distributed optimizer; the rest of the block
  over tp's data-parallel group as before.
"""

from __future__ import annotations

from typing import NamedTuple

from wsim.gpu import comm
from wsim.gpu.memory import OPTIMIZER_BYTES
from wsim.gpu.recompute import (mla_up_proj_gather_s, moe_act_bytes, moe_act_fwd_s, mlp_bytes, mlp_fwd_s,
                                norm_bytes, norm_fwd_s)

# Kernels a sparse block adds to a dense one, forward. The router with its top-k, aux loss and the
# dispatcher's preprocessing (SOURCED: github.com/NVIDIA/Megatron-LM
# docs/discussions/deepseek-v3-gb200-optimization/deepseek-v3-gb200-optimization.md @ eb0783b6,
# sec. 2.1.4: --moe-router-fusion "reducing the total number of kernels in the router part from 72
# to 31"; sec. 2.2.1: the flex dispatcher's fused preprocess "further reducing the number of kernels
# in the router and preprocess parts to 17"): 31 for a fused router (the Megatron-Bridge recipes set
# moe_router_fusion: scripts/performance/configs/qwen3/qwen3_llm_pretrain.py @ v0.2.0, and the
# 25.09 perf_matrix YAMLs) plus the alltoall dispatcher's preprocess (tokens per expert, the counts'
# all-gather and the device-to-host copies: token_dispatcher.py preprocess @ core_v0.15.0; 4, an
# assumption); 17 for the flex dispatcher (DeepEP, HybridEP) router and preprocess together.
ROUTER_KERNELS_FWD = 31
ALLTOALL_PREPROCESS_KERNELS_FWD = 4
FLEX_ROUTER_PREPROCESS_KERNELS_FWD = 17
# backward: twice the forward's router and preprocess kernels, as for a dense block
BWD_KERNELS_PER_FWD = 2
# The alltoall dispatcher copies the tokens-per-expert counts to the host and synchronises
# (token_dispatcher.py, _maybe_dtoh_and_synchronize, "before_permutation_2" / "before_ep_alltoall"):
# the host cannot run ahead of the GPU across it, so the kernels issued after it (the expert part:
# all-to-all, sort, one GEMM per local expert for FC1 and FC2 in Transformer Engine's GroupedLinear,
# which issues a cuBLAS GEMM per group (transformer_engine/pytorch/module/grouped_linear.py,
# general_grouped_gemm), activation, unsort, all-to-all, unpermute) are issued while the GPU waits
# unless their own GPU time covers it. Kernels besides the GEMMs after the sync (assumption, counted
# from the dispatcher's workflow above): forward 8, backward 12; GEMMs per local expert: forward 2,
# backward 4 (data and weight gradients). Dropless MoE layers are not captured by CUDA graphs (MoE
# README: "dynamic shapes make MoE layers uncapturable"): the host's eager cost applies.
KERNELS_AFTER_SYNC_FWD = 8
KERNELS_AFTER_SYNC_BWD = 12
# FP8: GroupedLinear quantizes each expert's GEMM input on its own (SOURCED: github.com/NVIDIA/
# TransformerEngine transformer_engine/pytorch/module/grouped_linear.py @ v2.9: forward
# ``tex.split_quantize(inp_view, m_splits, input_quantizers)``, one quantizer per GEMM; backward the
# same for grad_output): per local expert one quantize kernel for FC1's and one for FC2's input
# forward, one for each GEMM's output gradient backward
FP8_QUANTIZE_PER_EXPERT_FWD = 2
FP8_QUANTIZE_PER_EXPERT_BWD = 2
PROB_BYTES = 4  # router probabilities dispatched beside the tokens: fp32 (token_dispatcher.py)
# DeepSeek-V3's FP8 dispatch (arXiv 2412.19437 sec. 3.3.2-3.3.3): activations quantized in 1x128
# tiles, one fp32 scale a tile: 1 + 4/128 bytes an element; the combine stays BF16
FP8_DISPATCH_BYTES = 1.0 + 4.0 / 128.0


class Dispatch(NamedTuple):
    """How a sparse block's tokens travel: ``overlap`` (Plan.moe_ep_overlap), ``max_nodes``
    (Plan.moe_max_nodes: node-limited routing, None: Megatron's all-to-all of every copy) and
    ``fp8`` (Plan.moe_fp8_dispatch: one of each direction's two all-to-alls in FP8), ``static``
    (Plan.moe_pad_to_capacity: the token counts are known on the host), ``flex``
    (Plan.moe_dispatcher "flex": DeepEP / HybridEP instead of the alltoall dispatcher) and
    ``router_graphs`` (Plan.moe_router_graphs: the router and the dispatcher's preprocessing replayed
    from CUDA graphs, Transformer Engine's partial graphs of scope moe_router, moe_preprocess)."""

    overlap: bool = False
    max_nodes: int | None = None
    fp8: bool = False
    static: bool = False  # padded to capacity: no host synchronisation (``block_delta``)
    flex: bool = False
    router_graphs: bool = False


PLAIN = Dispatch()


class MoeConsts:
    """What a model's experts are, once per model (plain floats)."""

    __slots__ = ("experts", "top_k", "expert_ffn", "shared_ffn", "layers", "moe_layers",
                 "expert_params", "act_par_delta", "cast_delta")

    def __init__(self, model, seq: int, fp8: bool) -> None:
        h = model.hidden
        self.experts, self.top_k = model.experts, model.experts_per_token
        self.expert_ffn, self.shared_ffn = model.expert_ffn, model.shared_expert_ffn
        self.layers = model.layers
        self.moe_layers = tuple(model.moe_layers)
        self.expert_params = float(model.experts * 3 * h * model.expert_ffn)  # SwiGLU experts
        dense = model.block_activations(seq, sparse=False)
        sparse = model.block_activations(seq, sparse=True)
        # a sparse block's extra stored activations per token (k experts' and the shared expert's
        # inner activations, router logits), split across tensor ranks as the dense MLP's are
        self.act_par_delta = sparse.tensor_parallel - dense.tensor_parallel
        if fp8:  # Transformer Engine keeps the FC2 inputs in FP8 (as consts.Consts does for ffn)
            self.act_par_delta -= model.mlp_width(True) - model.ffn
        # FP8 casts of the expert GEMM inputs beyond the dense MLP's (h + f per token)
        fs = self.shared_ffn
        self.cast_delta = self.top_k * model.expert_ffn + (h + fs if fs else 0) - model.ffn

    def stage_layers(self, L: int, pp: int) -> tuple[int, float]:
        """(sparse blocks on the fullest stage, on the mean stage): the fullest stage is taken to
        hold as many sparse blocks as it can (assumption: the slowest stage sets the pipeline)."""
        n = len(self.moe_layers)
        return min(L, n), L * n / self.layers


class MoeLayer:
    """One sparse block's extra cost over a dense block, per micro-batch (seconds)."""

    __slots__ = ("linear", "shared_linear", "router", "experts", "elementwise", "a2a", "etp_comm",
                 "dispatch_bytes", "expert_tokens", "loop_fwd", "loop_bwd")


def tokens_in(c, tp: int, b: int, cp: int) -> float:
    """Tokens entering a sparse block's router on one GPU (sequence parallel when tp > 1)."""
    return b * c.seq / cp / tp


def load(plan_imbalance: float, capacity_factor: float | None, pad: bool = False) -> float:
    """The busiest expert rank's tokens over the mean: the imbalance, capped by the capacity; padded
    to capacity (``--moe-pad-expert-input-to-capacity``) every expert runs exactly its capacity
    (token_dispatcher.py ``preprocess``: tokens per local expert = capacity x tp x ep)."""
    if capacity_factor is None:
        return plan_imbalance
    return capacity_factor if pad else min(plan_imbalance, capacity_factor)


def layer(c, tp: int, b: int, cp: int, ep: int, etp: int, ld: float,
          route: Dispatch = PLAIN) -> MoeLayer:
    """Forward times of a sparse block's own GEMMs (router, experts on the busiest rank, shared
    expert), its element-wise traffic beyond a dense block's, and its dispatch communication
    (``a2a``: the mean of the dispatch and the combine all-to-all, so 2 x a2a is the pair)."""
    key = (tp, b, cp, ep, etp, ld, route.max_nodes, route.fp8, route.flex)
    hit = c._moe.get(key)
    if hit is not None:
        return hit
    mc, e, h = c.moe, c.eff.gemm_efficiency, c.h
    T = b * c.seq / cp
    t_in = T / tp
    E, k, fe, fs = mc.experts, mc.top_k, mc.expert_ffn, mc.shared_ffn
    out = MoeLayer()
    router = 2.0 * t_in * h * E / e(t_in, E, h) / c.peak16
    m = t_in * k * etp * ep / E * ld  # tokens per local expert on the busiest rank
    w1, w2 = 2.0 * fe / etp, fe / etp  # gate and up side by side (GroupedMLP's fc1), down
    experts = E / ep * (2.0 * m * h * w1 / e(m, w1, h) + 2.0 * m * w2 * h / e(m, h, w2)) / c.peak
    shared = 0.0
    if fs:
        shared = (2.0 * T * h * 2 * fs / tp / e(T, 2 * fs / tp, h)
                  + 2.0 * T * fs * h / tp / e(T, h, fs / tp)) / c.peak
    out.shared_linear = shared
    out.router = router
    out.experts = experts
    out.linear = router + experts + shared
    out.expert_tokens = m * E / ep
    # the per-expert loop's fixed device time: every kernel it runs per local expert (GEMMs and, in
    # FP8, quantizations: ``kernels_per_local_expert``) costs the GPU
    # ``Efficiency.expert_device_s_per_kernel`` beyond its FLOPs and bytes (forward, backward)
    per_f, per_b = kernels_per_local_expert(c.fp8)
    dev = c.eff.expert_device_s_per_kernel * E / ep
    out.loop_fwd, out.loop_bwd = per_f * dev, per_b * dev
    hbm = c.gpu.hbm_bytes_per_s
    # the extra stored activations written and read (as the dense block's), the permutation and
    # unpermutation copies of the k routed tokens (read h, write k h; and back), FP8 casts
    ew = c.eff.elementwise_passes * T * mc.act_par_delta / tp / hbm
    ew += 2.0 * 2.0 * t_in * h * (1 + k) * ld / hbm
    if not route.flex and E // ep > 1:
        # the alltoall dispatcher permutes twice: globally before the all-to-all (above) and, with
        # more than one local expert, sorts the received chunks by local expert after it and back
        # before the combine (token_dispatcher.py @ core_v0.15.0: "if self.num_local_experts > 1"
        # ... sort_chunks_by_idxs; read and write the k routed copies each way). The flex
        # dispatcher fuses the global permute into its communication kernel and keeps one local
        # permute (deepseek-v3-gb200-optimization.md @ eb0783b6 sec. 2.1.1): the term above.
        ew += 2.0 * 2.0 * 2.0 * t_in * k * h * ld / hbm
    if c.fp8:
        ew += c.eff.fp8_cast_bytes * T * mc.cast_delta / tp / hbm
    out.elementwise = ew
    # one dispatch all-to-all: the T_in x k routed copies (16-bit) and their probabilities; the
    # busiest rank receives ld times the mean. The flex dispatcher sends a token once to each rank
    # that holds any of its experts (and combines once per rank): ``flex_copies`` of the k
    copies = flex_copies(E, k, ep) if route.flex else float(k)
    out.dispatch_bytes = t_in * copies * (2.0 * h + PROB_BYTES) * ld
    out.a2a = 0.0
    if ep > 1:
        g = c.group(ep, etp)
        # The flex dispatcher's inter-node kernels send a token once to each node holding any of
        # its experts (RDMA to the GPU of the same in-node index) and forward it there over
        # NVLink: DeepEP's get_dispatch_layout counts num_tokens_per_rdma_rank beside
        # num_tokens_per_rank and its internode SourceMeta carries the token's in-node targets
        # (csrc/kernels/internode.cu); HybridEP builds one attn_to_rdma_map row per token and
        # remote node (csrc/hybrid_ep, "When NUM_OF_NODES > 1"). Distinct nodes under uniform
        # routing: ``flex_copies`` with a node's E / nodes experts
        node_copies = flex_copies(E, k, g.nodes) if route.flex and g.nodes > 1 else None
        if route.max_nodes is None and node_copies is None:
            def a2a(nbytes):
                return g.all_to_all_s(nbytes)
        else:
            limit = g.nodes if route.max_nodes is None else route.max_nodes

            def a2a(nbytes):
                return g.node_limited_all_to_all_s(nbytes, copies, limit, node_copies)
        # DeepSeek-V3 quantizes the dispatch (forward) and the gradient sent back to the experts
        # (backward) to FP8; the combine and its gradient stay BF16: one of each pair in FP8
        first = t_in * copies * ((FP8_DISPATCH_BYTES if route.fp8 else 2.0) * h + PROB_BYTES) * ld
        out.a2a = 0.5 * (a2a(first) + a2a(out.dispatch_bytes))
    # AG(ETP) after the dispatch, RS(ETP) before the combine: the etp ranks' tokens, in full
    out.etp_comm = 0.0
    if etp > 1:
        g = c.group(etp, 1)
        full = t_in * k * 2.0 * h * etp * ld
        out.etp_comm = g.all_gather_s(full) + g.reduce_scatter_s(full)
    c._moe[key] = out
    return out


def flex_copies(experts: int, top_k: int, ep: int) -> float:
    """Copies of a token the flex dispatcher sends: the expected number of distinct expert ranks
    among its k experts under uniform routing (k distinct experts of E, E/ep a rank): ep x (1 -
    C(E - E/ep, k) / C(E, k)). DeepEP's dispatch sends a token once to each rank in its layout
    (github.com/deepseek-ai/DeepEP README, ``get_dispatch_layout``: num_tokens_per_rank,
    is_token_in_rank) and its combine returns one sum per rank; the alltoall dispatcher sends all k
    copies (``layer``). Capped at k (k = 1, or ep = E: every copy to its own rank)."""
    local = experts // ep
    if ep <= 1:
        return 1.0
    miss = 1.0  # C(E - local, k) / C(E, k): the rank holds none of the token's k experts
    for i in range(top_k):
        miss *= max(0.0, (experts - local - i) / (experts - i))
    return min(float(top_k), ep * (1.0 - miss))


def expert_params_local(c, ep: int, etp: int) -> float:
    """Expert weights of one sparse block held by one GPU."""
    return c.moe.expert_params / (ep * etp)


def expert_group(c, tp: int, cp: int, dp: int, ep: int, etp: int) -> comm.Group:
    """The expert-data-parallel group: edp = tp x cp x dp / (ep x etp) ranks, etp x ep apart."""
    return c.group(tp * cp * dp // (ep * etp), ep * etp)


def stored_bytes_per_token(c, tp: int, etp: int, ld: float, modules: tuple = (),
                           sp: bool = True) -> float:
    """A sparse block's stored activations beyond a dense block's, per token of the micro-batch:
    its extra inner activations, and the dispatched expert inputs (k copies a token, gathered over
    etp) that FC1's weight gradient needs (under full recompute: one block's, while it recomputes).
    ``modules``: a selective recompute's (``wsim.gpu.recompute``): moe_act drops the routed
    experts' activation output, layernorm the pre-MLP norm's output (its own module here); mlp
    recomputes nothing in a sparse block: what the dense block freed for it is stored again."""
    # FC1's saved input: the k dispatched copies, 16-bit, or in FP8 the quantized copy Transformer
    # Engine's GroupedLinear keeps instead (1 byte an element: grouped_linear.py saves the
    # split-quantized inputmats for the weight gradient, as linear.py does for a dense GEMM, whose
    # inputs consts.Consts stores at 1 byte in FP8 likewise)
    dispatched = (1.0 if c.fp8 else 2.0) * c.h * c.moe.top_k * etp / tp
    if not modules or not {"moe_act", "layernorm", "mlp"} & set(modules):
        return (c.moe.act_par_delta / tp + dispatched) * ld
    act = c.moe.act_par_delta - (moe_act_bytes(c) if "moe_act" in modules else 0.0)
    norm = norm_bytes(c) / tp if "layernorm" in modules else 0.0
    mlp = mlp_bytes(c, tp, sp) if "mlp" in modules else 0.0
    return (act / tp + dispatched) * ld - norm + mlp


def working_bytes(c, tp: int, b: int, cp: int, ep: int, etp: int, ld: float) -> float:
    """Transient buffers of one sparse block: the all-to-all's send and receive buffers and the
    etp-gathered expert input (assumption: one block's at a time)."""
    x = layer(c, tp, b, cp, ep, etp, ld)
    gathered = x.dispatch_bytes * etp if etp > 1 else 0.0
    return 2.0 * x.dispatch_bytes + gathered


class BlockDelta:
    """Per micro-batch, what one sparse block adds to the dense block ``step.evaluate`` timed."""

    __slots__ = ("compute", "rec", "tp", "ep", "launch", "fwd", "bwd", "total")


def dense_mlp_s(c, T: float, tp: int) -> float:
    """The dense block's MLP GEMMs (forward) that a sparse block replaces (``Consts.gemm_times``)."""
    e, h = c.eff.gemm_efficiency, c.h
    return (2.0 * T * h * c.mlp_in / tp / e(T, c.mlp_in / tp, h)
            + 2.0 * T * c.f * h / tp / e(T, h, c.f / tp)) / c.peak


def block_delta(c, ke: float, kn, tp: int, b: int, cp: int, ep: int, etp: int, ld: float,
                recompute: str, ar: float, linear: float, dense: tuple, launch: tuple,
                overlap, route: Dispatch = PLAIN) -> BlockDelta:
    """A sparse block's cost minus the dense block's (``dense`` = its fwd, bwd, recompute, the
    three tensor-parallel terms, launch, layer forward and backward; ``launch`` = seconds per
    kernel, the dense forward and backward kernel counts, the exposed CP forward and backward;
    ``overlap`` = dataparallel._overlap; ``route.overlap``: the dispatch hidden under another
    micro-batch's compute of the same block, Megatron-Core's --overlap-moe-expert-parallel-comm
    (combined 1F1B, megatron/core/pipeline_parallel/combined_1f1b.py) and DeepSeek-V3's DualPipe,
    at the compute slowdown of any overlap)."""
    fwd, bwd, rec, tp_f, tp_b, tp_r, launch_s, layer_fwd, layer_bwd = dense
    per_kernel = launch[0]
    x = layer(c, tp, b, cp, ep, etp, ld, route)
    T = b * c.seq / cp
    mlp = dense_mlp_s(c, T, tp)
    d = BlockDelta()
    lin = x.linear - mlp
    d_fwd = (lin + x.elementwise) / ke
    loop_f, loop_b = x.loop_fwd, x.loop_bwd  # the per-expert loop's fixed device time
    d.compute = d_fwd + 2.0 * d_fwd + loop_f + loop_b
    full = recompute == "full"
    d.rec = d_fwd + loop_f if full else 0.0
    if recompute == "selective":  # wsim.gpu.recompute: the sparse block's own modules
        if "moe_act" in kn.recompute_modules:
            d.rec += moe_act_fwd_s(c, T, tp) / ke
        if "layernorm" in kn.recompute_modules:  # the pre-MLP norm (sequence-parallel split)
            d.rec += norm_fwd_s(c, T, tp) / ke
        if "mlp" in kn.recompute_modules:  # a sparse block has no dense MLP to recompute
            d.rec -= mlp_fwd_s(c, T, tp, tp > 1, mlp) / ke
    # tensor parallelism: the attention's all-gather/reduce-scatter pair and the shared expert's;
    # the routed experts' tokens travel by all-to-all instead (Megatron-Core MoE layer)
    n_ar = 1.0 + (1.0 if c.moe.shared_ffn else 0.0)
    if kn.tp_comm_overlap and tp > 1:
        window = (linear - mlp + x.shared_linear) / ke
        pen = c.eff.overlap_compute_penalty
        tf, tb = overlap(n_ar * ar, window, pen), overlap(n_ar * ar, 2.0 * window, pen)
    else:
        tf = tb = n_ar * ar
    tr = tf if full else 0.0
    if recompute == "selective" and "mla_up_proj" in kn.recompute_modules:
        # the sparse block's attention reruns the latents' gather as the dense one does; a dense
        # block's 'mlp' collective (in tp_r) is not its (wsim.gpu.recompute)
        g = mla_up_proj_gather_s(c, T, tp, tp > 1)
        tr = (overlap(g, window, pen) if kn.tp_comm_overlap and tp > 1 else g) if g else 0.0
    d.tp = (tf + tb + tr) - (tp_f + tp_b + tp_r)
    dispatch = 2.0 * x.a2a + x.etp_comm  # dispatch and combine, each direction
    d.ep = dispatch * (3.0 if full else 2.0)
    if route.overlap:  # under the block's forward and backward compute (of the other micro-batch)
        d.ep = overlap(d.ep, (fwd + bwd + d.compute) + (rec + d.rec), c.eff.overlap_compute_penalty)
    d.fwd = d_fwd + loop_f + tf - tp_f + dispatch
    d.bwd = (2.0 * d_fwd + loop_b + d.rec + (tb + tr) - (tp_b + tp_r)
             + dispatch * (2.0 if full else 1.0))
    d.launch = 0.0
    if per_kernel:
        d.launch = _launch_floor(c, kn, route, x, ke, c.moe.experts / ep, dispatch, full, d, dense,
                                 launch) - launch_s
    d.total = d.compute + d.rec + d.tp + d.ep + d.launch
    return d


def _launch_floor(c, kn, route: Dispatch, x, ke: float, local: float, dispatch: float,
                  full: bool, d: BlockDelta, dense: tuple, launch: tuple) -> float:
    """Seconds a sparse block's forward and backward (recompute included) wait for the host
    beyond their GPU time, per micro-batch: the whole block's launch floor, which replaces the
    dense block's (``dense[6]``).

    Kernels: the dense block's ``n_f``/``n_b`` at the step's per-kernel cost, the router and
    preprocess (``router_kernels_fwd``: eager, or the device gap under partial CUDA graphs), the MoE
    body besides the experts (``KERNELS_AFTER_SYNC_*``) at the eager cost, and the per-expert loop
    (``kernels_per_local_expert`` x local experts) at ``Efficiency.expert_host_s_per_kernel``;
    backward twice the forward's non-expert MoE kernels (``BWD_KERNELS_PER_FWD``). A block padded to
    capacity under CUDA graphs replays whole: every kernel at the step's per-kernel cost.

    Forward of a dropless block (the alltoall and flex dispatchers synchronise device-to-host,
    ``_maybe_dtoh_and_synchronize``): the host cannot issue the expert part before the GPU reaches
    the sync, and then issues it while the GPU runs only it; it issues the next block's part
    before the sync while the GPU still runs those experts. Between two syncs: ``max(g_pre +
    g_post, h_post + g_pre, h_post + h_pre)`` (g: GPU seconds, h: host seconds, pre: the dense
    block, router and preprocess; post: the dispatch, experts and combine). The wait beyond the GPU
    is ``max(0, h_post - g_post, h_pre + h_post - g_pre - g_post)``. A padded block (static
    shapes: no sync) and every backward (the all-to-all sizes are the forward's, kept on the host)
    let the host run ahead: ``max(0, h - g)``."""
    fwd, bwd, rec, tp_f, tp_b, tp_r, launch_s, layer_fwd, layer_bwd = dense
    per_kernel, n_f, n_b, fwd_cp, bwd_cp = launch
    eff = c.eff
    eager = max(eff.host_s_per_kernel, eff.kernel_gap_s)
    expert = max(eff.expert_host_s_per_kernel, eff.kernel_gap_s)
    whole = kn.cuda_graphs and route.static  # Transformer Engine scope moe: "only token-drop MoE"
    route_f = router_kernels_fwd(route)
    per_f, per_b = kernels_per_local_expert(c.fp8)
    if whole:
        h_route = route_f * per_kernel
        h_body_f = (KERNELS_AFTER_SYNC_FWD + per_f * local) * per_kernel
        h_body_b = (KERNELS_AFTER_SYNC_BWD + per_b * local) * per_kernel
        h_route_b = BWD_KERNELS_PER_FWD * route_f * per_kernel
    else:
        h_route = route_f * (eff.kernel_gap_s if route.router_graphs else eager)
        h_body_f = KERNELS_AFTER_SYNC_FWD * eager + per_f * local * expert
        h_body_b = KERNELS_AFTER_SYNC_BWD * eager + per_b * local * expert
        h_route_b = BWD_KERNELS_PER_FWD * route_f * (eff.kernel_gap_s if route.router_graphs
                                                     else eager)
    h_pre = n_f * per_kernel + h_route
    g_all = layer_fwd + d.fwd + fwd_cp
    if route.static:
        wait_f = max(0.0, h_pre + h_body_f - g_all)
    else:
        g_post = x.experts / ke + x.loop_fwd + dispatch
        wait_f = max(0.0, h_body_f - g_post, h_pre + h_body_f - g_all)
    # backward: the dense block's and the MoE part's kernels against the backward's GPU time; a
    # full recompute's forward (inside the backward) waits as the forward does
    g_rec = layer_fwd + d.fwd if full else 0.0
    h_b = (n_b - (n_f if full else 0.0)) * per_kernel + h_route_b + h_body_b
    wait_b = max(0.0, h_b - (layer_bwd + d.bwd + bwd_cp - g_rec))
    return wait_f * (2.0 if full else 1.0) + wait_b


def router_kernels_fwd(route: Dispatch = PLAIN) -> int:
    """The sparse block's router and preprocessing kernels, forward."""
    if route.flex:
        return FLEX_ROUTER_PREPROCESS_KERNELS_FWD
    return ROUTER_KERNELS_FWD + ALLTOALL_PREPROCESS_KERNELS_FWD


def kernels_per_local_expert(fp8: bool) -> tuple[int, int]:
    """Kernels issued per local expert after the synchronisation (forward, backward): the GEMMs
    (FC1 and FC2; backward data and weight gradients) and, in FP8, each GEMM input's quantization."""
    if fp8:
        return 2 + FP8_QUANTIZE_PER_EXPERT_FWD, 4 + FP8_QUANTIZE_PER_EXPERT_BWD
    return 2, 4


def sparse_linear_lower_bound_s(c, tp: int, b: int, cp: int) -> float:
    """No expert layout runs a sparse block's router, shared and routed experts (forward) faster:
    the experts' FLOPs at the best GEMM efficiency (any ep, etp, load >= 1), the router and the
    shared expert at their own (they do not depend on ep)."""
    x = layer(c, tp, b, cp, 1, 1, 1.0)
    mc = c.moe
    t_in = tokens_in(c, tp, b, cp)
    experts = 2.0 * t_in * mc.top_k * 3.0 * c.h * mc.expert_ffn / (c.peak * c.eff.matmul_peak_fraction)
    return x.router + x.shared_linear + experts


def expert_states_lower_bound(c, tp: int, pp: int, dp: int, zero: int, cp: int, ep: int,
                              etp: int, optimizer_bytes: float = OPTIMIZER_BYTES) -> float:
    """The expert weights, gradients and optimizer state one GPU holds at least (for pruning):
    its sparse blocks' experts at 1 weight byte (FP8 only), 2 gradient bytes, the optimizer's
    ``optimizer_bytes`` (12; 6 in bf16) sharded over edp under ZeRO-1."""
    L = -(-c.layers // pp)
    Lm, _ = c.moe.stage_layers(L, pp)
    edp = tp * cp * dp // (ep * etp)
    return Lm * expert_params_local(c, ep, etp) * (1.0 + 2.0 + optimizer_bytes
                                                   / (edp if zero >= 1 else 1))
