"""Activation offloading (``wsim.gpu.offload``; Megatron-Core ``cpu_offloading_num_layers``):
Transformer Engine's copy schedule in closed form, the memory it frees, Megatron-Core's checks,
the published GB200 run that uses it, and the search's choice."""

import pytest

from models import zoo
from wsim.errors import ConfigError
from wsim.gpu import estimate, search
from wsim.gpu.inputs import make_consts
from wsim.gpu.memory import act_bytes_per_token_layer
from wsim.gpu.offload import exposed_s
from wsim.gpu.published import all_rows
from wsim.gpu.validation import predict


def test_copies_hidden_when_each_fits_under_a_layer():
    # copy <= one layer's forward and backward, two or more layers kept: every deadline is met
    assert exposed_s(80, 40, 1.0, 1.0, 2.0) == 0.0
    assert exposed_s(10, 8, 0.9, 1.0, 1.0) == 0.0
    assert exposed_s(10, 0, 5.0, 1.0, 1.0) == 0.0


def test_one_layer_kept_waits_for_every_copy_both_ways():
    # n = N - 1: layer i's offload is due before layer i + 1's forward and its reload starts at
    # layer i's own backward: the compute waits a whole copy for each, out and back: 2 n c
    assert exposed_s(8, 7, 1.0, 0.5, 1.0) == pytest.approx(14.0)


def test_copy_stream_bound_when_copies_outlast_the_compute():
    # 4 layers, 2 offloaded (due before layers 2 and 3), copies of 3 s under 1 s layers:
    # forward: copy 0 runs 1..4 (layer 2 waits 2 s), copy 1 runs 4..7 (layer 3 waits 2 s);
    # backward (from layer 3 at t = 0): reload 1 starts with layer 2's backward (t = 1) and runs
    # 1..4 (layer 1 waits 2 s), reload 0 with layer 1's (t = 2) and runs 4..7 (layer 0 waits 2 s)
    assert exposed_s(4, 2, 3.0, 1.0, 1.0) == pytest.approx(8.0)


def test_more_offloaded_layers_never_wait_less():
    for n in range(1, 31):
        assert exposed_s(32, n, 1.7, 1.0, 2.0) >= exposed_s(32, n - 1, 1.7, 1.0, 2.0)


KW = dict(seq=8192, batch=64, gpus=8, gpu="h100-80gb", tp=1, pp=1, zero=1, stack="nemo",
          attention="flash", recompute="none", micro_batch=1, allow_oom=True)


def test_memory_drops_by_the_offloaded_layers_activations():
    model = zoo.get("llama-3-8b")
    off = estimate(model, **KW)
    on = estimate(model, **KW, cpu_offload_layers=12)
    c = make_consts(model, seq=8192, batch=64, gpus=8, gpu="h100-80gb", efficiency=None,
                    attention="flash")
    per_layer = 8192 * act_bytes_per_token_layer(c, 1, "none", False)
    freed = off.memory.activations_bytes - on.memory.activations_bytes
    assert freed == pytest.approx(12 * per_layer, rel=1e-12)


def test_pcie_offload_of_all_but_one_layer_is_exposed_in_closed_form():
    """Over PCIe (H100: 64 GB/s a direction) with one layer kept every copy is exposed, out and
    back: offload_s = m x 2 (N - 1) x bytes / 64 GB/s."""
    model = zoo.get("llama-3-8b")
    r = estimate(model, **KW, cpu_offload_layers=model.layers - 1)
    c = make_consts(model, seq=8192, batch=64, gpus=8, gpu="h100-80gb", efficiency=None,
                    attention="flash")
    copy = 8192 * act_bytes_per_token_layer(c, 1, "none", False) / 64e9
    assert r.breakdown_s["offload_s"] == pytest.approx(
        r.micro_batches * 2 * (model.layers - 1) * copy, rel=1e-9)
    assert r.step_time_s > estimate(model, **KW).step_time_s


@pytest.mark.parametrize("bad, match", [
    (dict(pp=2, zero=1), "pp 1"), (dict(recompute="full"), "recompute none"),
    (dict(cuda_graphs=True), "CUDA graphs"), (dict(stack="megatron", zero=1), "no activation"),
    (dict(cpu_offload_layers=32), "less than"), (dict(cpu_offload_layers=-1), ">= 0")])
def test_megatron_core_refusals(bad, match):
    kw = dict(KW, cpu_offload_layers=4)
    kw.update(bad)
    with pytest.raises(ConfigError, match=match):
        estimate(zoo.get("llama-3-8b"), **{k: v for k, v in kw.items() if k != "allow_oom"})


def _gb200_70b():
    return next(r for r in all_rows() if r.name == "25.11-70b-gb200-64")


def test_the_published_gb200_run_fits_only_with_its_offload():
    """Megatron-Bridge's Llama 3 70B FP8 recipe on 64 GB200 offloads 40 of 80 layers (no
    recompute): with it the plan fits and is within 10% of the published 4,312 tokens/s/GPU;
    without it the same plan needs more than the GPU's 186 GB."""
    row = _gb200_70b()
    assert row.plan["cpu_offload_layers"] == 40 and row.plan["recompute"] == "none"
    p = predict(row)
    assert p.report.fits and abs(p.error) < 0.10
    without = predict(type(row)(**{**row.__dict__, "plan": dict(row.plan, cpu_offload_layers=0)}))
    assert not without.report.fits


def test_search_offloads_the_fewest_layers_that_fit():
    row = _gb200_70b()
    r = search(row.model, seq=row.seq, batch=row.batch, gpus=row.gpus, gpu=row.gpu, tp=1, pp=1,
               cp=1, zero=3, stack="nemo", recompute="none", attention="flash", precision="fp8")
    n = r.plan.cpu_offload_layers
    assert r.fits and n > 0
    fewer = estimate(row.model, seq=row.seq, batch=row.batch, gpus=row.gpus, gpu=row.gpu, tp=1,
                     pp=1, zero=3, stack="nemo", recompute="none", attention="flash",
                     precision="fp8", micro_batch=r.plan.micro_batch, cpu_offload_layers=n - 1,
                     allow_oom=True)
    assert not fewer.fits
