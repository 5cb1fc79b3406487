"""Megatron-Core's selective recompute modules (``--recompute-granularity selective
--recompute-modules ...``), in time and in memory.

Megatron-Core (github.com/NVIDIA/Megatron-LM megatron/core/transformer/transformer_config.py @
d98e8a64, ``recompute_modules`` and ``__post_init__``) lets a selective recompute name the modules
it reruns; the default is ``["core_attn"]``, Korthikanti et al.'s selective recompute (what wsim's
``recompute="selective"`` always was). The plan's ``recompute_modules`` (a tuple, default
``("core_attn",)``) means something only with ``recompute="selective"``, as in Megatron-Core.

Modelled:

- ``core_attn`` (megatron/core/transformer/attention.py: ``checkpoint_core_attention``, normal
  checkpointing of the core attention, Transformer Engine's DotProductAttention with its context-
  parallel ring): memory, the attention-scores term of ``memory.act_bytes_per_token_layer`` (none
  under FlashAttention); time, the core's forward again (``step._layer``), its ring under context
  parallelism.
- ``mla_up_proj`` (megatron/core/transformer/multi_latent_attention.py @ d98e8a64, lines 983-988:
  ``CheckpointWithoutOutput`` around ``qkv_up_proj_and_rope_apply(q_compressed, kv_compressed,
  k_pos_emb, rotary_pos_emb)``, its output discarded once the core attention has run, line 457):
  the latents stay stored (the checkpoint's inputs), the query, key and value the core attention
  saved are freed: 2 bytes x a (d_qk + d_qk + d_v) per token, split by tensor parallelism (the
  Q, K and V part of ``models.per_layer.block_activations``' MLA term 4 a (d_qk + d_v), which also
  holds the output projection's input 2 a d_v, kept); and the latent norms' outputs, 2 (r_q +
  r_kv) bytes (replicated part, split by sequence parallelism): in the Transformer Engine spec
  the q_a / kv_a norms are fused into the up projections (gpt_layer_specs.py: linear_q_up_proj
  and linear_kv_up_proj ``column_parallel_layer_norm_linear`` when qk_layernorm, q_layernorm and
  kv_layernorm ``IdentityOp``), so their outputs are saved inside the checkpointed function.
  Time: the up projections' GEMMs (q_b, or q without a query rank, and kv_b:
  ``BlockShape.mla_linear``'s column-parallel entries, at the GEMM efficiency of
  ``Consts._mla_times``), the rotary embedding's and the latent norms' element-wise work, taken as
  ``Efficiency.elementwise_passes`` x the freed bytes of HBM traffic (the rule
  ``Consts.elementwise_times`` applies to every stored activation), and under sequence parallelism
  the column-parallel linears' all-gather of the normed latents (``mla_up_proj_gather_s``).
  Megatron-Core refuses it
  without multi-latent attention ("mla_up_proj in recompute_modules is only supported with
  multi_latent_attention"): so does ``check_for_model``.

- ``layernorm`` (megatron/core/transformer/transformer_layer.py @ d98e8a64, lines 475-536:
  ``CheckpointWithoutOutput`` of ``input_layernorm`` and ``pre_mlp_layernorm``, each only where
  it is a module of its own, not Transformer Engine's ``IdentityOp`` fused into the next linear):
  in Megatron-Core's Transformer Engine layer spec (megatron/core/models/gpt/gpt_layer_specs.py @
  d98e8a64, get_gpt_layer_with_transformer_engine_submodules) the input norm is its own module
  under multi-latent attention (its output feeds q_a and kv_a) and fused into the QKV linear
  otherwise; the pre-MLP norm is its own module in a mixture of experts' sparse blocks (router,
  shared expert and dispatch read it) and fused into FC1 otherwise. Memory: each such norm's
  output, as ``models.per_layer.block_activations`` counts it in the replicated part (2h bytes;
  h under FP8, Transformer Engine's quantized copy, ``consts.Consts``). Time: its forward again,
  ``Efficiency.elementwise_passes`` x 2h bytes of HBM traffic a token (the element-wise rule).
  A dense model without MLA has no unfused norm: accepted, nothing recomputed (as Megatron-Core).
- ``moe_act`` (megatron/core/transformer/moe/experts.py @ d98e8a64, lines 270-276:
  ``activation_recompute``, the routed experts' activation function under
  ``CheckpointWithoutOutput``): its output, the routed experts' FC2 input, k x expert_ffn values a
  token (2 bytes; 1 under FP8, as ``moe.MoeConsts.act_par_delta`` counts it), is freed; time, the
  activation again (element-wise rule on those bytes). Megatron-Core refuses it without grouped
  expert GEMMs ("moe_act in recompute_modules is only supported with moe_grouped_gemm"): a dense
  model, which has none, is refused (``check_for_model``); wsim's experts are grouped GEMMs.
- ``mlp`` (transformer_layer.py @ d98e8a64, lines 537-539 and 992: ``recompute_mlp`` only where
  the layer is not a mixture-of-experts layer; normal checkpointing of the MLP module, its input
  kept): in the Transformer Engine spec the dense MLP's FC1 is a LayerNormLinear (the pre-MLP norm
  fused in, ``IdentityOp`` before it), so the checkpoint keeps the norm's input (the residual,
  stored anyway) and frees the norm's output (replicated part, ``norm_bytes``) and the MLP's inner
  activations, (6 f gated, 4 f plain) x 16-bit less the FC2 input's byte under FP8 (as
  ``consts.Consts`` counts them, tensor-parallel part). Time: the MLP forward again, its GEMMs
  (``moe.dense_mlp_s``), element-wise traffic on its 16-bit activations and the norm, and its
  tensor-parallel collective (the all-reduce, or all-gather + reduce-scatter, of a block's
  forward beyond the attention's: ``ar_fwd - 1``). A mixture of experts' sparse blocks recompute
  nothing for it (``moe.block_delta`` and ``moe.stored_bytes_per_token`` take it back); its dense
  blocks do.
- ``moe`` and ``shared_experts`` on a model without experts (or without shared experts): Megatron-
  Core builds no MoE layer, so nothing is recomputed; wsim accepts them there and refuses them on
  a mixture of experts (not modelled).

Megatron-Core also refuses ``moe_act`` and ``layernorm`` with FP8 delayed scaling; wsim's FP8 is
per-tensor current scaling (the recipes of its rows), so it does not check that.

Not modelled (refused with a one-line error naming them): ``moe``, ``shared_experts`` on a
mixture of experts (and Megatron-Core's ``gdn_norm_out``, ``gdp_in_proj``, ``gdp_qkv``, ``mhc``,
for architectures wsim has no model of). Unknown names are refused as Megatron-Core refuses them
("Invalid choices for recompute_modules").
"""

