"""Sparse weight streaming (timing): bytes conserved at the format's cost, FLOPs and wafer time
scaled by the realised saving, engine = closed form, symmetry changes nothing, density 1 = dense."""

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import zoo
from models.spec import ModelSpec
from wsim.engine import closed_form
from wsim.cluster import hardware
from wsim.cluster import generations
from wsim.cluster import wafer
from wsim.commands.cli import main
from wsim.engine.run import SimOptions, Simulation, simulate
from wsim.errors import ConfigError
from wsim.cluster.job import TrainingJob
from wsim.cluster.sparsity import Density

SMALL = ModelSpec("small", layers=3, hidden=128, heads=4, vocab=1000, positions=256)
UNTIED = dataclasses.replace(SMALL, name="untied", tied_embeddings=False)


def test_density_one_is_the_dense_run_exactly():
    job = TrainingJob(zoo.get("cerebras-gpt-1.3b"), seq=2048, batch_seqs=16)
    cluster = generations.preset("cs2", 4)
    a = simulate(job, cluster).to_dict()
    b = simulate(dataclasses.replace(job, density={"block": 1.0}), cluster).to_dict()
    a["extra"].pop("engine_calls"), b["extra"].pop("engine_calls")
    assert a == b


def block_bytes(model, d, b=2, mask_bits=1.0):
    """A block's streamed bytes at density d, by hand: dense biases and norms, the nonzeros of the
    4h^2 + 2hf matrix entries, a 1-bit mask over all of them."""
    h, f = model.hidden, model.ffn
    w = 4 * h * h + 2 * h * f
    return (model.block_params - w) * b + d * w * b + w * mask_bits / 8


@pytest.mark.parametrize("d", [1.0, 0.5, 0.25])
def test_streamed_and_gradient_bytes_are_conserved_at_the_format_cost(d):
    job = TrainingJob(UNTIED, seq=128, batch_seqs=6, micro_batches=2, density={"block": d})
    sim = Simulation(job, generations.preset("cs2", 3), SimOptions(symmetry=False))
    sim.run()
    layers = job.layers()
    emb, head = layers[0], layers[-1]
    blocks = UNTIED.layers * (block_bytes(UNTIED, d) if d < 1 else UNTIED.block_params * 2)
    # per micro-batch: every layer forward, every layer but the embedding backward
    per_mb = emb.params * 2 + 2 * (blocks + head.params * 2)
    assert sim.memoryx.egress.bytes == pytest.approx(2 * per_mb, rel=1e-12)
    h, f = UNTIED.hidden, UNTIED.ffn
    w = 4 * h * h + 2 * h * f
    grads = emb.params + head.params + UNTIED.layers * (UNTIED.block_params - (1 - d) * w)
    assert sim.memoryx.ingress.bytes == pytest.approx(2 * grads * 2, rel=1e-12)
    for link in sim.swarmx.links_down:
        assert link.bytes == pytest.approx(sim.memoryx.egress.bytes, rel=1e-12)
    for link in sim.swarmx.links_up:
        assert link.bytes == pytest.approx(sim.memoryx.ingress.bytes, rel=1e-12)


def test_memoryx_holds_the_nonzeros_and_the_mask():
    job = TrainingJob(UNTIED, seq=128, batch_seqs=3, density=0.5)
    r = simulate(job, generations.preset("cs2", 1))
    h, v, f = UNTIED.hidden, UNTIED.vocab, UNTIED.ffn
    w = UNTIED.layers * (4 * h * h + 2 * h * f) + 2 * v * h  # blocks, token table, LM head
    expected = (UNTIED.params - 0.5 * w) * 16 + w / 8
    assert r.memoryx_bytes == pytest.approx(expected, rel=1e-12)


