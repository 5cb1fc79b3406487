"""Weight-streamed generation: the same token ids as transformers' generate, through the engine."""

import json

import pytest
import tokenizers
import torch
import transformers

from models import hf, zoo
from models.gpt import GPTConfig, init_weights
from wsim.cluster import generations
from wsim.commands.cli import main
from wsim.engine.inference import calls_for, simulate_inference
from wsim.errors import ConfigError
from wsim.functional.generate import generate



def model_pair(activation, seed, eos_boost=1.0):
    cfg = GPTConfig(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=64,
                    activation_function=activation, bos_token_id=0, eos_token_id=100)
    w = init_weights(cfg, seed, torch.float32)
    w["transformer.wte.weight"][100] *= eos_boost  # makes eos likely: sequences end early
    hf_cfg = {k: v for k, v in cfg.to_hf_dict().items() if k not in ("architectures", "model_type")}
    ref = transformers.GPT2LMHeadModel(transformers.GPT2Config(**hf_cfg))
    ref.load_state_dict(w, strict=False)
    return cfg, w, ref.eval()


CASES = [dict(num_beams=1), dict(num_beams=1, no_repeat_ngram_size=2), dict(num_beams=3),
         dict(num_beams=2, no_repeat_ngram_size=2, early_stopping=True),
         dict(num_beams=4, no_repeat_ngram_size=3)]


@pytest.mark.parametrize("activation", ["gelu", "gelu_new"])
@pytest.mark.parametrize("kwargs", CASES)
@pytest.mark.parametrize("systems", [1, 2])
def test_same_ids_as_transformers(activation, kwargs, systems):
    for seed, boost in ((3, 1.0), (4, 6.0)):
        cfg, w, ref = model_pair(activation, seed, boost)
        prompts = torch.randint(0, 100, (2, 4), generator=torch.Generator().manual_seed(seed))
        ours = generate(cfg, w, prompts, max_new_tokens=12, systems=systems, **kwargs)
        theirs = ref.generate(prompts, max_new_tokens=12, do_sample=False, pad_token_id=100,
                              attention_mask=torch.ones_like(prompts), **kwargs)
        assert ours.token_ids == theirs.tolist()
        assert ours.simulated_latency_s > 0 and ours.functional_events > 0


def test_max_length_and_eos_end_early():
    cfg, w, ref = model_pair("gelu", 4, eos_boost=8.0)
    prompts = torch.randint(0, 100, (2, 3), generator=torch.Generator().manual_seed(9))
    ours = generate(cfg, w, prompts, max_length=15, num_beams=2)
    theirs = ref.generate(prompts, max_length=15, num_beams=2, do_sample=False, pad_token_id=100,
                          attention_mask=torch.ones_like(prompts))
    assert ours.token_ids == theirs.tolist()


def test_decode_is_stream_bound_and_scales_with_batch():
    """Every decoding step streams all weights: tokens/s grows with the batch at the stream bound
    (the closed form, within 1%) until the KV cache fills the wafer."""
    model = zoo.get("cerebras-gpt-1.3b")
    cluster = generations.preset("cs2", 1)
    prev = 0.0
    for batch in (1, 8, 64):
        r = simulate_inference(model, calls_for(batch, 64, 64), cluster)
        decode_s = sum(r.call_times_s[1:]) / (r.calls - 1)
        assert batch / decode_s == pytest.approx(r.stream_bound_tokens_per_s, rel=0.01)
        assert r.tokens_per_s <= r.stream_bound_tokens_per_s * 1.001 and r.tokens_per_s > prev
        prev = r.tokens_per_s
    with pytest.raises(ConfigError, match="KV cache"):
        simulate_inference(model, calls_for(4096, 128, 128), cluster)


def test_generate_cli(tmp_path, capsys):
    cfg, w, _ = model_pair("gelu_new", 3)
    hf.save_checkpoint(tmp_path, cfg, w)
    code = main(["generate", "--checkpoint", str(tmp_path), "--prompt-ids", "5,6,7", "--max-new-tokens", "6",
                 "--num-beams", "2", "--batch", "2", "--systems", "2", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert len(data["token_ids"]) == 2 and data["token_ids"][0][:3] == [5, 6, 7]
    assert data["simulated_latency_s"] > 0 and data["simulated_tokens_per_s"] > 0
    code = main(["generate", "--checkpoint", str(tmp_path), "--prompt", "hello"])
    _, err = capsys.readouterr()
    assert code == 2 and "tokenizer" in err
    code = main(["generate", "--checkpoint", str(tmp_path), "--prompt-ids", "5,500"])
    _, err = capsys.readouterr()
    assert code == 2 and "outside" in err


def test_generate_cli_with_a_local_tokenizer(tmp_path, capsys):
    words = ["<eos>", "the", "cat", "sat", "on", "mat"] + [f"w{i}" for i in range(95)]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<eos>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    fast.save_pretrained(tmp_path)
    cfg, w, _ = model_pair("gelu", 3)
    hf.save_checkpoint(tmp_path, cfg, w)
    code = main(["generate", "--checkpoint", str(tmp_path), "--prompt", "the cat sat", "--max-new-tokens", "4",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["token_ids"][0][:3] == [1, 2, 3] and data["text"][0].startswith("the cat sat")
