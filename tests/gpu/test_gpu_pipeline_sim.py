"""The simpy model of Megatron-LM's 1F1B and interleaved schedules against the bubble formula."""

import pytest

from models.spec import ModelSpec
from wsim.errors import ConfigError
from wsim.gpu import estimate
from wsim.gpu.pipeline_sim import analytic_step_s, schedule, simulate_pipeline


@pytest.mark.parametrize("p, m, v", [
    (1, 4, 1), (2, 4, 1), (4, 8, 1), (4, 3, 1), (8, 8, 1), (8, 32, 1),
    (2, 4, 2), (4, 4, 2), (4, 8, 2), (4, 8, 4), (8, 16, 3), (3, 6, 5), (8, 64, 2),
])
@pytest.mark.parametrize("fwd_s, bwd_s", [(1.0, 2.0), (1.0, 3.0), (0.3, 0.3)])
def test_simulated_schedule_matches_megatron_bubble(p, m, v, fwd_s, bwd_s):
    sim = simulate_pipeline(p, m, v=v, fwd_s=fwd_s, bwd_s=bwd_s)
    assert sim == pytest.approx(analytic_step_s(p, m, v=v, fwd_s=fwd_s, bwd_s=bwd_s), rel=1e-9)


def test_bubble_fraction_story():
    """p = 4, m = 8: 1F1B idles (p-1)/m = 3/8 of the ideal 8 x 3 s; two chunks halve it."""
    assert simulate_pipeline(4, 8, fwd_s=1, bwd_s=2) == pytest.approx(24 * (1 + 3 / 8))
    assert simulate_pipeline(4, 8, v=2, fwd_s=1, bwd_s=2) == pytest.approx(24 * (1 + 3 / 16))


def test_schedule_runs_every_operation_once():
    for rank in range(4):
        ops = schedule(rank, 4, 8, 2)
        assert sorted(ops) == sorted({(k, c, mb) for k in "FB" for c in range(2) for mb in range(8)})
    assert schedule(0, 4, 8)[:3] == [("F", 0, 0), ("F", 0, 1), ("F", 0, 2)]  # 3 warm-up forwards
    assert schedule(3, 4, 8)[:2] == [("F", 0, 0), ("B", 0, 0)]  # the last stage alternates at once


def test_interleave_needs_multiple_of_p():
    with pytest.raises(ConfigError, match="multiple of p"):
        simulate_pipeline(4, 6, v=2)


@pytest.mark.parametrize("pp, v, mb", [(4, 1, 1), (4, 2, 1), (8, 3, 2), (2, 4, 1)])
def test_cost_model_pipeline_equals_simulated_schedule(pp, v, mb):
    """The step model's pipeline time for equal stages (tp 1, a 1-entry vocabulary so the LM head
    costs nothing measurable) is the simulated schedule's, given its per-micro-batch stage time."""
    model = ModelSpec(name="flat", layers=24, hidden=1024, heads=16, vocab=1,
                      tied_embeddings=False)
    r = estimate(model, seq=1024, batch=64, gpus=pp, tp=1, pp=pp, micro_batch=mb, interleave=v,
                 recompute="full")
    b = r.breakdown_s
    m = r.micro_batches
    tau = (b["compute_s"] + b["recompute_s"] + b["tp_comm_s"] + b["pp_comm_s"] + b["launch_s"]) / m
    pipe = r.step_time_s - b["dp_comm_s"] - b["optimizer_s"]
    sim = simulate_pipeline(pp, m, v=v, fwd_s=tau / 3, bwd_s=2 * tau / 3)
    assert pipe == pytest.approx(sim, rel=1e-4)  # the 1-entry LM head: ~1e-5 of a stage
    assert b["bubble_s"] / (pipe - b["bubble_s"]) == pytest.approx(r.bubble_fraction, rel=1e-3)
