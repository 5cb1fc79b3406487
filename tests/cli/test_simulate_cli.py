"""`wsim simulate` against the contract: one JSON object, the keys, exit 2 with one line."""

import json

import pytest

from wsim.commands.cli import main

KEYS = {"step_time_s", "tokens_per_s", "model_flops_per_step", "model_flops_per_s", "power_w", "energy_per_step_j",
        "compute_utilization", "bottleneck", "wafer_memory_bytes", "memoryx_bytes", "micro_batches",
        "systems", "events", "breakdown"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_has_the_contract_keys(capsys):
    code, out, _ = run(capsys, "simulate", "--model", "cerebras-gpt-111m", "--systems", "2",
                       "--batch", "8", "--json")
    assert code == 0
    data = json.loads(out)
    assert KEYS <= data.keys()
    assert data["systems"] == 2 and data["events"] > 0


def test_human_table(capsys):
    code, out, _ = run(capsys, "simulate", "--model", "cerebras-gpt-111m")
    assert code == 0 and "step time" in out and "bottleneck" in out


def test_explicit_dimensions_and_hf_config(capsys, tmp_path):
    code, out, _ = run(capsys, "simulate", "--layers", "4", "--hidden", "256", "--heads", "4",
                       "--seq", "512", "--json")
    assert code == 0 and json.loads(out)["params"] > 0
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"n_layer": 2, "n_embd": 128, "n_head": 4, "vocab_size": 1000,
                               "n_positions": 256, "activation_function": "gelu_new"}))
    code, out, _ = run(capsys, "simulate", "--model", str(cfg), "--seq", "256", "--json")
    assert code == 0 and json.loads(out)["model"]


def test_trace_is_chrome_json_with_tracks(capsys, tmp_path):
    path = tmp_path / "t.json"
    code, out, _ = run(capsys, "simulate", "--model", "cerebras-gpt-111m", "--systems", "4",
                       "--batch", "8", "--trace", str(path), "--json")
    assert code == 0
    trace = json.loads(path.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in trace if e["ph"] == "M" and e["name"] == "thread_name"}
    assert "egress (weights)" in names and "optimizer" in names
    assert any(n.startswith("cs2.") for n in names)
    assert any(n.startswith("sx") for n in names)
    spans = [e for e in trace if e["ph"] == "X"]
    assert spans and all(e["dur"] >= 0 for e in spans)


def test_micro_batches_best_is_never_slower_than_auto(capsys):
    """13B at its published 90 sequences per CS-2: auto keeps every activation (90 micro-batches of
    one sequence); best recomputes with a few large micro-batches and the engine confirms it wins."""
    times = {}
    for policy in ("auto", "best"):
        code, out, _ = run(capsys, "simulate", "--model", "cerebras-gpt-13b", "--systems", "8",
                           "--batch", "720", "--micro-batches", policy, "--json")
        assert code == 0
        times[policy] = json.loads(out)
    assert times["auto"]["micro_batches"] == 90 and not times["auto"]["recompute"]
    assert times["best"]["recompute"] and times["best"]["micro_batches"] < 90
    assert times["best"]["step_time_s"] < times["auto"]["step_time_s"] / 3
    # where auto already needs no more than one micro-batch, best keeps it
    code, out, _ = run(capsys, "simulate", "--model", "cerebras-gpt-111m", "--micro-batches", "best", "--json")
    assert code == 0 and json.loads(out)["micro_batches"] == 1 and not json.loads(out)["recompute"]


def test_cluster_json_file(capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"systems": 2, "memoryx": {"stream_bytes_per_s": 75e9}}))
    code, out, _ = run(capsys, "simulate", "--model", "cerebras-gpt-111m", "--cluster", str(path),
                       "--json")
    assert code == 0 and json.loads(out)["systems"] == 2


@pytest.mark.parametrize("argv,needle", [
    (["--model", "no-such-model"], "unknown model"),
    (["--model", "cerebras-gpt-111m", "--systems", "0"], "systems"),
    (["--model", "cerebras-gpt-111m", "--systems", "-2"], "systems"),
    (["--model", "cerebras-gpt-111m", "--systems", "4", "--batch", "2"], "smaller than"),
    (["--model", "cerebras-gpt-111m", "--systems", "4", "--batch", "6"], "not divisible"),
    (["--model", "cerebras-gpt-111m", "--micro-batches", "zero"], "micro-batches"),
    (["--model", "cerebras-gpt-111m", "--steps", str(2**63)], "max_chunk_passes"),
    (["--model", "cerebras-gpt-111m", "--max-chunk-passes", "10"], "max_chunk_passes"),
    (["--model", "cerebras-gpt-111m", "--max-chunk-passes", "0"], "max_chunk_passes"),
    (["--model", "cerebras-gpt-111m", "--seq", "4096"], "positions"),
    (["--model", "cerebras-gpt-111m", "--cluster", "nowhere"], "preset"),
    (["--model", "cerebras-gpt-111m", "--cluster", "missing.json"], "does not exist"),
    (["--layers", "4", "--hidden", "256"], "--heads"),
    (["--layers", "4", "--hidden", "250", "--heads", "3"], "divisible"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, needle):
    code, out, err = run(capsys, "simulate", *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("section,key", [("memoryx", "stream_bytes_per_s"),
                                         ("swarmx", "port_bytes_per_s"), ("cs2", "io_bytes_per_s")])
def test_non_positive_bandwidth_exits_2(capsys, tmp_path, section, key):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({section: {key: 0}}))
    code, _, err = run(capsys, "simulate", "--model", "cerebras-gpt-111m", "--cluster", str(path))
    assert code == 2 and f"{section}.{key}" in err


def test_model_larger_than_memoryx_exits_2(capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"memoryx": {"capacity_bytes": 1e12}}))
    code, _, err = run(capsys, "simulate", "--model", "gpt3-175b", "--batch", "1", "--cluster", str(path))
    assert code == 2 and "MemoryX" in err
