"""Bad input anywhere: every generated model, cluster, job and command line either runs or fails with
``wsim.ConfigError`` (Python) / exits 2 with one line and no traceback (CLI). Nothing else escapes.

Generated values mix valid ones with zero, negative, huge, fractional, NaN/inf, bool, None, string
and list values. To keep runs that succeed quick, valid sizes are bounded (layers <= 4, steps <= 3,
batch <= 256, chunk bytes >= 1 MB); huge ones (10^6+ layers, 2^63 steps or batch) must be refused
quickly, by ``models.spec.MAX_LAYERS`` and the engine's ``max_chunk_passes``
(``test_unbounded_work_is_refused`` below checks the CLI under a memory limit). Outcome counts
print in the terminal summary.
"""

import argparse
import collections
import contextlib
import io
import json
import math
import os
import resource
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.spec import ModelSpec
from wsim.cluster import generations
from wsim.commands.cli import main
from wsim.commands.common import model_from_args
from wsim.engine.run import SimOptions, Simulation
from wsim.errors import ConfigError
from wsim.cluster.job import TrainingJob

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

floats_any = st.floats(allow_nan=True, allow_infinity=True)
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.lists(st.integers(), max_size=2),
                 # tiny positive and near-overflow floats: see test_extreme_values_are_refused
                 floats_any.filter(lambda x: not (0 < x < 1e-200 or 1e300 < abs(x) < math.inf)),
                 st.sampled_from([1.5, -0.0, 2**63, -(2**63), 1e200]))


def ints(lo: int, hi: int, *, huge=(10**6, 10**9), junk_weight=True):
    """Mostly valid small ints, plus zero/negative/huge ones and junk of other types."""
    parts = [st.integers(lo, hi), st.integers(lo, hi), st.integers(-3, 0), st.sampled_from(huge)]
    if junk_weight:
        parts.append(junk)
    return st.one_of(*parts)


# ---- Python API: model dimensions + job + cluster size --------------------------------------------
def model_ns(layers, hidden, heads, ffn, vocab, activation, seq):
    return argparse.Namespace(model=None, layers=layers, hidden=hidden, heads=heads, ffn=ffn,
                              vocab=vocab, activation=activation, _model_required=True)


def run_python(model_kw: dict, job_kw: dict, systems, preset="cs2"):
    """The Python path a script takes: dimensions -> ModelSpec (wsim wraps the models package's
    ValueError in ConfigError, as ``model_from_args`` does) -> TrainingJob -> simulate."""
    seq = job_kw.get("seq")
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None  # argparse gives ints
    model = model_from_args(model_ns(**model_kw, seq=seq), seq=seq)
    job = TrainingJob(model, **job_kw)
    cluster = generations.preset(preset, systems)
    report = Simulation(job, cluster, SimOptions()).run()
    assert math.isfinite(report.step_time_s) and report.step_time_s > 0
    return report


@st.composite
def mixed(draw, valid: dict, invalid: dict, max_bad: int = 2):
    """A valid-looking dict, then 0..max_bad fields replaced by invalid values (a third or so of
    the examples keep every field valid; those may still be refused for a combination)."""
    d = {k: draw(v) for k, v in valid.items()}
    n = draw(st.integers(0, max_bad))
    for k in draw(st.lists(st.sampled_from(sorted(invalid)), min_size=n, max_size=n, unique=True)):
        d[k] = draw(invalid[k])
    return d


model_dims = mixed(
    {"layers": st.integers(1, 4), "hidden": st.sampled_from([8, 16, 32, 48, 64, 96, 128, 256]),
     "heads": st.sampled_from([1, 2, 4, 8]), "ffn": st.sampled_from([0, 0, 64, 100, 512]),
     "vocab": st.integers(1, 1000), "activation": st.sampled_from(["gelu", "gelu_new", "relu"])},
    {"layers": st.one_of(st.integers(-3, 0), st.sampled_from([10**6, 3 * 10**7]), junk),
     "hidden": ints(-3, 0, huge=(30, 10**5, 10**7, 2**40)), "heads": ints(-3, 0, huge=(3, 10**6)),
     "ffn": st.one_of(st.integers(-3, -1), junk), "vocab": ints(-3, 0, huge=(10**7, 10**12)),
     "activation": st.sampled_from(["swish", "", None, "GELU"])})
