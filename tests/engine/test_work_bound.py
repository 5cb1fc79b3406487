"""The engine refuses, before building anything, a simulation that asks for unbounded work.

``schedule.chunk_passes`` counts the chunk passes ``schedule.build`` makes without making them; the
bound is only trustworthy if the count is exact, so it is checked against the built schedule."""

import pytest

from models import zoo
from models.spec import MAX_LAYERS, ModelSpec
from wsim.engine import closed_form
from wsim.cluster import generations
from wsim.engine import inference
from wsim.engine import schedule as sched
from wsim.engine.run import SimOptions, Simulation
from wsim.errors import ConfigError
from wsim.cluster.job import TrainingJob
from wsim.cluster.memory import plan as plan_wafer

TINY = ModelSpec("tiny", layers=3, hidden=64, heads=4, vocab=500, positions=64)


@pytest.mark.parametrize("micro_batches,steps,chunk_bytes", [
    ("auto", 1, 2e3), (3, 2, 5e3), (1, 3, float("inf")), (2, 1, 123.0), (4, 2, 1e9),
])
@pytest.mark.parametrize("tied", [True, False])
def test_count_equals_built_schedule(micro_batches, steps, chunk_bytes, tied):
    model = ModelSpec("m", layers=3, hidden=64, heads=4, vocab=500, positions=64, tied_embeddings=tied)
    job = TrainingJob(model, seq=32, batch_seqs=8, micro_batches=micro_batches, steps=steps)
    cluster = generations.preset("cs2", 2)
    plan = plan_wafer(job, cluster)
    built = sched.build(job, cluster, plan, chunk_bytes, steps)
    assert sched.chunk_passes(job, plan, chunk_bytes, steps) == sum(p.chunks for p in built.passes)


def test_count_includes_recompute_passes():
    # 13B at 2048 tokens: one sequence only fits with checkpointing, so blocks are streamed 3 times
    job = TrainingJob(zoo.get("cerebras-gpt-13b"), seq=2048, batch_seqs=90, micro_batches=9)
    cluster = generations.preset("cs2", 1)
    plan = plan_wafer(job, cluster)
    assert plan.recompute
    built = sched.build(job, cluster, plan, 5e7, 1)
    assert any(p.phase == sched.RECOMPUTE for p in built.passes)
    assert sched.chunk_passes(job, plan, 5e7, 1) == sum(p.chunks for p in built.passes)


def test_limit_is_inclusive_and_names_the_option():
    job = TrainingJob(TINY, seq=32, batch_seqs=4, micro_batches=2, steps=2)
    cluster = generations.preset("cs2", 1)
    count = sched.chunk_passes(job, plan_wafer(job, cluster), 4e3, 2)
    sim = Simulation(job, cluster, SimOptions(chunk_bytes=4e3, max_chunk_passes=count))
    assert sim.n_items == count  # one item per chunk pass
    sim.run()
    with pytest.raises(ConfigError, match="max_chunk_passes"):
        Simulation(job, cluster, SimOptions(chunk_bytes=4e3, max_chunk_passes=count - 1))


@pytest.mark.parametrize("job_kw", [
    {"steps": 2**63}, {"batch_seqs": 2**40}, {"steps": 10**8},
], ids=["steps-2^63", "batch-2^40", "steps-1e8"])
def test_huge_jobs_are_refused_quickly(job_kw):
    job = TrainingJob(TINY, **{"seq": 32, "batch_seqs": 4, **job_kw})
    with pytest.raises(ConfigError, match="(chunk|layer) passes"):  # the plan's closed form refuses first
        Simulation(job, generations.preset("cs2", 1))


def test_tiny_chunks_are_refused():
    job = TrainingJob(zoo.get("cerebras-gpt-111m"), seq=2048, batch_seqs=8)
    with pytest.raises(ConfigError, match="chunk passes"):
        Simulation(job, generations.preset("cs2", 1), SimOptions(chunk_bytes=1))


def test_analytic_refuses_millions_of_micro_batches():
    job = TrainingJob(zoo.get("cerebras-gpt-111m"), seq=2048, batch_seqs=10**9)
    with pytest.raises(ConfigError, match="layer passes"):
        closed_form.step_time(job, generations.preset("cs2", 1))


def test_inference_refuses_tiny_chunks():
    calls = inference.calls_for(rows=1, prompt_tokens=8, new_tokens=4)
    with pytest.raises(ConfigError, match="chunk passes"):
        inference.build_schedule(TINY, calls, generations.preset("cs2", 1), chunk_bytes=1e-3)


def test_layer_count_is_bounded():
    ModelSpec("deep", layers=MAX_LAYERS, hidden=8, heads=1, vocab=10, positions=8)
    with pytest.raises(ValueError, match="layers"):
        ModelSpec("deeper", layers=MAX_LAYERS + 1, hidden=8, heads=1, vocab=10, positions=8)
