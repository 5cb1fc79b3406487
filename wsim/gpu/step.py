"""Step time of one plan: compute at shape-dependent GEMM efficiency, tensor-parallel collectives,
pipeline sends and bubble, data-parallel gradient reduction (or ZeRO/FSDP traffic), optimizer.

Per micro-batch, each stage runs forward (f), backward (2f of matmuls) and recomputation, each block
doing 2 all-reduces of b*s*h 16-bit activations in forward and 2 in backward (Megatron-LM SC21
sec. 3.3; with sequence parallelism a reduce-scatter + all-gather pair of the same volume,
Korthikanti et al. 2022 sec. 4.2.2), and 2 more when full recompute reruns the forward. With
``tau`` the time one stage spends per micro-batch (all its v chunks, sends included) the
pipeline takes ``m * tau_max + (p - 1) / v * tau_mean``: for equal stages Megatron's bubble
``(p-1)/(v m)`` (SC21 sec. 2.2), matched by the simpy schedule in ``pipeline_sim``. The last stage
also runs the LM head (not recomputed), which makes it the slowest.

Data parallelism: ZeRO-0 all-reduces 16-bit gradients once per step, overlapped with the last
micro-batch's backward (``Efficiency.dp_overlap_fraction``); ZeRO-1 reduce-scatters them the same
way and all-gathers the updated weights after the optimizer; ZeRO-2 reduce-scatters every
micro-batch under its backward; ZeRO-3/FSDP also all-gathers the weights before each layer's forward
and backward, hidden under compute where bandwidth allows. The optimizer (Adam) reads and writes its
16 bytes of state per local parameter once (memory-bound, HBM bandwidth).

``wsim.gpu`` never imports ``wsim.engine`` (rule of the house).
"""

from __future__ import annotations

from models.spec import ModelSpec
from wsim.gpu import comm
from wsim.gpu.flops import block_fwd_flops_per_token
from wsim.gpu.memory import GRAD_BYTES, LOGIT_BYTES, OPTIMIZER_BYTES, WEIGHT_BYTES, memory
from wsim.gpu.specs import Efficiency, GpuSpec

ADAM_BYTES_PER_PARAM = 2 * (WEIGHT_BYTES + GRAD_BYTES + OPTIMIZER_BYTES)  # read + write, assumption


