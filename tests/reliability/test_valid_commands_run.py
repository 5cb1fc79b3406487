"""Valid command lines of ``wsim compare``, ``sweep``, ``train``, ``generate`` and ``faults`` must run
(exit 0, every time), beside simulate and gpu in ``test_valid_inputs_run.py``.

The mixed fuzzers (``test_cli_fuzz_more.py``, ``test_input_validation.py``) accept a clean exit 2,
so a command that refused valid input would pass them; these generators draw only argument lists
that are valid in combination (the batch a multiple of the systems, indices inside the cluster,
data rows enough for the steps, ids inside the vocabulary, rows x beams small), and each must exit 0
and print one JSON object whose content agrees with the request (a sweep's rows all ``ok``, a
faults table with the faults asked for, the tokens generated). Example counts are small in the
fast suite (``WSIM_VALID_EXAMPLES``, default 25); the ``slow`` variants draw 150."""

import json
import math
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import hf
from models.gpt import GPTConfig, init_weights
from wsim.cluster import generations, topology
from tests.reliability.test_input_validation import _cli_case

N = int(os.environ.get("WSIM_VALID_EXAMPLES", 25))
FAST = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TMP = tempfile.mkdtemp(prefix="wsim-valid-")
CFG = GPTConfig(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32)
CKPT = os.path.join(TMP, "ckpt")
hf.save_checkpoint(CKPT, CFG, init_weights(CFG, 0))
ROWS, WIDTH = 24, 9
TOKENS = os.path.join(TMP, "tokens.npy")
np.save(TOKENS, np.random.default_rng(0).integers(0, CFG.vocab_size, size=(ROWS, WIDTH)))
TINY = ["--layers", "2", "--hidden", "64", "--heads", "4", "--vocab", "300", "--seq", "64"]
GPU_TYPES = ["a100-40gb", "a100-80gb", "h100-80gb", "h200-141gb", "b200-180gb"]


def run_valid(outcomes, prop: str, argv: list[str]) -> dict:
    """``wsim argv --json`` must exit 0 with one JSON object, which is returned."""
    code, out, err = _cli_case(outcomes, prop, [*argv, "--json"])
    assert code == 0, (argv, err)
    return json.loads(out)


# ---- compare ---------------------------------------------------------------------------------------
@st.composite
def valid_compare(draw):
    """A published Cerebras-GPT run as it is, or any zoo model with a batch and a CS-2 count (the
    batch a multiple of it) and steps or a token budget; GPU types, micro-batching, method; a fixed
    GPU count only with a batch it divides (data parallelism alone can run it; a count larger than
    the batch allows with any tp x pp is invalid input, refused)."""
    model = draw(st.sampled_from(["cerebras-gpt-111m", "cerebras-gpt-256m", "gpt3-125m", "pythia-160m"]))
    argv = ["compare", "--model", model, "--method", draw(st.sampled_from(["analytic", "analytic", "engine"]))]
    if model.startswith("cerebras") and draw(st.booleans()):
        pass  # the published batch, CS-2 count and steps
    else:
        systems = draw(st.sampled_from([1, 2, 4, 16]))
        gpus = draw(st.sampled_from([None, 8, 64, 512]))
        unit = math.lcm(systems, gpus or 1)
        argv += ["--systems", str(systems), "--batch", str(unit * draw(st.integers(1, 32 if gpus is None else 4))),
                 "--seq", draw(st.sampled_from(["512", "2048"]))]
        argv += draw(st.sampled_from([["--steps", str(draw(st.integers(1, 10_000)))],
                                      ["--tokens", draw(st.sampled_from(["1e8", "2.5e9"]))], []]))
        if gpus is not None:
            argv += ["--gpus", str(gpus)]
    argv += ["--gpu", ",".join(draw(st.lists(st.sampled_from(GPU_TYPES), min_size=1, max_size=2, unique=True)))]
    return argv + ["--micro-batching", draw(st.sampled_from(["best", "fit", "auto"]))]


def _compare(outcomes, prop, argv):
    r = run_valid(outcomes, prop, argv)
    assert r["cs2"]["time_to_train_s"] > 0 and len(r["gpu"]) == len(argv[argv.index("--gpu") + 1].split(",")), r


@FAST
@given(argv=valid_compare())
def test_every_valid_compare_command_runs(outcomes, argv):
    _compare(outcomes, "valid only: cli wsim compare", argv)