job_fields = mixed(
    {"seq": st.integers(1, 128), "batch_seqs": st.integers(1, 256),
     "micro_batches": st.one_of(st.just("auto"), st.integers(1, 4)), "steps": st.integers(1, 3),
     "bytes_per_element": st.sampled_from([1, 2, 4]), "grad_bytes_per_param": st.sampled_from([1, 2, 4])},
    {"seq": ints(-3, 0, huge=(4096, 10**6)),
     "batch_seqs": st.one_of(st.integers(-3, 0), st.sampled_from([10**9, 2**63]), junk),
     "micro_batches": st.one_of(st.integers(-2, 0), st.just("two"), st.just(300), junk),
     "steps": st.one_of(st.integers(-2, 0), st.sampled_from([10**7, 2**63]), junk),
     "bytes_per_element": st.one_of(st.sampled_from([0, 3, 8, -1]), junk),
     "grad_bytes_per_param": st.one_of(st.sampled_from([0, 3, 8, -1]), junk)})
systems_st = st.one_of(st.integers(1, 20), st.integers(1, 20), st.integers(1, 20), st.integers(-2, 0),
                       st.sampled_from([193, 10**6]), junk)


def _python_case(outcomes, prop, model_kw, job_kw, systems, preset="cs2"):
    example = (model_kw, job_kw, systems, preset)
    try:
        run_python(model_kw, job_kw, systems, preset)
    except ConfigError:
        outcomes(prop, "ConfigError", example)
        return "ConfigError"
    except Exception:
        outcomes(prop, "UNCAUGHT", example)
        raise
    outcomes(prop, "ran", example)
    return "ran"


def run_with_floor(outcomes, prop: str, floor: float, cfg: settings, strategy, case) -> None:
    """Property ``case(example)`` over ``strategy`` under ``cfg``, then a floor on the share of its
    examples that ran (not refused): a mixed fuzzer that only ever meets refusals fails, whatever
    the cause (a generator that lost its valid values, or a command that refuses valid input).
    Each floor sits well below the share the property shows (printed in the summary) under the CI
    seed and under random seeds: low enough that a random seed trips it with a chance under about
    3e-4 (binomial, at the lowest share seen and the property's example count), and above zero, so
    that "every example refused" fails."""
    before = collections.Counter(outcomes.counts[prop])

    def body(example):
        case(example)

    body._hypothesis_internal_add_digest = prop.encode()  # one Hypothesis database key per property
    cfg(given(strategy)(body))()
    counts = outcomes.counts[prop] - before
    share = outcomes.ran_share(counts)
    assert share >= floor, f"{prop}: {share:.0%} of {sum(counts.values())} examples ran, floor {floor:.0%}: {dict(counts)}"


# floors on the share of examples that ran, per mixed property (see run_with_floor)
# (shares seen under the CI seed and random seeds: 6-20%, 30-50%, 14-22%, 3-10%, 15-49%)
FLOORS = {"python: model+job+systems": 0.01, "python: cluster dict": 0.15, "cli: wsim simulate": 0.05,
          "cli: wsim gpu": 0.005, "cli: wsim faults": 0.03}


def test_model_job_cluster_run_or_config_error(outcomes):
    prop = "python: model+job+systems"
    run_with_floor(outcomes, prop, FLOORS[prop], FAST, st.tuples(model_dims, job_fields, systems_st),
                   lambda ex: _python_case(outcomes, prop, *ex))