def test_tied_embedding_and_head_share_a_density_and_the_embedding_owns_the_mask():
    with pytest.raises(ConfigError, match="ties the embedding"):
        TrainingJob(SMALL, seq=128, density={"head": 0.5})
    job = TrainingJob(SMALL, seq=128, density={"embedding": 0.5, "head": 0.5})
    t = job.traffic()
    table = SMALL.vocab * SMALL.hidden
    assert t[-1].update_params == job.layers()[-1].owned_params  # the head owns its norm only
    assert t[0].update_params == pytest.approx(job.layers()[0].owned_params - 0.5 * table)
    assert t[-1].weight_bytes == pytest.approx((2 * SMALL.hidden + 0.5 * table) * 2 + table / 8)


@pytest.mark.parametrize("e", [1.0, 0.5, 0.0])
def test_weight_products_take_the_realised_share_of_the_saving(e):
    cs2 = dataclasses.replace(hardware.CS2Spec(), sparse_flop_efficiency=e)
    block = zoo.get("cerebras-gpt-1.3b").layer_specs(2048)[1]
    dense = wafer.layer_cost(block, cs2)
    sparse = wafer.layer_cost(block, cs2, density=0.25)
    weight = sum(op.flops_per_token / (cs2.peak_flops_per_s * wafer.matmul_efficiency(op, cs2))
                 for op in block.matmuls if op.weight)
    assert dense.matmul_s - sparse.matmul_s == pytest.approx(e * 0.75 * weight, rel=1e-12)
    assert sparse.elementwise_s == dense.elementwise_s
    # the what-if flat efficiency scales the same FLOPs
    flat = dataclasses.replace(cs2, compute_efficiency=0.5)
    weight_flops = sum(op.flops_per_token for op in block.matmuls if op.weight)
    assert wafer.layer_cost(block, flat, 0.25).matmul_s == pytest.approx(
        (block.fwd_flops_per_token - e * 0.75 * weight_flops) / (cs2.peak_flops_per_s * 0.5), rel=1e-12)


def test_model_flops_count_the_nonzeros():
    job = TrainingJob(zoo.get("cerebras-gpt-111m"), seq=2048, batch_seqs=4, density=0.5)
    weight = sum(sum(op.flops_per_token for op in l.matmuls if op.weight) for l in job.layers())
    assert job.model_flops_per_step() == pytest.approx(
        job.dense_model_flops_per_step() - 0.5 * 3 * weight * job.tokens_per_step, rel=1e-12)


def roomy(cluster, buffer_bytes=64e9):
    cs2 = cluster.cs2
    return dataclasses.replace(cluster, cs2=dataclasses.replace(
        cs2, weight_buffer_bytes=buffer_bytes, sram_bytes=cs2.sram_bytes + buffer_bytes - cs2.weight_buffer_bytes))


@pytest.mark.parametrize("name,preset,n,spp,d", [
    ("cerebras-gpt-1.3b", "cs2", 4, 8, 0.5), ("cerebras-gpt-13b", "cs2", 8, 90, 0.25),
    ("cerebras-gpt-13b", "cs3", 2048, 8, 0.25), ("cerebras-gpt-6.7b", "cs2", 64, 1, 0.5)])
def test_sparse_engine_matches_closed_form_without_contention(name, preset, n, spp, d):
    job = TrainingJob(zoo.get(name), seq=2048, batch_seqs=n * spp, density=d)
    cluster = roomy(generations.preset(preset, n))
    eng = simulate(job, cluster).step_time_s
    ana = closed_form.step_time(job, cluster).step_time_s
    assert eng == pytest.approx(ana, rel=0.01) and eng >= ana * (1 - 1e-9)


@pytest.mark.parametrize("n", [1, 5, 17])
def test_sparse_symmetry_changes_no_answer(n):
    job = TrainingJob(zoo.get("cerebras-gpt-111m"), seq=2048, batch_seqs=2 * n, density={"block": 0.3})
    cluster = generations.preset("cs2", n)
    full = Simulation(job, cluster, SimOptions(symmetry=False)).run()
    sym = Simulation(job, cluster, SimOptions(symmetry=True)).run()
    assert full.step_time_s == sym.step_time_s and full.breakdown == sym.breakdown


