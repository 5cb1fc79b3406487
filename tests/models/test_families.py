"""Llama, GPT-J and GPT-NeoX (models/llama.py, gptj.py, gpt_neox.py) against transformers' own
models with the same weights: logits, parameter counts, names, KV cache, config.json round trips,
and the refusals of what they do not support."""

import json

import pytest
import torch
import torch.nn.functional as F
import transformers

from models import registry, zoo
from models.decoder import CausalLM
from tests.tiny_models import ALL_FAMILIES, HF_CONFIG, NEW_FAMILIES, hf_model, hf_name, perturbed, rel, tiny

VARIANTS = [  # what changes the math or the names, per family
    ("llama", {}), ("llama", dict(num_key_value_heads=1)), ("llama", dict(num_key_value_heads=4)),
    ("llama", dict(tie_word_embeddings=True, attention_bias=True, mlp_bias=True)),
    ("gptj", {}), ("gptj", dict(rotary_dim=8, activation_function="gelu", tie_word_embeddings=True)),
    ("gpt_neox", {}), ("gpt_neox", dict(use_parallel_residual=False, rotary_pct=0.25)),
    ("gpt_neox", dict(attention_bias=False, tie_word_embeddings=True, hidden_act="gelu_fast")),
    # what transformers runs its own way: an odd int(head_dim x rotary_pct) r rotates r+1 dims with
    # r's frequencies (3 -> 4 of 8, 5 -> 6, 7 -> all 8), 0 none at all; Llama's head_dim given
    # wider or narrower than hidden/heads, another activation in its SwiGLU
    ("gpt_neox", dict(rotary_pct=0.375)), ("gpt_neox", dict(rotary_pct=0.7)),
    ("gpt_neox", dict(rotary_pct=0.9, use_parallel_residual=False)), ("gpt_neox", dict(rotary_pct=0.1)),
    ("llama", dict(head_dim=16)), ("llama", dict(head_dim=4, num_key_value_heads=1, attention_bias=True)),
    ("llama", dict(hidden_act="gelu_new", mlp_bias=True)), ("gptj", dict(activation_function="silu")),
    ("gpt_neox", dict(hidden_act="relu", rotary_pct=0.6)),
    # scaled rotary: linear (position interpolation) and Llama 3.1's llama3 (low frequencies divided
    # by 8, high ones kept, the middle one of the 4 interpolated with these tiny heads)
    ("llama", dict(rope_scaling=("linear", 2.0))), ("llama", dict(rope_scaling=("llama3", 8.0, 1.0, 4.0, 16))),
    # mixtures of experts: top-1 and top-all, tied; Qwen2 without its Q/K/V biases, every other block
    # sparse, renormalised; Qwen3 with biases, a dense block, the default head width
    ("mixtral", {}), ("mixtral", dict(num_experts_per_tok=1, tie_word_embeddings=True,
                                      rope_scaling=("llama3", 8.0, 1.0, 4.0, 16))),
    ("mixtral", dict(num_experts_per_tok=4, head_dim=16)),
    ("qwen2_moe", {}), ("qwen2_moe", dict(qkv_bias=False, mlp_only_layers=(), decoder_sparse_step=2, norm_topk_prob=True)),
    ("qwen3_moe", {}), ("qwen3_moe", dict(attention_bias=True, mlp_only_layers=(0,), head_dim=None, norm_topk_prob=False)),
]


