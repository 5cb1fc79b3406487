"""What ``models.spec.ModelSpec`` accepts: the checks its ``__post_init__`` runs (``check_spec``), the
mixture-of-experts fields' among them (``check_moe``), and the values its choice fields take.

Like the rest of ``models`` this never imports ``wsim`` (rule of the house): it raises plain
``ValueError`` naming the field; ``wsim`` wraps it in its ``ConfigError``. The checks fill in the
fields whose 0 or None means a default (ffn, kv_heads, moe_layers) through ``object.__setattr__``,
as a frozen dataclass's ``__post_init__`` must.
"""

from __future__ import annotations


ACTIVATIONS = ("gelu", "gelu_new", "gelu_fast", "relu", "silu")
POSITIONALS = ("learned", "rotary")
NORMS = ("layernorm", "rmsnorm")
# Hugging Face model_type of the functional model that computes each shape (models/registry.py)
FAMILIES = ("gpt2", "llama", "gptj", "gpt_neox", "mixtral", "qwen2_moe", "qwen3_moe")


# A bound on the work a spec asks for, not a property of any real model: per-layer specs and
# schedules are lists with an entry per layer, so 10^5 layers already make 2 x 10^5 passes per
# simulated step (seconds), and 3 x 10^7 layers exhausted memory before this bound.
MAX_LAYERS = 100_000


def check_spec(m) -> None:
    """Check a ``ModelSpec`` ``m`` just built, and fill in its defaulted fields."""
    for name in ("layers", "hidden", "heads", "vocab", "positions"):
        value = getattr(m, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"model {name} must be a positive integer, got {value!r}")
    if m.layers > MAX_LAYERS:
        raise ValueError(f"model layers {m.layers} exceeds {MAX_LAYERS:,}: the simulator keeps "
                         f"one LayerSpec per layer (the largest model in the zoo has 128)")
    if not isinstance(m.ffn, int) or isinstance(m.ffn, bool) or m.ffn < 0:
        raise ValueError(f"model ffn must be a positive integer (or 0 for 4*hidden), got {m.ffn!r}")
    if m.ffn == 0:
        object.__setattr__(m, "ffn", 4 * m.hidden)
    if m.hidden % m.heads:
        raise ValueError(
            f"model hidden ({m.hidden}) must be divisible by heads ({m.heads})"
        )
    for name, allowed in (("activation", ACTIVATIONS), ("positional", POSITIONALS), ("norm", NORMS),
                          ("family", FAMILIES)):
        if getattr(m, name) not in allowed:
            raise ValueError(f"model {name} {getattr(m, name)!r} is not one of {allowed}")
    for name in ("tied_embeddings", "dropout", "gated_mlp", "parallel_residual", "attention_bias",
                 "mlp_bias", "head_bias"):
        if not isinstance(getattr(m, name), bool):
            raise ValueError(f"model {name} must be a bool, got {getattr(m, name)!r}")
    # specs written before these fields existed carried them in ``extra`` (wsim.gpu's adapter
    # reads either): take them from there when the field was not given
    legacy = m.extra if isinstance(m.extra, dict) else {}
    if m.kv_heads == 0 and legacy.get("kv_heads") is not None:
        object.__setattr__(m, "kv_heads", legacy["kv_heads"])
    if not m.gated_mlp and (legacy.get("gated_mlp") is True or
                            str(legacy.get("mlp", "")).lower() in ("swiglu", "geglu", "gated")):
        object.__setattr__(m, "gated_mlp", True)
    kv = m.kv_heads
    if not isinstance(kv, int) or isinstance(kv, bool) or kv < 0:
        raise ValueError(f"model kv_heads must be a positive integer (or 0 for heads), got {kv!r}")
    if kv == 0:
        object.__setattr__(m, "kv_heads", m.heads)
    elif m.heads % kv:
        raise ValueError(f"model kv_heads ({kv}) must divide heads ({m.heads}): in grouped-query "
                         f"attention each key/value head serves heads/kv_heads query heads")
    if m.block_norms not in (1, 2) or isinstance(m.block_norms, bool):
        raise ValueError(f"model block_norms must be 1 or 2, got {m.block_norms!r}")
    if m.block_norms == 1 and not m.parallel_residual:
        raise ValueError("model block_norms 1 (one norm shared by attention and MLP) needs "
                         "parallel_residual: a sequential block normalises the MLP's own input")
    check_moe(m)
    check_mla(m)
    hw = m.head_width
    if not isinstance(hw, int) or isinstance(hw, bool) or hw < 0:
        raise ValueError(f"model head_width must be a positive integer (or 0 for hidden/heads), got {hw!r}")
    f = m.rotary_fraction
    # 0 rotates nothing (GPT-NeoX with int(head_dim x rotary_pct) = 0 runs so in transformers)
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 1:
        raise ValueError(f"model rotary_fraction must be in [0, 1], got {f!r}")
    if m.positional == "rotary" and m.rotary_dims % 2:
        raise ValueError(f"model rotary_fraction {f!r} of head_dim {m.head_dim} gives "
                         f"{m.rotary_dims} rotary dimensions; rotary rotates pairs: need an even number")