@pytest.mark.slow
def test_model_job_cluster_run_or_config_error_many(outcomes):
    prop = "python: model+job+systems (slow)"
    run_with_floor(outcomes, prop, FLOORS["python: model+job+systems"], SLOW,
                   st.tuples(model_dims, job_fields, systems_st), lambda ex: _python_case(outcomes, prop, *ex))


# ---- cluster dicts (hardware.from_dict) ------------------------------------------------------------
# 1e-300 and 5e-324 (positive, so accepted) are left to test_extreme_values_are_refused
bad_bw = st.sampled_from([0.0, -1.0, math.inf, math.nan, -math.inf])  # extremes: see above
CLUSTER_VALID = {
    "cs2": {"peak_flops_per_s": st.floats(1e12, 1e17), "compute_efficiency": st.one_of(st.none(), st.floats(0.05, 1.0)),
            "matmul_peak_fraction": st.floats(0.05, 1.0), "matmul_half_dim": st.one_of(st.none(), st.floats(0, 1e4)),
            "cores": st.integers(1000, 2_000_000), "clock_hz": st.floats(1e8, 5e9),
            "elementwise_ops_per_core_per_cycle": st.floats(0.5, 16), "pass_overhead_cycles": st.floats(0, 1e5),
            "sram_bytes": st.floats(4e9, 1e11), "sram_reserved_bytes": st.floats(0, 2e9),
            "io_bytes_per_s": st.floats(1e9, 1e12), "weight_buffer_bytes": st.floats(1e6, 1e9)},
    "memoryx": {"capacity_bytes": st.floats(1e9, 1e16), "bytes_per_param": st.floats(2, 40),
                "stream_bytes_per_s": st.floats(1e9, 1e12), "ingest_bytes_per_s": st.floats(1e9, 1e12),
                "optimizer_params_per_s": st.floats(1e9, 1e12), "full_duplex": st.booleans()},
    "swarmx": {"fanout": st.sampled_from([2, 4]), "port_bytes_per_s": st.floats(1e9, 1e11),
               "ports_per_link": st.integers(1, 16), "hop_latency_s": st.floats(0, 1e-4)},
}
CLUSTER_INVALID = {
    "cs2": {"peak_flops_per_s": st.one_of(bad_bw, junk), "compute_efficiency": st.floats(-1, 3),
            "matmul_peak_fraction": st.one_of(st.floats(-1, 0), st.floats(1.01, 3), junk),
            "matmul_half_dim": st.one_of(st.floats(-1e3, -1e-3), bad_bw), "cores": st.one_of(st.integers(-2, 0), junk),
            "clock_hz": st.one_of(bad_bw, junk), "pass_overhead_cycles": st.one_of(st.floats(-10, -0.1), junk),
            "sram_bytes": st.one_of(bad_bw, st.floats(1, 2e9)), "sram_reserved_bytes": st.floats(-1, 1e12),
            "io_bytes_per_s": st.one_of(bad_bw, junk), "weight_buffer_bytes": st.one_of(bad_bw, st.floats(1e10, 1e12))},
    "memoryx": {"capacity_bytes": st.one_of(bad_bw, st.floats(1, 1e6)), "bytes_per_param": st.one_of(bad_bw, junk),
                "stream_bytes_per_s": st.one_of(bad_bw, junk), "ingest_bytes_per_s": st.one_of(bad_bw, junk),
                "optimizer_params_per_s": st.one_of(bad_bw, junk), "full_duplex": st.one_of(st.just(1), junk)},
    "swarmx": {"fanout": st.one_of(st.integers(-1, 8), junk), "port_bytes_per_s": st.one_of(bad_bw, junk),
               "ports_per_link": st.one_of(st.integers(-2, 0), junk), "hop_latency_s": st.one_of(bad_bw, junk)},
}