from __future__ import annotations

from wsim.errors import ConfigError

# megatron/core/transformer/transformer_config.py @ d98e8a64, __post_init__ ``allowed_modules``
MEGATRON_MODULES = ("core_attn", "moe_act", "layernorm", "mla_up_proj", "mlp", "moe",
                    "shared_experts", "gdn_norm_out", "gdp_in_proj", "gdp_qkv", "mhc")
MODELLED = ("core_attn", "moe_act", "layernorm", "mla_up_proj", "mlp", "moe", "shared_experts")
DEFAULT = ("core_attn",)  # Megatron-Core's default (transformer_config.py: ["core_attn"])


def normalise(value) -> tuple[str, ...]:
    """The plan's ``recompute_modules`` as a tuple in ``MEGATRON_MODULES`` order, without repeats
    (None: the default). Raises ConfigError naming unknown or unmodelled names."""
    if value is None:
        return DEFAULT
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"plan.recompute_modules must be a list of module names, got {value!r}")
    names = [v.strip() for v in value]
    unknown = sorted(set(names) - set(MEGATRON_MODULES))
    if unknown:
        raise ConfigError(f"plan.recompute_modules: unknown module(s) {', '.join(unknown)}; "
                          f"Megatron-Core's are {', '.join(MEGATRON_MODULES)}")
    missing = sorted(set(names) - set(MODELLED))
    if missing:
        raise ConfigError(f"plan.recompute_modules: {', '.join(missing)} not modelled by wsim "
                          f"(modelled: {', '.join(MODELLED)})")
    return tuple(m for m in MEGATRON_MODULES if m in names)


def check_for_model(modules: tuple[str, ...], mla: bool, experts: bool) -> None:
    """Megatron-Core's refusals that depend on the model (transformer_config.py @ d98e8a64), and
    wsim's own for what it does not model."""
    if "mla_up_proj" in modules and not mla:
        raise ConfigError("plan.recompute_modules: mla_up_proj needs multi-latent attention "
                          "(Megatron-Core: 'mla_up_proj in recompute_modules is only supported "
                          "with multi_latent_attention')")
    if "moe_act" in modules and not experts:
        raise ConfigError("plan.recompute_modules: moe_act needs a mixture of experts with grouped "
                          "expert GEMMs (Megatron-Core: 'moe_act in recompute_modules is only "
                          "supported with moe_grouped_gemm')")
    unmodelled = [m for m in ("moe", "shared_experts") if m in modules and experts]
    if unmodelled:
        raise ConfigError(f"plan.recompute_modules: {', '.join(unmodelled)} on a mixture of experts "
                          "not modelled by wsim; drop it")


