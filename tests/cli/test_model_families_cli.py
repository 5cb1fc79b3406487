"""``--model`` with a config.json or checkpoint folder of any family, zoo entries of every family,
and the one-line refusals (exit 2) of configs wsim cannot model."""

import json

import pytest
import torch

from models import hf
from wsim.commands.cli import main
from tests.tiny_models import NEW_FAMILIES, perturbed, tiny

# Llama-2-7B's config.json as published (meta-llama/Llama-2-7b-hf), fields that matter here
LLAMA2_7B = {"_name_or_path": "meta-llama/Llama-2-7b-hf", "architectures": ["LlamaForCausalLM"],
             "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
             "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
             "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
             "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
             "torch_dtype": "float16", "use_cache": True, "vocab_size": 32000}


# Mixtral-8x7B-v0.1's config.json as published (mistralai/Mixtral-8x7B-v0.1)
MIXTRAL_8X7B = {"architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
                "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
                "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
                "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
                "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": False,
                "rms_norm_eps": 1e-05, "rope_theta": 1e6, "router_aux_loss_coef": 0.02, "sliding_window": None,
                "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 32000}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_published_llama_config_simulates_as_the_zoo_entry(capsys, tmp_path):
    """Named after the config (not its folder), the same parameters and step as ``llama-2-7b``."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA2_7B))
    results = []
    for model in (folder, folder / "config.json", "llama-2-7b"):
        code, out, err = run(capsys, "simulate", "--model", model, "--batch", 8, "--json")
        assert code == 0, err
        results.append(json.loads(out))
    assert results[0]["model"] == results[1]["model"] == "meta-llama/Llama-2-7b-hf"
    assert results[0]["params"] == results[2]["params"] == 6_738_415_616
    assert results[0]["step_time_s"] == pytest.approx(results[2]["step_time_s"], rel=1e-9)


@pytest.mark.parametrize("model", ["llama-2-7b", "llama-3-70b", "gpt-j-6b", "pythia-1b"])
def test_zoo_families_simulate(capsys, model):
    code, out, err = run(capsys, "simulate", "--model", model, "--batch", 16, "--systems", 2, "--json")
    assert code == 0, err
    r = json.loads(out)
    for key in ("step_time_s", "tokens_per_s", "model_flops_per_step", "compute_utilization", "bottleneck",
                "wafer_memory_bytes", "memoryx_bytes", "micro_batches", "systems", "breakdown"):
        assert key in r, key
    assert r["model"] == model and r["step_time_s"] > 0


@pytest.mark.parametrize("config,message", [
    ({"model_type": "bert", "hidden_size": 768},
     "model_type 'bert' is not supported; supported: gpt2, gpt_neox, gptj, llama"),
    ({k: v for k, v in LLAMA2_7B.items() if k != "intermediate_size"},
     "config lacks the llama key 'intermediate_size'"),
    ({**LLAMA2_7B, "num_key_value_heads": 5},
     "LlamaConfig.num_key_value_heads (5) must divide num_attention_heads (32): in grouped-query "
     "attention each key/value head serves a whole group of query heads"),
])
def test_configs_that_cannot_be_modelled_exit_2_with_one_line(capsys, tmp_path, config, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    for argv in (["simulate", "--model", path], ["gpu", "--model", path, "--gpus", "8", "--batch", "8"],
                 ["generate", "--checkpoint", tmp_path, "--prompt-ids", "1,2"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "", argv
        assert len(err.strip().splitlines()) == 1 and message in err, (argv, err)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_generate_from_each_family_checkpoint(capsys, tmp_path, family):
    cfg = tiny(family)
    hf.save_checkpoint(tmp_path, cfg, perturbed(cfg, torch.float32))
    code, out, err = run(capsys, "generate", "--checkpoint", tmp_path, "--prompt-ids", "5,6,7",
                         "--max-new-tokens", 5, "--num-beams", 2, "--no-repeat-ngram-size", 2,
                         "--batch", 2, "--systems", 2, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert len(r["token_ids"]) == 2 and r["token_ids"][0][:3] == [5, 6, 7]
    assert r["simulated_latency_s"] > 0 and r["kv_cache_bytes"] > 0


def test_a_published_mixtral_config_simulates_with_all_experts_streamed(capsys, tmp_path):
    """All 8 experts' weights streamed (46.7B parameters), the FLOPs of the 2 a token uses (12.9B
    active: 6 x 12.9e9 per token plus attention); the zoo entry is the same model; the GPU model,
    which has no experts yet, refuses it in one line."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MIXTRAL_8X7B))
    results = []
    for model in (path, "mixtral-8x7b"):
        code, out, err = run(capsys, "simulate", "--model", model, "--systems", 16, "--json")
        assert code == 0, err
        results.append(json.loads(out))
    assert results[0]["params"] == results[1]["params"] == 46_702_792_704
    assert results[0]["step_time_s"] == pytest.approx(results[1]["step_time_s"], rel=1e-9)
    tokens = results[0]["batch_seqs"] * results[0]["seq"]
    per_token = results[0]["model_flops_per_step"] / tokens
    assert 6 * 12.88e9 < per_token < 6 * 12.88e9 * 1.1  # active parameters, not all 46.7B
    # on GPUs too (expert parallelism, wsim.gpu.moe): the config and the zoo entry agree
    code, out, err = run(capsys, "gpu", "--model", path, "--gpus", 64, "--batch", 64, "--gpu", "h100",
                         "--pp", 4, "--ep", 8, "--stack", "megatron-core", "--json")
    assert code == 0, err
    code2, out2, err2 = run(capsys, "gpu", "--model", "mixtral-8x7b", "--gpus", 64, "--batch", 64,
                            "--gpu", "h100", "--pp", 4, "--ep", 8, "--stack", "megatron-core", "--json")
    assert code2 == 0, err2
    assert json.loads(out)["step_time_s"] == pytest.approx(json.loads(out2)["step_time_s"], rel=1e-9)