@st.composite
def cluster_dicts(draw):
    d = {}
    if draw(st.booleans()):
        d["systems"] = draw(st.integers(1, 20))
    for sec, fields in CLUSTER_VALID.items():
        keys = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
        if keys or draw(st.booleans()):
            d[sec] = {k: draw(fields[k]) for k in keys}
    n = draw(st.integers(0, 2))
    paths = [(sec, k) for sec, f in CLUSTER_INVALID.items() for k in f] + \
        [("systems", None), ("max_systems", None), ("name", None), ("section", None), ("unknown", None)]
    for sec, k in draw(st.lists(st.sampled_from(paths), min_size=n, max_size=n, unique=True)):
        if k is not None:
            if isinstance(d.setdefault(sec, {}), dict):
                d[sec][k] = draw(CLUSTER_INVALID[sec][k])
        elif sec in ("systems", "max_systems"):
            d[sec] = draw(st.one_of(st.integers(-2, 0), st.sampled_from([193, 10**6]), junk))
        elif sec == "name":
            d["name"] = draw(junk)
        elif sec == "section":
            d[draw(st.sampled_from(sorted(CLUSTER_VALID)))] = draw(junk)
        else:
            d[draw(st.sampled_from(["cs3", "bogus", "cs2.bogus"]))] = 1
    return d if draw(st.integers(0, 20)) else draw(junk)  # now and then not a dict at all


def _cluster_case(outcomes, prop, data):
    try:
        cluster = generations.from_dict(data)
    except ConfigError:
        outcomes(prop, "ConfigError (from_dict)", data)
        return "ConfigError (from_dict)"
    except Exception:
        outcomes(prop, "UNCAUGHT", data)
        raise
    try:
        model = ModelSpec("tiny", layers=2, hidden=64, heads=4, vocab=500, positions=64)
        job = TrainingJob(model, seq=32, batch_seqs=2 * cluster.systems, steps=2)
        report = Simulation(job, cluster, SimOptions()).run()
    except ConfigError:
        outcomes(prop, "ConfigError (simulate)", data)
        return "ConfigError (simulate)"
    except Exception:
        outcomes(prop, "UNCAUGHT", data)
        raise
    # a cluster that validates must give a finite, positive step time (no silent inf/nan)
    if not (math.isfinite(report.step_time_s) and report.step_time_s > 0):
        outcomes(prop, "NON-FINITE RESULT", data)
        raise AssertionError(f"cluster {data!r} validated but the step time is {report.step_time_s!r}")
    outcomes(prop, "ran", data)
    return "ran"


def test_cluster_dict_run_or_config_error(outcomes):
    prop = "python: cluster dict"
    run_with_floor(outcomes, prop, FLOORS[prop], FAST, cluster_dicts(), lambda d: _cluster_case(outcomes, prop, d))


@pytest.mark.slow
def test_cluster_dict_run_or_config_error_many(outcomes):
    prop = "python: cluster dict (slow)"
    run_with_floor(outcomes, prop, FLOORS["python: cluster dict"], SLOW, cluster_dicts(),
                   lambda d: _cluster_case(outcomes, prop, d))


# ---- command lines ---------------------------------------------------------------------------------
TMP = tempfile.mkdtemp(prefix="wsim-fuzz-")
GOOD_CLUSTER = os.path.join(TMP, "good.json")
BAD_CLUSTER = os.path.join(TMP, "bad.json")
HF_CONFIG = os.path.join(TMP, "config.json")
with open(GOOD_CLUSTER, "w") as fh:
    json.dump({"systems": 4, "swarmx": {"fanout": 2}}, fh)
with open(BAD_CLUSTER, "w") as fh:
    fh.write('{"systems": 4, "swarmx": {"fanout": ')
