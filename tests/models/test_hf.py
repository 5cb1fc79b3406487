"""models.hf: our checkpoints load in transformers and theirs load here, tensor for tensor."""

import json

import pytest
import torch
import transformers

from models.gpt import GPT, GPTConfig, init_weights, param_shapes
from models.hf import load_checkpoint, save_checkpoint


TINY = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=64)


def tiny(**kw) -> GPTConfig:
    return GPTConfig(**{**TINY, **kw})


def weights(cfg, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    w = init_weights(cfg, seed, dtype)
    return {n: t + 0.1 * torch.randn(t.shape, generator=g, dtype=dtype) if t.dim() == 1 else t
            for n, t in w.items()}


IDX = torch.randint(0, 101, (2, 9), generator=torch.Generator().manual_seed(4))


def our_logits(cfg, w):
    with torch.no_grad():
        return GPT(cfg, w)(IDX)[0]


def hf_from_pretrained(path):
    model, info = transformers.GPT2LMHeadModel.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_save_then_transformers_loads(tmp_path, tied, safe, dtype):
    cfg = tiny(tie_word_embeddings=tied, activation_function="gelu")
    w = weights(cfg, dtype)
    save_checkpoint(tmp_path, cfg, w, safe=safe)
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    model = hf_from_pretrained(tmp_path)
    assert next(model.parameters()).dtype == dtype
    assert model.config.tie_word_embeddings == tied
    if tied:
        assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    with torch.no_grad():
        ref = model(IDX).logits
    assert torch.allclose(ref, our_logits(cfg, w), rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)
    # and back: our loader returns exactly what was saved
    cfg2, w2 = load_checkpoint(tmp_path)
    assert cfg2 == cfg and list(w2) == list(param_shapes(cfg))
    assert all(torch.equal(w2[n], w[n]) for n in w)


@pytest.mark.parametrize("tied", [True, False])
def test_transformers_save_pretrained_loads_here(tmp_path, tied):
    cfg = tiny(tie_word_embeddings=tied, activation_function="gelu_new")
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg.to_hf_dict())).double()
    model.save_pretrained(tmp_path)
    cfg2, w = load_checkpoint(tmp_path)
    assert cfg2 == cfg and all(t.dtype == torch.float64 for t in w.values())
    with torch.no_grad():
        assert torch.allclose(our_logits(cfg2, w), model(IDX).logits, rtol=0, atol=1e-12)
    _, w32 = load_checkpoint(tmp_path, dtype=torch.float32)
    assert all(t.dtype == torch.float32 for t in w32.values())


def test_old_bin_checkpoint_with_buffers_and_tied_duplicate(tmp_path):
    """The layout of Cerebras-GPT's pytorch_model.bin (written by transformers 4.x): the full
    state_dict, so a tied lm_head.weight copy, plus the attn.bias / attn.masked_bias buffers.
    (transformers 5 no longer writes .bin files, so the file is made by torch.save as 4.x did.)"""
    cfg = tiny()
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg.to_hf_dict()))
    sd = dict(model.state_dict())
    assert "lm_head.weight" in sd
    for i in range(cfg.n_layer):
        mask = torch.tril(torch.ones(64, 64, dtype=torch.uint8)).view(1, 1, 64, 64)
        sd[f"transformer.h.{i}.attn.bias"] = mask
        sd[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    d = cfg.to_hf_dict()
    d.pop("n_positions")  # old configs may carry only n_ctx
    (tmp_path / "config.json").write_text(json.dumps(d))
    cfg2, w = load_checkpoint(tmp_path)
    assert cfg2 == cfg and list(w) == list(param_shapes(cfg))
    with torch.no_grad():
        assert torch.allclose(our_logits(cfg, w), model(IDX).logits, rtol=0, atol=1e-5)


def test_sharded_checkpoint(tmp_path):
    cfg = tiny()
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg.to_hf_dict()))
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    _, w = load_checkpoint(tmp_path)
    assert torch.equal(w["transformer.h.1.mlp.c_fc.weight"], model.transformer.h[1].mlp.c_fc.weight)


def test_errors_are_clear_value_errors(tmp_path):
    cfg = tiny()
    w = weights(cfg, torch.float32)
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(ValueError, match="no config.json"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    with pytest.raises(ValueError, match="no model.safetensors or pytorch_model.bin"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg.to_hf_dict(), "n_head": 5}))
    with pytest.raises(ValueError, match="n_embd"):
        load_checkpoint(tmp_path)

    for safe, name in ((True, "model.safetensors"), (False, "pytorch_model.bin")):
        folder = tmp_path / name
        save_checkpoint(folder, cfg, w, safe=safe)
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="unreadable or truncated"):
            load_checkpoint(folder)

    from safetensors.torch import save_file

    def bad(mutate, match):
        folder = tmp_path / f"bad-{match[:8]}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
        t = {n: v.clone() for n, v in w.items()}
        mutate(t)
        save_file(t, str(folder / "model.safetensors"))
        with pytest.raises(ValueError, match=match):
            load_checkpoint(folder)

    bad(lambda t: t.pop("transformer.h.1.ln_2.bias"), "missing tensor")
    bad(lambda t: t.update({"transformer.h.0.attn.c_attn.weight": torch.zeros(96, 32)}), "has shape")
    bad(lambda t: t.update({"transformer.h.2.ln_1.weight": torch.ones(32)}), "unexpected tensor")

    untied = tiny(tie_word_embeddings=False)
    with pytest.raises(ValueError, match="lm_head.weight"):
        save_checkpoint(tmp_path / "untied", untied, w)  # an untied model needs its head
    assert not (tmp_path / "untied").exists()
    with pytest.raises(ValueError, match="already holds"):
        save_checkpoint(tmp_path / "model.safetensors", cfg, w, safe=False)


def test_gpt2model_checkpoint_without_transformer_prefix(tmp_path):
    """Checkpoints saved from ``GPT2Model`` (OpenAI's gpt2, some Cerebras-GPT uploads) lack the
    ``transformer.`` prefix; with a tied head that is the whole model."""
    cfg = tiny()
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg.to_hf_dict()))
    torch.save(model.transformer.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({**cfg.to_hf_dict(), "architectures": ["GPT2Model"]}))
    _, w = load_checkpoint(tmp_path)
    assert list(w) == list(param_shapes(cfg))
    with torch.no_grad():
        assert torch.allclose(our_logits(cfg, w), model(IDX).logits, rtol=0, atol=1e-5)
