"""Mixture-of-experts weight streaming (wsim/cluster/moe.py): the bytes every expert costs, the
tokens each expert's product sees, Batch Tiling on Attention, and the engine against the closed form."""


import pytest

from models import zoo
from models.spec import ModelSpec
from wsim.cluster import generations, memory, moe, wafer
from wsim.cluster.job import TrainingJob
from wsim.engine import closed_form
from wsim.engine.run import Simulation, SimOptions, simulate
from wsim.errors import ConfigError

from tests.engine.test_analytic import roomy


def small_moe(experts=16, top_k=2, layers=4, **kw) -> ModelSpec:
    """A Qwen3-like MoE small enough to simulate in a blink."""
    return ModelSpec(name=f"moe-{experts}x{top_k}", layers=layers, hidden=1024, heads=8, kv_heads=4, ffn=512,
                     vocab=32000, positions=4096, tied_embeddings=False, activation="silu", gated_mlp=True,
                     norm="rmsnorm", positional="rotary", attention_bias=False, mlp_bias=False,
                     family="qwen3_moe", experts=experts, experts_per_token=top_k, expert_ffn=512, **kw)


def test_every_expert_is_streamed_and_reduced_bytes_conserved():
    """MemoryX egress and ingress, and every SwarmX link, carry every expert's weights and
    gradients: M micro-batches x (forward + backward (+ recompute) streams, one gradient) x the
    layer's parameters, E experts of 3 h f_e each, whatever k; the closed form counts the same."""
    m = small_moe()
    job = TrainingJob(m, seq=1024, batch_seqs=8, micro_batches=2)
    cluster = generations.preset("cs2", 4)
    sim = Simulation(job, cluster, SimOptions())
    r = sim.run()
    plan = sim.plan
    layers = job.layers()
    h, fe = m.hidden, m.expert_ffn
    block = m.attention_params + m.norm_params(2) + m.experts * h + m.experts * 3 * h * fe
    assert all(l.params == block for l in layers if l.kind == "block")
    streamed = sum(l.params * (2 + (plan.recompute and l.kind == "block")) if l.needs_weights_in_backward
                   else l.params for l in layers)
    egress = plan.micro_batches * 2 * streamed  # 16-bit weights
    ingress = plan.micro_batches * 2 * sum(l.params for l in layers)  # 16-bit gradients
    assert r.extra["memoryx_stream_bytes_per_step"] == pytest.approx(egress, rel=1e-9)
    assert r.extra["memoryx_ingest_bytes_per_step"] == pytest.approx(ingress, rel=1e-9)
    for link in sim.swarmx.links_down:  # the broadcast: every link carries every byte once
        assert link.bytes == pytest.approx(egress, rel=1e-9)
    for link in sim.swarmx.links_up:  # the reduction: summed at each node, so once per link
        assert link.bytes == pytest.approx(ingress, rel=1e-9)
    down, up, _ = closed_form.bandwidths(cluster)
    ana = closed_form.step_time(job, cluster, plan)
    assert ana.stream_s * down == pytest.approx(egress, rel=1e-9)
    assert ana.gradient_s * up == pytest.approx(ingress, rel=1e-9)
    # MemoryX holds every expert and its optimizer state
    assert r.memoryx_bytes == m.params * cluster.memoryx.bytes_per_param
    assert m.params > m.active_params + m.layers * (m.experts - m.experts_per_token) * 3 * h * fe - 1


def test_expert_products_run_one_expert_at_a_time_on_few_tokens():
    """Uniform routing: E sub-passes of T k / E tokens, each an (h x f_e) product alone on the wafer
    with its fill and drain; the time is affine in T and the fill makes few-token products slow."""
    m = small_moe(experts=16, top_k=2)
    cs2 = generations.preset("cs2", 1).cs2
    layers = TrainingJob(m, seq=1024).layers()
    timer = wafer.PassTimer(layers, cs2)
    _, one = wafer.expert_seconds_per_token(layers[1], cs2)
    other = wafer.layer_cost(layers[1], cs2).forward_s - wafer.expert_seconds_per_token(layers[1], cs2)[0]
    t = 8192
    fill = wafer.pass_overhead_s(cs2)
    assert timer.seconds(1, "fwd", t) == pytest.approx(t * other + fill + m.experts * (t * 2 / 16 * one + fill))
    assert timer.seconds(1, "bwd", t) == pytest.approx(
        t * 2 * other + fill + m.experts * (2 * t * 2 / 16 * one + fill))
    # the token factor: an expert product of t tokens runs at t / (t + t_half) of its rate
    t_half = fill / one
    per_expert = t * 2 / 16
    assert (per_expert * one) / (per_expert * one + fill) == pytest.approx(per_expert / (per_expert + t_half))
    # dense layers are untouched: the embedding and head have no experts
    assert timer.overhead[0] == timer.overhead[-1] == fill
    # more experts at the same k: more fills, the same routed work, a wider router (h x E)
    wide = TrainingJob(small_moe(experts=64, top_k=2), seq=1024).layers()
    more = wafer.PassTimer(wide, cs2)
    assert more.overhead[1] - timer.overhead[1] == pytest.approx(48 * fill)
    router = [wafer._matmul_s([op for op in ls[1].matmuls if op.name == "router"], cs2, 1.0) for ls in (layers, wide)]
    assert router[1] > router[0] > 0
    assert more.per_token[1]["fwd"] - timer.per_token[1]["fwd"] == pytest.approx(router[1] - router[0])