# ---- sweep -----------------------------------------------------------------------------------------
@st.composite
def valid_sweep(draw, out: str):
    """A grid of small zoo models: analytic or simulate over CS-2 counts (weak scaling, or global
    batches every count divides), or gpu over GPU counts and types; one local worker."""
    kind = draw(st.sampled_from(["analytic", "analytic", "simulate", "gpu"]))
    models = draw(st.lists(st.sampled_from(["cerebras-gpt-111m", "gpt3-125m", "pythia-70m"]), min_size=1,
                           max_size=2, unique=True))
    argv = ["sweep", "--quiet", "--no-resume", "--out", out, "--kind", kind, "--models", ",".join(models),
            "--seq", draw(st.sampled_from(["512", "2048"]))]
    counts = draw(st.lists(st.sampled_from([1, 2, 4, 8] if kind != "gpu" else [8, 16, 64]), min_size=1,
                           max_size=3, unique=True))
    argv += ["--gpus" if kind == "gpu" else "--systems", ",".join(map(str, counts))]
    if kind == "gpu":
        argv += ["--gpu", ",".join(draw(st.lists(st.sampled_from(GPU_TYPES), min_size=1, max_size=2, unique=True)))]
        lcm = 64  # every GPU count divides the batch
    else:
        lcm = max(counts)  # the counts are powers of two: the largest is their common multiple
        argv += ["--cluster", draw(st.sampled_from(["cs2", "andromeda", "cs3"])),
                 "--micro-batches", draw(st.sampled_from(["best", "fit", "1"]))]
    if draw(st.booleans()):
        argv += ["--batch", str(lcm * draw(st.integers(1, 8)))]
    else:
        argv += ["--seqs-per-system", ",".join(map(str, draw(st.lists(st.integers(1, 16), min_size=1,
                                                                        max_size=2, unique=True))))]
    return argv, len(models) * len(counts)


def _sweep(outcomes, prop, case):
    argv, points = case
    r = run_valid(outcomes, prop, argv)
    assert r["counts"] == {"ok": len(r["rows"]), "invalid": 0, "failed": 0}, (argv, r["rows"])
    assert len(r["rows"]) >= points and all(row["step_time_s"] > 0 for row in r["rows"])


@FAST
@given(case=valid_sweep(os.path.join(TMP, "sweep.json")))
def test_every_valid_sweep_command_runs(outcomes, case):
    _sweep(outcomes, "valid only: cli wsim sweep", case)