def check_moe(m) -> None:
    """The mixture-of-experts fields: all 0 without experts, else a valid top-k, expert width and
    list of sparse blocks (None: every block), kept sorted and unique."""
    for name in ("experts", "experts_per_token", "expert_ffn", "shared_expert_ffn"):
        v = getattr(m, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"model {name} must be an integer >= 0, got {v!r}")
    for name in ("attention_out_bias", "qk_norm"):
        if not isinstance(getattr(m, name), bool):
            raise ValueError(f"model {name} must be a bool, got {getattr(m, name)!r}")
    if not m.experts:
        if m.experts_per_token or m.expert_ffn or m.shared_expert_ffn or m.moe_layers:
            raise ValueError("model experts_per_token, expert_ffn, shared_expert_ffn and moe_layers "
                             "need experts > 0")
        object.__setattr__(m, "moe_layers", ())
        return
    if not 0 < m.experts_per_token <= m.experts:
        raise ValueError(f"model experts_per_token must be in 1..experts ({m.experts}), "
                         f"got {m.experts_per_token!r}")
    if m.expert_ffn <= 0:
        raise ValueError(f"model expert_ffn must be a positive integer, got {m.expert_ffn!r}")
    layers = tuple(range(m.layers)) if m.moe_layers is None else m.moe_layers
    if not isinstance(layers, (tuple, list)) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < m.layers for i in layers):
        raise ValueError(f"model moe_layers must list block indices below {m.layers}, got {layers!r}")
    object.__setattr__(m, "moe_layers", tuple(sorted(set(layers))))


MLA_FIELDS = ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")


def check_mla(m) -> None:
    """Multi-head latent attention's fields: all 0 without it (kv_lora_rank 0), else positive
    widths (q_lora_rank 0: queries not compressed; qk_rope_head_dim 0: no rotary part), with
    multi-head attention, no attention biases, no head_width and no qk_norm, as DeepSeek-V3 has it."""
    for name in MLA_FIELDS:
        v = getattr(m, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"model {name} must be an integer >= 0, got {v!r}")
    if not m.kv_lora_rank:
        if m.q_lora_rank or m.qk_nope_head_dim or m.qk_rope_head_dim or m.v_head_dim:
            raise ValueError("model q_lora_rank, qk_nope_head_dim, qk_rope_head_dim and v_head_dim "
                             "need kv_lora_rank > 0 (multi-head latent attention)")
        return
    for name in ("qk_nope_head_dim", "v_head_dim"):
        if getattr(m, name) <= 0:
            raise ValueError(f"model {name} must be a positive integer with kv_lora_rank > 0, "
                             f"got {getattr(m, name)!r}")
    if m.qk_rope_head_dim % 2:
        raise ValueError(f"model qk_rope_head_dim must be even (rotary rotates pairs), "
                         f"got {m.qk_rope_head_dim!r}")
    if m.qk_rope_head_dim and m.positional != "rotary":
        raise ValueError(f"model qk_rope_head_dim {m.qk_rope_head_dim} needs positional 'rotary'")
    if m.kv_heads != m.heads:
        raise ValueError(f"model kv_heads ({m.kv_heads}) must equal heads ({m.heads}) with "
                         f"kv_lora_rank > 0: every head lifts its own keys and values from the latent")
    for name in ("attention_bias", "qk_norm"):
        if getattr(m, name):
            raise ValueError(f"model {name} must be False with kv_lora_rank > 0 (not modelled for MLA)")
    if m.head_width:
        raise ValueError(f"model head_width must be 0 with kv_lora_rank > 0 (qk_nope_head_dim + "
                         f"qk_rope_head_dim is the q.k width, v_head_dim the value width), got {m.head_width!r}")
