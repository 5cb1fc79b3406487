"""Engine invariants: conservation of bytes, symmetry changes nothing, steady state, memory bounds,
and the headline claims (1.3B scales 1 -> 16 CS-2; a 1T model runs on one CS-2)."""

import dataclasses

import pytest

from models import zoo
from models.spec import ModelSpec
from wsim.cluster import hardware
from wsim.cluster import generations
from wsim.engine.run import SimOptions, Simulation, simulate
from wsim.errors import ConfigError
from wsim.cluster.job import TrainingJob

GB = 1e9


def run(job, cluster, **opts):
    sim = Simulation(job, cluster, SimOptions(**opts))
    return sim, sim.run()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 16])
def test_bytes_are_conserved_on_every_link(n):
    model = zoo.get("cerebras-gpt-256m")
    job = TrainingJob(model, seq=1024, batch_seqs=3 * n, micro_batches=3)
    sim, r = run(job, generations.preset("cs2", n), symmetry=False)
    layers = job.layers()
    weights = sum(l.params for l in layers) * job.bytes_per_element
    bwd_weights = sum(l.params for l in layers if l.needs_weights_in_backward) * job.bytes_per_element
    grads = sum(l.params for l in layers) * job.grad_bytes_per_param
    # every micro-batch streams all weights forward and backward: micro-batching multiplies traffic
    assert sim.memoryx.egress.bytes == pytest.approx(3 * (weights + bwd_weights))
    assert sim.memoryx.ingress.bytes == pytest.approx(3 * grads)
    # a broadcast tree sends every byte down every link once; a reduce tree sends every byte up once
    for link in sim.swarmx.links_down:
        assert link.bytes == pytest.approx(sim.memoryx.egress.bytes)
    for link in sim.swarmx.links_up:
        assert link.bytes == pytest.approx(sim.memoryx.ingress.bytes)
    # every gradient chunk was reduced exactly once at each node (nothing left pending)
    assert all(not node.pending for node, _ in _nodes(sim.swarmx.root))


def _nodes(node):
    out = [(node, None)]
    for child, _ in node.children:
        out += _nodes(child)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 12, 17])
def test_symmetry_changes_no_answer(n):
    job = TrainingJob(zoo.get("cerebras-gpt-111m"), seq=2048, batch_seqs=4 * n)
    cluster = generations.preset("cs2", n)
    _, full = run(job, cluster, symmetry=False)
    sim, sym = run(job, cluster, symmetry=True)
    assert sym.step_time_s == full.step_time_s
    assert sym.breakdown == full.breakdown
    assert len(sim.cs2s) <= n


def test_steady_state_steps_repeat():
    job = TrainingJob(zoo.get("cerebras-gpt-590m"), seq=2048, batch_seqs=32, steps=3)
    r = simulate(job, generations.preset("cs2", 4))
    one = simulate(dataclasses.replace(job, steps=1), generations.preset("cs2", 4))
    for period in r.step_times_s:
        assert period == pytest.approx(one.step_time_s, rel=1e-9)
    assert r.step_time_s == pytest.approx(one.step_time_s, rel=1e-9)


def test_breakdown_sums_to_step_time_and_bounds_hold():
    for name, n, spp in [("cerebras-gpt-111m", 1, 8), ("cerebras-gpt-6.7b", 8, 4), ("cerebras-gpt-13b", 64, 1)]:
        job = TrainingJob(zoo.get(name), seq=2048, batch_seqs=n * spp)
        r = simulate(job, generations.preset("cs2", n))
        assert sum(r.breakdown.values()) == pytest.approx(r.step_time_s, rel=1e-9)
        assert all(v >= -1e-12 for v in r.breakdown.values())
        compute = r.breakdown["compute_forward_s"] + r.breakdown["compute_backward_s"]
        assert r.step_time_s >= compute
        assert 0 < r.compute_utilization <= 1
        assert r.model_flops_per_step == job.model_flops_per_step()


def test_prefetch_bound_and_wafer_memory():
    cluster = generations.preset("cs2", 4)
    job = TrainingJob(zoo.get("cerebras-gpt-2.7b"), seq=2048, batch_seqs=64, micro_batches="fit")
    r = simulate(job, cluster)
    assert r.wafer_memory["weight_buffer_bytes"] <= cluster.cs2.weight_buffer_bytes
    assert r.wafer_memory_bytes <= cluster.cs2.sram_bytes
    assert r.micro_batches > 1 and not r.recompute  # 16 sequences of 2.7B activations do not fit 40 GB