def test_a_measured_routing_distribution_pads_every_expert_to_the_most_loaded():
    m = small_moe(experts=4, top_k=1)
    assert moe.expert_sub_passes(4, 1, None) == (4, 1.0)
    skew = TrainingJob(m, seq=1024, expert_shares=(4, 2, 2, 0))  # counts, normalised
    assert skew.expert_shares == (0.5, 0.25, 0.25, 0.0)
    assert moe.expert_sub_passes(4, 1, skew.expert_shares) == (3, 1.5)
    assert moe.tokens_per_expert(1000, 4, 1, skew.expert_shares) == 500
    cs2 = generations.preset("cs2", 1).cs2
    uni, sk = (wafer.PassTimer.for_job(j, cs2) for j in (TrainingJob(m, seq=1024), skew))
    _, one = wafer.expert_seconds_per_token(skew.layers()[1], cs2)
    assert sk.per_token[1]["fwd"] - uni.per_token[1]["fwd"] == pytest.approx(0.5 * one)
    assert uni.overhead[1] - sk.overhead[1] == pytest.approx(wafer.pass_overhead_s(cs2))
    for bad in ((1, 1, 1), (1, -1, 1, 1), (0, 0, 0, 0), ("a", 1, 1, 1)):
        with pytest.raises(ConfigError, match="expert_shares"):
            TrainingJob(m, seq=1024, expert_shares=bad)
    with pytest.raises(ConfigError, match="no experts"):
        TrainingJob(zoo.get("cerebras-gpt-111m"), expert_shares=(1.0,))


def test_batch_tiling_on_attention_frees_the_attention_memory_and_recomputes_it():
    """BTA holds one tile's s x s activations: more sequences fit a micro-batch; the backward pays
    the attention core again."""
    m = small_moe()
    seq = 4096
    plain, tiled = TrainingJob(m, seq=seq, batch_seqs=64), TrainingJob(m, seq=seq, batch_seqs=64,
                                                                       attention_tile_seqs=2)
    attn = 2 * m.heads * seq * seq  # bytes per sequence per block at 16-bit (softmax output, no dropout)
    assert memory.attention_tile_bytes_per_seq(tiled) == attn
    assert memory.activation_bytes_per_seq(plain, False) - memory.activation_bytes_per_seq(tiled, False) \
        == pytest.approx(m.layers * attn)
    assert memory.activation_bytes(tiled, False, 10) == pytest.approx(
        10 * memory.activation_bytes_per_seq(tiled, False) + 2 * attn)
    cluster = generations.preset("cs2", 1)
    a, b = memory.fewest(plain, cluster, False), memory.fewest(tiled, cluster, False)
    assert b.micro_batches < a.micro_batches and b.peak_bytes <= cluster.cs2.usable_sram_bytes
    cs2 = cluster.cs2
    t0, t1 = wafer.PassTimer.for_job(plain, cs2), wafer.PassTimer.for_job(tiled, cs2)
    core = wafer.attention_core_seconds_per_token(plain.layers()[1], cs2)
    assert core > 0 and t1.per_token[1]["bwd"] - t0.per_token[1]["bwd"] == pytest.approx(core)
    assert t1.per_token[1]["fwd"] == t0.per_token[1]["fwd"] and t1.per_token[0] == t0.per_token[0]
    with pytest.raises(ConfigError, match="attention_tile_seqs"):
        TrainingJob(m, attention_tile_seqs=-1)


@pytest.mark.parametrize("experts,top_k,n,spp,tile,shares", [
    (16, 2, 1, 4, 0, None), (64, 8, 4, 16, 0, None), (64, 8, 4, 16, 2, None), (128, 8, 2, 64, 0, None),
    (8, 2, 16, 4, 0, (3, 1, 1, 1, 1, 1, 0, 0)),
])
def test_engine_matches_closed_form_for_moe(experts, top_k, n, spp, tile, shares):
    """As tests/engine/test_analytic.py for dense models: within 1% without contention (24 MoE blocks)."""
    job = TrainingJob(small_moe(experts, top_k, layers=24), seq=2048, batch_seqs=n * spp, attention_tile_seqs=tile,
                      expert_shares=shares)
    cluster = roomy(generations.preset("cs2", n))
    eng = simulate(job, cluster).step_time_s
    ana = closed_form.step_time(job, cluster).step_time_s
    assert eng == pytest.approx(ana, rel=0.01) and eng >= ana * (1 - 1e-9)


