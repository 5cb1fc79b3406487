"""The Megatron-Core / Transformer Engine performance options a plan can turn on (issue 19), each
modelled from its mechanism, in time and in memory. A plan field left ``None`` takes the stack's
default (``Stack.knob_defaults``); a stack that lacks a feature refuses it (``Stack.knobs``).

- ``tp_comm_overlap`` (Megatron-LM ``--tp-comm-overlap``; Transformer Engine userbuffers,
  transformer_engine/pytorch/module/base.py ``initialize_ub``): the sequence-parallel all-gather
  before the QKV and FC1 GEMMs and the reduce-scatter after the projection and FC2 GEMMs are split
  into chunks and pipelined with those GEMMs (forward, and the dgrad/wgrad GEMMs in backward). Time:
  each block's tensor-parallel communication overlaps its own linear GEMMs (``_overlap``: what does
  not fit plus ``Efficiency.overlap_compute_penalty`` of what does, the SMs the copies hold).
  Needs sequence parallelism (megatron/training/arguments.py: "Tensor parallel communication/GEMM
  overlap can happen only when sequence parallelism is enabled") and a tensor-parallel group inside
  one NVLink domain (userbuffers map peer memory by CUDA IPC or NVLink fabric handles,
  transformer_engine/common/comm_gemm_overlap/userbuffers/userbuffers-host.cpp); across nodes the
  plan runs without it (the report says so).
- ``grad_reduce_fp32`` (``DistributedDataParallelConfig.grad_reduce_in_fp32``; Megatron-LM forces it
  on for bf16 unless ``--grad-reduce-in-bf16``; NeMo's performance recipes set it False, e.g.
  nemo/collections/llm/recipes/llama3_70b.py line 246): the main-gradient buffer and the
  data-parallel reduction are fp32 (4 bytes) or bf16 (2 bytes). Time: the reduction's bytes; memory:
  the gradient buffer (Megatron-LM docs, distributed optimizer: "bf16 param, fp32 grads 6 + 12/d").
- ``fp8_param_gather`` (``--fp8-param-gather``: "Keep the compute param in fp8 (do not use any
  other intermediate dtype) and perform the param all-gather in fp8"): weights held once, in FP8
  (1 byte; the fp32 master copy is in the optimizer state), instead of 16-bit weights plus Transformer
  Engine's cached FP8 copy (3 bytes); the distributed optimizer's all-gather moves 1 byte a
  parameter; the per-micro-batch cast of the weights to FP8 disappears. Needs FP8 and the
  distributed optimizer (ZeRO-1) or ZeRO-3.
- ``cuda_graphs`` (Transformer Engine ``make_graphed_callables``; Megatron-Core
  ``--enable-cuda-graph``): a block's kernels are replayed from a captured graph, so the host no
  longer issues them one by one. Time: without graphs a block cannot run faster than the host issues
  its kernels (``Efficiency.host_s_per_kernel`` x ``KERNELS_PER_BLOCK``); with them that floor is gone.
- ``p2p_overlap`` (Megatron-Core ``overlap_p2p_comm``, on by default with the interleaved schedule,
  megatron/core/pipeline_parallel/schedules.py): the send and receive of one model chunk's
  activations run while the next chunk computes. Time: a pipeline send costs only the penalty of
  its overlap when the schedule interleaves (v > 1); exposed with plain 1F1B.
- ``cpu_offload_layers`` (Megatron-Core ``cpu_offloading`` with ``cpu_offloading_num_layers``;
  Transformer Engine ``get_cpu_offload_context``): an integer, 0 (off) or the number of leading
  layers whose saved activations go to host memory over the GPU's host link and come back for the
  backward (``wsim.gpu.offload``). Memory: the stage holds (layers - n) layers' activations; time:
  what the copies do not hide under the layers' compute. Needs no pipeline parallelism, no
  recompute, no CUDA graphs (Megatron-Core's checks; ``wsim.gpu.plan.check_plan``).
- ``recompute_modules`` (Megatron-Core ``--recompute-modules``): the modules a selective recompute
  reruns, default ``("core_attn",)``; ignored unless the plan's recompute is "selective"
  (``wsim.gpu.recompute``).
- ``recompute_early_stop`` (PyTorch's non-reentrant ``torch.utils.checkpoint``, PyTorch 2.1 and
  later: "non-reentrant checkpoint stops recomputation as soon as it has computed all needed
  Tensors", ``set_checkpoint_early_stop``; made the default by pytorch/pytorch PR #96866, 2023-03,
  after the 2.0 branch cut): the recomputed forward of a block raises ``_StopRecomputationError``
  from the pack hook of the last tensor its backward needs (torch/utils/checkpoint.py,
  ``_recomputation_hook``), the input of the MLP's down projection, which autograd saves before the
  GEMM runs; so the down projection GEMM (and, with tensor parallelism, its all-reduce) and the
  residual add are not recomputed. Measured with torch 2.13 (CPU, a TorchDispatchMode counting the
  GEMMs of a checkpointed pre-norm block's backward): 4 of the 5 forward GEMMs of a Llama block
  and 3 of 4 of a GPT block are recomputed with early stop, all of them without. Only the
  ``fsdp`` stack has it (Megatron-LM and DeepSpeed recompute with their own reentrant
  checkpoint functions); off by default there: OPT's metaseq (2022) and the MosaicML runs on
  PyTorch 1.13 / 2.0 predate it. Dense models only (the ``fsdp`` stack runs no mixture of
  experts). Meaningful with ``recompute="full"`` only.
- ``optimizer_bf16`` (Apex ``DistributedFusedAdam(dtype=torch.bfloat16)``, NeMo 1's
  ``optim: {name: distributed_fused_adam, dtype: bf16}``, set by the DGX Cloud v24.11.1 Nemotron-4
  340B recipe, nemotron/nemotron4-340b-synth.yaml line 186 @ 35a9aecc; Megatron-Core's precision-aware
  optimizer ``--use-precision-aware-optimizer --main-params-dtype bf16 --exp-avg-dtype bf16
  --exp-avg-sq-dtype bf16``): the distributed optimizer keeps its shard of the master weights and
  both Adam moments in bf16. Apex's ``StateBucket`` allocates ``params_shard``, ``exp_avg_shard``
  and ``exp_avg_sq_shard`` all of ``dtype`` (apex/contrib/optimizers/distributed_fused_adam.py,
  ``store_params`` True by default): 6 bytes a parameter instead of 12, sharded as before. Time: the
  optimizer step's HBM traffic on those bytes. A numerics choice, not a tuning: never turned on by
  the search. Needs the distributed optimizer (``zero`` 1) on ``megatron-core`` or ``nemo``.

Kept as a plain tuple so that ``evaluate`` stays fast; an ``ep`` (expert parallel) dimension can
be added to the plan beside these without touching them.
"""

