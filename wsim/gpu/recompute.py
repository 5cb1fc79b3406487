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
  holds the output projection's input 2 a d_v, kept). Time: the up projections' GEMMs (q_b, or q
  without a query rank, and kv_b: ``BlockShape.mla_linear``'s column-parallel entries, at the GEMM
  efficiency of ``Consts._mla_times``) and the rotary embedding's element-wise work, taken as
  ``Efficiency.elementwise_passes`` x the freed bytes of HBM traffic (the rule
  ``Consts.elementwise_times`` applies to every stored activation). Megatron-Core refuses it
  without multi-latent attention ("mla_up_proj in recompute_modules is only supported with
  multi_latent_attention"): so does ``check_for_model``.

Not modelled (refused with a one-line error naming them): ``moe_act``, ``layernorm``, ``mlp``,
``moe``, ``shared_experts`` (and Megatron-Core's ``gdn_norm_out``, ``gdp_in_proj``, ``gdp_qkv``,
``mhc``, for architectures wsim has no model of). Unknown names are refused as Megatron-Core
refuses them ("Invalid choices for recompute_modules").
"""

from __future__ import annotations

from wsim.errors import ConfigError

# megatron/core/transformer/transformer_config.py @ d98e8a64, __post_init__ ``allowed_modules``
MEGATRON_MODULES = ("core_attn", "moe_act", "layernorm", "mla_up_proj", "mlp", "moe",
                    "shared_experts", "gdn_norm_out", "gdp_in_proj", "gdp_qkv", "mhc")
MODELLED = ("core_attn", "mla_up_proj")
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


def check_for_model(modules: tuple[str, ...], mla: bool) -> None:
    """Megatron-Core's refusals that depend on the model (transformer_config.py @ d98e8a64)."""
    if "mla_up_proj" in modules and not mla:
        raise ConfigError("plan.recompute_modules: mla_up_proj needs multi-latent attention "
                          "(Megatron-Core: 'mla_up_proj in recompute_modules is only supported "
                          "with multi_latent_attention')")


def mla_up_proj_bytes_per_token(c) -> float:
    """Bytes per token per block (before the tensor-parallel split) that ``mla_up_proj`` frees: the
    16-bit query (a d_qk), key (a d_qk) and value (a d_v) the core attention saved."""
    sh = c.shape
    return 2.0 * sh.heads * (2.0 * sh.head_dim + sh.v_head)


def mla_up_proj_fwd_s(c, T: float, tp: int) -> float:
    """Seconds per micro-batch (``T`` tokens on this GPU) to rerun the up projections and the
    rotary embedding: the column-parallel GEMMs of ``BlockShape.mla_linear`` at the efficiency
    ``Consts._mla_times`` gives them, plus element-wise traffic of the recomputed Q, K, V."""
    e = c.eff.gemm_efficiency
    gemm = sum(2.0 * T * k * n / tp / e(T, n / tp, k)
               for _, k, n, split in c.shape.mla_linear if split == "column") / c.peak
    ew = c.eff.elementwise_passes * T * mla_up_proj_bytes_per_token(c) / tp / c.gpu.hbm_bytes_per_s
    return gemm + ew
