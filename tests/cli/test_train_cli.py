"""`wsim train` against the contract."""

import json

import numpy as np
import pytest
import torch
import transformers

from models import hf
from models.gpt import GPTConfig, init_weights
from tests.tiny_models import NEW_FAMILIES, perturbed, tiny
from wsim.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    cfg = GPTConfig(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=64)
    hf.save_checkpoint(folder, cfg, init_weights(cfg, 3))
    return folder


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tokens.npy"
    np.save(path, np.random.default_rng(0).integers(0, 101, size=(12, 17)))
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_json_and_save(capsys, checkpoint, tokens, tmp_path):
    code, out, err = run(capsys, "train", "--checkpoint", checkpoint, "--data", tokens, "--systems", 2,
                         "--batch", 4, "--steps", 3, "--save", tmp_path / "out", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert len(data["losses"]) == 3 and data["systems"] == 2 and data["simulated_step_time_s"] > 0
    assert "step 3/3" in err  # progress on stderr
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_same_losses_for_any_number_of_systems(capsys, checkpoint, tokens):
    losses = []
    for n in (1, 4):
        code, out, _ = run(capsys, "train", "--checkpoint", checkpoint, "--data", tokens, "--systems", n,
                           "--batch", 4, "--steps", 2, "--dtype", "float64", "--json")
        assert code == 0
        losses.append(json.loads(out)["losses"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-10)


@pytest.mark.parametrize("extra,needle", [
    (["--systems", "3", "--batch", "4"], "not divisible"),
    (["--betas", "0.9"], "--betas"),
    (["--steps", "9", "--batch", "4"], "need 36"),
    (["--lr", "-1"], "lr"),
    (["--model", "cerebras-gpt-111m"], "exactly one"),
])
def test_bad_input_exits_2(capsys, checkpoint, tokens, extra, needle):
    code, out, err = run(capsys, "train", "--checkpoint", checkpoint, "--data", tokens, *extra)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_bad_data_files(capsys, checkpoint, tmp_path):
    path = tmp_path / "bad.npy"
    np.save(path, np.full((4, 9), 500))  # outside the vocabulary
    code, _, err = run(capsys, "train", "--checkpoint", checkpoint, "--data", path)
    assert code == 2 and "vocabulary" in err
    code, _, err = run(capsys, "train", "--checkpoint", checkpoint, "--data", tmp_path / "none.npy")
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "train", "--checkpoint", tmp_path / "nothing", "--data", path)
    assert code == 2 and "does not exist" in err


# ---- every family --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_train_each_family_from_a_checkpoint_and_save(capsys, tokens, tmp_path, family):
    """A Llama / GPT-J / GPT-NeoX checkpoint trains through the CLI, the same losses on 1 and 4
    CS-2s, and --save writes a checkpoint that the family's transformers class loads whole."""
    cfg = tiny(family)
    hf.save_checkpoint(tmp_path / "in", cfg, perturbed(cfg, torch.float32))
    losses = []
    for n in (1, 4):
        code, out, err = run(capsys, "train", "--checkpoint", tmp_path / "in", "--data", tokens, "--systems", n,
                             "--batch", 4, "--steps", 2, "--dtype", "float64", "--save", tmp_path / f"out{n}",
                             "--json")
        assert code == 0, err
        losses.append(json.loads(out)["losses"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-10)
    model, info = getattr(transformers, cfg.ARCHITECTURE).from_pretrained(tmp_path / "out4",
                                                                          output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_train_a_config_json_from_its_init(capsys, tokens, tmp_path):
    cfg = tiny("llama")
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    code, out, err = run(capsys, "train", "--model", tmp_path / "config.json", "--init-seed", 4,
                         "--data", tokens, "--batch", 2, "--json")
    assert code == 0, err
    assert len(json.loads(out)["losses"]) == 1


def test_a_model_too_large_for_this_machine_is_refused_before_allocating(capsys, tokens):
    code, out, err = run(capsys, "train", "--model", "llama-3-70b", "--data", tokens)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "llama-3-70b (70.6B parameters) in float32 on the CPU needs about 1693 GB" in err
