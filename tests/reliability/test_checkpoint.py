"""Nothing lost: MemoryX checkpoints (``wsim.functional.checkpoint``) resume training bit for bit,
and a damaged checkpoint is refused whole, naming the file."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.gpt import GPTConfig, init_weights
from wsim.commands.cli import main
from wsim.functional import checkpoint as ck
from wsim.functional.train import train

CFG = GPTConfig(n_layer=2, n_embd=16, n_head=2, vocab_size=53, n_positions=32)
BATCH, SEQ, STEPS = 8, 8, 6
HYPER = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
DATA = torch.randint(0, 53, (STEPS * BATCH, SEQ + 1), generator=torch.Generator().manual_seed(0))


def assert_bit_identical(a, b):
    assert a.final_weights.keys() == b.final_weights.keys()
    for n in a.final_weights:
        x, y = a.final_weights[n], b.final_weights[n]
        assert x.dtype == y.dtype and torch.equal(x, y), n
    for sa, sb in zip(a.optimizer_state["layers"], b.optimizer_state["layers"], strict=True):
        assert (sa is None) == (sb is None)
        if sa is None:
            continue
        assert sa["param_groups"] == sb["param_groups"]
        assert sa["state"].keys() == sb["state"].keys()
        for pid in sa["state"]:
            assert sa["state"][pid].keys() == sb["state"][pid].keys()
            for k, v in sa["state"][pid].items():
                w = sb["state"][pid][k]
                assert v.dtype == w.dtype and torch.equal(v, w), (pid, k)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("systems", [1, 4])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, systems, dtype):
    w = init_weights(CFG, 0, getattr(torch, dtype))
    full = train(CFG, w, DATA, systems=systems, steps=STEPS, batch=BATCH, dtype=dtype, **HYPER)
    first = train(CFG, w, DATA, systems=systems, steps=3, batch=BATCH, dtype=dtype, **HYPER)
    ck.save_latest(tmp_path, CFG, first.final_weights, first.optimizer_state, step=3, batch=BATCH,
                   train=HYPER | {"dtype": dtype}, data_sha256=ck.data_fingerprint(DATA))
    first_losses = first.losses
    del first  # nothing survives the "interruption" but the files (and the losses it printed)
    c = ck.load(tmp_path)
    assert c.step == 3 and c.data_row == 3 * BATCH and c.cfg == CFG
    rest = train(c.cfg, c.weights, DATA, systems=systems, steps=3, batch=c.batch, dtype=dtype,
                 **HYPER, **c.resume_kwargs())
    # the interrupted run's 3 losses and the resumed run's 3 are the uninterrupted run's 6, bit for bit
    assert len(first_losses) == len(rest.losses) == 3
    assert first_losses + rest.losses == full.losses
    assert_bit_identical(full, rest)


def test_resume_with_micro_batches_and_uneven_split(tmp_path):
    w = init_weights(CFG, 1, torch.float64)
    kw = dict(systems=2, batch=BATCH, dtype="float64", micro_batches=2, **HYPER)
    full = train(CFG, w, DATA, steps=5, **kw)
    a = train(CFG, w, DATA, steps=1, **kw)
    ck.save(tmp_path / "c1", CFG, a.final_weights, a.optimizer_state, step=1, batch=BATCH)
    c = ck.load(tmp_path / "c1")
    b = train(CFG, c.weights, DATA, steps=4, **kw, **c.resume_kwargs())
    assert a.losses + b.losses == full.losses
    assert_bit_identical(full, b)


# ---- damaged checkpoints ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    w = init_weights(CFG, 0, torch.float32)
    r = train(CFG, w, DATA, systems=2, steps=1, batch=BATCH, **HYPER)
    path = tmp_path_factory.mktemp("ckpt") / "good"
    ck.save(path, CFG, r.final_weights, r.optimizer_state, step=1, batch=BATCH, train=HYPER)
    return path


def copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize("name", list(ck.FILES) + [ck.MANIFEST])
@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "append"])
def test_damaged_checkpoint_is_refused_naming_the_file(saved, tmp_path, name, damage):
    path = copy(saved, tmp_path / "c")
    f = path / name
    data = f.read_bytes()
    if damage == "flip":
        f.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x10]) + data[len(data) // 2 + 1:])
    elif damage == "truncate":
        f.write_bytes(data[:len(data) // 3])
    elif damage == "append":
        f.write_bytes(data + b"\0")
    else:
        f.unlink()
    with pytest.raises(ck.CheckpointError) as err:
        ck.load(path)
    assert name in str(err.value)


def test_consistent_hashes_but_inconsistent_content_is_refused(saved, tmp_path):
    """Someone edits state.json and re-hashes the manifest: the content checks still refuse it."""
    import hashlib

    path = copy(saved, tmp_path / "c")
    state = json.loads((path / "state.json").read_text())
    state["data_row"] = 999
    blob = json.dumps(state).encode()
    (path / "state.json").write_bytes(blob)
    manifest = json.loads((path / ck.MANIFEST).read_text())
    manifest["files"]["state.json"] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    manifest["self_sha256"] = ck._self_hash(manifest)
    (path / ck.MANIFEST).write_bytes(ck._manifest_bytes(manifest))  # as save writes it
    with pytest.raises(ck.CheckpointError, match="inconsistent"):
        ck.load(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(list(ck.FILES) + [ck.MANIFEST]), where=st.floats(0, 1), xor=st.integers(1, 255),
       truncate=st.booleans())
def test_any_single_damage_is_refused(outcomes, saved, tmp_path_factory, name, where, xor, truncate):
    path = copy(saved, tmp_path_factory.mktemp("fuzz") / "c")
    f = path / name
    data = bytearray(f.read_bytes())
    i = min(int(where * len(data)), len(data) - 1)
    if truncate:
        data = data[:i]
    else:
        data[i] ^= xor
    f.write_bytes(bytes(data))
    with pytest.raises(ck.CheckpointError) as err:
        ck.load(path)
    blamed(err, name)
    outcomes("checkpoint: damaged files", "refused", (name, i, xor, truncate))


def blamed(err, name: str) -> None:
    """The refusal names the damaged file, and no other file of the checkpoint."""
    msg = str(err.value)
    assert name in msg, msg
    assert not [other for other in [*ck.FILES, ck.MANIFEST] if other != name and other in msg], msg


def test_every_byte_of_the_manifest_flipped_is_refused(saved, tmp_path):
    """Each byte of manifest.json, flipped two ways: refused, naming the manifest. xor 0x29 turns an
    indentation space into a tab, a change JSON parses to the same values (the self hash alone let
    it through: hypothesis found it); xor 0x01 changes letters, digits, quotes and newlines."""
    raw = (saved / ck.MANIFEST).read_bytes()
    path = copy(saved, tmp_path / "c")
    f = path / ck.MANIFEST
    refused = 0
    for i in range(len(raw)):
        for xor in (0x29, 0x01):
            data = bytearray(raw)
            data[i] ^= xor
            f.write_bytes(bytes(data))
            with pytest.raises(ck.CheckpointError) as err:
                ck.load(path)
            blamed(err, ck.MANIFEST)
            refused += 1
    assert refused == 2 * len(raw) > 1000
    f.write_bytes(raw)
    ck.load(path)  # the undamaged copy still loads


def test_damage_to_any_hash_or_size_in_the_manifest_is_blamed_on_the_manifest(saved, tmp_path):
    """Every SHA-256 the manifest holds (its own and each file's) and every size, altered at its
    first, middle and last digit (the JSON stays valid): refused, every time, naming the manifest
    (a file's hash damaged in the manifest is not damage to that file)."""
    import re

    text = (saved / ck.MANIFEST).read_text()
    spans = [m.span(1) for m in re.finditer(r'"([0-9a-f]{64})"', text)]
    spans += [m.span(1) for m in re.finditer(r'"bytes": ([0-9]+)', text)]
    assert len(spans) == 2 * len(ck.FILES) + 1  # each file's hash and size, the manifest's own hash
    cases = 0
    for lo, hi in spans:
        for i in sorted({lo, (lo + hi) // 2, hi - 1}):
            digit = "1" if text[i] != "1" else "2"
            path = copy(saved, tmp_path / f"c{cases}")
            (path / ck.MANIFEST).write_text(text[:i] + digit + text[i + 1:])
            with pytest.raises(ck.CheckpointError) as err:
                ck.load(path)
            blamed(err, ck.MANIFEST)
            cases += 1
    assert cases >= 3 * len(spans) - 2


def test_save_is_atomic_and_never_overwrites(saved, tmp_path, monkeypatch):
    c = ck.load(saved)
    run = tmp_path / "run"
    ck.save_latest(run, c.cfg, c.weights, c.optimizer_state, step=1, batch=BATCH)
    real = ck._write
    calls = []

    def crash(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(ck, "_write", crash)
    with pytest.raises(OSError):
        ck.save_latest(run, c.cfg, c.weights, c.optimizer_state, step=2, batch=BATCH)
    monkeypatch.setattr(ck, "_write", real)
    # the crash left no step-2 folder, no temporary folder, and LATEST still names step 1
    assert sorted(p.name for p in run.iterdir()) == ["LATEST", "step-00000001"]
    assert ck.load(run).step == 1
    with pytest.raises(ck.CheckpointError, match="already exists"):
        ck.save(run / "step-00000001", c.cfg, c.weights, c.optimizer_state, step=1, batch=BATCH)
    ck.save_latest(run, c.cfg, c.weights, c.optimizer_state, step=2, batch=BATCH)
    ck.save_latest(run, c.cfg, c.weights, c.optimizer_state, step=3, batch=BATCH, keep=2)
    assert sorted(p.name for p in run.iterdir()) == ["LATEST", "step-00000002", "step-00000003"]
    assert ck.load(run).step == 3


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.load(tmp_path / "nothing")
    with pytest.raises(ck.CheckpointError, match="manifest"):
        ck.load(tmp_path)
    (tmp_path / "LATEST").write_text("../elsewhere\n")
    with pytest.raises(ck.CheckpointError, match="LATEST"):
        ck.load(tmp_path)


# ---- the command line ------------------------------------------------------------------------------
def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_checkpoint_and_resume_bit_identical(capsys, tmp_path):
    tokens = tmp_path / "tokens.npy"
    np.save(tokens, DATA.numpy())
    base = ["train", "--data", tokens, "--systems", "2", "--batch", BATCH, "--dtype", "float64",
            "--lr", "3e-3", "--json"]
    from models import hf

    hf.save_checkpoint(tmp_path / "init", CFG, init_weights(CFG, 0, torch.float32))
    code, out, err = run_cli(capsys, *base, "--checkpoint", tmp_path / "init", "--steps", 4,
                             "--checkpoint-every", 2, "--checkpoint-dir", tmp_path / "full")
    assert code == 0, err
    full = json.loads(out)
    assert len(full["checkpoints"]) == 2 and len(full["losses"]) == 4
    code, out, err = run_cli(capsys, *base, "--checkpoint", tmp_path / "init", "--steps", 2,
                             "--checkpoint-dir", tmp_path / "part")
    assert code == 0, err
    first = json.loads(out)
    code, out, err = run_cli(capsys, "train", "--data", tokens, "--systems", "2", "--json",
                             "--resume", tmp_path / "part", "--steps", 2, "--checkpoint-dir", tmp_path / "part")
    assert code == 0, err
    second = json.loads(out)
    assert second["first_step"] == 2 and first["losses"] + second["losses"] == full["losses"]
    a, b = ck.load(tmp_path / "full"), ck.load(tmp_path / "part")
    assert a.step == b.step == 4
    for n in a.weights:
        assert torch.equal(a.weights[n], b.weights[n]), n
    # refused: other data, another batch, a different lr, a damaged checkpoint: exit 2, one line
    other = tmp_path / "other.npy"
    np.save(other, DATA.numpy()[::-1].copy())
    bad = [["--data", other, "--resume", tmp_path / "part"],
           ["--data", tokens, "--resume", tmp_path / "part", "--batch", 4],
           ["--data", tokens, "--resume", tmp_path / "part", "--lr", "1e-3"],
           ["--data", tokens, "--resume", tmp_path / "part", "--model", "cerebras-gpt-111m"],
           ["--data", tokens, "--model", "cerebras-gpt-111m", "--checkpoint-every", 1]]
    latest = tmp_path / "part" / (tmp_path / "part" / "LATEST").read_text().strip()
    with open(latest / "weights.safetensors", "r+b") as fh:
        fh.truncate(os.path.getsize(latest / "weights.safetensors") - 7)
    bad.append(["--data", tokens, "--resume", tmp_path / "part"])
    for argv in bad:
        code, out, err = run_cli(capsys, "train", "--steps", 1, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and out == "", (argv, err)
    assert "weights.safetensors" in err and "truncated" in err


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_other_families_resume_bit_for_bit(tmp_path, family):
    """The checkpoint stores the family's config.json (model_type dispatch on load): a Llama (GQA) or
    GPT-NeoX run resumed from disk equals the uninterrupted run."""
    from tests.tiny_models import tiny

    cfg = tiny(family)
    data = torch.randint(0, 101, (4 * BATCH, SEQ + 1), generator=torch.Generator().manual_seed(3))
    w = cfg.init_weights(2, torch.float64)
    kw = dict(systems=2, batch=BATCH, dtype="float64", **HYPER)
    full = train(cfg, w, data, steps=4, **kw)
    first = train(cfg, w, data, steps=2, **kw)
    ck.save(tmp_path / "c", cfg, first.final_weights, first.optimizer_state, step=2, batch=BATCH)
    c = ck.load(tmp_path / "c")
    assert c.cfg == cfg and type(c.cfg) is type(cfg)
    rest = train(c.cfg, c.weights, data, steps=2, **kw, **c.resume_kwargs())
    assert first.losses + rest.losses == full.losses
    assert_bit_identical(full, rest)