def test_lower_density_is_never_slower_when_the_saving_is_realised():
    for name, n, spp in [("cerebras-gpt-1.3b", 4, 132), ("cerebras-gpt-13b", 64, 1)]:
        times = [closed_form.step_time(TrainingJob(zoo.get(name), seq=2048, batch_seqs=n * spp, density=d),
                                    generations.preset("cs2", n)).step_time_s for d in (1.0, 0.75, 0.5, 0.25, 0.1)]
        assert times == sorted(times, reverse=True)


@pytest.mark.parametrize("text,expected", [
    ("0.5", Density(0.5, 0.5, 0.5)), ("block=0.25", Density(block=0.25)),
    ("block=0.5, head=0.5,embedding=0.5", Density(0.5, 0.5, 0.5))])
def test_density_parses(text, expected):
    assert Density.parse(text) == expected


@pytest.mark.parametrize("text", ["0", "1.5", "nan", "x", "blok=0.5", "block=", "=0.5", "block=2"])
def test_bad_density_is_refused(text):
    with pytest.raises(ConfigError, match="density"):
        Density.parse(text)


def test_cli_density_json_and_one_line_errors(capsys):
    code = main(["simulate", "--model", "cerebras-gpt-111m", "--density", "0.5", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["density"] == {"embedding": 0.5, "block": 0.5, "head": 0.5}
    assert out["model_flops_per_step"] < out["extra"]["dense_model_flops_per_step"]
    code = main(["simulate", "--model", "cerebras-gpt-111m", "--density", "2"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "density" in err


@st.composite
def sparse_configs(draw):
    heads = draw(st.sampled_from([1, 2, 4]))
    model = ModelSpec("rand", layers=draw(st.integers(1, 3)), hidden=heads * draw(st.integers(4, 32)),
                      heads=heads, vocab=draw(st.integers(10, 400)), positions=128,
                      tied_embeddings=draw(st.booleans()))
    d = draw(st.floats(0.01, 1.0))
    density = {"block": d} if draw(st.booleans()) else d
    n = draw(st.integers(1, 9))
    job = TrainingJob(model, seq=draw(st.sampled_from([8, 64])), batch_seqs=n * draw(st.integers(1, 3)),
                      steps=draw(st.integers(1, 2)), density=density)
    cluster = hardware.ClusterSpec(
        systems=n, cs2=hardware.CS2Spec(weight_buffer_bytes=draw(st.sampled_from([64e3, 512e6])),
                                        sparse_flop_efficiency=draw(st.floats(0.0, 1.0))),
        memoryx=hardware.MemoryXSpec(sparse_mask_bits_per_weight=draw(st.sampled_from([0.0, 1.0])),
                                     sparse_index_bits_per_nonzero=draw(st.sampled_from([0.0, 16.0]))))
    return job, cluster


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=sparse_configs())
def test_sparse_invariants(cfg):
    """Every link carries what the layers' traffic says; symmetry changes nothing; the step is never
    shorter than the compute or stream bound."""
    job, cluster = cfg
    full = Simulation(job, cluster, SimOptions(symmetry=False))
    r = full.run()
    traffic = job.traffic(cluster.memoryx)
    passes = sum(t.weight_bytes * (1 + l.needs_weights_in_backward) for t, l in zip(traffic, job.layers()))
    m = full.plan.micro_batches * job.steps
    if not full.plan.recompute:  # recompute streams the blocks a third time
        assert full.memoryx.egress.bytes == pytest.approx(m * passes, rel=1e-9)
    assert full.memoryx.ingress.bytes == pytest.approx(m * sum(t.grad_bytes for t in traffic), rel=1e-9)
    for link in full.swarmx.links_down:
        assert link.bytes == pytest.approx(full.memoryx.egress.bytes, rel=1e-9)
    sym = Simulation(job, cluster, SimOptions(symmetry=True)).run()
    assert sym.step_time_s == pytest.approx(r.step_time_s, rel=1e-12)
    a = closed_form.step_time(job, cluster)
    assert r.step_time_s >= max(a.compute_s, a.stream_s, a.gradient_s) * (1 - 1e-9)