def norm_bytes(c) -> float:
    """Bytes per token one norm's output is stored in (``consts.Consts``' accounting): 16-bit, or
    Transformer Engine's FP8 copy."""
    return (1.0 if c.fp8 else 2.0) * c.h


def norm_fwd_s(c, T: float, div: int) -> float:
    """Seconds to rerun one norm for ``T`` tokens split ``div`` ways (sequence parallelism)."""
    return c.eff.elementwise_passes * T * 2.0 * c.h / div / c.gpu.hbm_bytes_per_s


def moe_act_bytes(c) -> float:
    """Bytes per token of the routed experts' activation output (their FC2 input)."""
    return (1.0 if c.fp8 else 2.0) * c.moe.top_k * c.moe.expert_ffn


def moe_act_fwd_s(c, T: float, tp: int) -> float:
    """Seconds to rerun the routed experts' activation (element-wise rule, 16-bit output)."""
    return c.eff.elementwise_passes * T * 2.0 * c.moe.top_k * c.moe.expert_ffn / tp \
        / c.gpu.hbm_bytes_per_s


def mla_up_proj_bytes_per_token(c) -> float:
    """Bytes per token per block (before the tensor-parallel split) that ``mla_up_proj`` frees: the
    16-bit query (a d_qk), key (a d_qk) and value (a d_v) the core attention saved."""
    sh = c.shape
    return 2.0 * sh.heads * (2.0 * sh.head_dim + sh.v_head)


def mla_latent_norm_bytes(c) -> float:
    """Bytes per token (before the sequence-parallel split) of the q_a and kv_a norms' 16-bit
    outputs, which ``mla_up_proj`` frees with the up projections they are fused into."""
    return 2.0 * (c.shape.q_lora + c.shape.kv_lora)


def mla_up_proj_fwd_s(c, T: float, tp: int, sp: bool) -> float:
    """Seconds per micro-batch (``T`` tokens on this GPU) to rerun the up projections, the latent
    norms and the rotary embedding but for the gather: the column-parallel GEMMs of
    ``BlockShape.mla_linear`` at the efficiency ``Consts._mla_times`` gives them, plus element-wise
    traffic of the recomputed Q, K, V and normed latents."""
    e = c.eff.gemm_efficiency
    gemm = sum(2.0 * T * k * n / tp / e(T, n / tp, k)
               for _, k, n, split in c.shape.mla_linear if split == "column") / c.peak
    hbm = c.gpu.hbm_bytes_per_s
    ew = c.eff.elementwise_passes * T * (mla_up_proj_bytes_per_token(c) / tp
                                         + mla_latent_norm_bytes(c) / (tp if sp else 1)) / hbm
    return gemm + ew


def mla_up_proj_gather_s(c, T: float, tp: int, sp: bool) -> float:
    """The sequence-parallel all-gather of the normed latents the rerun up projections read (16-bit,
    ``T`` tokens gathered over the tensor-parallel group); none without sequence parallelism."""
    if tp == 1 or not sp:
        return 0.0
    return c.group(tp, 1).all_gather_s(T * mla_latent_norm_bytes(c))


def mlp_bytes(c, tp: int, sp: bool) -> float:
    """Bytes per token per dense block that ``mlp`` frees on one GPU: the fused pre-MLP norm's
    output (replicated, split by sequence parallelism) and the MLP's inner activations."""
    inner = 2.0 * (c.mlp_in + c.f) - (c.f if c.fp8 else 0.0)
    return norm_bytes(c) / (tp if sp else 1) + inner / tp


def mlp_fwd_s(c, T: float, tp: int, sp: bool, gemm_s: float) -> float:
    """Seconds to rerun a dense MLP's forward but for its collective: its GEMMs ``gemm_s`` and
    the element-wise rule on its 16-bit inner activations and its norm."""
    ew = c.eff.elementwise_passes * T * 2.0 * (c.mlp_in + c.f) / tp / c.gpu.hbm_bytes_per_s
    return gemm_s + ew + norm_fwd_s(c, T, tp if sp else 1)



def effective_modules(mla: bool, experts: bool, dense_blocks: bool) -> tuple[str, ...]:
    """The modules whose selective recompute changes something on this model (``MEGATRON_MODULES``
    order): ``core_attn`` always; ``mla_up_proj`` under multi-latent attention; ``layernorm`` where
    a norm is a module of its own (the input norm under MLA, the pre-MLP norm of a sparse block);
    ``moe_act`` with experts; ``mlp`` where the model has dense MLP blocks. The others are accepted
    by Megatron-Core and recompute nothing here, or are refused (``check_for_model``)."""
    on = {"core_attn": True, "mla_up_proj": mla, "layernorm": mla or experts, "moe_act": experts,
          "mlp": dense_blocks}
    return tuple(m for m in MEGATRON_MODULES if on.get(m, False))