@pytest.mark.parametrize("name", ["mixtral-8x7b", "deepseek-v3"])
def test_large_moe_engine_matches_closed_form(name):
    job = TrainingJob(zoo.get(name), seq=4096, batch_seqs=64)
    cluster = roomy(generations.preset("cs3", 16))
    r = simulate(job, cluster)
    assert r.step_time_s == pytest.approx(closed_form.step_time(job, cluster).step_time_s, rel=0.01)
    assert r.extra["moe"]["experts"] == zoo.get(name).experts


def test_deepseek_v3_parameter_count_is_the_published_one():
    """DeepSeek-V3 technical report (arXiv 2412.19437), abstract: 671B total parameters, 37B
    activated per token. MLA is exact (models/zoo.py), so the total holds to 0.1% (the router's bias
    and a shared-expert gate differ from transformers by 0.4M; tests/models/test_mla.py has the exact
    count); the activated count to 2% (the report rounds; its own count of the activated embedding
    and head is not stated)."""
    m = zoo.get("deepseek-v3")
    assert m.params == pytest.approx(671e9, rel=1e-3)
    assert m.active_params == pytest.approx(37e9, rel=0.02)
    mla = 7168 * 1536 + 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 + 512 * 128 * 256 + 128 * 128 * 7168
    assert m.attention_params == mla
    assert m.moe_layers == tuple(range(3, 61)) and m.block_params_at(0) - m.attention_params - 2 * 7168 \
        == 3 * 7168 * 18432


def test_bta_flag_and_shares_on_the_cli(tmp_path):
    from wsim.commands.cli import main

    shares = tmp_path / "s.json"
    shares.write_text("[" + ",".join(["1"] * 8) + "]")
    import json, io, contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["simulate", "--model", "mixtral-8x7b", "--batch", "16", "--systems", "4",
                   "--batch-tiling-attention", "1", "--expert-shares", str(shares), "--json"])
    assert rc in (0, None)
    r = json.loads(out.getvalue())
    assert r["extra"]["moe"]["attention_tile_seqs"] == 1 and r["extra"]["moe"]["routing"] == "measured shares"
    assert r["extra"]["moe"]["tokens_per_expert_product"] == pytest.approx(
        r["wafer_memory"]["seqs_per_micro_batch"] * 2048 * 2 / 8)


def test_router_work_and_padded_expert_memory():
    """The router: an h x E product, a softmax over E and a top-k (log2 k comparisons per score); a
    skewed routing pads every expert's stored activations to the most loaded one's."""
    m = small_moe(experts=16, top_k=4)
    block = TrainingJob(m, seq=1024).layers()[1]
    router = [op for op in block.matmuls if op.name == "router"]
    assert [(op.k, op.n, op.count) for op in router] == [(m.hidden, 16, 1)]
    ew = {op.name: (op.elements_per_token, op.ops_per_element) for op in block.elementwise}
    assert ew["router_softmax"] == (16.0, 5.0) and ew["router_topk"] == (16.0, 2.0)
    plain = TrainingJob(m, seq=1024)
    skew = TrainingJob(m, seq=1024, expert_shares=(2,) + (1,) * 14 + (0,))  # max share 2/16, 15 run
    slots = 15 * 4 * 2 / 16  # 7.5 padded slots for 4 routed
    assert memory.expert_padding_bytes_per_token(plain) == 0
    assert memory.expert_padding_bytes_per_token(skew) == pytest.approx((slots - 4) * 6 * m.expert_ffn)
    assert memory.activation_bytes_per_seq(skew, False) - memory.activation_bytes_per_seq(plain, False) \
        == pytest.approx(1024 * m.layers * (slots - 4) * 6 * m.expert_ffn)


def test_a_pass_of_few_tokens_pays_only_the_experts_it_reaches():
    """Decoding 1 token with top-2 of 16 experts: at most 2 expert sub-passes, not 16."""
    m = small_moe(experts=16, top_k=2)
    cs2 = generations.preset("cs2", 1).cs2
    timer = wafer.PassTimer(TrainingJob(m, seq=1024).layers(), cs2)
    fill = wafer.pass_overhead_s(cs2)
    assert timer.seconds(1, "fwd", 1) == pytest.approx(timer.per_token[1]["fwd"] + fill + 2 * fill)
    assert timer.seconds(1, "fwd", 8) == pytest.approx(8 * timer.per_token[1]["fwd"] + fill + 16 * fill)
