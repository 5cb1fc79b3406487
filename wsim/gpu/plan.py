"""How a training step is executed on GPUs: the parallel plan, and its checks against a model.

A ``Plan`` is Megatron-LM's PTD-P (Narayanan et al., SC21, arXiv 2104.04473) plus ZeRO/FSDP and
context parallelism: ``tp`` tensor-parallel ranks (within a node when tp <= 8), ``cp`` context-parallel
ranks (each holds 1/cp of every sequence; Megatron-Core), ``pp`` pipeline stages, ``dp`` data-parallel
replicas (gpus = tp * cp * pp * dp), ``micro_batch`` sequences per micro-batch, ``interleave`` model
chunks per stage (1 = plain 1F1B), ``recompute`` of activations (under "selective", the
``recompute_modules`` Megatron-Core reruns: ``wsim.gpu.recompute``), Megatron sequence parallelism, ZeRO
stage (1 under Megatron = its distributed optimizer), and the software ``stack`` that runs it
(``wsim.gpu.calibration.STACKS``). Rank order is tensor-fastest, then context, data, pipeline
(Megatron-Core's ``tp-cp-dp-pp``), which decides which groups share a node.

Mixtures of experts (Megatron-Core's "MoE parallel folding", megatron/core/parallel_state.py
``initialize_model_parallel``): the attention layers run on tp x cp x dp x pp as above, the expert
layers on ``etp`` x ``ep`` x edp x pp over the same GPUs, etp x ep x edp = tp x cp x dp, in the
rank order ``tp-ep-dp-pp`` (expert tensor ranks adjacent, then expert ranks, then expert data
ranks). ``ep`` (--expert-model-parallel-size) splits the experts, ``etp``
(--expert-tensor-parallel-size; None: tp, as Megatron's arguments.py sets it) splits each expert's
FFN, edp = tp x cp x dp / (ep x etp) reduces the expert gradients. ``moe_capacity_factor``
(--moe-expert-capacity-factor; None: dropless, Megatron's default) caps the tokens an expert takes;
``moe_imbalance`` (>= 1; 1 = uniform routing, a named assumption) is the busiest expert rank's load
over the mean, a measured property of a router that a user may give; ``moe_pad_to_capacity``
(--moe-pad-expert-input-to-capacity) runs every expert at its capacity with static shapes (no host
synchronisation). ``moe_ep_overlap``: the
dispatch all-to-alls hidden under another micro-batch's compute (Megatron-Core's
--overlap-moe-expert-parallel-comm; DeepSeek-V3's DualPipe). DeepSeek-V3's own dispatch (arXiv
2412.19437 sec. 3.2.2, 3.3; not Megatron-Core defaults): ``moe_max_nodes`` (node-limited routing:
a token's experts on at most that many nodes, each reached once over the network and forwarded
over NVLink) and ``moe_fp8_dispatch`` (the dispatch in FP8 with a scale per 1x128 tile, the
combine in BF16; needs FP8 precision). ``moe_dispatcher`` (--moe-token-dispatcher-type):
"alltoall" (Megatron-Core's default: NCCL all-to-alls around an explicit global permute) or "flex"
(DeepEP / HybridEP: a token sent once to each rank that holds its experts, the permute fused into
the communication, fewer router and preprocessing kernels). ``moe_router_graphs``: the router and
the dispatcher's preprocessing replayed from CUDA graphs (Transformer Engine's partial graphs,
--cuda-graph-scope moe_router moe_preprocess; with a dropless MoE the ``cuda_graphs`` option
captures the rest of the dense block, scope attn). Fixed plans only (``estimate``); the search
keeps the defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from models.spec import ModelSpec
from wsim.errors import ConfigError, positive
from wsim.gpu.calibration import STACKS
from wsim.gpu.flops import block_shape
from wsim.gpu.knobs import KNOBS, LAYOUT, Knobs, resolve
from wsim.gpu.recompute import check_for_model, normalise

RECOMPUTE = ("none", "selective", "full")
MOE_DISPATCHERS = ("alltoall", "flex")  # Megatron-Core --moe-token-dispatcher-type
ZERO_STAGES = (0, 1, 2, 3)


@dataclass(frozen=True)
class Plan:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    micro_batch: int = 1
    interleave: int = 1
    recompute: str = "full"
    sequence_parallel: bool = False
    zero: int = 0
    cp: int = 1
    stack: str = "megatron"
    # Megatron-Core / Transformer Engine options (wsim.gpu.knobs); None: the stack's default
    tp_comm_overlap: bool | None = None
    grad_reduce_fp32: bool | None = None
    fp8_param_gather: bool | None = None
    cuda_graphs: bool | None = None
    p2p_overlap: bool | None = None
    cpu_offload_layers: int | None = None  # None/0: no activation offloading (wsim.gpu.offload)
    # the modules recompute "selective" reruns (Megatron-Core --recompute-modules; wsim.gpu.recompute)
    recompute_modules: tuple = ("core_attn",)
    # PyTorch 2.1+ non-reentrant checkpoint's early stop under recompute "full" (wsim.gpu.knobs);
    # None: the stack's default
    recompute_early_stop: bool | None = None
    # the distributed optimizer's state in bf16 (wsim.gpu.knobs); None/False: fp32
    optimizer_bf16: bool | None = None
    # mixture of experts (module docstring)
    ep: int = 1
    etp: int | None = None
    moe_capacity_factor: float | None = None
    moe_imbalance: float = 1.0
    moe_ep_overlap: bool = False
    moe_max_nodes: int | None = None
    moe_fp8_dispatch: bool = False
    moe_pad_to_capacity: bool = False
    moe_dispatcher: str = "alltoall"
    moe_router_graphs: bool = False
    # multi-token prediction (Megatron-Core --mtp-num-layers; DeepSeek-V3's D) and the transformer
    # layers of the last pipeline stage (--decoder-last-pipeline-num-layers, or a
    # pipeline_model_parallel_layout's last stage; None: the even split): wsim.gpu.mtp. Fixed plans
    # only; the search keeps the defaults
    mtp_layers: int = 0
    last_stage_layers: int | None = None

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "micro_batch", "interleave", "cp", "ep"):
            positive(f"plan.{name}", getattr(self, name), integer=True)
        if self.etp is not None:
            positive("plan.etp", self.etp, integer=True)
        if isinstance(self.mtp_layers, bool) or not isinstance(self.mtp_layers, int) \
                or self.mtp_layers < 0:
            raise ConfigError(f"plan.mtp_layers must be a whole number >= 0 (multi-token-prediction "
                              f"modules), got {self.mtp_layers!r}")
        if self.last_stage_layers is not None:
            positive("plan.last_stage_layers", self.last_stage_layers, integer=True)
            if self.pp == 1:
                raise ConfigError("plan.last_stage_layers needs pipeline parallelism (pp > 1)")
        if self.moe_capacity_factor is not None:
            positive("plan.moe_capacity_factor", self.moe_capacity_factor)
        if isinstance(self.moe_imbalance, bool) or not isinstance(self.moe_imbalance, (int, float)) \
                or not 1.0 <= self.moe_imbalance < float("inf"):
            raise ConfigError(f"plan.moe_imbalance must be a number >= 1 (the busiest expert rank's "
                              f"tokens over the mean), got {self.moe_imbalance!r}")
        if not isinstance(self.moe_ep_overlap, bool):
            raise ConfigError(f"plan.moe_ep_overlap must be true or false, got {self.moe_ep_overlap!r}")
        if self.moe_max_nodes is not None:
            positive("plan.moe_max_nodes", self.moe_max_nodes, integer=True)
        if not isinstance(self.moe_pad_to_capacity, bool):
            raise ConfigError(f"plan.moe_pad_to_capacity must be true or false, got "
                              f"{self.moe_pad_to_capacity!r}")
        if self.moe_pad_to_capacity and self.moe_capacity_factor is None:
            raise ConfigError("plan.moe_pad_to_capacity needs moe_capacity_factor (Megatron-Core: "
                              "'moe_expert_capacity_factor must be set to use "
                              "moe_pad_expert_input_to_capacity')")
        if self.moe_dispatcher not in MOE_DISPATCHERS:
            raise ConfigError(f"plan.moe_dispatcher {self.moe_dispatcher!r} is not one of "
                              f"{', '.join(MOE_DISPATCHERS)}")
        if not isinstance(self.moe_router_graphs, bool):
            raise ConfigError(f"plan.moe_router_graphs must be true or false, got "
                              f"{self.moe_router_graphs!r}")
        if not isinstance(self.moe_fp8_dispatch, bool):
            raise ConfigError(f"plan.moe_fp8_dispatch must be true or false, got "
                              f"{self.moe_fp8_dispatch!r}")
        if self.recompute not in RECOMPUTE:
            raise ConfigError(f"plan.recompute {self.recompute!r} is not one of {', '.join(RECOMPUTE)}")
        if not isinstance(self.sequence_parallel, bool):
            raise ConfigError(f"plan.sequence_parallel must be true or false, got {self.sequence_parallel!r}")
        if self.zero not in ZERO_STAGES or isinstance(self.zero, bool):
            raise ConfigError(f"plan.zero {self.zero!r} is not one of 0, 1, 2, 3")
        if self.interleave > 1 and self.pp == 1:
            raise ConfigError(f"plan.interleave {self.interleave} needs pipeline parallelism (pp > 1); "
                              "use interleave 1 with pp 1")
        if self.zero >= 2 and self.pp > 1 and not (
                self.zero == 2 and self.stack in STACKS and STACKS[self.stack].zero2_pipeline):
            raise ConfigError(f"plan.zero {self.zero} does not combine with pipeline parallelism "
                              f"(pp {self.pp}): ZeRO-2/3 shard gradients that 1F1B accumulates across "
                              "micro-batches (DeepSpeed refuses it); use zero 0 or 1, or pp 1")
        if self.sequence_parallel and self.tp == 1:
            raise ConfigError("plan.sequence_parallel needs tensor parallelism (tp > 1)")
        if self.stack not in STACKS:
            raise ConfigError(f"plan.stack {self.stack!r} is not one of {', '.join(STACKS)}")
        st = STACKS[self.stack]
        if self.zero not in st.zero_stages:
            raise ConfigError(f"plan.zero {self.zero} is not run by stack {self.stack} (it runs ZeRO "
                              f"{', '.join(map(str, st.zero_stages))}); choose another --zero or --stack")
        if self.pp > 1 and not st.pipeline:
            raise ConfigError(f"stack {self.stack} has no pipeline parallelism (pp {self.pp}); "
                              "use pp 1 or stack megatron, megatron-core or deepspeed")
        if self.interleave > 1 and not st.interleave:
            raise ConfigError(f"stack {self.stack} has no interleaved schedule (interleave "
                              f"{self.interleave}); use interleave 1 or stack megatron/megatron-core")
        if self.cp > 1 and not st.context_parallel:
            raise ConfigError(f"stack {self.stack} has no context parallelism (cp {self.cp}); "
                              "use cp 1 or stack megatron-core")
        self.knobs(fp8=True)  # the knobs' own checks (precision is checked where it is known)

    def knobs(self, fp8: bool) -> Knobs:
        """The options this plan runs with under precision fp8 (True) or bf16."""
        return resolve(STACKS[self.stack], fp8=fp8, sp=self.sequence_parallel, zero=self.zero,
                       given={n: getattr(self, n) for n in KNOBS + LAYOUT})

    def with_knobs(self, k: Knobs) -> "Plan":
        """This plan with every option spelled out (what a report shows)."""
        return replace(self, **k._asdict())

    @property
    def expert_tp(self) -> int:
        """etp as Megatron resolves it: tp unless given."""
        return self.tp if self.etp is None else self.etp

    @property
    def gpus(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    def micro_batches(self, batch: int) -> int:
        return batch // (self.dp * self.micro_batch)

    def to_dict(self) -> dict:
        return asdict(self)


def check_plan(plan: Plan, model: ModelSpec, *, batch: int, gpus: int, seq: int = 2048) -> None:
    """Raise ConfigError naming the first way ``plan`` cannot run ``model`` with this batch and GPUs."""
    if plan.gpus != gpus:
        raise ConfigError(f"gpus {gpus} is not tp x cp x pp x dp = {plan.tp} x {plan.cp} x {plan.pp} "
                          f"x {plan.dp} = {plan.gpus}; choose tp, cp and pp whose product divides the "
                          "GPU count")
    if model.heads % plan.tp:
        raise ConfigError(f"tp {plan.tp} does not divide the model's {model.heads} attention heads; "
                          f"allowed tp: {', '.join(map(str, divisors(model.heads)))}")
    kv = block_shape(model).kv_heads
    if kv % plan.tp:
        raise ConfigError(f"tp {plan.tp} does not divide the model's {kv} key/value heads; "
                          f"allowed tp: {', '.join(map(str, divisors(kv)))}")
    if model.ffn % plan.tp:
        raise ConfigError(f"tp {plan.tp} does not divide the model's FFN width {model.ffn}")
    if model.layers % plan.pp and not STACKS[plan.stack].uneven_stages \
            and plan.last_stage_layers is None:
        raise ConfigError(f"pp {plan.pp} does not divide the model's {model.layers} layers; "
                          f"allowed pp: {', '.join(map(str, divisors(model.layers)))}")
    per_stage = -(-model.layers // plan.pp)
    if plan.last_stage_layers is not None:  # wsim.gpu.mtp: the other stages split the rest evenly
        rest = model.layers - plan.last_stage_layers
        if rest < plan.pp - 1:
            raise ConfigError(f"plan.last_stage_layers {plan.last_stage_layers} leaves {rest} of the "
                              f"model's {model.layers} layers for pp - 1 = {plan.pp - 1} stages: "
                              "every stage needs a layer")
        per_stage = -(-rest // (plan.pp - 1))  # the fullest of them (wsim.gpu.mtp.stage_split)
    if per_stage % plan.interleave:
        raise ConfigError(f"interleave {plan.interleave} does not divide the {per_stage} layers per "
                          f"pipeline stage; allowed: {', '.join(map(str, divisors(per_stage)))}")
    if plan.cp > 1 and seq % (2 * plan.cp):
        raise ConfigError(f"cp {plan.cp} needs the sequence ({seq}) to split into 2 x cp = "
                          f"{2 * plan.cp} equal chunks (Megatron-Core's load-balanced causal split)")
    if batch % plan.dp:
        raise ConfigError(f"batch {batch} is not divisible by dp {plan.dp} (= gpus / (tp x cp x pp))")
    local = batch // plan.dp
    if local % plan.micro_batch:
        raise ConfigError(f"micro_batch {plan.micro_batch} does not divide the {local} sequences per "
                          f"data-parallel replica; allowed: {', '.join(map(str, divisors(local)))}")
    m = local // plan.micro_batch
    check_offload(plan, model)
    check_experts(plan, model)
    if plan.recompute == "selective":  # Megatron-Core checks the modules under selective only
        check_for_model(normalise(plan.recompute_modules), bool(model.kv_lora_rank),
                        bool(model.experts))
    if plan.interleave > 1 and m % plan.pp:
        raise ConfigError(f"the interleaved schedule needs the number of micro-batches ({m}) to be a "
                          f"multiple of pp ({plan.pp}) (Megatron-LM); use interleave 1 or a smaller "
                          "micro_batch")


def check_offload(plan: Plan, model: ModelSpec) -> None:
    """Megatron-Core's activation-offloading rules (megatron/core/transformer/transformer_config.py
    @ d98e8a64, ``__post_init__``; ``wsim.gpu.offload``)."""
    n = plan.cpu_offload_layers or 0
    if not n:
        return
    if n >= model.layers:
        raise ConfigError(f"cpu_offload_layers {n} must be less than the model's {model.layers} "
                          "layers (Megatron-Core: 'CPU offloading can be done only for layers less "
                          "than num_layers')")
    if plan.pp > 1:
        raise ConfigError(f"cpu_offload_layers needs pp 1, got pp {plan.pp} (Megatron-Core: 'no "
                          "support for Pipeline parallelism with CPU offloading')")
    if plan.recompute != "none":
        raise ConfigError(f"cpu_offload_layers needs recompute none, got {plan.recompute!r} "
                          "(Megatron-Core: 'CPU offloading does not work when activation "
                          "recomputation is enabled')")
    if model.experts:
        raise ConfigError("cpu_offload_layers with a mixture of experts is not modelled; drop it")


def check_experts(plan: Plan, model: ModelSpec) -> None:
    """Megatron-Core's expert-parallel rules (megatron/training/arguments.py, parallel_state.py)."""
    experts = model.experts
    if not experts:
        if plan.ep > 1 or plan.etp is not None or plan.moe_capacity_factor is not None \
                or plan.moe_imbalance != 1.0 \
                or plan.moe_ep_overlap or plan.moe_max_nodes is not None or plan.moe_fp8_dispatch \
                or plan.moe_dispatcher != "alltoall" or plan.moe_router_graphs:
            raise ConfigError(f"model {model.name!r} has no experts: ep {plan.ep}, etp {plan.etp}, "
                              "moe_capacity_factor, moe_imbalance, moe_ep_overlap, moe_max_nodes, "
                              "moe_fp8_dispatch, moe_dispatcher and moe_router_graphs need a "
                              "mixture-of-experts model; drop them")
        return
    if not STACKS[plan.stack].expert_parallel:
        raise ConfigError(f"stack {plan.stack} does not run mixtures of experts on GPUs (modelled: "
                          "megatron-core, nemo); choose --stack megatron-core or nemo")
    if plan.zero >= 2:
        raise ConfigError(f"zero {plan.zero} with experts is not modelled (Megatron-FSDP of expert "
                          "weights); use zero 0 or 1")
    if experts % plan.ep:
        raise ConfigError(f"ep {plan.ep} does not divide the model's {experts} experts (Megatron: "
                          f"'Number of experts should be a multiple of expert model parallel_size'); "
                          f"allowed ep: {', '.join(map(str, divisors(experts)))}")
    etp = plan.expert_tp
    if model.expert_ffn % etp:
        raise ConfigError(f"etp {etp} does not divide the experts' FFN width {model.expert_ffn}")
    dense = plan.tp * plan.cp * plan.dp
    if dense % (plan.ep * etp):
        raise ConfigError(f"etp x ep = {etp} x {plan.ep} does not divide tp x cp x dp = {dense} "
                          "(MoE parallel folding: etp x ep x edp = tp x cp x dp)")
    if plan.tp > 1 and not plan.sequence_parallel:
        raise ConfigError("a mixture of experts with tp > 1 needs sequence_parallel (Megatron-Core "
                          "MoE README: 'when using MoE with expert parallelism and tensor "
                          "parallelism, sequence parallelism must be enabled')")


def divisors(n: int) -> list[int]:
    small, large = [], []
    i = 1
    while i * i <= n:
        if n % i == 0:
            small.append(i)
            if i * i != n:
                large.append(n // i)
        i += 1
    return small + large[::-1]
