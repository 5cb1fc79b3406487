"""What every GPU step evaluation reads that depends on the model, the GPU and the batch but not on
the plan: ``Consts``, the model's shape, FLOPs, activation sizes and the memoised GEMM and
element-wise kernel times per (tp, micro-batch, cp), with the communication groups. ``step.evaluate``
and every bound of ``search`` take one; ``inputs.make_consts`` builds it from checked inputs.
"""

from __future__ import annotations

from models.spec import ModelSpec
from wsim.gpu import comm
from wsim.gpu import moe as moe_cost
from wsim.gpu.calibration import Efficiency
from wsim.gpu.flops import (attention_core_fwd_flops_per_token, block_fwd_flops_per_token, block_shape,
                            model_flops_per_step)
from wsim.gpu.memory import LOGIT_BYTES
from wsim.gpu.specs import GpuSpec, generation

ATTENTION = ("eager", "flash")
PRECISION = ("bf16", "fp8")


class Consts:
    """Everything that does not depend on the plan, computed once (plain floats for speed)."""

    __slots__ = ("model", "gpu", "eff", "seq", "batch", "gpus", "h", "f", "a", "kv", "hd", "q", "gated",
                 "qkv_out", "mlp_in", "vocab", "layers", "block_params", "positions_params",
                 "act_rep", "act_par", "act_attn", "ar_fwd", "head_norm_params", "head_bias", "reserved_bytes", "capacity_bytes", "peak",
                 "peak16", "tied", "flash", "fp8", "attention", "precision", "block_fwd_flops",
                 "linear_fwd_flops", "shape", "mla", "params", "generation", "model_flops", "_gemm", "_ew",
                 "_groups", "moe", "_moe", "_stage", "_mem", "_dp")

    def __init__(self, model: ModelSpec, gpu: GpuSpec, eff: Efficiency, *, seq: int, batch: int,
                 gpus: int, attention: str = "eager", precision: str = "bf16") -> None:
        self.model, self.gpu, self.eff = model, gpu, eff
        self.seq, self.batch, self.gpus = seq, batch, gpus
        self.attention, self.precision = attention, precision
        self.flash, self.fp8 = attention == "flash", precision == "fp8"
        shape = block_shape(model)
        self.shape, self.mla = shape, shape.mla  # mla: multi-head latent attention (DeepSeek-V3)
        self.h, self.f, self.a = model.hidden, model.ffn, model.heads
        self.kv, self.hd, self.gated = shape.kv_heads, shape.head_dim, shape.gated
        self.q = shape.q  # the queries' width: h unless the heads have their own (head_width)
        self.qkv_out = shape.qkv_out
        self.mlp_in = model.ffn * (2 if shape.gated else 1)  # gate and up projections side by side
        self.vocab, self.layers = model.vocab, model.layers
        # every family's block (norms, biases, GQA, gated MLP) as models.spec counts it
        self.block_params = float(model.block_params)
        # a mixture of experts: MoeConsts holds the experts; block_params is then the mean block's
        # weights without them (attention, norms, dense MLP or router and shared expert), what
        # tensor parallelism splits and the data-parallel group reduces
        self.moe = moe_cost.MoeConsts(model, seq, precision == "fp8") if model.experts else None
        self._moe: dict = {}
        if self.moe is not None:
            self.block_params -= len(self.moe.moe_layers) * self.moe.expert_params / model.layers
        self.positions_params = float(model.embedding_params - model.vocab * model.hidden)
        h, a = self.h, self.a
        # Korthikanti et al. 2022 sec. 4, generalised per family by models.spec.block_activations
        # (GQA's smaller K and V, the gated MLP, a parallel residual's shared norm input)
        # (a mixture of experts: its dense block; wsim.gpu.moe adds a sparse block's extra)
        act = model.block_activations(seq, sparse=False) if model.experts else model.block_activations(seq)
        self.act_rep = act.replicated
        self.act_par = act.tensor_parallel
        if precision == "fp8":
            # Transformer Engine keeps each GEMM's input for backward in its quantized (FP8,
            # 1-byte) form: the norm outputs feeding QKV and FC1, the projection input and the FC2
            # input (transformer_engine/pytorch/module/linear.py @ d0067d0d: saved_inputmat =
            # inputmat after input_quantizer; layernorm_linear.py likewise for ln_out)
            self.act_rep -= model.hidden * model.block_norms
            # (MLA: the projection input is heads x v_head_dim wide)
            self.act_par -= (shape.heads * shape.v_head if self.mla else model.hidden) + model.ffn
        if self.flash:
            self.act_attn = 4.0 * a  # FlashAttention keeps only a float32 log-sum-exp per head
        else:
            self.act_attn = act.attention
        # Tensor-parallel all-reduces of a block's forward: 2 (Megatron-LM SC21 sec. 3.3), 1 with a
        # parallel residual, which sums the attention and MLP outputs before one all-reduce
        # (GPT-NeoX megatron/model/transformer.py, ParallelTransformerLayer with gpt_j_residual);
        # the backward keeps 2 (each column-parallel input's gradient).
        self.ar_fwd = 1.0 if model.parallel_residual else 2.0
        self.head_norm_params = float(model.norm_params())
        self.head_bias = float(model.vocab if model.head_bias else 0)
        self.reserved_bytes = eff.reserved_bytes
        self.capacity_bytes = gpu.hbm_bytes
        self.generation = generation(gpu)
        gen = 1.0 if self.generation == "ampere" else eff.hopper_gemm_relative
        self.peak16 = gpu.peak_flops_per_s * gen
        self.peak = gpu.peak_for(precision) * gen * (eff.fp8_gemm_relative if self.fp8 else 1.0)
        self.tied = model.tied_embeddings
        self.block_fwd_flops = block_fwd_flops_per_token(model, seq)
        if self.mla:
            self.linear_fwd_flops = self.block_fwd_flops - attention_core_fwd_flops_per_token(model, seq)
        else:
            self.linear_fwd_flops = self.block_fwd_flops - 4.0 * seq * self.q
        # unique parameters (what ModelSpec.params sums layer by layer, in closed form: speed)
        self.params = (self.layers * self.block_params + model.embedding_params + self.head_norm_params
                       + (0.0 if model.tied_embeddings else model.vocab * h + self.head_bias))
        if self.moe is not None:
            self.params += len(self.moe.moe_layers) * self.moe.expert_params
        self.model_flops = model_flops_per_step(model, seq=seq, batch=batch)
        self._gemm: dict = {}
        self._ew: dict = {}
        self._groups: dict = {}
        self._stage: dict = {}  # step._stage per stack: the interleave-free part of a plan
        self._mem: dict = {}  # memory._fixed: the interleave-free part of a plan's memory
        self._dp: dict = {}  # dataparallel._collectives: per layout, not per micro-batch

    def replicated_tp(self, tp: int) -> float:
        """Weights a block holds on every tensor-parallel rank beyond block_params / tp: multi-head
        latent attention's down projections (q_a, kv_a), which Megatron-Core does not split
        (``BlockShape.mla_linear``); 0.0 for every other model (so x + L x this is x)."""
        if not self.mla:
            return 0.0
        down = sum(k * n for _, k, n, split in self.shape.mla_linear if split == "none")
        return down - down / tp

    def embed_params_tp(self, tp: int) -> float:
        """First stage: vocab-parallel word embedding plus (replicated) learned positions."""
        return self.vocab * self.h / tp + self.positions_params

    def head_params_tp(self, tp: int, pp: int) -> float:
        """Last stage: final LayerNorm plus the LM head, a separate copy when tied across stages."""
        head = self.head_norm_params
        if not self.tied or pp > 1:
            head += (self.vocab * self.h + self.head_bias) / tp
        return head

    def group(self, size: int, stride: int, single_nic: bool = False) -> comm.Group:
        key = (size, stride, single_nic)
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = comm.Group(self.gpu, self.eff, size, stride,
                                               single_nic=single_nic)
        return g

    def gemm_times(self, tp: int, b: int, cp: int = 1, sp: bool = True) -> tuple[float, float, float, float]:
        """Seconds per micro-batch of one block's linear GEMMs (forward), its attention core
        forward and backward, and the LM head's forward, at the kernels' own efficiencies.
        ``sp`` (sequence parallelism) matters to multi-head latent attention only (``_mla_times``)."""
        key = (tp, b, cp, sp or tp == 1) if self.mla else (tp, b, cp)
        hit = self._gemm.get(key)
        if hit is not None:
            return hit
        e = self.eff.gemm_efficiency
        s, h, V = self.seq, self.h, self.vocab
        T = b * s / cp  # tokens on this GPU
        q = s / cp  # queries per sequence on this GPU
        if self.mla:
            linear, fwd, bwd = self._mla_times(T, q, tp, cp, sp)
        else:
            hd = self.hd
            linear = (2.0 * T * h * self.qkv_out / tp / e(T, self.qkv_out / tp, h)   # QKV
                      + 2.0 * T * self.q * h / tp / e(T, h, self.q / tp)             # output projection
                      + 2.0 * T * h * self.mlp_in / tp / e(T, self.mlp_in / tp, h)   # MLP up (and gate)
                      + 2.0 * T * self.f * h / tp / e(T, h, self.f / tp)) / self.peak  # MLP down
            flops = 2.0 * T * s * self.q / tp  # one of the two attention products (scores, x V), non-causal
            if self.flash:
                base = self._flash_shape_efficiency(q, hd, cp)
                fwd = 2.0 * flops * 0.5 / (self.peak16 * base * self.eff.flash_forward_efficiency)
                bwd = 5.0 * flops * 0.5 / (self.peak16 * base * self.eff.flash_backward_efficiency)
            else:
                fwd = (flops / e(q, s, hd) + flops / e(q, hd, s)) / self.peak16
                bwd = 2.0 * fwd
        head = 2.0 * T * h * V / tp / e(T, V / tp, h) / self.peak16  # LM head (vocab-parallel)
        hit = (linear, fwd, bwd, head)
        self._gemm[key] = hit
        return hit

    def down_proj_s(self, tp: int, b: int, cp: int = 1) -> float:
        """Seconds per micro-batch of one dense block's MLP down projection (forward; part of
        ``gemm_times``' linear term): the block's last GEMM."""
        T = b * self.seq / cp
        return 2.0 * T * self.f * self.h / tp / self.eff.gemm_efficiency(T, self.h, self.f / tp) / self.peak

    def _flash_shape_efficiency(self, q: float, d: int, cp: int) -> float:
        """The flash kernel's shape efficiency: (q queries, s keys, head width d), or with context
        parallelism Transformer Engine's ring (AttnFuncWithCPAndKVP2P, context_parallel.py @
        d0067d0d, cp_p2p_fwd_prepare_qkv): each rank's queries meet the keys in cp steps of equal
        work, one "diagonal" block of s/cp queries x s/cp keys, then cp - 1 "lower-triangle" (s/cp
        queries x the first s/2cp keys) or "upper-triangle" (the last s/2cp queries x s/cp keys)
        blocks: each a kernel of its own shape."""
        e = self.eff.gemm_efficiency
        base = e(q, self.seq, d)
        if cp > 1:
            diag = e(q, q, d)
            off = e(q, q / 2.0, d)
            base = 1.0 / ((1.0 / diag + (cp - 1) / off) / cp)
        return base

    def _mla_times(self, T: float, q: float, tp: int, cp: int, sp: bool) -> tuple[float, float, float]:
        """``gemm_times``' linear GEMMs and attention core for multi-head latent attention
        (``BlockShape.mla_linear``), ``T`` tokens and ``q`` queries a sequence on this GPU. The down
        projections are not split: each tensor-parallel rank runs them on its own sequence shard
        under sequence parallelism (T / tp tokens; Megatron-Core's duplicated linear reads the
        [s/tp, b, h] input) and on all T tokens without it. The up projections are column-parallel,
        the output row-parallel (n / tp, k / tp). The attention core has a scores product of width
        d_qk and a value product of width d_v per head (a / tp heads on a rank); FlashAttention's time
        from their FLOPs as for other attention, its kernel-shape efficiency taken at the scores'
        shape (q, s, d_qk) (assumption: one fused kernel, its tile set by the q.k width)."""
        e, s, h = self.eff.gemm_efficiency, self.seq, self.h
        linear = 0.0
        for _, k, n, split in self.shape.mla_linear:
            if split == "row":  # the output projection
                linear += 2.0 * T * k * n / tp / e(T, n, k / tp)
            elif split == "column":  # an up projection
                linear += 2.0 * T * k * n / tp / e(T, n / tp, k)
            else:  # duplicated down projection
                t = T / tp if sp else T
                linear += 2.0 * t * k * n / e(t, n, k)
        linear += (2.0 * T * h * self.mlp_in / tp / e(T, self.mlp_in / tp, h)  # MLP up (and gate)
                   + 2.0 * T * self.f * h / tp / e(T, h, self.f / tp))
        linear /= self.peak
        a, dqk, dv = self.a, self.shape.head_dim, self.shape.v_head
        scores = 2.0 * T * s * a * dqk / tp  # non-causal, as the FLOP conventions count
        values = 2.0 * T * s * a * dv / tp
        if self.flash:
            base = self._flash_shape_efficiency(q, dqk, cp)
            # the standard path's 2 flops x 0.5 (causal) forward and 5 flops x 0.5 backward (FA-2:
            # the backward's five products, scores recomputed), with (scores + values) / 2 for flops
            fwd = (scores + values) * 0.5 / (self.peak16 * base * self.eff.flash_forward_efficiency)
            bwd = 2.5 * (scores + values) * 0.5 / (self.peak16 * base * self.eff.flash_backward_efficiency)
        else:
            fwd = (scores / e(q, s, dqk) + values / e(q, dv, s)) / self.peak16
            bwd = 2.0 * fwd
        return linear, fwd, bwd

    def elementwise_times(self, tp: int, b: int, sp: bool, cp: int = 1) -> tuple[float, float, float]:
        """Forward seconds per micro-batch of the memory-bound element-wise kernels: one block,
        its attention core (softmax, dropout; none under FlashAttention), the LM head's loss; HBM
        traffic is ``Efficiency.elementwise_passes`` times the bytes Korthikanti et al. count as
        stored, plus Transformer Engine's FP8 casts (activations and weights)."""
        key = (tp, b, sp, cp)
        hit = self._ew.get(key)
        if hit is not None:
            return hit
        tokens = b * self.seq / cp
        hbm = self.gpu.hbm_bytes_per_s
        k = self.eff.elementwise_passes * tokens / hbm
        core = 0.0 if self.flash else k * self.act_attn / tp
        block = k * (self.act_rep / (tp if sp else 1) + self.act_par / tp) + core
        if self.fp8 and self.mla:  # the same, MLA's GEMM inputs: the norm output (q_a and kv_a read
            # it), the two latents, the output projection's input, and the MLP's
            sh = self.shape
            block += self.eff.fp8_cast_bytes * tokens * (
                2 * self.h + sh.q_lora + sh.kv_lora + sh.heads * sh.v_head + self.f) / tp / hbm
        elif self.fp8:  # cast each GEMM input (the weights: once per step, ``weight_cast_s``)
            block += self.eff.fp8_cast_bytes * tokens * (3 * self.h + self.f) / tp / hbm
        head = k * self.vocab / tp * LOGIT_BYTES
        hit = (block, core, head)
        self._ew[key] = hit
        return hit
