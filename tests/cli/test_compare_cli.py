"""``wsim compare`` against the contract: one JSON object with the keys, exit 2 with one line."""

import json

import pytest

from wsim.commands.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_headline_gpu_count_comes_from_validated_plans(capsys):
    """111M is outside every validated regime (too small): no headline count, the fastest plan of
    any regime beside it, labelled with its regime (issue 19)."""
    code, out, err = run(capsys, "compare", "--model", "cerebras-gpt-111m", "--gpu", "a100-80gb",
                         "--method", "analytic", "--max-gpus", "32", "--json")
    assert code == 0, err
    g = json.loads(out)["gpu"][0]
    assert g["basis"] == "validated" and g["matched"] is False and g["gpus"] is None
    x = g["fastest_extrapolated"]
    assert x["regime"] in ("checked", "extrapolated") and x["gpus"] >= 1


def test_published_run_json(capsys):
    code, out, err = run(capsys, "compare", "--model", "cerebras-gpt-111m", "--basis", "fastest",
                         "--json")
    assert code == 0, err
    d = json.loads(out)
    assert {"model", "params", "seq", "tokens", "model_flops", "micro_batching", "method", "cs2",
            "gpu", "accounting"} <= d.keys()
    cs2 = d["cs2"]
    assert cs2["systems"] == 1 and cs2["phases"][0]["steps"] == 9037
    assert cs2["phases"][0]["batch_seqs"] == 120
    assert cs2["time_to_train_s"] == pytest.approx(9037 * cs2["phases"][0]["step_time_s"])
    assert [g["gpu"] for g in d["gpu"]] == ["a100-80gb", "h100-80gb"]
    for g in d["gpu"]:
        assert g["matched"] is True and g["time_to_train_s"] <= cs2["time_to_train_s"]
        assert {"tp", "pp", "dp", "micro_batch", "interleave", "recompute", "zero"} <= g["plan"].keys()
        assert {"parallel_dims", "model_parallel", "knobs"} <= g["complexity"].keys()
        assert g["plan"]["tp"] * g["plan"]["cp"] * g["plan"]["pp"] * g["plan"]["dp"] == g["gpus"]
    assert out.count("\n") == 1  # exactly one JSON object


def test_thirteen_b_has_two_phases(capsys):
    code, out, _ = run(capsys, "compare", "--model", "cerebras-gpt-13b", "--gpu", "h100-80gb",
                       "--method", "analytic", "--json")
    assert code == 0
    phases = json.loads(out)["cs2"]["phases"]
    assert [(p["batch_seqs"], p["systems"]) for p in phases] == [(720, 8), (1080, 12)]
    assert sum(p["steps"] for p in phases) == 174335


def test_fixed_gpu_count_reports_the_cs2_count_that_matches(capsys):
    code, out, err = run(capsys, "compare", "--model", "gpt-neox-20b", "--batch", "1536",
                         "--systems", "16", "--steps", "1", "--gpus", "96", "--gpu", "a100-40gb",
                         "--json")
    assert code == 0, err
    g = json.loads(out)["gpu"][0]
    assert g["gpus"] == 96 and g["matched"] is None
    assert 1 <= g["cs2_match"]["systems"] <= 192
    assert g["cs2_match"]["step_time_s"] <= g["phases"][0]["step_time_s"] * 1.01


def test_human_table(capsys):
    code, out, _ = run(capsys, "compare", "--model", "cerebras-gpt-111m", "--gpu", "a100-80gb",
                       "--basis", "fastest")
    assert code == 0 and "time to train" in out and "plan: tp" in out
    code, out, _ = run(capsys, "compare", "--model", "cerebras-gpt-111m", "--gpu", "a100-80gb",
                       "--method", "analytic", "--max-gpus", "32")
    assert code == 0 and "validated regime" in out and "fastest plan of any regime" in out


@pytest.mark.parametrize("argv,needle", [
    (["--model", "no-such-model"], "unknown model"),
    (["--model", "gpt-neox-20b"], "--batch and --systems"),
    (["--model", "cerebras-gpt-111m", "--gpu", "tpu"], "unknown GPU"),
    (["--model", "cerebras-gpt-111m", "--steps", "5", "--tokens", "1e9"], "not both"),
    (["--model", "cerebras-gpt-111m", "--systems", "7"], "divisible"),
    (["--model", "cerebras-gpt-111m", "--gpus", "7"], "no GPU plan"),
    (["--model", "cerebras-gpt-111m", "--systems", "0"], "phase.systems"),
    (["--model", "cerebras-gpt-111m", "--switch-fraction", "2"], "switch_fraction"),
    (["--model", "cerebras-gpt-13b", "--switch-fraction", "2"], "switch_fraction"),
    (["--model", "cerebras-gpt-111m", "--method", "guess"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, needle):
    code, out, err = run(capsys, "compare", *argv, "--json")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err, err
