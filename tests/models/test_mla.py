"""Multi-head latent attention (DeepSeek-V3, ``ModelSpec.kv_lora_rank`` > 0): parameters against the
published counts, per-token FLOPs and stored activations against closed forms written here from the
config's numbers, the spec's one-line errors, and every other model untouched (kv_lora_rank 0)."""

import dataclasses

import pytest

from models import zoo
from models.spec import ModelSpec

DSV3 = zoo.get("deepseek-v3")
# deepseek-ai/DeepSeek-V3 config.json
H, A, RQ, RKV, NOPE, ROPE, DV, E, K, FE, V = 7168, 128, 1536, 512, 128, 64, 128, 256, 8, 2048, 129280
DQK = NOPE + ROPE


def test_mla_weights_are_transformers_deepseek_v3_attention():
    # q_a_proj, q_a_layernorm, q_b_proj, kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj
    mla = H * RQ + RQ + RQ * A * DQK + H * (RKV + ROPE) + RKV + RKV * A * (NOPE + DV) + A * DV * H
    assert mla == 187_107_328
    assert DSV3.attention_params == mla
    no_q_lora = dataclasses.replace(DSV3, q_lora_rank=0)
    assert no_q_lora.attention_params == H * A * DQK + H * (RKV + ROPE) + RKV + RKV * A * (NOPE + DV) + A * DV * H


def test_deepseek_v3_parameters_are_the_published_671b_and_37b():
    """arXiv 2412.19437, abstract: 671B total, 37B activated (its 14B MTP module not included).
    Closed form: embedding, untied head and final norm; 61 blocks of MLA and two RMSNorms; 3 dense
    SwiGLU MLPs of 18432; 58 sparse MLPs: router 256 x h, 256 experts of 2048, one shared expert.
    transformers' count (the router's e_score_correction_bias in, no shared-expert gate) is 671,026,419,200;
    the spec counts a 1 x h shared-expert gate and no bias: +6,912 a sparse block, stated in the zoo.
    Tolerance: 0.5B on the total (the report's rounding to 671B); the activated count within 2% (the
    report does not say which of the embedding and head, 0.93B each, its 37B counts; ours counts both)."""
    shared = 3 * H * FE
    per_block = 187_107_328 + 2 * H
    total = 2 * V * H + H + 61 * per_block + 3 * 3 * H * 18432 + 58 * (E * H + E * 3 * H * FE + shared)
    active = total - 58 * (E - K) * 3 * H * FE
    assert total + 58 * E == 671_026_419_200  # transformers' DeepseekV3ForCausalLM, MTP layer dropped
    assert DSV3.params == (total + 58 * E) + 58 * (H - E)  # transformers' count + the gate - the bias
    assert DSV3.active_params == active + 58 * H
    assert abs(DSV3.params - 671e9) < 0.5e9
    assert DSV3.active_params == pytest.approx(37e9, rel=0.02)


def test_mla_forward_flops_per_token_closed_form():
    """2 FLOPs a MAC, non-causal scores (models.per_layer's conventions): a sparse block's forward is
    2 (q_a + q_b + kv_a + kv_b + o) + 2 s a (d_qk + d_v) + 2 (router + k experts + shared + gate)."""
    s = 4096
    attn = 2 * (H * RQ + RQ * A * DQK + H * (RKV + ROPE) + RKV * A * (NOPE + DV) + A * DV * H)
    core = 2 * s * A * DQK + 2 * s * A * DV
    mlp = 2 * (H * E + K * 3 * H * FE + 3 * H * FE + H)
    layers = DSV3.layer_specs(s)
    assert layers[10].fwd_flops_per_token == attn + core + mlp
    assert layers[1].fwd_flops_per_token == attn + core + 2 * 3 * H * 18432
    names = [op.name for op in DSV3.block_matmuls(s, sparse=True)][:7]
    assert names == ["q_a", "q_b", "kv_a", "kv_b", "attn_scores", "attn_values", "attn_proj"]
    # the standard-attention stand-in the zoo had (128 heads of 51): the scores and values 3.1x fewer
    stand_in = 4 * s * A * 51
    assert core / stand_in == pytest.approx(3.137, abs=1e-3)


