"""Model specs against published numbers and closed forms."""

import json

import pytest

from models import zoo
from models.spec import ModelSpec


def test_cerebras_gpt_rows_are_facts_table():
    rows = {  # FACTS.md: layers, d_model, heads, d_ffn
        "111m": (10, 768, 12, 3072), "256m": (14, 1088, 17, 4352), "590m": (18, 1536, 12, 6144),
        "1.3b": (24, 2048, 16, 8192), "2.7b": (32, 2560, 20, 10240), "6.7b": (32, 4096, 32, 16384),
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


@pytest.mark.parametrize("name", ["cerebras-gpt-256m", "gpt3-175b", "opt-175b", "gpt-neox-20b"])
def test_layer_ops_add_up_to_the_layer_flops(name):
    """The op list a shape-aware cost model reads (matrix products) sums to the FLOPs the layer
    counts; weight products multiply exactly the layer's weight matrices (params minus biases and
    norms)."""
    m = zoo.get(name)
    for layer in m.layer_specs(2048)[1:]:
        assert sum(op.flops_per_token for op in layer.matmuls) == pytest.approx(layer.fwd_flops_per_token)
    block = m.layer_specs(2048)[1]
    weights = sum(op.k * op.n * op.count for op in block.matmuls if op.weight)
    assert weights == 4 * m.hidden ** 2 + 2 * m.hidden * m.ffn
    assert {op.name for op in block.elementwise} >= {"layernorm", "softmax", "activation", "residual"}