from __future__ import annotations

from typing import NamedTuple

from wsim.errors import ConfigError
from wsim.gpu.memory import OPTIMIZER_BF16_BYTES, OPTIMIZER_BYTES
from wsim.gpu.recompute import DEFAULT as DEFAULT_RECOMPUTE, normalise as recompute_modules

KNOBS = ("tp_comm_overlap", "grad_reduce_fp32", "fp8_param_gather", "cuda_graphs", "p2p_overlap",
         "cpu_offload_layers", "recompute_modules", "recompute_early_stop", "optimizer_bf16")
BOOL_KNOBS = KNOBS[:5]
# Megatron-Core's, Transformer Engine's and the distributed optimizer's (recompute_early_stop: PyTorch's)
MEGATRON_KNOBS = KNOBS[:7] + ("optimizer_bf16", "mtp_layers", "last_stage_layers")
# Carried beside the knobs (fields of ``Knobs``, so that a stage's cost is keyed on them) but not
# performance options: the training objective's multi-token prediction and the pipeline layout
# (``wsim.gpu.mtp``); plan fields and CLI flags of their own, fixed plans only
LAYOUT = ("mtp_layers", "last_stage_layers")


def check_names(given: dict) -> None:
    """Refuse an option that is not one of ``KNOBS`` (estimate and search take them as keywords)."""
    bad = set(given) - set(KNOBS)
    if bad:
        raise ConfigError(f"unknown option(s) {', '.join(sorted(bad))}; allowed: {', '.join(KNOBS)}")

# ASSUMPTION (counted from Transformer Engine's TransformerLayer with sequence parallelism and
# fused attention: norm, QKV GEMM, two rotary kernels, attention, projection GEMM, bias-dropout-add,
# norm, FC1 GEMM, activation, FC2 GEMM, bias-dropout-add, FP8 casts and amax updates, the four
# sequence-parallel collectives): ~24 kernels per block forward, twice that in backward.
KERNELS_PER_BLOCK_FWD = 24.0
KERNELS_PER_BLOCK_BWD = 48.0
# ASSUMPTION (counted from Transformer Engine's ring attention, transformer_engine/pytorch/attention/
# dot_product_attention/context_parallel.py @ d0067d0d, AttnFuncWithCPAndKVP2P: per ring step
# "for i in range(cp_size)" a batch_isend_irecv send and receive of K and V, one attention call and
# the out / softmax-lse correction; backward also sends dK, dV and accumulates dQ): kernels per ring
# step, each of which the host issues and the device runs however small the chunk.
KERNELS_PER_CP_STEP_FWD = 4.0
KERNELS_PER_CP_STEP_BWD = 6.0


class Knobs(NamedTuple):
    tp_comm_overlap: bool
    grad_reduce_fp32: bool
    fp8_param_gather: bool
    cuda_graphs: bool
    p2p_overlap: bool
    cpu_offload_layers: int = 0
    recompute_modules: tuple = DEFAULT_RECOMPUTE  # under recompute "selective" (wsim.gpu.recompute)
    recompute_early_stop: bool = False  # under recompute "full": the down projection not rerun
    optimizer_bf16: bool = False  # the distributed optimizer's master weights and moments in bf16
    mtp_layers: int = 0  # multi-token-prediction modules on the last stage (wsim.gpu.mtp)
    last_stage_layers: int | None = None  # transformer layers on the last stage (None: even split)

    @property
    def grad_bytes(self) -> float:
        return 4.0 if self.grad_reduce_fp32 else 2.0

    @property
    def optimizer_bytes(self) -> float:
        """Optimizer state bytes a parameter (before sharding): fp32 master + 2 moments, or bf16."""
        return OPTIMIZER_BF16_BYTES if self.optimizer_bf16 else OPTIMIZER_BYTES


