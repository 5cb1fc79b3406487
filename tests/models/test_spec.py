"""Model specs against published numbers and closed forms."""

import json

import pytest

from models import zoo
from models.spec import ModelSpec


def test_cerebras_gpt_rows_are_facts_table():
    rows = {  # docs/sources.md: layers, d_model, heads, d_ffn
        "111m": (10, 768, 12, 3072), "256m": (14, 1088, 17, 4352), "590m": (18, 1536, 12, 6144),
        "1.3b": (24, 2048, 16, 8192), "2.7b": (32, 2560, 32, 10240), "6.7b": (32, 4096, 32, 16384),
        "13b": (40, 5120, 40, 20480),
    }
    for tag, (layers, hidden, heads, ffn) in rows.items():
        m = zoo.get(f"cerebras-gpt-{tag}")
        assert (m.layers, m.hidden, m.heads, m.ffn, m.vocab, m.tied_embeddings) == (
            layers, hidden, heads, ffn, 50257, True)


@pytest.mark.parametrize("tag,named", [("111m", 111e6), ("256m", 256e6), ("590m", 590e6), ("1.3b", 1.3e9),
                                       ("2.7b", 2.7e9), ("6.7b", 6.7e9), ("13b", 13e9)])
def test_cerebras_gpt_parameter_counts_round_to_their_names(tag, named):
    """The names are the counts rounded to two significant figures (Dey et al. 2023, Table 1):
    1.3B is 1.316e9, 2.7B is 2.652e9, 13B is 12.85e9. Within 2% of the name, and equal to it
    at the name's precision."""
    params = zoo.get(f"cerebras-gpt-{tag}").params
    assert params == pytest.approx(named, rel=0.02)
    digits = len(tag[:-1].replace(".", "").rstrip("0"))  # "590m" -> 2, "111m" -> 3
    assert float(f"{params:.{digits}g}") == pytest.approx(named)


def test_megatron_table_counts():
    """Megatron-LM SC21 Table 1 parameter column (billions) from our per-layer counts."""
    published = {"39.1b": 39.1, "76.1b": 76.1, "145.6b": 145.6, "310.1b": 310.1, "529.6b": 529.6,
                 "1t": 1008.0, "18.4b": 18.4}
    for tag, billions in published.items():
        assert zoo.get(f"megatron-{tag}").params / 1e9 == pytest.approx(billions, rel=0.003)


def test_flops_match_megatron_formula_without_recompute():
    """Narayanan et al. SC21 eq. (3) counts 96 B s l h^2 (1 + s/6h + V/16lh) with recompute,
    i.e. 4x forward for blocks and 3x for the LM head; without recompute it is 72 B s l h^2
    (1 + s/6h) + 6 B s V h. Ours adds only the embedding's position add (2h per token)."""
    for name in ("cerebras-gpt-1.3b", "gpt3-175b", "megatron-1t"):
        m = zoo.get(name)
        s, l, h, v = 2048, m.layers, m.hidden, m.vocab
        megatron = 72 * s * l * h * h * (1 + s / (6 * h)) + 6 * s * v * h
        assert m.flops_per_token(s) * s == pytest.approx(megatron, rel=1e-5)


def test_activation_bytes_follow_korthikanti():
    m = ModelSpec("k", layers=2, hidden=1024, heads=16, dropout=True)
    block = m.layer_specs(2048)[1]
    assert block.act_bytes_per_token == 34 * 1024 + 5 * 16 * 2048  # 34h + 5as per token
    no_dropout = ModelSpec("k", layers=2, hidden=1024, heads=16, dropout=False).layer_specs(2048)[1]
    assert no_dropout.act_bytes_per_token == 32 * 1024 + 2 * 16 * 2048


def test_hf_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "n_layer": 3, "n_embd": 64, "n_head": 4, "vocab_size": 500, "n_positions": 128,
        "activation_function": "gelu_new", "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}))
    m = zoo.from_hf_config(tmp_path)
    assert (m.layers, m.hidden, m.heads, m.ffn, m.vocab, m.positions) == (3, 64, 4, 256, 500, 128)
    assert m.activation == "gelu_new" and not m.dropout


@pytest.mark.parametrize("text,needle", [("{", "not readable JSON"), ("[]", "not a JSON object"),
                                         ('{"n_embd": 64}', "lacks the GPT-2 key")])
def test_bad_hf_config(tmp_path, text, needle):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=needle):
        zoo.from_hf_config(tmp_path / "config.json")


@pytest.mark.parametrize("kwargs,needle", [(dict(layers=0), "layers"), (dict(hidden=100, heads=3), "divisible"),
                                           (dict(activation="swish"), "activation")])
def test_bad_model_dimensions(kwargs, needle):
    base = dict(name="x", layers=2, hidden=64, heads=4)
    with pytest.raises(ValueError, match=needle):
        ModelSpec(**(base | kwargs))


