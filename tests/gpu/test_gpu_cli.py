"""``wsim gpu`` through ``wsim.cli.main``: JSON keys, exit code 2 with one line on bad input."""

import json

import pytest

from wsim.cli import main

MEGATRON_1T = ["gpu", "--model", "megatron-1t", "--gpus", "3072", "--gpu", "a100-80gb", "--tp", "8",
               "--pp", "64", "--batch", "3072", "--recompute", "full"]


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_contract(capsys):
    code, out, err = _run(capsys, MEGATRON_1T + ["--json"])
    assert code == 0, err
    d = json.loads(out)
    for key in ("step_time_s", "model_tflops_per_gpu", "hardware_tflops_per_gpu", "mfu", "hfu",
                "memory_per_gpu_bytes", "fits", "bubble_fraction", "plan", "breakdown", "memory"):
        assert key in d
    assert {"tp", "pp", "dp", "micro_batch", "interleave", "recompute"} <= set(d["plan"])
    assert d["plan"]["tp"] == 8 and d["plan"]["pp"] == 64 and d["plan"]["dp"] == 6
    assert d["plan"]["chosen"] == ["micro_batch", "interleave"]
    assert d["fits"] is True
    assert 0 < d["mfu"] < d["hfu"] < 1


def test_human_table(capsys):
    code, out, _ = _run(capsys, MEGATRON_1T)
    assert code == 0
    assert "step time" in out and "bubble" in out and "memory per GPU" in out


def test_search_json(capsys):
    code, out, err = _run(capsys, ["gpu", "--model", "cerebras-gpt-1.3b", "--gpus", "16", "--batch",
                                   "528", "--search", "--json"])
    assert code == 0, err
    d = json.loads(out)
    assert d["fits"] and d["plan"]["tp"] * d["plan"]["pp"] * d["plan"]["dp"] == 16
    assert d["search"]["evaluations"] > 0


def test_explicit_dimensions(capsys):
    code, out, err = _run(capsys, ["gpu", "--layers", "12", "--hidden", "768", "--heads", "12",
                                   "--gpus", "8", "--batch", "64", "--tp", "2", "--json",
                                   "--micro-batch", "2", "--zero", "1", "--sequence-parallel"])
    assert code == 0, err
    d = json.loads(out)
    assert d["plan"]["micro_batch"] == 2 and d["plan"]["sequence_parallel"] and d["plan"]["zero"] == 1


@pytest.mark.parametrize("extra, message", [
    (["--model", "gpt3-175b", "--gpus", "80", "--batch", "80", "--tp", "5"], "tp 5 does not divide"),
    (["--model", "gpt3-175b", "--gpus", "40", "--batch", "40", "--tp", "8", "--pp", "5"],
     "pp 5 does not divide"),
    (["--model", "gpt3-175b", "--gpus", "60", "--batch", "60", "--tp", "8", "--pp", "8"],
     "gpus must equal tp x pp x dp"),
    (["--model", "gpt3-175b", "--gpus", "8", "--batch", "8", "--tp", "8"], "does not fit"),
    (["--model", "gpt3-175b", "--gpus", "8", "--batch", "8", "--search", "--gpu", "a100-40gb"],
     "no plan of gpt3-175b fits"),
    (["--model", "gpt3-13b", "--gpus", "8", "--batch", "8", "--micro-batch", "x"], "--micro-batch"),
    (["--model", "gpt3-13b", "--gpus", "8", "--batch", "8", "--gpu", "v100"], "invalid choice"),
    (["--model", "nope", "--gpus", "8", "--batch", "8"], "unknown model"),
    (["--model", "gpt3-13b", "--gpus", "8", "--batch", "8", "--search", "--interleave", "2"],
     "--search chooses"),
])
def test_bad_input_exits_2_with_one_line(capsys, extra, message):
    code, out, err = _run(capsys, ["gpu"] + extra + ["--json"])
    assert code == 2
    assert out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
