"""The GPU cost model's global parameter set, and the software stacks that execute a plan.

ONE parameter set for every GPU, model and published run. Each parameter is one of
- **sourced**: a published measurement or the code of the system modelled, cited at the value;
- **fitted**: chosen by ``wsim.gpu.validation.fit`` on the development set stated in
  ``docs/gpu-model.md`` (SC21 Tables 1 and 2, MT-NLG, BLOOM, OPT, GPT-NeoX; and since issue 19 the
  Megatron-LM r0.8 H100 scaling table, NeMo 24.07 FP8 and the DGX Cloud recipes v24.11.1), never
  per row;
- **assumption**: a stated guess with its reason, varied in the documentation's sensitivity notes.
Every parameter states its validity range: the span of the published runs that constrain it.
The fitted values are those of ``fit(sweeps=6)`` rounded (issue 19, second pass: refitted after
the edge-balanced pipeline split, wsim.gpu.stages, moved the BLOOM development row from -14% to -1%;
before: matmul_peak_fraction 0.666, gemm_half_dim 17.9, elementwise_passes 1.95,
hopper_gemm_relative 0.923, fp8_gemm_relative 0.787, deepspeed 0.876, fsdp 0.925, megatron-core
0.878). Refitted again after the DGX Cloud v24.11.1 340B rows took their recipe's bf16
optimizer state (wsim.gpu.knobs ``optimizer_bf16``; the 128-GPU BF16 row -18.8% -> +5.1%, +3.0%
after the refit), with
gemm_half_dim held at 7.0 (free, the fit drives it to 0.06 for 0.0004 of objective: the dense rows
cannot tell, and it is the only penalty thin expert GEMMs pay): objective 0.0497 -> 0.0489; before:
matmul_peak_fraction 0.659, gemm_half_dim 7.0, elementwise_passes 1.96, hopper_gemm_relative 0.928,
fp8_gemm_relative 0.780, deepspeed 0.859, fsdp 0.929, megatron-core 0.873, nemo 1.0 (its bound).
Kept after the same four rows took their recipe's selective recompute (+3.0/+3.7/+1.1/+6.2% ->
+2.3/+3.0/+0.1/+5.2%): the refit (gemm_half_dim held) rounds to the same values but
matmul_peak_fraction 0.657, deepspeed 0.861 and nemo 0.988, objective 0.04863 either way, every
row 5.83% refitted against 5.82% shipped.

A software stack (Megatron-LM, Megatron-Core, Megatron-DeepSpeed, PyTorch FSDP) is a named set of
behaviours taken from its documentation and code (which schedules it has, what it overlaps, how
ZeRO-3 gathers), plus one fitted number: the speed of its layers relative to Megatron-LM's fused
kernels (``Stack.kernel_efficiency``). A per-row constant is not allowed anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from wsim.errors import ConfigError, non_negative, positive, require
from wsim.gpu.knobs import MEGATRON_KNOBS

GIB = 2**30


@dataclass(frozen=True)
class Efficiency:
    """What fraction of the hardware's peaks kernels and collectives reach (global, all GPUs).

    GEMM efficiency for a matmul of dimensions (M, N, K) is
    ``matmul_peak_fraction * prod(d / (d + gemm_half_dim) for d in (M, N, K))``: a large GEMM runs
    at the achievable peak and each small dimension (tile quantisation, too few thread blocks, low
    arithmetic intensity) pulls it down smoothly: one curve for every GEMM of every model.
    """

    # FITTED (development set; validity: A100, GEMM dimensions 64 .. 73,728): the fraction of dense
    # peak that a large 16-bit GEMM sustains *inside a training step* (kernel gaps and clock
    # throttling under load included). Isolated cuBLAS runs reach ~0.85-0.9 of peak; in a step less.
    # Hopper and Blackwell scale it by hopper_gemm_relative.
    matmul_peak_fraction: float = 0.658
    # FITTED (development set: the H100 rows; validity: H100, GEMM dimensions 1,024 .. 73,728): the
    # fraction of matmul_peak_fraction that Hopper's tensor cores sustain at their (BF16 or FP8)
    # peak in a training step. A 700 W H100 running dense GEMMs throttles below the boost clock at
    # which its datasheet peak is quoted, and reaches a smaller share of that peak than an A100 does
    # of its own. ASSUMPTION for Blackwell (the same share), tested by the held-out B200/GB200 rows.
    hopper_gemm_relative: float = 0.921
    # FITTED (validity as above): the dimension at which a GEMM runs at half speed along it. The
    # development set barely constrains it: fit(sweeps=6) from the values shipped before issue 19's
    # second pass lands at 7.0 (shipped), from 7.0 near 0 (0.06), the objective within 0.0004 (0..40
    # fit about as well); held at 7.0 in the third pass's refit: it matters for small heads and
    # fine-grained experts, whose thin GEMMs it alone slows.
    gemm_half_dim: float = 7.0
    # FITTED (validity: A100/H100 HBM, hidden 1,024 .. 25,600): HBM traffic of the memory-bound
    # element-wise kernels (LayerNorm, GeLU, bias, dropout, residual, softmax) per byte of stored
    # activation (Korthikanti et al. 2022, arXiv 2205.05198, sec. 4 counts) in one forward; the
    # backward moves twice that. 2.0 would be "each stored tensor written once and read once".
    elementwise_passes: float = 1.94
    # SOURCED: NCCL caps the all-reduce bus bandwidth of an A100 node at 235 GB/s of the 300 GB/s
    # NVLink per direction (NCCL 2.9.9 src/graph/tuning.cc, "if (compCap80) busBw = min(busBw,
    # 235)"); nccl-tests on DGX A100 measure ~230 GB/s: 0.78. Used for every NVLink generation.
    nvlink_efficiency: float = 0.78
    # SOURCED: multi-node NCCL reaches 0.85-0.96 of InfiniBand line rate (nccl-tests issue #119:
    # 85-96 GB/s of 100 on 4 HDR NICs; NCCL maintainers, nccl-tests issue #290: "46-48 GB/s per
    # NIC" for 400 Gb/s NDR): 0.92.
    ib_efficiency: float = 0.92
    # ASSUMPTION: RoCE reaches the same fraction of line rate as InfiniBand. Meta tuned its RoCE and
    # InfiniBand 24k-GPU clusters to equal large-model training performance ("Building Meta's
    # GenAI Infrastructure", engineering.fb.com, 2024-03-12; Llama 3 405B trained on RoCE, Llama 3
    # paper arXiv 2407.21783 sec. 3.3.1); NCCL drives both through its IB verbs transport.
    roce_efficiency: float = 0.92
    # SOURCED (NCCL 2.9.9 src/graph/tuning.cc, Simple protocol): a collective's base latency 8.4 us,
    # each ring hop over NVLink 3.4 us and over the network 9.6 us; NCCL's own model of a ring
    # collective is base + (nsteps - nInterSteps) x NVLink hop + nInterSteps x network hop, with
    # nsteps = n-1 (all-gather, reduce-scatter) or 2(n-1) (all-reduce); a tree all-reduce pays
    # 2 x ((ranks per node - 1) x NVLink hop + log2(nodes) x network hop) (hops as for the ring:
    # assumption; NCCL's Simple-tree figures include a 256 kB chunk).
    collective_base_latency_s: float = 8.4e-6
    nvlink_hop_latency_s: float = 3.4e-6
    network_hop_latency_s: float = 9.6e-6
    # ASSUMPTION (derived, not fitted): while a collective overlaps compute, NCCL's kernels hold SMs
    # (one CTA per channel; 8-16 channels on DGX A100 of 108 SMs): compute slows by this fraction of
    # the overlapped communication time.
    overlap_compute_penalty: float = 0.15
    # ASSUMPTION from FlashAttention-2 (Dao 2023, arXiv 2307.08691, abstract and sec. 4.1): FA-2
    # reaches 50-73% of A100 peak (forward up to 73%, backward lower) where large GEMMs reach
    # ~80-90% in the same benchmarks: relative to the GEMM efficiency, forward 0.85, backward 0.70.
    flash_forward_efficiency: float = 0.85
    flash_backward_efficiency: float = 0.70
    # FITTED (fp8_gemm_relative; development set: the FP8 rows of NeMo 24.07 and the DGX Cloud
    # recipes v24.11.1; validity H100, 8B-340B): the fraction of the BF16 GEMMs' share of peak that
    # FP8 GEMMs reach of the FP8 peak. ASSUMPTION (Transformer Engine FP8 recipe): each GEMM input
    # and output gradient is cast (read 2 bytes, write 1 byte and 1 byte transposed): 4 bytes of
    # HBM traffic per element, memory-bound.
    fp8_gemm_relative: float = 0.803
    fp8_cast_bytes: float = 4.0
    # ASSUMPTION (not fitted: no development row is host-bound, so the fit cannot see it): seconds
    # of host time to issue one kernel from PyTorch eager mode (Python, dispatcher, launch), ~10 us
    # (the order of magnitude PyTorch's "Accelerating PyTorch with CUDA Graphs" blog, 2021, gives
    # for CPU launch overhead). A block cannot run faster than its kernels are issued
    # (wsim.gpu.knobs.KERNELS_PER_BLOCK_*) unless CUDA graphs replay them.
    host_s_per_kernel: float = 10e-6
    # FITTED (wsim.gpu.moe_fit; development set: the two dropless alltoall-dispatcher MoE rows
    # bridge-moe 25.11-q30-fp8-b200-8 and 25.11-q235-fp8-b200-64; leave-one-out in
    # docs/gpu-model.md section 8; validity: Transformer Engine's split-list GroupedLinear, 8 to 32
    # local experts, B200/H100/GB200): seconds of host time per kernel of the per-expert loop a
    # dropless sparse block issues after the dispatcher's device-to-host synchronisation (one GEMM
    # per local expert and GEMM, and in FP8 one quantization each). Transformer Engine's GroupedLinear
    # turns the counts into a host list (grouped_linear.py @ d0067d0d, ``m_splits.tolist()``),
    # splits and quantizes per group (``_split_quantize``) and builds each GEMM's operands in Python
    # before ``general_grouped_gemm`` launches them (cpp_extensions/gemm.py): more host work per
    # kernel than a plain eager op (host_s_per_kernel). Not the device's cost: while the GPU runs
    # longer than the host needs (large experts), it is hidden.
    expert_host_s_per_kernel: float = 56e-6  # fit: 55.6 us
    # FITTED (wsim.gpu.moe_fit, jointly with expert_host_s_per_kernel; development set and
    # leave-one-out in docs/gpu-model.md section 8): seconds of *device* time each kernel of the
    # per-expert loop (``moe.kernels_per_local_expert``) costs beyond its FLOPs at the GEMM
    # efficiency and its bytes at HBM speed: launch latency, prologue and epilogue, and a partial
    # wave of a GEMM too small to fill the GPU (a fine-grained expert's FC1 at 2,048 tokens is
    # 2,048 x 1,536 outputs: 96 tiles of 128 x 256 on 148 SMs, 65% of one wave: NVIDIA,
    # "Matrix Multiplication Background User's Guide" DU-09799-001 sec. 3.2). CUDA graphs remove
    # the host's issue cost, not this.
    expert_device_s_per_kernel: float = 15e-6  # fit: 15.3 us
    # ASSUMPTION: the device's own gap between two dependent kernels (launch latency, ramp-up and
    # tail of a kernel too small to fill the GPU), which CUDA graphs do not remove: ~2 us (NVIDIA's
    # "Getting Started with CUDA Graphs" blog, 2019: 2.0 us per short kernel with a graph, against
    # 3.8 us without, for back-to-back launches).
    kernel_gap_s: float = 2e-6
    # ASSUMPTION: HBM that the CUDA context, NCCL buffers, cuBLAS workspace and allocator
    # fragmentation keep from the model (a few GiB is what PyTorch jobs typically lose).
    reserved_bytes: float = 3 * GIB

    def __post_init__(self) -> None:
        for name in ("matmul_peak_fraction", "nvlink_efficiency",
                     "ib_efficiency", "roce_efficiency",
                     "flash_forward_efficiency", "flash_backward_efficiency", "fp8_gemm_relative"):
            value = getattr(self, name)
            positive(f"efficiency.{name}", value)
            require(value <= 1.0, f"efficiency.{name} must be at most 1, got {value!r}")
        for name in ("gemm_half_dim", "elementwise_passes", "collective_base_latency_s",
                     "nvlink_hop_latency_s", "network_hop_latency_s", "reserved_bytes",
                     "fp8_cast_bytes", "host_s_per_kernel", "expert_host_s_per_kernel",
                     "expert_device_s_per_kernel", "kernel_gap_s"):
            non_negative(f"efficiency.{name}", getattr(self, name))
        positive("efficiency.hopper_gemm_relative", self.hopper_gemm_relative)
        require(self.hopper_gemm_relative * self.matmul_peak_fraction <= 1.0,
                "efficiency.hopper_gemm_relative x matmul_peak_fraction must be at most 1, got "
                f"{self.hopper_gemm_relative * self.matmul_peak_fraction!r}")
        non_negative("efficiency.overlap_compute_penalty", self.overlap_compute_penalty)
        require(self.overlap_compute_penalty <= 1.0, "efficiency.overlap_compute_penalty must be at "
                f"most 1, got {self.overlap_compute_penalty!r}")

    def gemm_efficiency(self, m: float, n: float, k: float) -> float:
        d = self.gemm_half_dim
        return self.matmul_peak_fraction * (m / (m + d)) * (n / (n + d)) * (k / (k + d))

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


EFFICIENCY = Efficiency()


def efficiency_for(gpu=None, efficiency: Efficiency | None = None) -> Efficiency:
    """The global parameter set (one for every GPU), or ``efficiency`` if given."""
    if efficiency is not None:
        if not isinstance(efficiency, Efficiency):
            raise ConfigError(f"efficiency must be a wsim.gpu.Efficiency, got {type(efficiency).__name__}")
        return efficiency
    return EFFICIENCY


@dataclass(frozen=True)
class Stack:
    """How a software stack executes a plan (from its documentation and code) + one fitted speed."""

    name: str
    zero_stages: tuple  # ZeRO stages it runs (1 = ZeRO-1 / Megatron's distributed optimizer)
    interleave: bool  # Megatron's interleaved 1F1B (SC21 sec. 2.2.2)
    pipeline: bool  # pipeline parallelism at all
    context_parallel: bool
    fp8: bool  # Transformer Engine FP8
    dp_overlap: float  # fraction of the last backward that hides ZeRO-0/1 gradient reduction
    param_gather_overlap: bool  # ZeRO-1 / distributed optimizer all-gather under the next forward
    zero3_regather_on_recompute: bool  # ZeRO-3 gathers a layer again for its recomputed forward
    grad_reduce_bytes: float  # bytes per gradient element reduced across data parallelism
    kernel_efficiency: float  # FITTED: layer speed relative to Megatron-LM's fused kernels
    source: str
    uneven_stages: bool = False  # pipeline stages of unequal layer counts (the fullest decides)
    # context parallelism by all-gathering K and V before the local attention (Llama 3) instead of
    # Megatron-Core's ring
    cp_allgather: bool = False
    # ZeRO-3 parameter gathers / gradient reduce-scatters cross the network through the rank's own
    # NIC only ("gpu"), or spread over the NICs of the group's members in the node as NCCL's
    # multi-rail ring does for one large collective ("node"). See the stacks below.
    sharded_nics: str = "node"
    # ZeRO-3 memory: parameters gathered at once (None: the computing and the prefetched block,
    # FSDP's unit) and the gradient bucket (None: one block's gradient)
    zero3_live_params: float | None = None
    zero3_grad_bucket: float | None = None
    # Megatron-Core / Transformer Engine options (wsim.gpu.knobs): those a plan may set, and those on
    # unless the plan says otherwise (grad_reduce_fp32's default is grad_reduce_bytes == 4)
    knobs: tuple = ()
    knob_defaults: tuple = ()
    # mixtures of experts with expert parallelism, Megatron-Core's alltoall token dispatcher and
    # grouped GEMM (wsim.gpu.moe)
    expert_parallel: bool = False
    # taken when no stack is given (estimate's fastest stack, search): False for a stack modelled
    # for its published rows only, whose speed is an unconstrained prior (Meta's in-house stack)
    auto: bool = True
    # ZeRO-2 with pipeline parallelism: gradients sharded across data parallelism while 1F1B
    # accumulates micro-batches (Meta's Llama 3 stack, sec. 3.3.2); every other stack refuses
    # zero >= 2 with pp > 1 (DeepSpeed's pipeline engine does)
    zero2_pipeline: bool = False

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


STACKS: dict[str, Stack] = {
    # Megatron-LM as in SC21 (arXiv 2104.04473) and its April 2021 README: PTD-P, interleaving, fused
    # kernels; its local DDP all-reduced gradients after the pipeline flush (training.py calls
    # allreduce_gradients after forward_backward_func): no overlap. zero 1 = a sharded optimizer
    # (Megatron's later distributed optimizer). The reference stack: kernel_efficiency 1 by
    # definition (the GEMM fraction is fitted on it).
    "megatron": Stack("megatron", (0, 1), True, True, False, False, 0.0, False, False, 2.0, 1.0,
                      "Megatron-LM SC21 (arXiv 2104.04473); github.com/NVIDIA/Megatron-LM (2021)"),
    # Megatron-Core (2023+): --overlap-grad-reduce reduces gradient buckets as the last backward
    # finalises them, --overlap-param-gather all-gathers updated parameters under the next forward
    # (Megatron-LM docs, "distributed optimizer"); context parallelism and Transformer Engine FP8.
    # Gradients reduced in fp32 (--accumulate-allreduce-grads-in-fp32, forced on with bf16 unless
    # --grad-reduce-in-bf16: megatron/training/arguments.py). Every Transformer Engine option of
    # wsim.gpu.knobs can be set; only the interleaved schedule's p2p overlap is on by default
    # (overlap_p2p_comm). Uneven stages: --decoder-first/last-pipeline-num-layers (Megatron-Core
    # 0.9+; the fullest stage decides). kernel_efficiency FITTED (the Megatron-LM r0.8 H100 scaling
    # table: its runs were ~12% slower than NeMo's recipes on the same GPUs).
    "megatron-core": Stack("megatron-core", (0, 1), True, True, True, True, 1.0, True, False, 4.0,
                           0.880, "Megatron-LM/Megatron-Core docs: distributed optimizer, "
                           "--overlap-grad-reduce, --overlap-param-gather, context parallelism",
                           knobs=MEGATRON_KNOBS, knob_defaults=("p2p_overlap",), uneven_stages=True,
                           expert_parallel=True),
    # NeMo 2 / Megatron-Bridge performance recipes on Megatron-Core (2024-25; NVIDIA's DGX Cloud
    # benchmarking recipes and NeMo performance summaries): the distributed optimizer with
    # overlapped gradient reduce-scatter and parameter all-gather, gradients reduced in bf16
    # (recipes set grad_reduce_in_fp32 False; the logged memory of dgxc-benchmarking @ 741c886
    # llama3.1 and nemotron READMEs matches 2 + 2 + 12/d bytes a parameter, docs/gpu-model.md),
    # tensor-parallel communication overlapped with the GEMMs (MegatronCommOverlapCallback
    # tp_comm_overlap=True), p2p overlap in the interleaved schedule, Transformer Engine / cuDNN
    # fused attention, Megatron-FSDP for ZeRO-3 (no pipeline then); FP8 weights kept in FP8
    # (fp8_param_gather = True in every FP8 recipe: nemo/collections/llm/recipes/precision/
    # mixed_precision.py @ 8cfedd72 line 70; Megatron-Bridge src/megatron/bridge/training/
    # mixed_precision.py @ 067f987d, bf16_with_fp8_current_scaling_mixed). kernel_efficiency FITTED
    # (development rows of NeMo 24.07 and dgxc-benchmarking v24.11.1) within the bound every stack
    # has, at most Megatron-LM's own (1.0): 0.987 (it landed on the bound, 1.0, until the 340B rows
    # took their bf16 optimizer state). Unbounded it trades off with hopper_gemm_relative (1.13 x
    # 0.815 fitted the H100 rows as well as 1.0 x 0.923) and would run A100 plans 13% faster than
    # any A100 row supports.
    "nemo": Stack("nemo", (0, 1, 3), True, True, True, True, 1.0, True, False, 2.0, 0.987,
                  "NeMo 2.0 recipes (nemo/collections/llm/recipes/*.py @ 8cfedd72) and "
                  "github.com/NVIDIA/dgxc-benchmarking recipes (v24.11.1 35a9aec, v25.04 741c886)",
                  knobs=MEGATRON_KNOBS, knob_defaults=("tp_comm_overlap", "p2p_overlap", "fp8_param_gather"),
                  uneven_stages=True, expert_parallel=True),
    # Megatron-DeepSpeed (MT-NLG, BLOOM, GPT-NeoX): Megatron's kernels in DeepSpeed's pipeline engine
    # (plain 1F1B, no interleaving: deepspeed/runtime/pipe/schedule.py TrainSchedule, whose
    # ReduceGrads runs after the last backward), ZeRO 1-3 (ZeRO-2/3 only without pipeline
    # parallelism). overlap_comm (gradient buckets reduced during the backward) defaults to true for
    # ZeRO-3 only (deepspeed/runtime/zero/config.py, overlap_comm_valid): dp_overlap 0. ZeRO-3
    # (2021: stage3.py) releases each module's parameters after its forward and gathers them again
    # when activation checkpointing reruns it; it keeps at most stage3_max_live_parameters = 1e9
    # gathered and reduces gradients in buckets of reduce_bucket_size = 5e8 elements (DeepSpeed
    # config docs, defaults). Its PipelineModule partitions layers unevenly when pp does not divide
    # them (BLOOM: 70 layers on 12 stages).
    # sharded_nics "gpu" is FITTED (structural, on SC21 Table 2): its ZeRO-3 step time is the same on
    # 768 and 1,536 GPUs (and on 1,120 and 2,240), a per-GPU volume bound at 21-24 GB/s per GPU: one
    # 25 GB/s NIC per GPU, not the node's eight ("node" misses those rows by up to +250%).
    # kernel_efficiency FITTED (MT-NLG, BLOOM, GPT-NeoX, the ZeRO-3 rows).
    "deepspeed": Stack("deepspeed", (0, 1, 2, 3), False, True, False, False, 0.0, False, True, 2.0,
                       0.860, "DeepSpeed docs (ZeRO, overlap_comm, pipeline engine); "
                       "github.com/microsoft/DeepSpeed stage3.py (2021)", uneven_stages=True,
                       sharded_nics="gpu", zero3_live_params=1e9, zero3_grad_bucket=5e8),
    # PyTorch FSDP (FULL_SHARD = ZeRO-3, SHARD_GRAD_OP = ZeRO-2), with or without Megatron-style
    # tensor parallelism (OPT's metaseq, MosaicML LLM Foundry, torchtitan): one flat parameter per
    # wrapped block, all-gathered once per forward and once per backward (backward_prefetch =
    # BACKWARD_PRE, forward_prefetch), gradients reduce-scattered per block (PyTorch FSDP docs). A
    # checkpointed block recomputes inside its backward, after the backward all-gather: no extra
    # gather. No pipeline parallelism modelled. Its block all-gathers are single large NCCL collectives:
# multi-rail over the node's NICs (sharded_nics "node", from NCCL's ring; the MosaicML rows need it:
# 70B on 32 A100 moves 381 GB per GPU per micro-batch in 11 s, more than one 25 GB/s NIC can).
# kernel_efficiency FITTED (OPT-175B).
# With recompute "full" a run on PyTorch 2.1+ (non-reentrant torch.utils.checkpoint: torchtitan's
# checkpoint_wrapper) stops each block's recompute before its MLP down projection
# (recompute_early_stop, wsim.gpu.knobs); off by default (metaseq 2022, MosaicML on PyTorch 1.13/2.0).
    "fsdp": Stack("fsdp", (2, 3), False, False, False, True, 1.0, False, False, 2.0, 0.930,
                  "PyTorch FSDP docs (ShardingStrategy, BackwardPrefetch, forward_prefetch)",
                  knobs=("recompute_early_stop",)),
    # Meta's Llama 3 405B training stack (Llama 3 paper, arXiv 2407.21783, sec. 3.3.2):
    # TP, CP, PP and FSDP-style data parallelism; an interleaved 1F1B-like schedule with one layer
    # fewer on the first and last stages (uneven stages); context parallelism that all-gathers K
    # and V and then computes the local queries' attention ("unlike existing CP implementations
    # that overlap communication and computation in a ring-like structure, our CP implementation
    # adopts an all-gather based method"); gradients accumulated and reduce-scattered in FP32
    # (sec. 3.3.2's "Numerical stability" paragraph: fp32 accumulation over micro-batches in the
    # backward, fp32 reduce-scatter in FSDP); its FSDP "shards optimizer states and gradients, but
    # for model shards we do not reshard after forward computation" (sec. 3.3.2: the weights stay
    # whole through the step, gathered once, as ZeRO-1/2's), together with pipeline parallelism:
    # zero 2 (zero2_pipeline; wsim.gpu.dataparallel: one reduce-scatter per round of pp
    # micro-batches, ASSUMPTION), or zero 1 (the optimizer state only, the published rows' plan:
    # see docs/gpu-model.md section 7); no FP8.
    # kernel_efficiency 1.0: the prior (no development row; its rows are held out). Not a stack
    # anyone outside Meta runs, and its speed is that prior: only used when asked for by name
    # (auto False), never chosen by estimate's fastest-stack rule or the search.
    "meta-llama3": Stack("meta-llama3", (0, 1, 2), True, True, True, False, 1.0, True, False, 4.0,
                         1.0, "Llama 3 paper, arXiv 2407.21783, sec. 3.3", uneven_stages=True,
                         cp_allgather=True, auto=False, zero2_pipeline=True),
}


def stack_spec(name: str | Stack) -> Stack:
    if isinstance(name, Stack):
        return name
    if name not in STACKS:
        raise ConfigError(f"stack {name!r} is not one of {', '.join(STACKS)}")
    return STACKS[name]
