"""Valid inputs must run: the other half of "bad input is refused".

``test_input_validation.py`` checks that nothing escapes as a traceback; a tool that refused every
input would pass it. Here the generators draw only inputs that are valid in combination (the batch a
multiple of the systems, forced micro-batch counts within each system's share, cluster numbers in
physical ranges), and every one of them must run: share of runs = 100%, counted in the summary.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.test_input_validation import (CLUSTER_VALID, _cli_case, _cluster_case,
                                                     _python_case)

FAST = settings(max_examples=int(__import__("os").environ.get("WSIM_VALID_EXAMPLES", 40)), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def valid_python(draw):
    heads = draw(st.sampled_from([1, 2, 4, 8]))
    hidden = heads * draw(st.sampled_from([8, 16, 32]))
    model = {"layers": draw(st.integers(1, 4)), "hidden": hidden, "heads": heads,
             "ffn": draw(st.sampled_from([0, 64, 100, 512])), "vocab": draw(st.integers(2, 1000)),
             "activation": draw(st.sampled_from(["gelu", "gelu_new", "relu"]))}
    systems = draw(st.integers(1, 20))
    per_system = draw(st.integers(1, 12))
    mb = draw(st.one_of(st.sampled_from(["best", "fit", "auto"]), st.integers(1, per_system)))
    job = {"seq": draw(st.integers(1, 128)), "batch_seqs": systems * per_system, "micro_batches": mb,
           "steps": draw(st.integers(1, 3)), "bytes_per_element": draw(st.sampled_from([1, 2, 4])),
           "grad_bytes_per_param": draw(st.sampled_from([1, 2, 4]))}
    return model, job, systems


@FAST
@given(case=valid_python())
def test_every_valid_python_job_runs(outcomes, case):
    model, job, systems = case
    assert _python_case(outcomes, "valid only: python model+job+systems", model, job, systems) == "ran"


@st.composite
def valid_cluster(draw):
    d = {"systems": draw(st.integers(1, 20))}
    for sec, fields in CLUSTER_VALID.items():
        keys = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
        d[sec] = {k: draw(fields[k]) for k in keys}
    cs2 = d["cs2"]
    # in combination: the reserve below the SRAM, room for the tiny job's activations and buffer
    if "sram_bytes" in cs2 and "sram_reserved_bytes" in cs2:
        cs2["sram_reserved_bytes"] = min(cs2["sram_reserved_bytes"], 0.5 * cs2["sram_bytes"])
    if "sram_bytes" in cs2 and "weight_buffer_bytes" in cs2:
        cs2["weight_buffer_bytes"] = min(cs2["weight_buffer_bytes"], 0.25 * cs2["sram_bytes"])
    return d


@FAST
@given(data=valid_cluster())
def test_every_valid_cluster_runs(outcomes, data):
    assert _cluster_case(outcomes, "valid only: cluster dict", data) == "ran"


@st.composite
def valid_simulate_argv(draw):
    heads = draw(st.sampled_from([1, 2, 4]))
    argv = ["simulate", "--layers", str(draw(st.integers(1, 3))), "--hidden", str(heads * 16),
            "--heads", str(heads), "--vocab", str(draw(st.sampled_from([100, 500]))),
            "--seq", str(draw(st.sampled_from([16, 64, 128])))]
    systems = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    per = draw(st.integers(1, 6))
    argv += ["--systems", str(systems), "--batch", str(systems * per),
             "--micro-batches", draw(st.one_of(st.sampled_from(["best", "fit", "auto"]),
                                               st.integers(1, per).map(str))),
             "--steps", str(draw(st.integers(1, 2)))]
    if draw(st.booleans()):
        argv.append("--no-symmetry")
    if draw(st.booleans()):
        argv.append("--json")
    return argv


@FAST
@given(argv=valid_simulate_argv())
def test_every_valid_simulate_command_runs(outcomes, argv):
    code, _, err = _cli_case(outcomes, "valid only: cli wsim simulate", argv)
    assert code == 0, err


@st.composite
def valid_gpu_argv(draw):
    """A plan valid in combination: tp divides the 12 heads and the GPUs, pp the 12 layers and the
    rest, the batch a multiple of dp; --allow-oom so that memory never refuses a valid plan; or
    --search with a batch the GPUs divide."""
    gpus = draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64]))
    argv = ["gpu", "--model", "gpt3-125m", "--gpus", str(gpus),
            "--gpu", draw(st.sampled_from(["a100-40gb", "a100-80gb", "h100-80gb", "h200-141gb", "b200-180gb"])),
            "--seq", str(draw(st.sampled_from([512, 1024, 2048])))]
    if draw(st.booleans()):
        return argv + ["--search", "--batch", str(gpus * draw(st.integers(1, 8)))] + \
            (["--json"] if draw(st.booleans()) else [])
    tp = draw(st.sampled_from([t for t in (1, 2, 4) if gpus % t == 0]))
    pp = draw(st.sampled_from([p for p in (1, 2, 3, 4) if (gpus // tp) % p == 0]))
    dp = gpus // (tp * pp)
    argv += ["--tp", str(tp), "--pp", str(pp), "--batch", str(dp * draw(st.integers(1, 8))), "--allow-oom",
             "--recompute", draw(st.sampled_from(["none", "selective", "full"])),
             "--stack", draw(st.sampled_from(["megatron", "megatron-core", "deepspeed"] if pp > 1 else
                                             ["megatron", "megatron-core", "deepspeed", "fsdp"]))]
    # the ZeRO stages each stack runs (wsim.gpu.STACKS; ZeRO-2/3 only without pipelining)
    stages = {"megatron": (0, 1), "megatron-core": (0, 1), "deepspeed": (0, 1) if pp > 1 else (0, 1, 2, 3),
              "fsdp": (2, 3)}[argv[-1]]
    argv += ["--zero", str(draw(st.sampled_from(stages)))]
    if tp > 1 and draw(st.booleans()):
        argv.append("--sequence-parallel")
    return argv + (["--json"] if draw(st.booleans()) else [])


@FAST
@given(argv=valid_gpu_argv())
def test_every_valid_gpu_command_runs(outcomes, argv):
    code, _, err = _cli_case(outcomes, "valid only: cli wsim gpu", argv)
    assert code == 0, err
