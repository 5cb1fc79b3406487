"""Small timing effects the 1% engine-vs-closed-form tolerance would not see: the SwarmX hop latency
and the tree's fan-out. At 100 us a hop (50x the default 2 us) and fan-out 2 or 4 on 16 and 64
CS-2, the latency enters a step twice per hop at the step boundary (weights down, gradients up;
everything else streams cut-through and pipelines across layers). So raising the latency from 2 us
to 100 us must lengthen the step by exactly 2 x hops x 98 us, in the engine and in the closed
form, with hops = SwarmX levels + 1 = ceil(log_fanout N) + 1 counted by hand below; and the closed
form's bubble must be that latency term plus the embedding's update, to the rounding."""

import dataclasses

import pytest

from models import zoo
from wsim.cluster import generations
from wsim.cluster.job import TrainingJob
from wsim.engine import closed_form
from wsim.engine.run import simulate
from tests.engine.test_analytic import roomy

LOW, HIGH = 2e-6, 100e-6  # s per hop: the default (docs/hardware.md) and 50x it
# (systems, fan-out) -> hops from MemoryX to a CS-2: levels of a fan-out tree over N leaves, + 1
HOPS = {(16, 2): 5, (16, 4): 3, (64, 2): 7, (64, 4): 4}


def cluster(systems: int, fanout: int, latency_s: float):
    c = roomy(generations.preset("cs2", systems))
    return dataclasses.replace(c, swarmx=dataclasses.replace(c.swarmx, fanout=fanout, hop_latency_s=latency_s))


def job(systems: int) -> TrainingJob:
    return TrainingJob(zoo.get("cerebras-gpt-111m"), seq=2048, batch_seqs=systems)


@pytest.mark.parametrize("systems,fanout", sorted(HOPS))
def test_the_latency_costs_two_trips_per_hop_in_engine_and_closed_form(systems, fanout):
    extra = 2 * HOPS[systems, fanout] * (HIGH - LOW)  # 0.59 to 1.37 ms on a ~4.4 ms step
    j = job(systems)
    eng = [simulate(j, cluster(systems, fanout, lat)).step_time_s for lat in (LOW, HIGH)]
    ana = [closed_form.step_time(j, cluster(systems, fanout, lat)).step_time_s for lat in (LOW, HIGH)]
    # one fan-out level is 2 x 98 us = 0.196 ms, 3-4% of the step: 1e-3 of the extra sees it
    assert eng[1] - eng[0] == pytest.approx(extra, rel=1e-3), (eng, extra)
    assert ana[1] - ana[0] == pytest.approx(extra, rel=1e-3), (ana, extra)
    # and the two agree at the high latency within the contention-free tolerance
    assert eng[1] == pytest.approx(ana[1], rel=0.01)


@pytest.mark.parametrize("systems,fanout", sorted(HOPS))
def test_the_closed_form_bubble_is_the_latency_term_plus_the_first_update(systems, fanout):
    j = job(systems)
    c = cluster(systems, fanout, HIGH)
    owned = j.traffic(c.memoryx)[0].update_params  # the embedding's parameters
    bubble = closed_form.step_time(j, c).bubble_s
    assert bubble == pytest.approx(2 * HOPS[systems, fanout] * HIGH + owned / c.memoryx.optimizer_params_per_s,
                                   rel=1e-12)


def test_the_engine_step_boundary_grows_by_the_latency_term():
    """The engine's step-boundary time (the bubble it reports) takes the whole latency term."""
    j = job(64)
    low, high = (simulate(j, cluster(64, 2, lat)).breakdown["step_boundary_s"] for lat in (LOW, HIGH))
    assert high - low == pytest.approx(2 * HOPS[64, 2] * (HIGH - LOW), rel=1e-3)