class Consts:
    """Everything that does not depend on the plan, computed once (plain floats for speed)."""

    __slots__ = ("model", "gpu", "eff", "seq", "batch", "gpus", "h", "f", "a", "vocab", "layers",
                 "block_params", "positions_params", "act_rep", "act_par", "act_attn",
                 "reserved_bytes", "capacity_bytes", "peak", "tied", "block_fwd_flops", "_gemm")

    def __init__(self, model: ModelSpec, gpu: GpuSpec, eff: Efficiency, *, seq: int, batch: int,
                 gpus: int) -> None:
        self.model, self.gpu, self.eff = model, gpu, eff
        self.seq, self.batch, self.gpus = seq, batch, gpus
        self.h, self.f, self.a = model.hidden, model.ffn, model.heads
        self.vocab, self.layers = model.vocab, model.layers
        self.block_params = float(model.block_params)
        self.positions_params = float(model.embedding_params - model.vocab * model.hidden)
        h, f, a = self.h, self.f, self.a
        self.act_rep = 10.0 * h if model.dropout else 8.0 * h  # Korthikanti sec. 4 (see memory.py)
        self.act_par = 8.0 * h + 4.0 * f
        self.act_attn = (5.0 if model.dropout else 2.0) * a * seq
        self.reserved_bytes = eff.reserved_bytes
        self.capacity_bytes = gpu.hbm_bytes
        self.peak = gpu.peak_flops_per_s
        self.tied = model.tied_embeddings
        self.block_fwd_flops = block_fwd_flops_per_token(model, seq)
        self._gemm: dict = {}

    def embed_params_tp(self, tp: int) -> float:
        """First stage: vocab-parallel word embedding plus (replicated) learned positions."""
        return self.vocab * self.h / tp + self.positions_params

    def head_params_tp(self, tp: int, pp: int) -> float:
        """Last stage: final LayerNorm plus the LM head, a separate copy when tied across stages."""
        head = 2.0 * self.h
        if not self.tied or pp > 1:
            head += self.vocab * self.h / tp
        return head

    def gemm_times(self, tp: int, b: int) -> tuple[float, float, float]:
        """Forward seconds per micro-batch of one block, of its attention core, and of the LM head."""
        key = (tp, b)
        hit = self._gemm.get(key)
        if hit is not None:
            return hit
        e = self.eff.gemm_efficiency
        s, h, f, a, V = self.seq, self.h, self.f, self.a, self.vocab
        T = b * s
        peak = self.peak
        hd = h / a
        dense = (2.0 * T * h * 3 * h / tp / e(T, 3 * h / tp, h)      # QKV
                 + 2.0 * T * h * h / tp / e(T, h, h / tp)            # attention output projection
                 + 2.0 * T * h * f / tp / e(T, f / tp, h)            # MLP up
                 + 2.0 * T * f * h / tp / e(T, h, f / tp)) / peak    # MLP down
        core = (2.0 * T * s * h / tp / e(s, s, hd)                   # scores Q K^T, per head
                + 2.0 * T * s * h / tp / e(s, hd, s)) / peak         # scores x V
        head = 2.0 * T * h * V / tp / e(T, V / tp, h) / peak         # LM head (vocab-parallel)
        hit = (dense + core, core, head)
        self._gemm[key] = hit
        return hit

    def elementwise_times(self, tp: int, b: int, sp: bool) -> tuple[float, float, float]:
        """Forward seconds per micro-batch of the memory-bound element-wise kernels: one block,
        its attention core (softmax, dropout), the LM head's loss; HBM traffic is
        ``Efficiency.elementwise_passes`` times the bytes Korthikanti et al. count as stored."""
        k = self.eff.elementwise_passes * b * self.seq / self.gpu.hbm_bytes_per_s
        block = k * (self.act_rep / (tp if sp else 1) + (self.act_par + self.act_attn) / tp)
        core = k * self.act_attn / tp
        head = k * self.vocab / tp * LOGIT_BYTES
        return block, core, head


class Evaluation:
    """One plan's timing and memory (plain attributes; ``report.GpuReport`` is the public view)."""

    __slots__ = ("step_s", "compute_s", "recompute_s", "tp_comm_s", "pp_comm_s", "dp_comm_s",
                 "bubble_s", "optimizer_s", "bubble_fraction", "memory", "m")


