"""`wsim train` against the contract."""

import json

import numpy as np
import pytest
import torch
import transformers

from models import hf
from models.gpt import GPTConfig, init_weights
from tests.tiny_models import NEW_FAMILIES, perturbed, tiny
from wsim.commands.cli import main


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
    """The saved checkpoint is the trained model: transformers' GPT-2 loaded from the checkpoint
    given, trained by torch.optim.AdamW on the same rows with the CLI's default hyper-parameters
    (tests/tiny_models.adamw_reference), ends where --save's checkpoint is, tensor by tensor, and
    the losses printed are that training's (float64, so that the tolerance is the equivalence's)."""
    from tests.tiny_models import adamw_reference

    code, out, err = run(capsys, "train", "--checkpoint", checkpoint, "--data", tokens, "--systems", 2,
                         "--batch", 4, "--steps", 3, "--dtype", "float64", "--save", tmp_path / "out", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert len(data["losses"]) == 3 and data["systems"] == 2 and data["simulated_step_time_s"] > 0
    assert "step 3/3" in err  # progress on stderr
    saved = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out", dtype=torch.float64).state_dict()
    cfg, _ = hf.load_checkpoint(checkpoint)
    ref_model = transformers.GPT2LMHeadModel.from_pretrained(checkpoint).to(torch.float64)
    rows = torch.from_numpy(np.load(tokens)).long()
    hyper = dict(lr=6e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)  # wsim train's defaults
    losses, final = adamw_reference(cfg, ref_model, rows, 3, 4, hyper)
    assert data["losses"] == pytest.approx(losses, rel=1e-10)
    for name, t in final.items():  # float64 (docs/design.md, "Numerical equivalence")
        assert ((saved[name] - t).abs().max() / t.abs().max()).item() < 1e-9, name
    first = transformers.GPT2LMHeadModel.from_pretrained(checkpoint).state_dict()
    moved = max(((saved[n] - first[n]).abs().max() / first[n].abs().max()).item() for n in final)
    assert moved > 1e-4  # the training moved the weights beyond the tolerance


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


# ---- sparse weight streaming ---------------------------------------------------------------------


def test_sparse_training_json_save_and_timing(capsys, checkpoint, tokens, tmp_path):
    """--density/--mask-seed: the JSON gives the density asked for and the nonzero fraction realised
    per kind; the saved model holds exactly the masked zeros; the simulated step is the sparse one."""
    base = ["train", "--checkpoint", checkpoint, "--data", tokens, "--systems", 2, "--batch", 4,
            "--steps", 2, "--dtype", "float64", "--json"]
    code, out, err = run(capsys, *base, "--density", "block=0.5,head=1", "--mask-seed", 3,
                         "--save", tmp_path / "out")
    assert code == 0, err
    r = json.loads(out)
    assert r["density"] == {"embedding": 1.0, "block": 0.5, "head": 1.0} and r["mask_seed"] == 3
    assert r["nonzero_fraction"] == {"embedding": 1.0, "block": 0.5, "head": 1.0}
    saved = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").state_dict()
    for i in range(2):
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            t = saved[f"transformer.h.{i}.{m}.weight"]
            assert int((t == 0).sum()) == t.numel() // 2
    assert int((saved["transformer.wte.weight"] == 0).sum()) == 0
    code, out, _ = run(capsys, *base)
    dense = json.loads(out)
    assert dense["density"] == {"embedding": 1.0, "block": 1.0, "head": 1.0} and dense["mask_seed"] == 0
    assert r["simulated_step_time_s"] < dense["simulated_step_time_s"]
    assert r["losses"][1] != dense["losses"][1]
    code, out, _ = run(capsys, *base[:-1], "--density", "0.25")
    assert code == 0 and "density embedding 0.25, block 0.25, head 0.25 (mask seed 0" in out


@pytest.mark.parametrize("extra,needle", [
    (["--density", "0"], "density must be a number in (0, 1], got 0.0"),
    (["--density", "1.5"], "density must be a number in (0, 1]"),
    (["--density", "nan"], "density must be a number in (0, 1]"),
    (["--density", "block=half"], "--density must be a number in (0, 1] or kind=number pairs"),
    (["--density", "blocks=0.5"], "density kinds must be among"),
    (["--density", "embedding=0.5"], "ties the embedding and the LM head"),
    (["--mask-seed", "x"], "--mask-seed"),
])
def test_bad_sparse_input_exits_2(capsys, checkpoint, tokens, extra, needle):
    code, out, err = run(capsys, "train", "--checkpoint", checkpoint, "--data", tokens, "--batch", 2, *extra)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_sparse_resume_keeps_the_masks_and_refuses_another(capsys, checkpoint, tokens, tmp_path):
    """A MemoryX checkpoint records density and mask seed: resuming continues the same masked run
    bit for bit; another density or seed is refused."""
    base = ["train", "--data", tokens, "--batch", 4, "--dtype", "float64", "--json"]
    sparse = ["--density", "0.5", "--mask-seed", 2]
    code, out, err = run(capsys, *base, "--checkpoint", checkpoint, *sparse, "--steps", 3)
    assert code == 0, err
    whole = json.loads(out)
    code, _, err = run(capsys, *base, "--checkpoint", checkpoint, *sparse, "--steps", 1,
                       "--checkpoint-dir", tmp_path / "run")
    assert code == 0, err
    code, out, err = run(capsys, *base, "--resume", tmp_path / "run", "--steps", 2)
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["density"] == whole["density"] and resumed["mask_seed"] == 2
    assert resumed["losses"] == whole["losses"][1:]
    for extra, needle in ((["--density", "0.25"], "density"), (["--mask-seed", "3"], "mask_seed")):
        code, out, err = run(capsys, *base, "--resume", tmp_path / "run", *extra)
        assert code == 2 and out == "" and "--resume: the checkpoint was trained with " + needle in err
