"""Unit checks of the GPU cost model: specs, plan validation, FLOPs, memory, communication, step."""

import dataclasses

import pytest

from models import zoo
from models.spec import ModelSpec
from wsim.errors import ConfigError
from wsim.gpu import (GPUS, Efficiency, Plan, check_plan, estimate, gpu_spec,
                      hardware_flops_per_step, megatron_flops_per_step, model_flops_per_step)
from wsim.gpu import comm
from wsim.gpu.memory import act_bytes_per_token_layer
from wsim.gpu.specs import EFFICIENCY
from wsim.gpu.step import Consts

GPT3 = zoo.get("gpt3-175b")


# ---- specs ---------------------------------------------------------------------------------------
def test_gpu_presets_match_facts():
    a40, a80, h100 = GPUS["a100-40gb"], GPUS["a100-80gb"], GPUS["h100-80gb"]
    assert a40.peak_flops_per_s == a80.peak_flops_per_s == 312e12
    assert h100.peak_flops_per_s == 989e12
    assert (a40.hbm_bytes_per_s, a80.hbm_bytes_per_s, h100.hbm_bytes_per_s) == (1555e9, 2039e9, 3350e9)
    assert a80.nvlink_bytes_per_s * 2 == 600e9 and h100.nvlink_bytes_per_s * 2 == 900e9
    assert a80.node_nic_bytes_per_s * 8 == 8 * 200e9 and h100.nic_bytes_per_s * 8 == 400e9
    assert a40.hbm_bytes < a80.hbm_bytes == h100.hbm_bytes


def test_unknown_gpu_and_bad_efficiency_name_the_field():
    with pytest.raises(ConfigError, match="v100"):
        gpu_spec("v100")
    with pytest.raises(ConfigError, match="efficiency.matmul_peak_fraction.*1.5"):
        Efficiency(matmul_peak_fraction=1.5)
    with pytest.raises(ConfigError, match="gpu.hbm_bytes"):
        dataclasses.replace(GPUS["a100-80gb"], hbm_bytes=-1)


def test_one_parameter_set_per_gpu_type():
    assert EFFICIENCY["a100-40gb"] == EFFICIENCY["a100-80gb"] == Efficiency()


def test_gemm_efficiency_grows_with_every_dimension():
    e = Efficiency()
    assert e.gemm_efficiency(4096, 4096, 4096) < e.matmul_peak_fraction
    assert e.gemm_efficiency(4096, 4096, 64) < e.gemm_efficiency(4096, 4096, 128)
    assert e.gemm_efficiency(512, 4096, 4096) < e.gemm_efficiency(2048, 4096, 4096)


# ---- plan validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(tp=5, pp=1, dp=16), "tp 5 does not divide the model's 96 attention heads"),
    (dict(tp=8, pp=5, dp=2), "pp 5 does not divide the model's 96 layers"),
    (dict(tp=8, pp=8, dp=2), "gpus 64 is not tp x pp x dp"),
    (dict(tp=8, pp=8, dp=1, interleave=5), "interleave 5 does not divide the 12 layers"),
    (dict(tp=8, pp=8, dp=1, micro_batch=5), "micro_batch 5 does not divide the 64 sequences"),
])
def test_check_plan_names_the_problem(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        check_plan(Plan(**kwargs), GPT3, batch=64, gpus=kwargs["tp"] * kwargs["pp"] * kwargs["dp"]
                   if "gpus 64" not in message else 64)


@pytest.mark.parametrize("kwargs, message", [
    (dict(tp=0), "plan.tp must be a positive integer"),
    (dict(recompute="some"), "plan.recompute 'some'"),
    (dict(zero=4), "plan.zero 4"),
    (dict(pp=2, zero=3), "does not combine with pipeline"),
    (dict(tp=1, sequence_parallel=True), "sequence_parallel needs tensor"),
    (dict(pp=1, interleave=2), "interleave 2 needs pipeline"),
])
def test_plan_fields_validate(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Plan(**kwargs)


def test_interleave_needs_micro_batches_multiple_of_pp():
    with pytest.raises(ConfigError, match="multiple of pp"):
        check_plan(Plan(tp=8, pp=8, dp=1, micro_batch=4, interleave=2), GPT3, batch=12, gpus=64)


# ---- FLOPs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["megatron-1.7b", "megatron-1t", "gpt3-175b"])
def test_flops_closed_forms(name):
    m, B, s = zoo.get(name), 8, 2048
    l, h, V = m.layers, m.hidden, m.vocab
    model = 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h))
    assert model_flops_per_step(m, seq=s, batch=B) == pytest.approx(model, rel=1e-12)
    full = hardware_flops_per_step(m, seq=s, batch=B, recompute="full")
    assert full == pytest.approx(megatron_flops_per_step(batch=B, seq=s, layers=l, hidden=h, vocab=V),
                                 rel=1e-12)
    sel = hardware_flops_per_step(m, seq=s, batch=B, recompute="selective")
    assert sel - model == pytest.approx(4 * B * s * s * h * l, rel=1e-12)
    assert hardware_flops_per_step(m, seq=s, batch=B, recompute="none") == pytest.approx(model)


