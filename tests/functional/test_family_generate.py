"""Weight-streamed generation of Llama (grouped KV cache), GPT-J, GPT-NeoX (partial rotary) and the
MoE families (Mixtral, Qwen2-MoE, Qwen3-MoE: each CS-2 routes its own rows): the
token ids of transformers' ``generate``, greedy and beam search with ``no_repeat_ngram_size``, every
forward pass through the engine with rotary positions taken from the KV cache's length."""

import pytest
import torch

from wsim.functional.generate import generate
from tests.tiny_models import EOS, NEW_FAMILIES, hf_model, tiny

CASES = [dict(num_beams=1), dict(num_beams=1, no_repeat_ngram_size=2), dict(num_beams=3),
         dict(num_beams=2, no_repeat_ngram_size=2, early_stopping=True),
         dict(num_beams=4, no_repeat_ngram_size=3)]
_MODELS: dict = {}


def model_pair(family, seed, eos_boost):
    """A float32 model; ``eos_boost`` scales the head's eos row (and GPT-J's eos bias) so that some
    rows end early and the pad path runs."""
    key = (family, seed, eos_boost)
    if key not in _MODELS:
        cfg = tiny(family)
        w = {n: t * 4 if t.dim() == 2 else t for n, t in cfg.init_weights(seed).items()}  # peakier logits
        w[cfg.head_weight_name][EOS] *= eos_boost
        if "lm_head.bias" in w:
            w["lm_head.bias"][EOS] += eos_boost - 1.0
        _MODELS[key] = cfg, w, hf_model(cfg, w, torch.float32).eval()
    return _MODELS[key]


@pytest.mark.parametrize("kwargs", CASES)
@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_same_ids_as_transformers(family, kwargs):
    ended_early = False
    # Qwen3-MoE's normed queries and keys give flatter logits: a stronger eos row ends some rows
    for seed, boost, systems in ((3, 1.0, 1), (4, 6.0 if family == "qwen3_moe" else 3.0, 2)):
        cfg, w, ref = model_pair(family, seed, boost)
        prompts = torch.randint(0, EOS, (2, 4), generator=torch.Generator().manual_seed(seed))
        ours = generate(cfg, w, prompts, max_new_tokens=12, systems=systems, **kwargs)
        with torch.no_grad():
            theirs = ref.generate(prompts, max_new_tokens=12, do_sample=False, pad_token_id=EOS,
                                  attention_mask=torch.ones_like(prompts), **kwargs)
        assert ours.token_ids == theirs.tolist()
        assert ours.simulated_latency_s > 0 and ours.functional_events > 0
        ended_early |= any(EOS in row[4:] for row in ours.token_ids)
    assert ended_early  # an eos was generated: finished rows and beams were exercised


def test_grouped_kv_cache_is_what_the_timing_counts():
    """Llama's cache holds kv_heads heads; the reported KV-cache bytes count the same (the peak
    context is the prompt plus the tokens fed back: 3 + 4 - 1)."""
    cfg, w, _ = model_pair("llama", 3, 1.0)
    r = generate(cfg, w, torch.tensor([[5, 6, 7]]), max_new_tokens=4)
    per_token = 2 * cfg.n_layers * cfg.num_key_value_heads * cfg.head_dim * 2  # K and V, 16-bit
    assert r.kv_cache_bytes == per_token * r.rows * 6
    assert cfg.num_key_value_heads < cfg.num_attention_heads


def test_two_eos_ids_stop_generation_as_in_transformers():
    """Llama 3 instruct ends on either of two eos ids (config.json holds a list): rows stop on any,
    finished rows are padded with the first, as transformers' generate does."""
    cfg = tiny("llama", eos_token_id=(EOS, 99))
    assert cfg.to_hf_dict()["eos_token_id"] == [EOS, 99]
    w = {n: t * 4 if t.dim() == 2 else t for n, t in cfg.init_weights(5).items()}
    w[cfg.head_weight_name][99] *= 3.0  # make the second eos likely
    ref = hf_model(cfg, w, torch.float32).eval()
    prompts = torch.randint(0, 99, (3, 4), generator=torch.Generator().manual_seed(5))
    for kwargs in (dict(num_beams=1), dict(num_beams=3, no_repeat_ngram_size=2)):
        ours = generate(cfg, w, prompts, max_new_tokens=10, **kwargs)
        with torch.no_grad():
            theirs = ref.generate(prompts, max_new_tokens=10, do_sample=False,
                                  attention_mask=torch.ones_like(prompts), **kwargs)
        assert ours.token_ids == theirs.tolist()
    assert any(99 in row[4:] for row in ours.token_ids)