def test_mla_stored_activations_term_by_term():
    s = 4096
    act = DSV3.block_activations(s, sparse=True)
    # norm inputs 4h, norm outputs 4h; the latents: q_a out and its norm out, kv latent and its norm out
    assert act.replicated == 8 * H + 4 * RQ + 4 * RKV
    # Q and K (d_qk per head), V and the projection input (d_v per head); SwiGLU 6 f over k experts
    # and the shared one; the router's logits
    assert act.tensor_parallel == 4 * A * (DQK + DV) + 6 * (K * FE + FE) + 2 * E
    assert act.attention == 2 * A * s
    assert DSV3.kv_cache_bytes_per_token() == 61 * (RKV + ROPE) * 2


def test_rotary_and_latent_norms_in_the_elementwise_listing():
    ops = {op.name: op.elements_per_token for op in DSV3.block_elementwise(4096, sparse=True)}
    assert ops["rotary"] == ROPE * (A + 1)  # every query head, one shared key
    assert ops["latent_norm"] == RQ + RKV


def test_describe_names_mla():
    assert "MLA: q rank 1536, kv rank 512, q.k 128+64, v 128" in DSV3.describe()


@pytest.mark.parametrize("kw, field", [
    (dict(kv_lora_rank=-1), "kv_lora_rank"),
    (dict(q_lora_rank=1.5), "q_lora_rank"),
    (dict(kv_lora_rank=0), "need kv_lora_rank > 0"),
    (dict(v_head_dim=0), "v_head_dim"),
    (dict(qk_nope_head_dim=0), "qk_nope_head_dim"),
    (dict(qk_rope_head_dim=63), "qk_rope_head_dim must be even"),
    (dict(kv_heads=8), "kv_heads (8) must equal heads"),
    (dict(attention_bias=True), "attention_bias"),
    (dict(head_width=64), "head_width"),
    (dict(qk_norm=True), "qk_norm"),
])
def test_mla_fields_are_checked(kw, field):
    with pytest.raises(ValueError) as err:
        dataclasses.replace(DSV3, **kw)
    assert field in str(err.value) and "\n" not in str(err.value)


def test_rope_part_needs_rotary_positions():
    with pytest.raises(ValueError, match="qk_rope_head_dim 64 needs positional 'rotary'"):
        dataclasses.replace(DSV3, positional="learned")


def test_every_other_zoo_model_has_no_mla():
    others = [m for name, m in zoo.ZOO.items() if name != "deepseek-v3"]
    assert others and all(not m.mla and m.kv_lora_rank == 0 for m in others)
    m = ModelSpec(name="t", layers=2, hidden=64, heads=4)
    assert m.head_dim == 16 and m.attention_params == 4 * 64 * 64 + 4 * 64


# deepseek-ai/DeepSeek-V3 config.json, the fields models.deepseek_v3 reads (others omitted)
DSV3_CONFIG = {
    "model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 7168,
    "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
    "intermediate_size": 18432, "moe_intermediate_size": 2048, "n_routed_experts": 256,
    "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3, "moe_layer_freq": 1,
    "vocab_size": 129280, "max_position_embeddings": 163840, "tie_word_embeddings": False,
    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "v_head_dim": 128, "hidden_act": "silu", "attention_bias": False}


def test_deepseek_v3_config_json_reads_as_the_zoo_entry(tmp_path):
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps(DSV3_CONFIG))
    m = zoo.from_hf_config(path)
    assert m.name == "DeepseekV3ForCausalLM"
    assert dataclasses.replace(m, name=DSV3.name, source=DSV3.source) == DSV3
    small = zoo.from_hf_config(_write(tmp_path, dict(DSV3_CONFIG, q_lora_rank=None, num_hidden_layers=4,
                                                    first_k_dense_replace=1, moe_layer_freq=2)))
    assert small.q_lora_rank == 0 and small.moe_layers == (2,)


def _write(tmp_path, d):
    import json

    p = tmp_path / "c2.json"
    p.write_text(json.dumps(d))
    return p


def test_deepseek_v3_config_errors_name_the_field(tmp_path):
    bad = dict(DSV3_CONFIG)
    del bad["kv_lora_rank"]
    with pytest.raises(ValueError, match="lacks kv_lora_rank"):
        zoo.from_hf_config(_write(tmp_path, bad))
    with pytest.raises(ValueError, match="num_key_value_heads 8 must equal"):
        zoo.from_hf_config(_write(tmp_path, dict(DSV3_CONFIG, num_key_value_heads=8)))


def test_functional_mode_refuses_mla_in_one_line():
    from models.registry import config_from_spec

    with pytest.raises(ValueError) as err:
        config_from_spec(DSV3)
    assert "timing only" in str(err.value) and "\n" not in str(err.value)
