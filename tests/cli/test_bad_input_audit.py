"""Bad input found by the CLI audit (CHANGELOG 0.2.0): each class of finding, one parametrized test.
Every case exits 2 with one line on stderr naming the problem, nothing on stdout, no traceback.

Before the fixes: a traceback (uncaught exception), a zero or empty value read as the default, a
flag silently dropped where it does not apply, an output path found unwritable only after the work
(or an empty one skipped), and a search refusal that named the wrong problem."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import hf
from models.gpt import GPTConfig, init_weights
from wsim.commands.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit")
    cfg = GPTConfig(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=64)
    hf.save_checkpoint(folder / "ckpt", cfg, init_weights(cfg, 3))
    np.save(folder / "tokens.npy", np.random.default_rng(0).integers(0, 101, size=(12, 17)))
    (folder / "prices.json").write_text('{"usd_per_device_hour": {"h100": 2.5}}')
    (folder / "a-file").write_text("x")
    return folder


def refused(capsys, files, argv, needle):
    argv = [str(a).replace("{dir}", str(files)) for a in argv]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, err)
    assert out == "" and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err, err
    return err


GPU = ["gpu", "--model", "llama-3-8b", "--batch", "64", "--gpus", "8", "--allow-oom"]
MOE = ["gpu", "--model", "mixtral-8x7b", "--batch", "64", "--gpus", "16", "--allow-oom"]
SWEEP = ["sweep", "--quiet", "--no-resume", "--models", "cerebras-gpt-111m"]
TRAIN = ["train", "--checkpoint", "{dir}/ckpt", "--data", "{dir}/tokens.npy", "--batch", "2"]
GENERATE = ["generate", "--checkpoint", "{dir}/ckpt", "--prompt-ids", "1,2", "--max-new-tokens", "1"]
COMPARE = ["compare", "--model", "cerebras-gpt-111m", "--method", "analytic"]
ZOO_GPT2 = Path(__file__).parents[1] / "data/modelzoo/Release_2.0.3/gpt2/configs/params_gpt2_small.yaml"
FAULTS = ["faults", "--layers", "2", "--hidden", "64", "--heads", "4", "--vocab", "300", "--seq", "64",
          "--systems", "2", "--batch", "4"]


@pytest.mark.parametrize("argv,needle", [
    ([*MOE, "--search", "--ep", "0"], "ep must be a positive integer"),  # ZeroDivisionError
    ([*SWEEP, "--kind", "analytic", "--systems", "1", "--out", "/proc/no-such/out.json"], "--out"),
    ([*SWEEP, "--kind", "analytic", "--systems", "1", "--out", "{dir}/s.json", "--scheduler", "bogus"],
     "Dask scheduler"),  # ValueError: missing port number
], ids=["search-ep-0", "sweep-out-unwritable", "sweep-scheduler-no-port"])
def test_no_traceback(capsys, files, argv, needle):
    refused(capsys, files, argv, needle)


@pytest.mark.parametrize("argv,needle", [
    ([*GPU, "--tp", "0"], "tp must be a positive integer, got 0"),  # ran as tp 1
    ([*GPU, "--pp", "0"], "pp must be a positive integer, got 0"),
    ([*GPU, "--cp", "0"], "cp must be a positive integer, got 0"),
    ([*MOE, "--ep", "0"], "ep must be a positive integer, got 0"),
    ([*GPU, "--micro-batch", ""], "--micro-batch must be"),  # ran as auto
    ([*TRAIN, "--weight-decay", "inf"], "weight_decay must be a non-negative number, got inf"),
    ([*COMPARE, "--max-gpus", "0"], "--max-gpus must be a positive integer"),  # no count tried
    ([*COMPARE, "--max-gpus", "-8"], "--max-gpus must be a positive integer"),
], ids=["tp-0", "pp-0", "cp-0", "ep-0", "micro-batch-empty", "weight-decay-inf", "max-gpus-0",
        "max-gpus-negative"])
def test_zero_empty_or_infinite_values_are_refused_not_replaced(capsys, files, argv, needle):
    refused(capsys, files, argv, needle)


@pytest.mark.parametrize("argv,needle", [
    ([*GPU, "--vocab", "1000"], "--vocab describe a model given by --layers"),
    ([*GPU, "--ffn", "100", "--activation", "relu"], "--ffn, --activation"),
    (["simulate", "--model", "cerebras-gpt-111m", "--ffn", "100"], "--ffn"),
    (["simulate", "--config", ZOO_GPT2, "--vocab", "100"], "comes from --config"),
    ([*GPU, "--moe-imbalance", "1.5"], "moe_imbalance"),
    ([*GPU, "--moe-imbalance", "1.5", "--search"], "moe_imbalance"),
    ([*TRAIN, "--init-seed", "3"], "--init-seed"),
    ([*TRAIN, "--mask-seed", "3"], "--mask-seed"),
    ([*TRAIN, "--density", "1", "--mask-seed", "3"], "--mask-seed"),
    ([*GENERATE, "--early-stopping"], "--early-stopping applies to beam search"),
    ([*COMPARE, "--switch-fraction", "0.3"], "--switch-fraction"),
    (["compare", "--model", "cerebras-gpt-13b", "--method", "analytic", "--batch", "720", "--systems",
      "8", "--steps", "10", "--switch-fraction", "0.3"], "--switch-fraction"),
    ([*COMPARE, "--gpus", "64", "--max-gpus", "8"], "--max-gpus"),
    ([*COMPARE, "--prices", "{dir}/prices.json"], "unknown device 'h100'; did you mean h100-80gb"),
    ([*SWEEP, "--kind", "analytic", "--systems", "1", "--gpu", "h100-80gb"], "does not use --gpu"),
    ([*SWEEP, "--kind", "gpu", "--gpus", "8", "--cluster", "cs3"], "does not use --cluster"),
    ([*SWEEP, "--kind", "gpu", "--gpus", "8", "--micro-batches", "2", "--batch-tiling-attention", "2"],
     "--micro-batches, --batch-tiling-attention"),
    ([*FAULTS, "--at", "0.3"], "--at shapes --fail or --memoryx-loss"),
    ([*FAULTS, "--policy", "repair"], "--policy shapes --fail"),
    ([*FAULTS, "--straggler", "0:2", "--batch-policy", "largest-divisible"], "--batch-policy shapes"),
    ([*FAULTS, "--fail", "cs2:0", "--checkpoint-every", "50"], "--checkpoint-every shapes --memoryx-loss"),
    ([*FAULTS, "--fail", "cs2:0", "--policy", "repair", "--batch-policy", "keep"],
     "--batch-policy applies to --policy shrink"),
], ids=["gpu-vocab-with-model", "gpu-ffn-activation-with-model", "simulate-ffn-with-model",
        "simulate-vocab-with-config", "imbalance-dense", "imbalance-dense-search", "init-seed-checkpoint",
        "mask-seed-dense", "mask-seed-density-1", "early-stopping-greedy", "switch-fraction-111m",
        "switch-fraction-custom-13b", "max-gpus-with-gpus", "prices-unknown-device", "sweep-gpu-analytic",
        "sweep-cluster-gpu", "sweep-cs2-flags-gpu", "faults-at-default-table", "faults-policy-no-fail",
        "faults-batch-policy-no-fail", "faults-checkpoint-every-no-memoryx", "faults-batch-policy-repair"])
def test_flags_that_do_not_apply_are_refused_not_dropped(capsys, files, argv, needle):
    refused(capsys, files, argv, needle)


@pytest.mark.parametrize("argv,needle", [
    ([*TRAIN, "--save", "/proc/no-such/out"], "cannot write --save"),  # after training, 3 lines
    ([*TRAIN, "--save", "{dir}/a-file"], "is a file; give a folder path"),
    ([*TRAIN, "--checkpoint-dir", "/proc/no-such/run"], "cannot write --checkpoint-dir"),
    ([*TRAIN, "--save", ""], "--save is an empty path"),  # skipped
    (["simulate", "--model", "cerebras-gpt-111m", "--trace", ""], "--trace is an empty path"),
    ([*FAULTS, "--trace", ""], "--trace is an empty path"),
    ([*SWEEP, "--kind", "analytic", "--systems", "1", "--out", "{dir}/s.json", "--plot", ""],
     "--plot is an empty path"),
    ([*SWEEP, "--kind", "analytic", "--systems", "1", "--out", "{dir}/s.json", "--batch", ""],
     "--batch must be comma-separated"),  # ran the default 8 per system
    ([*SWEEP, "--kind", "analytic", "--systems", "1", "--out", "{dir}/s.json", "--seqs-per-system", ""],
     "--seqs-per-system must be comma-separated"),
], ids=["save-unwritable", "save-a-file", "checkpoint-dir-unwritable", "save-empty", "trace-empty",
        "faults-trace-empty", "plot-empty", "sweep-batch-empty", "sweep-seqs-empty"])
def test_output_paths_and_empty_values_are_checked_before_the_work(capsys, files, argv, needle):
    err = refused(capsys, files, argv, needle)
    assert "step 1/" not in err  # refused before training, not after


@pytest.mark.parametrize("argv,needle", [
    (["simulate", "--model", "cerebras-gpt-111m", "--config", ""], "--config is empty"),  # ignored
    (["gpu", "--layers", "2", "--hidden", "64", "--heads", "4", "--model", "", "--batch", "8", "--gpus",
      "1"], "--model is empty"),  # ran the explicit dimensions
    (["train", "--resume", "", "--data", "{dir}/tokens.npy"], "--resume is empty"),  # "give exactly one"
    ([*TRAIN, "--config", ""], "--config is empty"),
    (["generate", "--checkpoint", "", "--prompt-ids", "1"], "--checkpoint is empty"),  # "folder '.'"
    ([*COMPARE, "--prices", ""], "--prices is empty"),  # "Is a directory: '.'"
], ids=["simulate-config", "gpu-model", "train-resume", "train-config", "generate-checkpoint",
        "compare-prices"])
def test_an_empty_name_or_path_is_refused_not_read_as_absent(capsys, files, argv, needle):
    refused(capsys, files, argv, needle)


@pytest.mark.parametrize("argv,needle", [
    ([*GPU, "--search", "--tp", "0"], "tp must be a positive integer, got 0"),  # "no layout is possible"
    ([*GPU, "--search", "--pp", "0"], "pp must be a positive integer, got 0"),
    ([*GPU, "--search", "--cp", "0"], "cp must be a positive integer, got 0"),  # "no software stack"
    ([*GPU, "--search", "--zero", "3", "--pp", "2"], "does not combine with pipeline parallelism"),
], ids=["tp-0", "pp-0", "cp-0", "zero3-pp2"])
def test_search_names_the_given_option_it_refuses(capsys, files, argv, needle):
    refused(capsys, files, argv, needle)


def test_python_m_wsim_runs_the_cli_in_a_real_process():
    """``python -m wsim`` (it exited 1: "'wsim' is a package and cannot be directly executed"); in a
    process of its own the refusal is still one stderr line and exit 2."""
    root = str(Path(__file__).parents[2])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "wsim", *GPU, "--tp", "0"], capture_output=True, text=True,
                       env=env, cwd=root, timeout=120)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.strip().splitlines() == ["wsim: error: tp must be a positive integer, got 0"]