FAMILY_EXAMPLES = ["cerebras-gpt-256m", "gpt3-175b", "opt-175b", "gpt-neox-20b", "pythia-70m",
                   "llama-2-7b", "llama-2-70b", "llama-3-8b", "gpt-j-6b"]


@pytest.mark.parametrize("name", FAMILY_EXAMPLES)
def test_layer_ops_add_up_to_the_layer_flops(name):
    """The op list a shape-aware cost model reads (matrix products) sums to the FLOPs the layer
    counts; weight products multiply exactly the layer's weight matrices (params minus biases and
    norms)."""
    m = zoo.get(name)
    for layer in m.layer_specs(2048)[1:]:
        assert sum(op.flops_per_token for op in layer.matmuls) == pytest.approx(layer.fwd_flops_per_token)
    block, head = m.layer_specs(2048)[1], m.layer_specs(2048)[-1]
    h, f, kvd = m.hidden, m.ffn, m.kv_heads * m.head_dim
    biases = ((2 * h + 2 * kvd) if m.attention_bias else 0) + (
        ((2 * f if m.gated_mlp else f) + h) if m.mlp_bias else 0)
    norms = m.block_norms * h * (2 if m.norm == "layernorm" else 1)
    weights = sum(op.k * op.n * op.count for op in block.matmuls if op.weight)
    assert weights == m.block_params - biases - norms
    assert sum(op.k * op.n for op in head.matmuls) == m.vocab * m.hidden
    names = {op.name for op in block.elementwise}
    assert names >= {m.norm, "softmax", "activation", "residual"}
    assert ("bias" in names) == bool(biases)
    assert ("rotary" in names) == (m.positional == "rotary")
    assert ("gate" in names) == m.gated_mlp