def resolve(stack, *, fp8: bool, sp: bool, zero: int, given: dict | None = None) -> Knobs:
    """The knobs a plan runs with: those ``given`` (not None), else the stack's defaults (a
    default that the plan cannot use, such as tp_comm_overlap without sequence parallelism or
    fp8_param_gather in bf16, is off). Raises ConfigError for a given knob the stack or plan lacks."""
    given = given or {}
    out = {}
    for name in BOOL_KNOBS:
        value = given.get(name)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"plan.{name} must be true or false, got {value!r}")
        default = name in stack.knob_defaults if name != "grad_reduce_fp32" \
            else stack.grad_reduce_bytes >= 4.0
        if value is None:
            value = default
            if name == "tp_comm_overlap" and not sp:
                value = False
            if name == "fp8_param_gather" and (not fp8 or zero == 0 or zero == 2):
                value = False
        elif value != default and name not in stack.knobs:
            raise ConfigError(f"stack {stack.name} has no {name} option (it runs "
                              f"{name}={default}); use stack megatron-core or nemo")
        out[name] = value
    off = given.get("cpu_offload_layers")
    if off is not None:
        if isinstance(off, bool) or not isinstance(off, int) or off < 0:
            raise ConfigError(f"plan.cpu_offload_layers must be a whole number >= 0, got {off!r}")
        if off and "cpu_offload_layers" not in stack.knobs:
            raise ConfigError(f"stack {stack.name} has no activation offloading "
                              "(cpu_offload_layers); use stack megatron-core or nemo")
        out["cpu_offload_layers"] = off
    mods = recompute_modules(given.get("recompute_modules"))
    if mods != DEFAULT_RECOMPUTE and "recompute_modules" not in stack.knobs:
        raise ConfigError(f"stack {stack.name} has no recompute_modules option (Megatron-Core's); "
                          "use stack megatron-core or nemo")
    out["recompute_modules"] = mods
    stop = given.get("recompute_early_stop")
    if stop is not None and not isinstance(stop, bool):
        raise ConfigError(f"plan.recompute_early_stop must be true or false, got {stop!r}")
    default_stop = "recompute_early_stop" in stack.knob_defaults
    if stop is not None and stop != default_stop and "recompute_early_stop" not in stack.knobs:
        raise ConfigError(f"stack {stack.name} has no recompute_early_stop option (PyTorch's "
                          "non-reentrant checkpoint, PyTorch 2.1+); use stack fsdp")
    out["recompute_early_stop"] = default_stop if stop is None else stop
    obf = given.get("optimizer_bf16")
    if obf is not None and not isinstance(obf, bool):
        raise ConfigError(f"plan.optimizer_bf16 must be true or false, got {obf!r}")
    if obf and "optimizer_bf16" not in stack.knobs:
        raise ConfigError(f"stack {stack.name} has no bf16 optimizer state (optimizer_bf16: Apex's "
                          "distributed Adam dtype bf16, Megatron-Core's precision-aware optimizer); "
                          "use stack megatron-core or nemo")
    if obf and zero != 1:
        raise ConfigError(f"plan.optimizer_bf16 is the distributed optimizer's state dtype: it needs "
                          f"--zero 1 (the plan has zero {zero})")
    out["optimizer_bf16"] = bool(obf)
    for name in LAYOUT:  # wsim.gpu.mtp
        value = given.get(name)
        if value is None:
            continue
        least = 0 if name == "mtp_layers" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"plan.{name} must be a whole number >= {least}, got {value!r}")
        if value and name not in stack.knobs:
            flag = "--mtp-num-layers" if name == "mtp_layers" \
                else "--decoder-last-pipeline-num-layers"
            raise ConfigError(f"stack {stack.name} has no {name} (Megatron-Core's {flag}); use "
                              "stack megatron-core or nemo")
        out[name] = value
    k = Knobs(**out)
    if k.tp_comm_overlap and not sp:
        raise ConfigError("plan.tp_comm_overlap needs sequence parallelism (Megatron-LM: tensor "
                          "parallel communication/GEMM overlap only with sequence parallelism); "
                          "add --sequence-parallel")
    if k.fp8_param_gather and not fp8:
        raise ConfigError("plan.fp8_param_gather needs --precision fp8")
    if k.fp8_param_gather and zero not in (1, 3):
        raise ConfigError("plan.fp8_param_gather gathers parameters: it needs the distributed "
                          "optimizer (--zero 1) or --zero 3")
    if k.cpu_offload_layers and k.cuda_graphs:
        raise ConfigError("plan.cpu_offload_layers does not combine with cuda_graphs (Megatron-Core: "
                          "'CUDA graphs not supported with CPU offloading'); drop one")
    return k