with open(HF_CONFIG, "w") as fh:
    json.dump({"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 300, "n_positions": 128}, fh)

garbage = st.sampled_from(["", "x", "-1", "0", "1e3", "nan", "inf", "--", "3.5", "-999",
                           "99999999999", str(2**63)])  # huge counts must be refused quickly


def opt(flag: str, values) -> st.SearchStrategy:
    """``[flag, value]``: mostly a meaningful value, one time in eight garbage."""
    value = st.integers(0, 7).flatmap(lambda k: garbage if k == 0 else values)
    return st.tuples(st.just(flag), value)


stray = st.sampled_from([("--bogus",), ("stray",), ("--json", "extra"), ("--help-me",)])


model_opts = st.one_of(
    opt("--model", st.sampled_from(["cerebras-gpt-111m", "gpt3-125m", "no-such-model", HF_CONFIG,
                                    "/no/such/config.json", GOOD_CLUSTER])),
    st.tuples(opt("--layers", st.sampled_from(["1", "2", "3"])), opt("--hidden", st.sampled_from(["32", "64", "96"])),
              opt("--heads", st.sampled_from(["1", "2", "4", "5"]))).map(lambda t: sum(t, ())),
    opt("--layers", st.sampled_from(["2"])),
    st.just(()),
).filter(lambda t: True)
model_opts = st.one_of(model_opts.filter(lambda t: t != ()), model_opts.filter(lambda t: t != ()),
                       model_opts.filter(lambda t: t != ()), model_opts)
simulate_opts = st.lists(st.one_of(
    opt("--seq", st.sampled_from(["16", "64", "128", "4096"])),
    opt("--batch", st.sampled_from(["1", "4", "8", "12", "16", "33"])),
    opt("--systems", st.sampled_from(["1", "2", "3", "4", "8", "16", "193"])),
    opt("--cluster", st.sampled_from(["cs2", "andromeda", "cs2-192", "nope", GOOD_CLUSTER, BAD_CLUSTER,
                                      "/no/such/cluster.json"])),
    opt("--micro-batches", st.sampled_from(["auto", "1", "2", "4"])),
    opt("--steps", st.sampled_from(["1", "2", "3"])),
    opt("--chunk-bytes", st.sampled_from(["1e6", "4e6", "1e9", "1"])),
    opt("--max-chunk-passes", st.sampled_from(["1", "50", "2000000"])),
    opt("--ffn", st.sampled_from(["0", "128", "-4"])),
    opt("--vocab", st.sampled_from(["100", "50257"])),
    opt("--activation", st.sampled_from(["gelu", "relu", "swish"])),
    opt("--straggler", st.sampled_from(["0:2", "1:1.5", "3:0.5", "99:2", ":2", "1:x", "1"])),
    opt("--degraded-link", st.sampled_from(["cs2.0:2", "memoryx:3", "sx1.0:4", "nope:2", "cs2.0:nan",
                                            "cs2.0:0.5"])),
    # never garbage here: a garbage value would be a file name in the working folder
    st.tuples(st.just("--trace"), st.sampled_from([os.path.join(TMP, "t.json"), "/no/such/dir/t.json"])),
    st.just(("--no-symmetry",)), st.just(("--json",)), st.just(("--json",)), stray,
), max_size=6).map(lambda ts: [a for t in ts for a in t])
gpu_required = st.tuples(opt("--batch", st.sampled_from(["8", "16", "64", "512"])),
                         opt("--gpus", st.sampled_from(["1", "8", "16", "64"]))).map(lambda t: sum(t, ()))
gpu_required = st.one_of(gpu_required, gpu_required, gpu_required, st.just(()))
gpu_opts = st.lists(st.one_of(
    opt("--seq", st.sampled_from(["64", "512", "2048", "4096"])),
    opt("--batch", st.sampled_from(["1", "8", "16", "64", "100"])),
    opt("--gpus", st.sampled_from(["1", "2", "8", "64", "96"])),
    opt("--gpu", st.sampled_from(["a100-40gb", "a100-80gb", "h100-80gb", "v100"])),
    opt("--tp", st.sampled_from(["1", "2", "4", "8", "3"])),
    opt("--pp", st.sampled_from(["1", "2", "4", "3"])),
    opt("--micro-batch", st.sampled_from(["auto", "1", "2", "4"])),
    opt("--interleave", st.sampled_from(["1", "2", "3"])),
    opt("--recompute", st.sampled_from(["full", "selective", "none", "some"])),
    opt("--zero", st.sampled_from(["0", "1", "2", "3", "4"])),
    st.just(("--search",)), st.just(("--sequence-parallel",)), st.just(("--allow-oom",)),
    st.just(("--json",)), st.just(("--json",)), stray,
), max_size=5).map(lambda ts: [a for t in ts for a in t])


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _cli_case(outcomes, prop, argv):
    try:
        code, out, err = run_cli(argv)
    except BaseException as exc:  # SystemExit or anything else escaping main() is a contract break
        outcomes(prop, f"UNCAUGHT {type(exc).__name__}", argv)
        raise AssertionError(f"wsim {' '.join(argv)} raised {exc!r}") from exc
    outcomes(prop, f"exit {code}", argv)
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0], (argv, err)
        assert out == "", (argv, out)
    elif "--json" in argv:
        json.loads(out)  # exactly one JSON object: parsing fails on anything else
        assert out.strip().startswith("{") and out.count("\n") == 1, (argv, out[:200])
    return code, out, err


def test_simulate_cli_exits_0_or_2(outcomes):
    prop = "cli: wsim simulate"
    run_with_floor(outcomes, prop, FLOORS[prop], FAST, st.tuples(model_opts, simulate_opts),
                   lambda ex: _cli_case(outcomes, prop, ["simulate", *ex[0], *ex[1]]))


def test_gpu_cli_exits_0_or_2(outcomes):
    prop = "cli: wsim gpu"
    # 400 examples: the share that runs is low (3-10%), and each example is quick
    run_with_floor(outcomes, prop, FLOORS[prop], settings(FAST, max_examples=400),
                   st.tuples(model_opts, gpu_required, gpu_opts),
                   lambda ex: _cli_case(outcomes, prop, ["gpu", *ex[0], *ex[1], *ex[2]]))


faults_opts = st.lists(st.one_of(
    opt("--systems", st.sampled_from(["1", "2", "4", "8"])),
    opt("--batch", st.sampled_from(["8", "12", "16", "7"])),
    opt("--cluster", st.sampled_from(["andromeda", "cs2"])),
    opt("--fail", st.sampled_from(["cs2:0", "cs2:3", "link:sx1.0", "link:sx2.0", "cs2:x", "link:", "disk:1"])),
    opt("--at", st.sampled_from(["0", "0.5", "1", "1.5", "-0.1"])),
    opt("--policy", st.sampled_from(["shrink", "repair", "pray"])),
    opt("--batch-policy", st.sampled_from(["keep", "largest-divisible", "drop"])),
    opt("--checkpoint-every", st.sampled_from(["1", "100", "0", "-5"])),
    opt("--straggler", st.sampled_from(["0:2", "1:1.5", "9:2"])),
    opt("--degraded-link", st.sampled_from(["cs2.0:2", "memoryx:3", "sx9.0:2"])),
    opt("--detection-s", st.sampled_from(["10", "-1", "nan"])),
    opt("--reload-gbps", st.sampled_from(["10", "0", "-1", "inf"])),
    opt("--failure-interval-steps", st.sampled_from(["1000", "0"])),
    st.just(("--memoryx-loss",)), st.just(("--json",)),
), max_size=5).map(lambda ts: [a for t in ts for a in t])
tiny_model = ["--layers", "2", "--hidden", "64", "--heads", "4", "--vocab", "300", "--seq", "64"]


def test_faults_cli_exits_0_or_2(outcomes):
    prop = "cli: wsim faults"
    run_with_floor(outcomes, prop, FLOORS[prop], settings(FAST, max_examples=100), faults_opts,
                   lambda rest: _cli_case(outcomes, prop, ["faults", *tiny_model, *rest]))


@pytest.mark.slow
def test_simulate_cli_exits_0_or_2_many(outcomes):
    prop = "cli: wsim simulate (slow)"
    run_with_floor(outcomes, prop, FLOORS["cli: wsim simulate"], SLOW, st.tuples(model_opts, simulate_opts),
                   lambda ex: _cli_case(outcomes, prop, ["simulate", *ex[0], *ex[1]]))


@pytest.mark.slow
def test_gpu_cli_exits_0_or_2_many(outcomes):
    prop = "cli: wsim gpu (slow)"
    run_with_floor(outcomes, prop, FLOORS["cli: wsim gpu"], SLOW, st.tuples(model_opts, gpu_required, gpu_opts),
                   lambda ex: _cli_case(outcomes, prop, ["gpu", *ex[0], *ex[1], *ex[2]]))


# ---- a real process: exit status, one stderr line, no traceback -----------------------------------
@pytest.mark.parametrize("argv", [
    ["simulate", "--model", "no-such-model"],
    ["simulate", "--layers", "2", "--hidden", "30", "--heads", "4"],
    ["simulate", "--model", "cerebras-gpt-111m", "--cluster", BAD_CLUSTER],
    ["gpu", "--model", "cerebras-gpt-111m", "--batch", "8", "--gpus", "3", "--tp", "2"],
    ["faults", "--model", "cerebras-gpt-111m", "--systems", "4", "--batch", "8", "--fail", "cs2:1"],
    ["train", "--model", "cerebras-gpt-111m", "--data", "/no/such/tokens.npy"],
])
def test_subprocess_bad_input_exits_2_one_line(argv):
    p = subprocess.run([sys.executable, "-m", "wsim.commands.cli", *argv], capture_output=True, text=True,
                       timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stdout == ""


# ---- valid-looking input that needs unbounded work: refused before any is done ---------------------
def _limited():  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))