def test_gpt2_block_ops_are_unchanged_by_the_family_fields():
    """The GPT-2 block the wafer model was calibrated on: one fused QKV product h -> 3h, two MLP
    matrices, 2 LayerNorms, biases 5h + f, no rotary."""
    m = zoo.get("cerebras-gpt-1.3b")
    block = m.layer_specs(2048)[1]
    h, f, a = m.hidden, m.ffn, m.heads
    assert [(op.name, op.k, op.n, op.count, op.weight) for op in block.matmuls] == [
        ("qkv", h, 3 * h, 1, True), ("attn_scores", h // a, 2048, a, False),
        ("attn_values", 2048, h // a, a, False), ("attn_proj", h, h, 1, True),
        ("mlp_fc", h, f, 1, True), ("mlp_proj", f, h, 1, True)]
    assert [(op.name, op.elements_per_token, op.ops_per_element) for op in block.elementwise] == [
        ("layernorm", 2 * h, 7.0), ("bias", 5 * h + f, 1.0), ("softmax", a * 2048, 5.0),
        ("activation", f, 7.0), ("residual", 2 * h, 1.0)]
    assert m.block_params == 4 * h * h + 2 * h * f + f + 9 * h


def test_llama_block_ops_follow_gqa_and_swiglu():
    """Llama-2-70B: Q h -> h, K and V h -> 2 x 8 x 128 (GQA), gate/up/down, RMSNorm (4 ops per
    element), rotary on every dimension of the 64 query and 8 key heads, no biases."""
    m = zoo.get("llama-2-70b")
    block = m.layer_specs(4096)[1]
    h, f = 8192, 28672
    weights = {op.name: (op.k, op.n) for op in block.matmuls if op.weight}
    assert weights == {"q": (h, h), "kv": (h, 2 * 8 * 128), "attn_proj": (h, h), "mlp_gate": (h, f),
                       "mlp_up": (h, f), "mlp_down": (f, h)}
    ew = {op.name: (op.elements_per_token, op.ops_per_element) for op in block.elementwise}
    assert ew["rmsnorm"] == (2 * h, 4.0) and ew["rotary"] == (128 * (64 + 8), 3.0)
    assert ew["activation"] == (f, 4.0) and ew["gate"] == (f, 1.0) and "bias" not in ew
    # the attention core is the same for any kv_heads: every query head attends over seq keys
    mha = ModelSpec("mha", layers=80, hidden=h, heads=64, ffn=f, gated_mlp=True, activation="silu",
                    norm="rmsnorm", positional="rotary", attention_bias=False, mlp_bias=False,
                    family="llama")
    core = [op for op in block.matmuls if not op.weight]
    assert core == [op for op in mha.layer_specs(4096)[1].matmuls if not op.weight]
    assert m.block_params == mha.block_params - 2 * h * (h - 8 * 128)  # K and V shrink 8x
    assert m.kv_cache_bytes_per_token() == 2 * 80 * 8 * 128 * 2  # 327,680 bytes per token at 16-bit
    assert mha.kv_cache_bytes_per_token() == 8 * m.kv_cache_bytes_per_token()


def test_gptj_and_neox_ops():
    gptj = zoo.get("gpt-j-6b")
    h, f = 4096, 16384
    block, head = gptj.layer_specs(2048)[1], gptj.layer_specs(2048)[-1]
    assert [op.name for op in block.matmuls if op.weight] == ["q", "kv", "attn_proj", "mlp_fc", "mlp_proj"]
    ew = {op.name: op.elements_per_token for op in block.elementwise}
    assert ew["layernorm"] == h  # one LayerNorm feeds attention and MLP
    assert ew["bias"] == f + h  # MLP biases only
    assert ew["rotary"] == 64 * (16 + 16)  # rotary_dim 64 of 256, on 16 query and 16 key heads
    assert {op.name: op.elements_per_token for op in head.elementwise}["bias"] == 50400
    assert gptj.head_params == 2 * h + 50400 * h + 50400
    neox = zoo.get("gpt-neox-20b")
    ew = {op.name: op.elements_per_token for op in neox.layer_specs(2048)[1].elementwise}
    assert ew["layernorm"] == 2 * 6144 and ew["rotary"] == 24 * (64 + 64)  # 25% of 96 dims
    assert neox.layer_specs(2048)[0].elementwise == () and neox.layer_specs(2048)[0].fwd_flops_per_token == 0


@pytest.mark.parametrize("name,params,non_embedding", [
    # Touvron et al. 2023 / Meta Llama 3 (the parameter counts the checkpoints' safetensors hold)
    ("llama-2-7b", 6_738_415_616, None), ("llama-2-13b", 13_015_864_320, None),
    ("llama-2-70b", 68_976_648_192, None), ("llama-3-8b", 8_030_261_248, None),
    ("llama-3-70b", 70_553_706_496, None),
    # the Pythia model card's "Total Params" and "Non-Embedding Params" columns
    ("pythia-70m", 70_426_624, 18_915_328), ("pythia-160m", 162_322_944, 85_056_000),
    ("pythia-410m", 405_334_016, 302_311_424), ("pythia-1b", 1_011_781_632, 805_736_448),
    ("pythia-1.4b", 1_414_647_808, 1_208_602_624), ("pythia-2.8b", 2_775_208_960, 2_517_652_480),
    ("pythia-6.9b", 6_857_302_016, 6_444_163_072), ("pythia-12b", 11_846_072_320, 11_327_027_200),
])
def test_published_parameter_counts(name, params, non_embedding):
    m = zoo.get(name)
    assert m.params == params
    if non_embedding is not None:  # every block plus the final LayerNorm
        assert m.layers * m.block_params + m.norm_params() == non_embedding


def test_activation_bytes_per_family():
    """Korthikanti's terms, generalised (models/spec.py docstring), bytes per token at 16-bit."""
    s = 2048
    llama = zoo.get("llama-2-70b").block_activations(s)
    h, f, a, kvd = 8192, 28672, 64, 1024
    assert (llama.replicated, llama.tensor_parallel, llama.attention) == (8 * h, 4 * h + 4 * kvd + 6 * f, 2 * a * s)
    gptj = zoo.get("gpt-j-6b").block_activations(s)
    h, f, a = 4096, 16384, 16
    assert (gptj.replicated, gptj.tensor_parallel, gptj.attention) == (4 * h, 8 * h + 4 * f, 2 * a * s)
    neox = zoo.get("gpt-neox-20b").block_activations(s)
    h, f, a = 6144, 24576, 64
    assert (neox.replicated, neox.tensor_parallel) == (6 * h, 8 * h + 4 * f)
    block = zoo.get("gpt-neox-20b").layer_specs(s)[1]
    assert block.act_bytes_per_token == neox.total == 14 * h + 4 * f + 2 * a * s


@pytest.mark.parametrize("kwargs,needle", [
    (dict(kv_heads=3), "kv_heads \\(3\\) must divide heads \\(4\\)"),
    (dict(kv_heads=-1), "kv_heads"),
    (dict(positional="rotary", rotary_fraction=0.1), "rotary"),
    (dict(rotary_fraction=1.5), "rotary_fraction"),
    (dict(head_width=-1), "head_width"),
    (dict(block_norms=1), "parallel_residual"),
    (dict(norm="batchnorm"), "norm"),
    (dict(family="bert"), "family"),
    (dict(gated_mlp=1), "gated_mlp"),
])
def test_bad_family_fields(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        ModelSpec(**(dict(name="x", layers=2, hidden=64, heads=4) | kwargs))


def test_family_fields_given_in_extra_are_the_fields():
    """Specs written before kv_heads / gated_mlp were fields carried them in ``extra`` (the GPU
    adapter's convention): they mean the same as the fields, for every cost."""
    old = ModelSpec("x", layers=2, hidden=4096, heads=32, ffn=14336, extra={"kv_heads": 8, "mlp": "swiglu"})
    new = ModelSpec("x", layers=2, hidden=4096, heads=32, ffn=14336, kv_heads=8, gated_mlp=True)
    assert (old.kv_heads, old.gated_mlp, old.block_params) == (8, True, new.block_params)
    with pytest.raises(ValueError, match="kv_heads"):
        ModelSpec("x", layers=2, hidden=64, heads=4, extra={"kv_heads": 3})