def test_model_flops_agree_with_modelspec_up_to_embedding():
    m, s = zoo.get("cerebras-gpt-1.3b"), 2048
    per_token = m.flops_per_token(s) - 2 * m.hidden  # ModelSpec also counts the position add
    assert model_flops_per_step(m, seq=s, batch=1) == pytest.approx(per_token * s, rel=1e-12)


# ---- memory (Korthikanti et al. 2022) ------------------------------------------------------------
@pytest.mark.parametrize("tp", [1, 2, 8])
def test_activation_bytes_follow_korthikanti(tp):
    m = zoo.get("megatron-145.6b")  # dropout, f = 4h
    c = Consts(m, GPUS["a100-80gb"], Efficiency(), seq=2048, batch=8, gpus=8)
    s, h, a = 2048, m.hidden, m.heads
    per_token = lambda rc, sp: act_bytes_per_token_layer(c, tp, rc, sp)  # noqa: E731
    assert per_token("none", False) * s == pytest.approx(s * h * (10 + 24 / tp + 5 * a * s / (h * tp)))
    assert per_token("none", True) * s == pytest.approx(s * h * (34 / tp + 5 * a * s / (h * tp)))
    assert per_token("selective", True) * s == pytest.approx(34 * s * h / tp)
    assert per_token("full", False) * s == pytest.approx(2 * s * h)


def test_zero_stages_shrink_memory_and_full_recompute_beats_none():
    kw = dict(seq=2048, batch=64, gpus=64, tp=8, pp=1, micro_batch=1, allow_oom=True)
    m = zoo.get("gpt3-13b")
    mems = [estimate(m, zero=z, **kw).memory.total_bytes for z in (0, 1, 2, 3)]
    assert mems == sorted(mems, reverse=True) and mems[0] > mems[3]
    full = estimate(m, recompute="full", **kw).memory.activations_bytes
    sel = estimate(m, recompute="selective", **kw).memory.activations_bytes
    none = estimate(m, recompute="none", **kw).memory.activations_bytes
    assert full < sel < none


def test_plan_that_does_not_fit_is_an_error_naming_the_memory():
    with pytest.raises(ConfigError, match=r"does not fit.*GiB per GPU of 80 GiB"):
        estimate(GPT3, seq=2048, batch=8, gpus=8, tp=8, pp=1)
    r = estimate(GPT3, seq=2048, batch=8, gpus=8, tp=8, pp=1, allow_oom=True)
    assert not r.fits and r.to_dict()["fits"] is False


# ---- communication -------------------------------------------------------------------------------
def test_ring_collectives():
    assert comm.all_reduce_s(8e9, 8, 1e11, 0.0) == pytest.approx(2 * 7 / 8 * 8e9 / 1e11)
    assert comm.reduce_scatter_s(8e9, 8, 1e11, 0.0) == pytest.approx(7 / 8 * 8e9 / 1e11)
    assert comm.all_reduce_s(8e9, 1, 1e11, 1.0) == 0.0