def test_trillion_parameter_model_runs_on_one_cs2():
    trillion = ModelSpec("1t", layers=128, hidden=25600, heads=160)
    assert trillion.params > 1e12
    r = simulate(TrainingJob(trillion, seq=2048, batch_seqs=1), generations.preset("cs2", 1))
    assert r.wafer_memory_bytes <= 40 * GB  # activations and buffers only
    assert r.recompute  # one sequence's full activations (>40 GB) do not fit: checkpointing
    assert r.memoryx_bytes == pytest.approx(trillion.params * 16)
    # README (experiments/readme_figures.py): 16.67 GB of wafer memory, 16.1 TB in MemoryX
    assert r.wafer_memory_bytes / 1e9 == pytest.approx(16.67, abs=0.005)
    assert r.memoryx_bytes / 1e12 == pytest.approx(16.1, abs=0.05)


def test_cerebras_gpt_1_3b_scales_from_1_to_16_systems():
    """The headline: Cerebras-GPT 1.3B at its published batch (528 x 2048) on 1 and 16 CS-2, at the
    figures the README quotes (experiments/readme_figures.py)."""
    job = TrainingJob(zoo.get("cerebras-gpt-1.3b"), seq=2048, batch_seqs=528)
    one = simulate(job, generations.preset("cs2", 1))
    sixteen = simulate(job, generations.preset("cs2", 16))
    speedup = one.step_time_s / sixteen.step_time_s
    assert one.step_time_s == pytest.approx(4.98, abs=0.005)
    assert sixteen.step_time_s == pytest.approx(0.3195, abs=0.00005)
    assert speedup == pytest.approx(15.6, abs=0.05)
    assert (sixteen.micro_batches, sixteen.recompute) == (7, False)


def test_cerebras_gpt_13b_time_to_train_on_its_published_systems():
    """Cerebras-GPT 13B on 8 then 12 CS-2 (batch 720 then 1080) with default options: the README's
    15.1 days, 7.464 s per step with 4 micro-batches and recompute."""
    from wsim.studies.compare import cs2_time_to_train, published_phases

    r = cs2_time_to_train(zoo.get("cerebras-gpt-13b"), published_phases("cerebras-gpt-13b"))
    last = r["phases"][-1]
    assert r["time_to_train_s"] / 86400 == pytest.approx(15.1, abs=0.05)
    assert last["step_time_s"] == pytest.approx(7.464, abs=0.0005)
    assert (last["micro_batches"], last["recompute"]) == (4, True)


def test_micro_batching_multiplies_weight_traffic():
    model = zoo.get("cerebras-gpt-1.3b")
    cluster = generations.preset("cs2", 1)
    a = simulate(TrainingJob(model, seq=2048, batch_seqs=4, micro_batches=1), cluster)
    b = simulate(TrainingJob(model, seq=2048, batch_seqs=4, micro_batches=4), cluster)
    assert b.extra["memoryx_stream_bytes_per_step"] == pytest.approx(4 * a.extra["memoryx_stream_bytes_per_step"])
    assert b.step_time_s > a.step_time_s


def test_compute_bound_and_stream_bound_bottlenecks():
    small = simulate(TrainingJob(zoo.get("cerebras-gpt-111m"), seq=2048, batch_seqs=16), generations.preset("cs2", 1))
    assert small.bottleneck == "cs2_compute"
    big = simulate(TrainingJob(zoo.get("cerebras-gpt-13b"), seq=2048, batch_seqs=64), generations.preset("cs2", 64))
    assert big.bottleneck == "weight_stream"


def test_faster_links_never_slow_a_step():
    job = TrainingJob(zoo.get("cerebras-gpt-1.3b"), seq=2048, batch_seqs=32)
    base = generations.preset("cs2", 8)
    prev = None
    for bw in (50e9, 100e9, 150e9, 300e9):
        c = dataclasses.replace(base, memoryx=dataclasses.replace(base.memoryx, stream_bytes_per_s=bw))
        t = simulate(job, c).step_time_s
        assert prev is None or t <= prev * (1 + 1e-12)
        prev = t


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_seqs=2), "smaller than the number of systems"),
    (dict(batch_seqs=6), "not divisible"),
    (dict(batch_seqs=8, micro_batches=3), None),
    (dict(batch_seqs=8, micro_batches=5), "exceeds the 2 sequences"),
])
def test_bad_jobs_raise_config_error(kwargs, match):
    job = TrainingJob(zoo.get("cerebras-gpt-111m"), seq=2048, **kwargs)
    if match is None:
        with pytest.raises(ConfigError, match="micro_batches 3 exceeds"):
            simulate(job, generations.preset("cs2", 4))
        return
    with pytest.raises(ConfigError, match=match):
        simulate(job, generations.preset("cs2", 4))


def test_model_larger_than_memoryx_is_refused():
    cluster = dataclasses.replace(generations.preset("cs2", 1),
                                  memoryx=hardware.MemoryXSpec(capacity_bytes=1e12))
    with pytest.raises(ConfigError, match="MemoryX"):
        simulate(TrainingJob(zoo.get("gpt3-175b"), seq=2048, batch_seqs=1), cluster)