@pytest.mark.parametrize("argv", [
    ["--layers", "30000000", "--hidden", "8", "--heads", "1", "--seq", "8", "--vocab", "10"],
    ["--model", "cerebras-gpt-111m", "--batch", "1000000000"],
    ["--model", "cerebras-gpt-111m", "--steps", "100000000"],
    ["--model", "cerebras-gpt-111m", "--chunk-bytes", "1"],
    ["--model", "cerebras-gpt-111m", "--steps", str(2**63)],
], ids=["layers-3e7", "batch-1e9", "steps-1e8", "chunk-1-byte", "steps-2^63"])
def test_unbounded_work_is_refused(argv):
    try:
        p = subprocess.run([sys.executable, "-m", "wsim.commands.cli", "simulate", *argv, "--json"],
                           capture_output=True, text=True, timeout=20, preexec_fn=_limited)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"wsim simulate {' '.join(argv)} still running after 20 s") from None
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-300:]
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.parametrize("data", [
    {"cs2": {"peak_flops_per_s": 5e-324}},
    {"cs2": {"peak_flops_per_s": 1e-300}},
    {"swarmx": {"hop_latency_s": 2.247116418577895e+307}},
], ids=["flops-5e-324", "flops-1e-300", "hop-latency-2e307"])
def test_extreme_values_are_refused(data):
    try:
        cluster = generations.from_dict(data)
        model = ModelSpec("tiny", layers=2, hidden=64, heads=4, vocab=500, positions=64)
        report = Simulation(TrainingJob(model, seq=32, batch_seqs=2, steps=2), cluster, SimOptions()).run()
    except ConfigError:
        return
    assert math.isfinite(report.step_time_s), f"{data} validated, step time {report.step_time_s}"


def test_cluster_name_must_be_a_string():
    # found by test_cluster_dict_run_or_config_error: a list name was accepted, the spec was then
    # unhashable and the plan chooser's cache raised TypeError
    with pytest.raises(ConfigError, match="cluster name"):
        generations.from_dict({"cs2": {"peak_flops_per_s": 1.0}, "name": []})
