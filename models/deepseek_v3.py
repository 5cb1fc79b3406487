"""DeepSeek-V3's ``config.json`` (``model_type`` ``deepseek_v3``) read into a ``ModelSpec`` for timing
(``wsim simulate``, ``wsim gpu``): multi-head latent attention and the mixture of experts with a
shared expert. The functional mode does not run it (``models.registry.config_from_spec`` refuses a
spec with ``kv_lora_rank`` > 0 in one line).

Fields as transformers' ``DeepseekV3Config`` names them (transformers
src/transformers/models/deepseek_v3/configuration_deepseek_v3.py; the values of deepseek-ai/DeepSeek-V3's
config.json in ``models/zoo.py``): sparse blocks are those at index >= first_k_dense_replace with
index % moe_layer_freq == 0; the shared experts are n_shared_experts x moe_intermediate_size wide.
The router's e_score_correction_bias and its grouped top-k (n_group, topk_group) are not modelled:
the spec's router is Qwen2-MoE's (h x E) with a 1 x h shared-expert gate (models/zoo.py says what this
changes: +6,912 parameters a sparse block).
"""

from __future__ import annotations

from models.spec import ModelSpec

MODEL_TYPE = "deepseek_v3"

_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "moe_intermediate_size", "n_routed_experts", "num_experts_per_tok", "vocab_size",
             "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")


def spec_from_hf_dict(d: dict, name: str, source: str = "") -> ModelSpec:
    """The timing ``ModelSpec`` of a DeepSeek-V3 config.json dict; ValueError names a missing or bad field."""
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ValueError(f"deepseek_v3 config lacks {', '.join(missing)}")
    for k in ("hidden_act",):
        if d.get(k, "silu") != "silu":
            raise ValueError(f"deepseek_v3 config {k} {d[k]!r} is not modelled (silu only)")
    heads = d["num_attention_heads"]
    if d.get("num_key_value_heads", heads) != heads:
        raise ValueError(f"deepseek_v3 config num_key_value_heads {d['num_key_value_heads']!r} must equal "
                         f"num_attention_heads {heads} (MLA lifts every head's keys from the latent)")
    layers = d["num_hidden_layers"]
    first, freq = d.get("first_k_dense_replace", 0), d.get("moe_layer_freq", 1)
    if not isinstance(first, int) or not isinstance(freq, int) or first < 0 or freq <= 0:
        raise ValueError(f"deepseek_v3 config first_k_dense_replace {first!r} / moe_layer_freq {freq!r} "
                         f"must be integers >= 0 / > 0")
    shared = d.get("n_shared_experts") or 0
    return ModelSpec(
        name=name, layers=layers, hidden=d["hidden_size"], heads=heads, ffn=d["intermediate_size"],
        vocab=d["vocab_size"], positions=d.get("max_position_embeddings", 4096),
        tied_embeddings=bool(d.get("tie_word_embeddings", False)), activation="silu", gated_mlp=True,
        norm="rmsnorm", positional="rotary", attention_bias=bool(d.get("attention_bias", False)),
        mlp_bias=False, family="qwen2_moe", source=source or "Hugging Face deepseek_v3 config.json",
        experts=d["n_routed_experts"], experts_per_token=d["num_experts_per_tok"],
        expert_ffn=d["moe_intermediate_size"], shared_expert_ffn=shared * d["moe_intermediate_size"],
        moe_layers=tuple(i for i in range(layers) if i >= first and i % freq == 0),
        q_lora_rank=d.get("q_lora_rank") or 0, kv_lora_rank=d["kv_lora_rank"],
        qk_nope_head_dim=d["qk_nope_head_dim"], qk_rope_head_dim=d["qk_rope_head_dim"],
        v_head_dim=d["v_head_dim"])