# ---- train -----------------------------------------------------------------------------------------
@st.composite
def valid_train(draw):
    """The tiny checkpoint on 24 rows of tokens: the batch a multiple of the systems, steps x batch
    within the rows, forced micro-batches within a system's share, optimizer values in range,
    density, periodic MemoryX checkpoints and a saved model."""
    systems = draw(st.sampled_from([1, 2, 3, 4]))
    per = draw(st.integers(1, 2))
    batch = systems * per
    steps = draw(st.integers(1, min(3, ROWS // batch)))
    argv = ["train", "--checkpoint", CKPT, "--data", TOKENS, "--systems", str(systems), "--batch", str(batch),
            "--steps", str(steps), "--micro-batches", draw(st.sampled_from(["auto", *map(str, range(1, per + 1))])),
            "--lr", draw(st.sampled_from(["1e-3", "6e-4", "1e-7"])),
            "--betas", draw(st.sampled_from(["0.9,0.95", "0,0", "0.5,0.999"])),
            "--eps", draw(st.sampled_from(["1e-8", "1e-6"])),
            "--weight-decay", draw(st.sampled_from(["0", "0.1"])),
            "--dtype", draw(st.sampled_from(["float32", "float64"]))]
    if draw(st.booleans()):
        argv += ["--grad-clip", draw(st.sampled_from(["1.0", "1e-3"]))]
    if draw(st.booleans()):
        density = draw(st.sampled_from(["0.5", "1", "block=0.25", "block=0.5,head=1"]))
        argv += ["--density", density]
        if density != "1":  # a dense run has no masks to seed: --mask-seed is refused there
            argv += ["--mask-seed", str(draw(st.integers(0, 9)))]
    run = tempfile.mkdtemp(dir=TMP)
    if draw(st.booleans()):
        argv += ["--checkpoint-every", str(draw(st.integers(1, 2))), "--checkpoint-dir", os.path.join(run, "run")]
    if draw(st.booleans()):
        argv += ["--save", os.path.join(run, "saved")]
    return argv, steps


def _train(outcomes, prop, case):
    argv, steps = case
    r = run_valid(outcomes, prop, argv)
    assert len(r["losses"]) == steps and all(np.isfinite(r["losses"])), r["losses"]
    if "--save" in argv:
        assert hf.load_checkpoint(argv[argv.index("--save") + 1])[0].vocab_size == CFG.vocab_size


@FAST
@given(case=valid_train())
def test_every_valid_train_command_runs(outcomes, case):
    _train(outcomes, "valid only: cli wsim train", case)


# ---- generate --------------------------------------------------------------------------------------
@st.composite
def valid_generate(draw):
    """Prompt ids inside the vocabulary, a length within the 32 positions, rows x beams small, the
    batch a multiple of the systems."""
    prompt = draw(st.lists(st.integers(0, CFG.vocab_size - 1), min_size=1, max_size=6))
    argv = ["generate", "--checkpoint", CKPT, "--prompt-ids", ",".join(map(str, prompt))]
    if draw(st.booleans()):
        new = draw(st.integers(1, 5))
        argv += ["--max-new-tokens", str(new)]
    else:
        new = draw(st.integers(1, CFG.n_positions - len(prompt)))
        argv += ["--max-length", str(len(prompt) + new)]
    systems = draw(st.sampled_from([1, 2]))
    beams = draw(st.integers(1, 3))
    argv += ["--num-beams", str(beams),
             "--no-repeat-ngram-size", str(draw(st.integers(0, 3))),
             "--systems", str(systems), "--batch", str(systems * draw(st.integers(1, 2))),
             "--cluster", draw(st.sampled_from(["cs2", "cs3"]))]
    if beams > 1 and draw(st.booleans()):  # greedy decoding has no early stop: refused there
        argv.append("--early-stopping")
    return argv, len(prompt), new


def _generate(outcomes, prop, case):
    argv, prompt, new = case
    r = run_valid(outcomes, prop, argv)
    batch = int(argv[argv.index("--batch") + 1])
    assert len(r["token_ids"]) == batch
    # generation stops at max length, or earlier at the end-of-text id (GPT-2's, outside this vocabulary)
    assert all(prompt < len(seq) <= prompt + new for seq in r["token_ids"]), r["token_ids"]


@FAST
@given(case=valid_generate())
def test_every_valid_generate_command_runs(outcomes, case):
    _generate(outcomes, "valid only: cli wsim generate", case)


# ---- faults ----------------------------------------------------------------------------------------
def _tree(systems: int):
    g = topology.build(generations.preset("cs2", systems))
    return g, [n for n in g if g.nodes[n]["kind"] == "swarmx"]


@st.composite
def valid_faults(draw):
    """The tiny model on 1-8 CS-2 (batch a multiple of them): the default table, or slow-downs of
    CS-2s and links that exist, or one fail-stop of a CS-2 or a SwarmX link with a policy that can
    recover (repair always; shrink when systems survive, the batch dividing over them or cut to do
    so), or a MemoryX loss; assumption values in range."""
    systems = draw(st.sampled_from([1, 2, 3, 4, 8]))
    batch = systems * draw(st.integers(1, 4))
    argv = ["faults", *TINY, "--systems", str(systems), "--batch", str(batch)]
    g, switches = _tree(systems)
    expect = None  # the number of rows asked for (None: the default table)
    kind = draw(st.sampled_from(["default", "slow", "stop", "memoryx"]))
    if kind == "slow":
        n = draw(st.integers(1, 3))
        for _ in range(n):
            if draw(st.booleans()):
                argv += ["--straggler", f"{draw(st.integers(0, systems - 1))}:{draw(st.sampled_from(['1', '1.5', '4']))}"]
            else:
                node = draw(st.sampled_from([*(f"cs2.{i}" for i in range(systems)), *switches, "memoryx"]))
                argv += ["--degraded-link", f"{node}:{draw(st.sampled_from(['1', '2', '8']))}"]
        expect = 1  # the slow-downs act together: one row
    elif kind == "stop":
        if draw(st.booleans()) or not switches:
            target = draw(st.integers(0, systems - 1))
            argv += ["--fail", f"cs2:{target}"]
            lost = 1
        else:
            node = draw(st.sampled_from(switches))
            argv += ["--fail", f"link:{node}"]
            lost = sum(1 for v in (node, *__import__("networkx").descendants(g, node)) if g.nodes[v]["kind"] == "cs2")
        survivors = systems - lost
        policies = ["repair"] + (["shrink"] if survivors > 0 else [])
        policy = draw(st.sampled_from(policies))
        argv += ["--policy", policy, "--at", draw(st.sampled_from(["0", "0.5", "1"]))]
        if policy == "shrink" and batch % survivors:
            argv += ["--batch-policy", "largest-divisible"]
        elif policy == "shrink":
            argv += ["--batch-policy", draw(st.sampled_from(["keep", "largest-divisible"]))]
        expect = 1
    elif kind == "memoryx":
        argv += ["--memoryx-loss", "--checkpoint-every", str(draw(st.integers(1, 500)))]
        expect = 1
    argv += ["--detection-s", draw(st.sampled_from(["0", "10"])), "--reload-gbps", draw(st.sampled_from(["1", "25"])),
             "--failure-interval-steps", str(draw(st.integers(1, 5000)))]
    return argv, expect


def _faults(outcomes, prop, case):
    argv, expect = case
    r = run_valid(outcomes, prop, argv)
    assert r["nominal_step_s"] > 0 and r["faults"], r
    if expect is not None:
        assert len(r["faults"]) == expect, r["faults"]
    assert all(f["cost_s"] >= -1e-9 * r["nominal_step_s"] for f in r["faults"]), r["faults"]


@FAST
@given(case=valid_faults())
def test_every_valid_faults_command_runs(outcomes, case):
    _faults(outcomes, "valid only: cli wsim faults", case)


# ---- more examples, in the slow suite --------------------------------------------------------------
CASES = {"compare": (valid_compare(), _compare), "sweep": (valid_sweep(os.path.join(TMP, "sweep-slow.json")), _sweep),
         "train": (valid_train(), _train), "generate": (valid_generate(), _generate), "faults": (valid_faults(), _faults)}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(CASES))
def test_every_valid_command_runs_many(outcomes, command):
    strategy, check = CASES[command]

    @SLOW
    @given(case=strategy)
    def body(case):
        check(outcomes, f"valid only: cli wsim {command} (slow)", case)

    body._hypothesis_internal_add_digest = command.encode()
    body()