def idx(rows=3, T=17, seed=7):
    return torch.randint(0, 101, (rows, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family,kw", VARIANTS)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_logits_and_gradients_match_transformers(family, kw, dtype, tol):
    """The same logits as transformers' eager model, and in float64 the same gradients."""
    cfg = tiny(family, **kw)
    w = perturbed(cfg, dtype)
    x = idx()
    ref_model = hf_model(cfg, w, dtype)
    ref = ref_model(x[:, :-1]).logits
    model = CausalLM(cfg, w)
    logits, loss = model(x[:, :-1], x[:, 1:])
    assert logits.dtype == dtype and rel(logits, ref) < tol
    if dtype == torch.float64:
        F.cross_entropy(ref.reshape(-1, 101), x[:, 1:].reshape(-1)).backward()
        loss.backward()
        theirs = dict(ref_model.named_parameters())
        for n, p in model.named_parameters():
            assert rel(p.grad, theirs[hf_name(cfg, n)].grad) < 1e-10, n


@pytest.mark.parametrize("family,kw", VARIANTS + [("gpt2", {}), ("gpt2", dict(tie_word_embeddings=False))])
def test_parameter_count_is_transformers_numel(family, kw):
    """ModelSpec's count (what cost models use), our tensor list and transformers' sum of numel()."""
    cfg = tiny(family, **kw)
    model = hf_model(cfg)
    hf_params = sum(p.numel() for p in model.parameters())  # a tied head counted once
    assert cfg.spec("tiny").params == hf_params
    assert sum(torch.Size(s).numel() for s in cfg.param_shapes().values()) == hf_params
    # and the names and shapes are transformers' own, in its order
    theirs = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert {hf_name(cfg, n): s for n, s in cfg.param_shapes().items()} == theirs
    assert [hf_name(cfg, n) for n in cfg.param_shapes()] == list(theirs)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_kv_cache_incremental_equals_full(family):
    """Decoding with a cache (grouped for Llama: kv_heads heads) and rotary positions from the
    cache length gives the full pass's logits: to float32 rounding, as transformers' own, since
    these families compute the softmax (and GPT-J the scores) in float32 whatever the dtype, over
    rows of another length."""
    cfg = tiny(family)
    w = perturbed(cfg, torch.float64)
    x = idx(2, 12, seed=5)
    with torch.no_grad():
        full, _ = CausalLM(cfg, w)(x)
        cache, outs, t = [None] * cfg.n_layers, [], 0
        for step in (5, 1, 1, 3, 1, 1):
            h = cfg.layer_forward("embedding", x[:, t:t + step], w, pos_offset=t)
            for i in range(cfg.n_layers):
                h, cache[i] = cfg.layer_forward(f"block{i}", h, w, pos_offset=t, past_kv=cache[i], use_cache=True)
            outs.append(cfg.layer_forward("head", h, w))
            t += step
    kv_heads = getattr(cfg, "num_key_value_heads", 4)  # Llama and the MoE families group them
    assert cache[0][0].shape == (2, kv_heads, 12, cfg.head_dim)
    assert rel(torch.cat(outs, dim=1), full) < 1e-6
    with pytest.raises(ValueError, match="KV cache holds"):  # positions that disagree with the cache
        cfg.layer_forward("block0", h, w, pos_offset=3, past_kv=cache[0], use_cache=True)


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("tied", [True, False])
def test_streamed_layers_compose_to_transformers(family, tied):
    """The layer functions chained as the engine streams them (each layer sees only its own
    tensors) give transformers' logits. The reference is transformers' model, not CausalLM.forward,
    which chains the same functions."""
    cfg = tiny(family, tie_word_embeddings=tied)
    w = perturbed(cfg, torch.float64)
    x = idx(2, 9)
    out = x
    for layer in cfg.layer_names():  # each layer sees only its own tensors
        out = cfg.layer_forward(layer, out, {n: w[n] for n in cfg.layer_param_names(layer)})
    with torch.no_grad():
        assert rel(out, hf_model(cfg, w, torch.float64).eval()(x).logits) < 1e-12
    covered = [n for layer in cfg.layer_names() for n in cfg.layer_param_names(layer)]
    assert sorted(set(covered)) == sorted(cfg.param_shapes()) and len(covered) == len(set(covered)) + tied
    assert cfg.layer_param_names("head").count(cfg.EMBEDDING_WEIGHT) == tied


@pytest.mark.parametrize("family,kw", VARIANTS)
def test_config_json_round_trips_through_transformers(family, kw):
    """Ours -> config.json -> transformers (5.x writes rope_parameters) -> config.json -> ours."""
    cfg = tiny(family, **kw)
    d = cfg.to_hf_dict()
    assert d["model_type"] == family and d["architectures"] == [cfg.ARCHITECTURE]
    assert registry.config_from_hf_dict(d) == cfg
    theirs = getattr(transformers, HF_CONFIG[family])(**d).to_dict()
    assert registry.config_from_hf_dict(theirs) == cfg


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_checkpoints_both_ways(tmp_path, family):
    """Our checkpoint loads in transformers with no missing or unexpected tensor and gives our
    logits; transformers' save_pretrained loads here and gives its logits."""
    from models import hf

    cfg = tiny(family)
    w = perturbed(cfg, torch.float64)
    hf.save_checkpoint(tmp_path / "ours", cfg, w)
    model, info = getattr(transformers, cfg.ARCHITECTURE).from_pretrained(
        tmp_path / "ours", output_loading_info=True, attn_implementation="eager", experts_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    x = idx()
    with torch.no_grad():
        assert rel(CausalLM(cfg, w)(x)[0], model(x).logits) < 1e-12
    model.save_pretrained(tmp_path / "theirs")
    cfg2, w2 = hf.load_checkpoint(tmp_path / "theirs")
    assert cfg2 == cfg and list(w2) == list(cfg.param_shapes())
    assert all(torch.equal(w2[n], w[n]) for n in w)


def test_old_checkpoint_names_and_buffers_load(tmp_path):
    """Pythia's 4.x .bin files carry rotary inv_freq and causal-mask buffers; transformers 5 calls the
    head lm_head: all load, under our names."""
    from models import hf

    cfg = tiny("gpt_neox")
    w = perturbed(cfg, torch.float32)
    sd = {hf_name(cfg, n): t for n, t in w.items()}  # lm_head.weight
    for i in range(cfg.n_layers):
        sd[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = torch.ones(2)
        sd[f"gpt_neox.layers.{i}.attention.bias"] = torch.ones(1, 1, 64, 64, dtype=torch.bool)
        sd[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    cfg2, w2 = hf.load_checkpoint(tmp_path)
    assert cfg2 == cfg and set(w2) == set(w) and torch.equal(w2["embed_out.weight"], w["embed_out.weight"])


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_init_is_deterministic_and_hf_like(family):
    cfg = tiny(family, hidden_size=64) if family != "gptj" else tiny(family, n_embd=64)
    w = cfg.init_weights(3)
    assert list(w) == list(cfg.param_shapes())
    assert all(torch.equal(w[n], t) for n, t in cfg.init_weights(3).items())
    for n, t in w.items():
        if t.dim() >= 2:  # matrices, and the MoE families' stacked experts
            assert abs(t.std().item() - 0.02) < 0.004, n
        elif n.endswith(".bias"):
            assert torch.equal(t, torch.zeros_like(t)), n
        else:
            assert torch.equal(t, torch.ones_like(t)), n
    for layer in cfg.layer_names():
        assert all(torch.equal(t, w[n]) for n, t in cfg.init_layer_weights(layer, 3).items())


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-3-70b", "gpt-j-6b", "gpt-neox-20b", "pythia-160m",
                                  "mixtral-8x7b", "mixtral-8x22b", "qwen3-30b-a3b"])
def test_zoo_specs_build_their_family_config(name):
    """A zoo entry makes its family's config (``wsim train --model``) with the same counts."""
    spec = zoo.get(name)
    cfg = registry.config_from_spec(spec)
    assert cfg.MODEL_TYPE == spec.family
    assert sum(torch.Size(s).numel() for s in cfg.param_shapes().values()) == spec.params
    assert cfg.spec(name, source=spec.source) == spec


# ---- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("d,needle", [
    ({"model_type": "bert", "hidden_size": 8}, "model_type 'bert' is not supported; supported: gpt2, gpt_neox, gptj, llama"),
    ({"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "vocab_size": 101}, "lacks the llama key 'intermediate_size'"),
    ({"model_type": "gpt_neox", "hidden_size": 32}, "lacks the gpt_neox key 'vocab_size'"),
    ({"model_type": "gptj", "n_embd": 32, "n_layer": 2, "n_head": 4}, "lacks the gptj key 'vocab_size'"),
    ({"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 3, "intermediate_size": 48, "vocab_size": 101},
     r"num_key_value_heads \(3\) must divide num_attention_heads \(4\)"),
    ({"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 48, "vocab_size": 101, "rope_scaling": {"rope_type": "yarn", "factor": 8.0}},
     "rope type 'yarn' is not supported"),
    ({"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 48, "vocab_size": 101, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
     "rope_scaling of type 'llama3' lacks 'low_freq_factor'"),
    ({"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 48, "vocab_size": 101, "head_dim": 5}, "head_dim 5 must be even"),
    ({"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 48, "vocab_size": 101, "hidden_act": "quick_gelu"},
     "hidden_act 'quick_gelu' is not supported: transformers' quick_gelu is not modelled"),
    ({"model_type": "gptj", "n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": 101, "rotary_dim": 5,
      "bos_token_id": 0, "eos_token_id": 1}, "rotary_dim"),
    ({"model_type": "gpt_neox", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 64, "vocab_size": 101, "rotary_pct": 1.2}, "rotary_pct 1.2 of head_dim 8"),
    ({"model_type": "gpt_neox", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 64, "vocab_size": 101, "eos_token_id": 500}, "eos_token_id"),
])
def test_configs_refused_naming_the_problem(d, needle):
    with pytest.raises(ValueError, match=needle):
        registry.config_from_hf_dict(d)


def test_spec_names_come_from_the_config_not_its_folder(tmp_path):
    cfg = tiny("llama")
    folder = tmp_path / "some-folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    assert zoo.from_hf_config(folder).name == "LlamaForCausalLM"
    (folder / "config.json").write_text(json.dumps({**cfg.to_hf_dict(), "_name_or_path": "meta-llama/tiny"}))
    spec = zoo.from_hf_config(folder / "config.json")
    assert spec.name == "meta-llama/tiny" and spec.kv_heads == 2 and spec.gated_mlp and spec.norm == "rmsnorm"


def test_eos_lists_and_null_token_ids_in_config_json():
    d = {**tiny("llama").to_hf_dict(), "eos_token_id": [100, 99], "bos_token_id": None}
    cfg = registry.config_from_hf_dict(d)
    assert cfg.eos_token_id == (100, 99) and cfg.bos_token_id == 1  # null: LlamaConfig's default
    assert cfg.to_hf_dict()["eos_token_id"] == [100, 99]
    with pytest.raises(ValueError, match="eos_token_id"):
        registry.config_from_hf_dict({**d, "eos_token_id": [100, 101]})