def evaluate(c: Consts, tp: int, pp: int, dp: int, b: int, v: int, recompute: str, sp: bool,
             zero: int) -> Evaluation:
    """Time and memory of one (already validated) plan."""
    gpu, eff = c.gpu, c.eff
    m = c.batch // (dp * b)
    L = c.layers // pp
    fwd, core, head = c.gemm_times(tp, b)
    ew, ew_core, ew_head = c.elementwise_times(tp, b, sp)
    act_bytes = b * c.seq * c.h * 2.0
    ar = comm.all_reduce_s(act_bytes, tp, comm.tp_bus_bytes_per_s(gpu, eff, tp),
                           eff.collective_latency_s) if tp > 1 else 0.0

    # per micro-batch, per stage (all v chunks)
    compute = L * 3.0 * (fwd + ew)
    tp_comm = L * 4.0 * ar
    if recompute == "full":
        rec, tp_comm = L * (fwd + ew), tp_comm + L * 2.0 * ar
    elif recompute == "selective":
        rec = L * (core + ew_core)
    else:
        rec = 0.0
    send = 2.0 * v * comm.pp_send_s(act_bytes, gpu, eff, tp, dp) if pp > 1 else 0.0
    head = head + ew_head
    head_extra = 3.0 * head + ar  # LM head fwd + bwd; its input-gradient all-reduce
    embed_extra = ar  # vocab-parallel embedding all-reduce in forward
    tau = compute + rec + tp_comm + send
    if pp == 1:
        tau_max = tau_mean = tau + head_extra + embed_extra
    else:
        tau_max = tau + max(head_extra, embed_extra)
        tau_mean = tau + (head_extra + embed_extra) / pp
    bubble = (pp - 1) / v * tau_mean
    pipe = m * tau_max + bubble

    # data parallelism
    params = L * c.block_params / tp + (c.head_params_tp(tp, pp) if pp > 1
                                        else c.head_params_tp(tp, pp) + c.embed_params_tp(tp))
    grad_bytes = params * GRAD_BYTES
    dp_exposed = 0.0
    if dp > 1:
        bw = comm.dp_bus_bytes_per_s(gpu, eff, tp, dp)
        half = comm.reduce_scatter_s(grad_bytes, dp, bw, eff.collective_latency_s)
        bwd_time = 2.0 * L * (fwd + ew) + rec + L * 2.0 * ar + (2.0 * head if pp == 1 else 0.0)
        bwd_window = eff.dp_overlap_fraction * bwd_time  # Megatron DDP (ZeRO 0/1) overlap
        k = eff.overlap_compute_penalty
        if zero == 0:
            dp_exposed = _overlap(2.0 * half, bwd_window, k)
        elif zero == 1:
            dp_exposed = _overlap(half, bwd_window, k) + half
        elif zero == 2:  # DeepSpeed overlap_comm: each micro-batch's reduce-scatter under its backward
            dp_exposed = m * _overlap(half, bwd_time, k) + half
        else:  # FSDP / ZeRO-3 prefetch: gathers and reduce-scatters run under the layers' compute
            dp_exposed = m * (_overlap(3.0 * half, tau_max, k) + half / L)
    shard = dp if zero >= 1 else 1
    optimizer = params / shard * ADAM_BYTES_PER_PARAM / gpu.hbm_bytes_per_s

    ev = Evaluation()
    ev.m = m
    ev.compute_s = m * (compute + 3.0 * head)  # the last stage (head_extra >= embed_extra)
    ev.recompute_s = m * rec
    ev.tp_comm_s = m * (tp_comm + (ar if pp > 1 else 2.0 * ar))
    ev.pp_comm_s = m * send
    ev.bubble_s = bubble
    ev.dp_comm_s = dp_exposed
    ev.optimizer_s = optimizer
    ev.step_s = pipe + dp_exposed + optimizer
    ev.bubble_fraction = (pp - 1) / (v * m)
    ev.memory = memory(c, tp, pp, dp, b, v, recompute, sp, zero, m)
    return ev


def _overlap(comm_s: float, window_s: float, penalty: float) -> float:
    """Time added by ``comm_s`` of communication overlapped with ``window_s`` of compute: the part
    that does not fit under it, plus the compute slowdown while both run."""
    hidden = min(comm_s, window_s)
    return comm_s - hidden + penalty * hidden


def compute_lower_bound_s(c: Consts, tp: int, pp: int, dp: int) -> float:
    """No plan with this tp/pp/dp is faster: model FLOPs of the fullest stage at the best GEMM
    efficiency any shape reaches, no recompute, no communication, no bubble."""
    tokens = c.batch / dp * c.seq
    flops = tokens * 3.0 * (c.layers / pp * c.block_fwd_flops + 2.0 * c.vocab * c.h / pp) / tp
    return flops / (c.peak * c.eff.matmul_peak_fraction)


def step_lower_bound_s(c: Consts, tp: int, pp: int, dp: int, b: int) -> float:
    """No plan with this tp/pp/dp and micro-batch ``b`` is faster, whatever its recompute, sequence
    parallelism, ZeRO stage or interleaving: the last stage's forward and backward GEMMs and
    element-wise kernels (at their sequence-parallel minimum) and its 4 all-reduces per layer."""
    m = c.batch // (dp * b)
    L = c.layers // pp
    fwd, _, head = c.gemm_times(tp, b)
    ew, _, ew_head = c.elementwise_times(tp, b, tp > 1)
    ar = comm.all_reduce_s(b * c.seq * c.h * 2.0, tp, comm.tp_bus_bytes_per_s(c.gpu, c.eff, tp),
                           c.eff.collective_latency_s) if tp > 1 else 0.0
    return m * (L * (3.0 * (fwd + ew) + 4.0 * ar) + 3.0 * (head + ew_head))