def test_group_placement_and_bandwidth():
    g, e = GPUS["a100-80gb"], Efficiency()
    nvlink = g.nvlink_bytes_per_s * e.nvlink_efficiency
    assert comm.tp_bus_bytes_per_s(g, e, 8) == nvlink
    assert comm.dp_bus_bytes_per_s(g, e, 8, 16) == pytest.approx(g.nic_bytes_per_s * e.ib_efficiency)
    assert comm.dp_bus_bytes_per_s(g, e, 1, 32) == pytest.approx(min(nvlink, 8 * g.nic_bytes_per_s
                                                                     * e.ib_efficiency))
    assert comm.tp_bus_bytes_per_s(g, e, 16) < nvlink  # tensor parallelism across nodes


# ---- step ----------------------------------------------------------------------------------------
def test_breakdown_sums_to_step_and_json_keys():
    r = estimate(zoo.get("megatron-145.6b"), seq=2048, batch=2304, gpus=1536, tp=8, pp=8)
    d = r.to_dict()
    for key in ("step_time_s", "model_tflops_per_gpu", "hardware_tflops_per_gpu", "mfu", "hfu",
                "memory_per_gpu_bytes", "fits", "bubble_fraction", "plan", "breakdown", "memory"):
        assert key in d
    for key in ("tp", "pp", "dp", "micro_batch", "interleave", "recompute"):
        assert key in d["plan"]
    assert sum(d["breakdown"].values()) == pytest.approx(d["step_time_s"], rel=1e-12)
    assert d["hfu"] > d["mfu"]
    assert d["bubble_fraction"] == pytest.approx(7 / (r.plan.interleave * r.micro_batches))
    assert d["memory_per_gpu_bytes"] == pytest.approx(d["memory"]["total_bytes"])


def test_more_interleave_shrinks_the_bubble():
    m = zoo.get("megatron-145.6b")
    kw = dict(seq=2048, batch=2304, gpus=1536, tp=8, pp=8, micro_batch=1)
    b1 = estimate(m, interleave=1, **kw)
    b2 = estimate(m, interleave=2, **kw)
    assert b2.breakdown_s["bubble_s"] < b1.breakdown_s["bubble_s"]
    assert b2.breakdown_s["pp_comm_s"] > b1.breakdown_s["pp_comm_s"]


def test_h100_is_faster_than_a100():
    m = zoo.get("gpt3-13b")
    a = estimate(m, seq=2048, batch=256, gpus=64, gpu="a100-80gb", tp=8)
    h = estimate(m, seq=2048, batch=256, gpus=64, gpu="h100-80gb", tp=8)
    assert h.step_time_s < a.step_time_s


def test_bad_scalar_inputs():
    with pytest.raises(ConfigError, match="batch must be a positive integer"):
        estimate(GPT3, seq=2048, batch=0, gpus=8)
    with pytest.raises(ConfigError, match="exceeds the model's 2048"):
        estimate(GPT3, seq=4096, batch=8, gpus=8)
    with pytest.raises(ConfigError, match="micro_batch must be"):
        estimate(GPT3, seq=2048, batch=8, gpus=8, micro_batch="big")
    with pytest.raises(ConfigError, match="ModelSpec"):
        estimate("gpt3", seq=2048, batch=8, gpus=8)


def test_untied_small_custom_model_runs():
    m = ModelSpec(name="tiny", layers=4, hidden=256, heads=4, vocab=1000, tied_embeddings=False)
    r = estimate(m, seq=512, batch=16, gpus=4, tp=2, pp=2, zero=1)
    assert r.fits and r.step_time_s > 0


def test_wsim_gpu_never_imports_the_engine():
    import subprocess
    import sys
    code = ("import sys, wsim.gpu, wsim.commands.gpu; "
            "bad = [m for m in sys.modules if m.startswith('wsim.engine') or m == 'simpy']; "
            "print(bad); sys.exit(1 if any(m.startswith('wsim.engine') for m in bad) else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
