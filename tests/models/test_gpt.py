"""models.gpt against Hugging Face ``GPT2LMHeadModel`` with the same weights (transformers' own
implementation is the published reference for GPT-2 / Cerebras-GPT checkpoints)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import transformers

from models import zoo
from models.gpt import (
    GPT, GPTConfig, block_forward, embedding_forward, head_forward, init_layer_weights, init_weights,
    layer_forward, layer_names, layer_param_names, loss_fn, param_shapes,
)


TINY = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=64)


def tiny(**kw) -> GPTConfig:
    return GPTConfig(**{**TINY, **kw})


def perturbed_weights(cfg, dtype, seed=0):
    """GPT-2 init, with biases and LayerNorm moved off 0/1 so that they matter in the comparison."""
    g = torch.Generator().manual_seed(seed + 1)
    w = init_weights(cfg, seed, dtype)
    return {n: t + 0.1 * torch.randn(t.shape, generator=g, dtype=dtype) if t.dim() == 1 else t
            for n, t in w.items()}


def hf_model(cfg, w, dtype, attn="eager"):
    hf_cfg = transformers.GPT2Config(**cfg.to_hf_dict(), attn_implementation=attn)
    model = transformers.GPT2LMHeadModel(hf_cfg).to(dtype)
    res = model.load_state_dict(w, strict=False)
    assert res.unexpected_keys == []
    assert res.missing_keys == (["lm_head.weight"] if cfg.tie_word_embeddings else [])
    return model


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "gelu_fast", "silu"])  # what transformers' ACT2FN runs
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_logits_and_loss_match_hf(act, dtype, tol, tied, attn):
    cfg = tiny(activation_function=act, tie_word_embeddings=tied)
    w = perturbed_weights(cfg, dtype)
    g = torch.Generator().manual_seed(7)
    rows = torch.randint(0, cfg.vocab_size, (3, 18), generator=g)
    x, y = rows[:, :-1], rows[:, 1:]
    with torch.no_grad():
        ref = hf_model(cfg, w, dtype, attn)(x).logits
        logits, loss = GPT(cfg, w)(x, y)
    assert logits.dtype == dtype and logits.shape == (3, 17, cfg.vocab_size)
    assert rel(logits, ref) < tol
    # HF's own labels= loss upcasts logits to float32, so the reference loss is taken on its logits
    ref_loss = F.cross_entropy(ref.reshape(-1, cfg.vocab_size), y.reshape(-1))
    assert abs(loss.item() - ref_loss.item()) / ref_loss.item() < tol


def test_float32_hf_loss_with_labels():
    cfg = tiny()
    w = perturbed_weights(cfg, torch.float32)
    rows = torch.randint(0, cfg.vocab_size, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf_model(cfg, w, torch.float32)(rows, labels=rows).loss  # HF shifts labels itself
        _, loss = GPT(cfg, w)(rows[:, :-1], rows[:, 1:])
    assert abs(loss.item() - ref.item()) < 1e-5 * ref.item()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_kv_cache_incremental_equals_full(dtype, tol):
    cfg = tiny()
    w = perturbed_weights(cfg, dtype)
    idx = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full, _ = GPT(cfg, w)(idx)
        cache = [None] * cfg.n_layer
        outs, t = [], 0
        for step in (5, 1, 1, 3, 1, 1):  # a prompt, then single tokens and a chunk
            x = embedding_forward(idx[:, t:t + step], w, cfg, pos_offset=t)  # (B, step, C)
            for i in range(cfg.n_layer):
                x, cache[i] = block_forward(x, w, cfg, past_kv=cache[i], use_cache=True, layer_idx=i)
            outs.append(head_forward(x, w, cfg))
            t += step
    assert t == idx.size(1)
    assert cache[0][0].shape == (2, cfg.n_head, 12, cfg.head_dim)
    assert rel(torch.cat(outs, dim=1), full) < tol


def test_tied_embedding_gradient_is_sum_and_matches_hf():
    cfg, dtype = tiny(), torch.float64
    w = perturbed_weights(cfg, dtype)
    rows = torch.randint(0, cfg.vocab_size, (3, 11), generator=torch.Generator().manual_seed(9))
    x, y = rows[:, :-1], rows[:, 1:]
    ours = GPT(cfg, w)
    ours(x, y)[1].backward()
    hf = hf_model(cfg, w, dtype)
    F.cross_entropy(hf(x).logits.reshape(-1, cfg.vocab_size), y.reshape(-1)).backward()
    hf_grads = dict(hf.named_parameters())
    for n, p in ours.named_parameters():
        assert rel(p.grad, hf_grads[n].grad) < 1e-10, n
    # the same model untied, with lm_head a copy of wte: the tied gradient is the sum of both
    untied_cfg = dataclasses.replace(cfg, tie_word_embeddings=False)
    untied = GPT(untied_cfg, {**w, "lm_head.weight": w["transformer.wte.weight"]})
    untied(x, y)[1].backward()
    u = dict(untied.named_parameters())
    both = u["transformer.wte.weight"].grad + u["lm_head.weight"].grad
    assert rel(ours.transformer.wte.weight.grad, both) < 1e-12
    assert rel(u["lm_head.weight"].grad, both) > 1e-3  # the head's share is not negligible


@pytest.mark.parametrize("tied", [True, False])
def test_state_dict_keys_and_shapes_are_hf(tied):
    cfg = tiny(tie_word_embeddings=tied, n_inner=48)
    ours = GPT(cfg).state_dict()
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg.to_hf_dict())).state_dict()
    if tied:  # HF's state_dict lists the tied head twice; it saves and names the parameter once
        assert hf.pop("lm_head.weight").data_ptr() == hf["transformer.wte.weight"].data_ptr()
    assert list(ours) == list(hf)
    assert {n: tuple(t.shape) for n, t in ours.items()} == {n: tuple(t.shape) for n, t in hf.items()}
    assert {n: tuple(t.shape) for n, t in ours.items()} == param_shapes(cfg)


def test_tied_model_has_one_embedding_parameter():
    model = GPT(tiny())
    assert [n for n, _ in model.named_parameters()].count("transformer.wte.weight") == 1
    assert "lm_head.weight" not in dict(model.named_parameters())


@pytest.mark.parametrize("tied", [True, False])
def test_layer_forward_composition_equals_transformers(tied):
    """The streamed layer functions, chained (each layer sees only its own tensors), give
    transformers' logits: the reference is GPT2LMHeadModel, not our own GPT.forward (which chains
    the same functions, so a bug in them would be on both sides)."""
    cfg, dtype = tiny(tie_word_embeddings=tied), torch.float64
    w = perturbed_weights(cfg, dtype)
    idx = torch.randint(0, cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(2))
    x = idx
    for layer in layer_names(cfg):  # streamed: each layer sees only its own tensors
        x = layer_forward(cfg, layer, x, {n: w[n] for n in layer_param_names(cfg, layer)})
    with torch.no_grad():
        ref = hf_model(cfg, w, dtype).eval()(idx).logits
    assert rel(x, ref) < 1e-12


def test_layer_names_and_params():
    cfg = tiny()
    assert layer_names(cfg) == ["embedding", "block0", "block1", "head"]
    assert layer_param_names(cfg, "embedding") == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert layer_param_names(cfg, "head") == ["transformer.ln_f.weight", "transformer.ln_f.bias",
                                              "transformer.wte.weight"]
    block1 = layer_param_names(cfg, "block1")
    assert len(block1) == 12 and block1[2] == "transformer.h.1.attn.c_attn.weight"
    covered = [n for layer in layer_names(cfg) for n in layer_param_names(cfg, layer)]
    assert sorted(set(covered)) == sorted(param_shapes(cfg)) and len(covered) == len(set(covered)) + 1
    untied = tiny(tie_word_embeddings=False)
    assert layer_param_names(untied, "head")[-1] == "lm_head.weight"
    for bad in ("block2", "blockx", "lm_head"):
        with pytest.raises(ValueError, match="unknown layer"):
            layer_param_names(cfg, bad)


def test_init_is_gpt2_and_deterministic():
    cfg = tiny(n_layer=4, n_embd=64, vocab_size=500)
    w = init_weights(cfg, seed=3)
    assert list(w) == list(param_shapes(cfg)) and all(t.dtype == torch.float32 for t in w.values())
    assert all(torch.equal(w[n], t) for n, t in init_weights(cfg, seed=3).items())
    assert not torch.equal(w["transformer.wte.weight"], init_weights(cfg, seed=4)["transformer.wte.weight"])
    w64 = init_weights(cfg, seed=3, dtype=torch.float64)
    assert all(torch.equal(w64[n], t.double()) for n, t in w.items())  # same start in both dtypes
    assert abs(w["transformer.wte.weight"].std().item() - 0.02) < 0.001
    assert abs(w["transformer.h.0.attn.c_attn.weight"].std().item() - 0.02) < 0.001
    assert abs(w["transformer.h.0.mlp.c_proj.weight"].std().item() - 0.02 / 8 ** 0.5) < 0.0005
    assert torch.equal(w["transformer.h.1.ln_2.weight"], torch.ones(64))
    assert torch.equal(w["transformer.h.1.mlp.c_fc.bias"], torch.zeros(256))
    for layer in layer_names(cfg):
        assert all(torch.equal(t, w[n]) for n, t in init_layer_weights(cfg, layer, seed=3).items())


def test_loss_fn_is_mean_cross_entropy():
    logits = torch.randn(2, 3, 5, dtype=torch.float64)
    targets = torch.tensor([[0, 1, 2], [3, 4, 0]])
    manual = -torch.log_softmax(logits, -1).gather(-1, targets[..., None]).mean()
    assert abs(loss_fn(logits, targets).item() - manual.item()) < 1e-14


def test_config_validation_names_the_field():
    for kw, field in [(dict(n_layer=0), "n_layer"), (dict(n_head=5), "n_embd"),
                      (dict(activation_function="swish"), "activation_function"),
                      (dict(layer_norm_epsilon=0.0), "layer_norm_epsilon"),
                      (dict(bos_token_id=101), "bos_token_id"), (dict(n_inner=-1), "n_inner"),
                      (dict(vocab_size=True), "vocab_size")]:
        with pytest.raises(ValueError, match=field):
            tiny(**kw)
    cfg = tiny()
    assert cfg.n_inner == 128 and cfg.bos_token_id == cfg.eos_token_id == 100
    with pytest.raises(ValueError, match="positions"):
        embedding_forward(torch.zeros(1, 65, dtype=torch.long), init_weights(cfg, 0), cfg)


def test_hf_dict_round_trip_and_sources():
    cfg = tiny(activation_function="gelu_new", tie_word_embeddings=False, bos_token_id=0, eos_token_id=1)
    d = cfg.to_hf_dict()
    assert d["model_type"] == "gpt2" and d["architectures"] == ["GPT2LMHeadModel"]
    assert d["attn_pdrop"] == d["embd_pdrop"] == d["resid_pdrop"] == 0.0
    assert GPTConfig.from_hf_dict(d) == cfg
    assert GPTConfig.from_hf_dict(transformers.GPT2Config(**d).to_dict()) == cfg
    hf_default = transformers.GPT2Config().to_dict()  # gpt2-small: gelu_new, 50257 tokens
    small = GPTConfig.from_hf_dict(hf_default)
    assert (small.n_layer, small.n_embd, small.activation_function, small.eos_token_id) == (
        12, 768, "gelu_new", 50256)
    with pytest.raises(ValueError, match="n_head"):
        GPTConfig.from_hf_dict({k: v for k, v in d.items() if k != "n_head"})
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        GPTConfig.from_hf_dict({**d, "scale_attn_by_inverse_layer_idx": True})
    spec = zoo.get("cerebras-gpt-111m")
    c111 = GPTConfig.from_spec(spec)
    assert (c111.n_layer, c111.n_embd, c111.n_head, c111.n_inner, c111.vocab_size, c111.n_positions) == (
        10, 768, 12, 3072, 50257, 2048)
    assert c111.activation_function == "gelu" and c111.tie_word_embeddings
    assert sum(n for s in param_shapes(c111).values() for n in [torch.Size(s).numel()]) == spec.params
    assert GPTConfig.from_spec(spec, n_positions=128).n_positions == 128
    with pytest.raises(ValueError, match="rotary"):
        GPTConfig.from_spec(zoo.get("gpt-neox-20b"))
