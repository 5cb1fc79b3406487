"""Mixtures of experts on GPUs (``wsim.gpu.moe``): Megatron-Core's expert-parallel rules, the
all-to-all's closed form and byte conservation, ep = 1 as all experts local, dense plans unchanged,
the published MoE rows, and the search over ep."""

import dataclasses
import itertools

import pytest

from models import zoo
from models.spec import ModelSpec
from wsim.errors import ConfigError
from wsim.gpu import EFFICIENCY, estimate, search
from wsim.gpu import validation as V
from wsim.gpu.comm import Group, all_to_all_bytes
from wsim.gpu.inputs import make_consts
from wsim.gpu.moe import layer
from wsim.gpu.plan import divisors
from wsim.gpu.specs import gpu_spec

MIXTRAL = zoo.get("mixtral-8x7b")
H100 = dict(seq=4096, batch=256, gpus=64, gpu="h100-80gb", attention="flash")


# ---- Megatron-Core's rules ------------------------------------------------------------------------
@pytest.mark.parametrize("kw, words", [
    (dict(ep=3), "ep 3 does not divide the model's 8 experts"),
    (dict(ep=8, pp=16), "etp x ep = 1 x 8 does not divide tp x cp x dp = 4"),
    (dict(ep=8, etp=3), "etp 3 does not divide the experts' FFN width"),
    (dict(ep=4, tp=2), "needs sequence_parallel"),
    (dict(ep=8, zero=3, pp=1), "zero 3 with experts is not modelled"),
    (dict(ep=8, stack="megatron"), "stack megatron does not run mixtures of experts"),
    (dict(ep=1, stack="deepspeed"), "stack deepspeed does not run mixtures of experts"),
    (dict(ep=8, moe_imbalance=0.5), "moe_imbalance must be a number >= 1"),
    (dict(ep=8, moe_capacity_factor=0), "moe_capacity_factor"),
])
def test_expert_parallel_rules(kw, words):
    opts = dict(H100, pp=8, micro_batch=1, recompute="full", zero=1)
    opts.update(kw)
    with pytest.raises(ConfigError, match=words):
        estimate(MIXTRAL, **opts)


def test_a_dense_model_with_experts_options_is_one_clear_error():
    for kw in (dict(ep=2), dict(etp=2), dict(moe_capacity_factor=1.0), dict(moe_ep_overlap=True)):
        with pytest.raises(ConfigError, match="has no experts"):
            estimate(zoo.get("gpt3-1.3b"), seq=2048, batch=64, gpus=8, stack="megatron-core", **kw)
        with pytest.raises(ConfigError, match="has no experts"):
            search(zoo.get("gpt3-1.3b"), seq=2048, batch=64, gpus=8, **kw)


def test_etp_defaults_to_tp_as_megatron():
    r = estimate(MIXTRAL, **H100, tp=2, pp=4, ep=4, sequence_parallel=True, zero=1, recompute="full")
    assert r.plan.etp == 2 and r.plan.expert_tp == 2
    r1 = estimate(MIXTRAL, **H100, tp=2, pp=4, ep=4, etp=1, sequence_parallel=True, zero=1,
                  recompute="full")
    assert r1.plan.etp == 1 and r1.step_time_s != r.step_time_s


# ---- the all-to-all -------------------------------------------------------------------------------
@pytest.mark.parametrize("n, per_node", [(8, 8), (64, 8), (64, 1), (72, 72), (16, 4)])
def test_all_to_all_conserves_bytes(n, per_node):
    S = 3.0e8
    nv, net = all_to_all_bytes(S, n, per_node)
    assert nv + net + S / n == pytest.approx(S)  # sent to peers in the node, other nodes, itself
    # every rank sends and receives the same under uniform routing: what leaves equals what arrives
    sent = n * (nv + net)
    received = n * (n - 1) * (S / n)
    assert sent == pytest.approx(received)


def test_all_to_all_closed_form():
    E = EFFICIENCY
    gpu = gpu_spec("h100-80gb")
    S = 4.0e8
    nvlink = gpu.nvlink_bytes_per_s * E.nvlink_efficiency
    nic = gpu.nic_bytes_per_s * E.ib_efficiency
    g8 = Group(gpu, E, 8, 1)  # one node: NVLink only
    assert g8.all_to_all_s(S) == pytest.approx(
        E.collective_base_latency_s + E.nvlink_hop_latency_s + 7 / 8 * S / nvlink)
    g64 = Group(gpu, E, 64, 1)  # 8 nodes: 56/64 of it through the rank's own NIC
    assert g64.all_to_all_s(S) == pytest.approx(
        E.collective_base_latency_s + E.network_hop_latency_s + max(7 / 64 * S / nvlink,
                                                                    56 / 64 * S / nic))
    # GB200 NVL72: an EP group of 64 stays inside the NVLink domain
    gb = gpu_spec("gb200-nvl72")
    g = Group(gb, E, 64, 1)
    assert g.nodes == 1 and g.all_to_all_s(S) == pytest.approx(
        E.collective_base_latency_s + E.nvlink_hop_latency_s
        + 63 / 64 * S / (gb.nvlink_bytes_per_s * E.nvlink_efficiency))
    assert Group(gpu, E, 1, 1).all_to_all_s(S) == 0.0


def test_node_limited_all_to_all_closed_form():
    """DeepSeek-V3's dispatch (arXiv 2412.19437 sec. 3.2.2): 8 copies a token on at most 4 of 8
    nodes cross the network 4 x 7/8 = 3.5 times, not 8 x 56/64 = 7 (half the NIC bytes); NVLink
    forwards 7/8 of the copies; inside one node it is the plain all-to-all."""
    E = EFFICIENCY
    gpu = gpu_spec("h800-80gb")
    S = 4.0e8
    nvlink = gpu.nvlink_bytes_per_s * E.nvlink_efficiency
    nic = gpu.nic_bytes_per_s * E.ib_efficiency
    g64 = Group(gpu, E, 64, 1)
    lat = E.collective_base_latency_s + E.network_hop_latency_s + E.nvlink_hop_latency_s
    assert g64.node_limited_all_to_all_s(S, 8, 4) == pytest.approx(
        lat + max(7 / 8 * S / nvlink, 3.5 / 8 * S / nic))
    # no limit below the copies and the nodes: each copy crosses once, as the plain all-to-all's
    # network share (the two-hop path adds only the NVLink hop's latency)
    assert g64.node_limited_all_to_all_s(S, 8, 8) == pytest.approx(
        g64.all_to_all_s(S) + E.nvlink_hop_latency_s)
    g8 = Group(gpu, E, 8, 1)
    assert g8.node_limited_all_to_all_s(S, 8, 4) == g8.all_to_all_s(S)


def test_deepseek_dispatch_options_change_only_the_all_to_all():
    base = dict(model=zoo.get("deepseek-v3"), gpu="h800-80gb", gpus=2048, seq=4096, batch=15360,
                tp=1, pp=16, ep=64, zero=1, recompute="full", precision="fp8",
                attention="flash", stack="nemo", micro_batch=1, allow_oom=True)
    model = base.pop("model")
    plain = estimate(model, **base)
    limited = estimate(model, **base, moe_max_nodes=4)
    both = estimate(model, **base, moe_max_nodes=4, moe_fp8_dispatch=True)
    a, b, c = (r.breakdown_s for r in (plain, limited, both))
    assert a["ep_comm_s"] > b["ep_comm_s"] > c["ep_comm_s"] > 0
    assert a["compute_s"] == b["compute_s"] == c["compute_s"]
    assert both.plan.moe_max_nodes == 4 and both.plan.moe_fp8_dispatch


@pytest.mark.parametrize("kw, words", [
    (dict(moe_fp8_dispatch=True), "needs --precision fp8"),
    (dict(moe_max_nodes=0), "plan.moe_max_nodes"),
    (dict(moe_fp8_dispatch="yes"), "plan.moe_fp8_dispatch"),
    (dict(moe_pad_to_capacity=True), "needs moe_capacity_factor"),
])
def test_deepseek_dispatch_options_are_checked(kw, words):
    with pytest.raises(ConfigError, match=words):
        estimate(MIXTRAL, **H100, tp=1, pp=4, ep=8, zero=1, recompute="full", **kw)


def test_padded_to_capacity_runs_every_expert_at_capacity_without_host_sync():
    """Megatron-Core's drop-and-pad (token_dispatcher.py): each expert gets exactly its capacity
    (load = capacity factor, even below an imbalance), and the dispatcher skips its host
    synchronisation: the host may run ahead of the GPU across blocks (moe._launch_floor). Where the
    host's issue time exceeds the GPU's over the whole block (micro-batch 1 here) both wait as
    long; where it does not (micro-batch 4), only the dropless block waits: after its sync the GPU
    idles while the host issues the per-expert loop."""
    from wsim.gpu.moe import load
    assert load(1.0, 1.5, pad=True) == 1.5 and load(1.0, 1.5) == 1.0 and load(2.0, 1.5) == 1.5
    q30 = zoo.get("qwen3-30b-a3b")
    kw = dict(seq=4096, batch=512, gpus=8, gpu="b200-180gb", attention="flash", precision="fp8",
              ep=8, zero=1, recompute="none", micro_batch=1, stack="nemo", allow_oom=True,
              moe_capacity_factor=1.0)
    dropped = estimate(q30, **kw)
    padded = estimate(q30, **kw, moe_pad_to_capacity=True)
    assert padded.breakdown_s["launch_s"] == pytest.approx(dropped.breakdown_s["launch_s"], rel=1e-12)
    assert padded.breakdown_s["compute_s"] == dropped.breakdown_s["compute_s"]  # load 1 both
    kw["micro_batch"] = 4
    dropped = estimate(q30, **kw)
    padded = estimate(q30, **kw, moe_pad_to_capacity=True)
    assert padded.breakdown_s["launch_s"] < 0.6 * dropped.breakdown_s["launch_s"]


def test_dense_model_refuses_the_dispatch_options():
    with pytest.raises(ConfigError, match="no experts"):
        estimate(zoo.get("llama-2-7b"), **H100, moe_max_nodes=4)


# ---- ep = 1: every expert local -------------------------------------------------------------------
def test_ep1_is_all_experts_local():
    """ep 1, etp 1, tp 1: no all-to-all; the E experts' grouped GEMMs of m = T k / E tokens each,
    at the dense GEMM efficiency of that shape; every expert's weights on every GPU."""
    kw = dict(H100, gpus=8, batch=64, pp=4, micro_batch=1, interleave=1, recompute="full",
              zero=1, stack="megatron-core", allow_oom=True)
    r = estimate(MIXTRAL, ep=1, **kw)
    assert r.breakdown_s["ep_comm_s"] == 0.0 and r.plan.ep == 1
    c = make_consts(MIXTRAL, seq=4096, batch=64, gpus=8, gpu="h100-80gb", efficiency=None,
                    attention="flash")
    x = layer(c, 1, 1, 1, 1, 1, 1.0)
    T, h, fe, E, k = 4096, 4096, 14336, 8, 2
    m = T * k / E
    e = EFFICIENCY.gemm_efficiency
    experts = E * (2 * m * h * 2 * fe / e(m, 2 * fe, h) + 2 * m * fe * h / e(m, h, fe)) / c.peak
    router = 2 * T * h * E / e(T, E, h) / c.peak16
    assert x.experts == pytest.approx(experts, rel=1e-12)
    assert x.linear == pytest.approx(experts + router, rel=1e-12)
    assert x.a2a == 0.0 and x.etp_comm == 0.0
    # memory: 8 layers a stage, all 8 experts (3 h fe each) plus the rest of the block, 16-bit weights
    # (Megatron-Core) on the fullest stage, which also holds the embedding or the head
    expert_w = 8 * E * 3 * h * fe * 2.0
    assert r.memory.weights_bytes > expert_w
    r2 = estimate(MIXTRAL, ep=2, **kw)  # tp x cp x dp = 2: ep 2 holds half the experts
    assert r.memory.weights_bytes - r2.memory.weights_bytes == pytest.approx(expert_w / 2)
    assert r2.breakdown_s["ep_comm_s"] > 0.0


def test_imbalance_and_capacity_factor_load_the_busiest_rank():
    kw = dict(H100, pp=4, ep=8, micro_batch=1, interleave=1, recompute="full", zero=1,
              stack="megatron-core")
    base = estimate(MIXTRAL, **kw)
    skewed = estimate(MIXTRAL, moe_imbalance=2.0, **kw)
    capped = estimate(MIXTRAL, moe_imbalance=2.0, moe_capacity_factor=1.25, **kw)
    assert base.step_time_s < capped.step_time_s < skewed.step_time_s
    c = make_consts(MIXTRAL, seq=4096, batch=256, gpus=64, gpu="h100-80gb", efficiency=None,
                    attention="flash")
    assert layer(c, 1, 1, 1, 8, 1, 2.0).expert_tokens == pytest.approx(
        2 * layer(c, 1, 1, 1, 8, 1, 1.0).expert_tokens)


def test_few_tokens_per_expert_run_slower_per_flop():
    """Qwen3-30B-A3B's 128 experts: fewer tokens per expert (smaller ep) lower the GEMM efficiency
    through the dense model's own m / (m + gemm_half_dim)."""
    q = zoo.get("qwen3-30b-a3b")
    c = make_consts(q, seq=4096, batch=64, gpus=8, gpu="h100-80gb", efficiency=None,
                    attention="flash")
    flops = 2 * 4096 * 8 * 3 * 2048 * 768  # T k 3 h fe x 2 (one micro-batch, ep 1)
    t1 = layer(c, 1, 1, 1, 1, 1, 1.0).experts  # m = 256 tokens per expert
    c_small = make_consts(q, seq=256, batch=64, gpus=8, gpu="h100-80gb", efficiency=None,
                          attention="flash")
    t_small = layer(c_small, 1, 1, 1, 1, 1, 1.0).experts  # m = 16
    assert flops / t1 > (flops / 16) / t_small * 1.3


# ---- dense plans unchanged --------------------------------------------------------------------------
# step time and memory computed on main (39c5f56) before expert parallelism existed; the cp 2 rows
# and the search on branch gpu-speed (12f451f), whose context-parallel cost (each ring step's
# kernel shape, the steps' merges) moves cp > 1 plans and whose search no longer puts eager
# attention on cp > 1 (main's 175B plan: tp 4 x cp 2 x pp 4, 18.566 s; now cp 1, 18.667 s);
# since issue 19's second pass the values of the refitted parameter set (wsim/gpu/calibration.py;
# third pass: refitted after the 340B rows' bf16 optimizer state)
DENSE_ON_MAIN = [
    ("gpt3-175b", dict(seq=2048, batch=1536, gpus=1024, gpu="a100-80gb", tp=8, pp=8, interleave=None,
                       recompute="full"), 28.3220334292169, 59875319808.0),
    ("llama-3-70b", dict(seq=8192, batch=128, gpus=64, gpu="h100-80gb", tp=4, pp=4, cp=2,
                         recompute="selective", sequence_parallel=True, zero=1, stack="nemo",
                         attention="flash", precision="fp8"), 11.0392194435212, 51328286720.0),
    ("llama-3-8b", dict(seq=8192, batch=128, gpus=8, gpu="h100-80gb", tp=1, pp=1, cp=2,
                        recompute="none", zero=1, attention="flash"),
     13.734809023522729, 68810070016.0),
    ("gpt3-1.3b", dict(seq=2048, batch=512, gpus=64, gpu="a100-80gb", tp=1, pp=1, zero=3,
                       recompute="none", stack="fsdp"), 1.105726342962168, 52225000960.0),
]


@pytest.mark.parametrize("name, kw, step, mem", DENSE_ON_MAIN)
def test_dense_estimates_bit_identical_to_main(name, kw, step, mem):
    r = estimate(zoo.get(name), **kw)
    assert r.step_time_s == step and r.memory.total_bytes == mem
    assert r.breakdown_s["ep_comm_s"] == 0.0 and r.plan.ep == 1 and r.plan.etp is None


def test_dense_search_bit_identical_to_main():
    r = search(zoo.get("gpt3-175b"), seq=2048, batch=1536, gpus=1024)
    assert (r.step_time_s, r.memory.total_bytes) == (18.92162543949758, 71182459968.0)


# ---- published MoE runs -----------------------------------------------------------------------------
TOLERANCE = 0.25  # a published MoE row is "within" at 25% (what the rows support; docs/gpu-model.md)
# beyond it, named (docs/gpu-model.md "Mixture of experts": fine-grained experts run 1.4-3.6x slower
# than the model says; DeepSeek-V3's own cluster routes to at most 4 nodes and dispatches in FP8;
# since MLA is exact, DeepSeek-V3 on GB200 at 25.09 FP8 and 25.11 BF16 are within: -7%, -11%)
NAMED_MISSES = {  # beyond 25% (docs/gpu-model.md section 8 names each one's mechanism)
    "bridge-moe/25.09-q235-fp8-gb200-64", "bridge-moe/25.11-q30-fp8-h100-16",
    # the flex dispatcher over the network on H100 (once per target node, as DeepEP and HybridEP
    # send): the runs spent more than line-rate per-node traffic, hidden as the model hides it
    "bridge-moe/25.09-dsv3-fp8-h100-1024", "bridge26-moe/26.04.01-q30-fp8-h100-16",
    # CP 8 at sequence 65,536: compute-bound, the BF16 ring attention core about 55% of the modelled
    # compute (no exposed CP, EP or TP communication to speak of); NeMo 25.02's figure on B200
    "nemo-moe/25.02-mixtral-8x22b-fp8-b200-256",
}
# rows the published run fitted and the model refuses for memory: none (DeepSeek-V3 on GB200 at PP 4
# VP 4 with only the dense blocks' MLP recomputed was one, 188.7 GB of 186, until FP8 runs stored
# the dispatched expert inputs quantized, as Transformer Engine keeps them: 170.8 GB)
NAMED_OVER_MEMORY: set = set()


@pytest.fixture(scope="module")
def moe_predictions():
    return V.current_moe()


def test_moe_rows_within_tolerance_or_named(moe_predictions, capsys):
    lines = []
    misses, over = set(), set()
    for p in moe_predictions:
        lines.append(f"{p.row.label:40} {p.row.published:9.1f} {p.predicted:9.1f} {100 * p.error:+7.1f}%")
        if not p.report.fits:
            over.add(p.row.label)
        if abs(p.error) > TOLERANCE:
            misses.add(p.row.label)
    with capsys.disabled():
        print("\nMoE rows:\n" + "\n".join(lines))
    assert misses == NAMED_MISSES
    assert over == NAMED_OVER_MEMORY
    mixtral = next(p for p in moe_predictions if p.row.group == "mcore-moe")
    assert abs(mixtral.error) <= 0.10  # Megatron-Core's 468 TFLOP/s, Mixtral 8x7B on 64 H100


def test_moe_rows_are_apart_from_the_dense_set_and_four_are_development(moe_predictions):
    """Four MoE rows fit the two MoE parameters (wsim.gpu.moe_fit); the rest are validation; none
    is in the dense set, whose fit never sees them."""
    from wsim.gpu.published_moe import MOE_DEVELOPMENT
    dev = {p.row.name for p in moe_predictions if p.row.role == "development"}
    assert dev == set(MOE_DEVELOPMENT) and len(dev) == 4
    assert {p.row.role for p in moe_predictions} == {"validation", "development"}
    dense = {r.label for r in V.all_rows()}
    assert not dense & {p.row.label for p in moe_predictions}


# ---- the search -------------------------------------------------------------------------------------
def test_search_mixtral_uses_expert_parallelism_and_fits():
    r = search(MIXTRAL, **H100)
    assert r.plan.ep > 1 and r.fits and r.memory.total_bytes <= r.memory.capacity_bytes
    assert "ep" in r.chosen and r.plan.stack in ("megatron-core", "nemo")
    assert r.model_tflops_per_gpu > 0 and r.regime


TINY = ModelSpec(name="tiny-moe", layers=4, hidden=256, heads=4, kv_heads=2, ffn=512, vocab=1000,
                 positions=512, tied_embeddings=False, activation="silu", gated_mlp=True,
                 norm="rmsnorm", positional="rotary", attention_bias=False, mlp_bias=False,
                 family="mixtral", experts=4, experts_per_token=2, expert_ffn=512)


def test_search_equals_brute_force_on_a_small_mixture_of_experts():
    seq, batch, gpus = 512, 8, 8
    best = search(TINY, seq=seq, batch=batch, gpus=gpus, gpu="h100-80gb", cp=1, stack="nemo",
                  zero=1, recompute="full", tp_comm_overlap=False, cuda_graphs=False,
                  p2p_overlap=False, grad_reduce_fp32=False)
    fastest = None
    for tp, pp in itertools.product(divisors(gpus), repeat=2):
        if gpus % (tp * pp) or TINY.heads % tp or TINY.kv_heads % tp or TINY.layers % pp:
            continue
        dp = gpus // (tp * pp)
        if batch % dp:
            continue
        for ep, etp, mb in itertools.product(divisors(4), sorted({1, tp}), divisors(batch // dp)):
            if (tp * dp) % (ep * etp):
                continue
            vs = divisors(TINY.layers // pp) if pp > 1 else [1]
            for v in vs:
                if v > 1 and (batch // dp // mb) % pp:
                    continue
                r = estimate(TINY, seq=seq, batch=batch, gpus=gpus, gpu="h100-80gb", tp=tp, pp=pp,
                             ep=ep, etp=etp, micro_batch=mb, interleave=v, recompute="full",
                             sequence_parallel=tp > 1, zero=1, stack="nemo", allow_oom=True,
                             tp_comm_overlap=False, cuda_graphs=False, p2p_overlap=False,
                             grad_reduce_fp32=False)
                if r.fits and (fastest is None or r.step_time_s < fastest.step_time_s):
                    fastest = r
    assert best.step_time_s == pytest.approx(fastest.step_time_s, rel=1e-12)


def test_deepseek_v3_on_h800_searches_and_fits():
    r = search(zoo.get("deepseek-v3"), seq=4096, batch=15360, gpus=2048, gpu="h800",
               attention="flash", precision="fp8", pp=16, ep=64, tp=1, cp=1)
    assert r.fits and r.plan.ep == 64 and r.plan.pp == 16
    assert gpu_spec("h800").nvlink_bytes_per_s == 200e9  # 400 GB/s bidirectional


def test_cli_moe_flags(capsys):
    from wsim.commands.cli import main
    code = main(["gpu", "--model", "mixtral-8x7b", "--gpus", "64", "--gpu", "h100", "--seq", "4096",
                 "--batch", "256", "--pp", "4", "--ep", "8", "--attention", "flash", "--zero", "1",
                 "--stack", "megatron-core", "--recompute", "selective"])
    out = capsys.readouterr().out
    assert code == 0 and "experts etp 1 x ep 8 x edp 2" in out and "bottleneck:" in out
    code = main(["gpu", "--model", "gpt3-1.3b", "--gpus", "8", "--batch", "8", "--ep", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "has no experts" in err and len(err.strip().splitlines()) == 1
    code = main(["gpu", "--model", "deepseek-v3", "--gpus", "2048", "--gpu", "h800", "--seq", "4096",
                 "--batch", "15360", "--pp", "16", "--ep", "64", "--attention", "flash", "--zero",
                 "1", "--stack", "nemo", "--precision", "fp8", "--micro-batch", "1",
                 "--moe-ep-overlap", "--moe-max-nodes", "4", "--moe-fp8-dispatch", "--allow-oom"])
    out = capsys.readouterr().out
    assert code == 0 and "at most 4 nodes a token, FP8 dispatch" in out
    code = main(["gpu", "--model", "mixtral-8x7b", "--gpus", "64", "--gpu", "h100", "--batch", "256",
                 "--search", "--moe-max-nodes", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "given plan only" in err and len(err.strip().splitlines()) == 1


def test_deepseek_dense_first_blocks_count_as_dense():
    """DeepSeek-V3's blocks 0-2 are dense (first_k_dense_replace 3): the model's FLOPs per token
    are those of 3 dense and 58 sparse blocks, not 61 sparse."""
    from wsim.gpu.flops import linear_fwd_flops_per_token
    m = zoo.get("deepseek-v3")
    all_sparse = dataclasses.replace(m, moe_layers=None)
    dense_mlp = 3 * 7168 * 18432
    sparse_mlp = m.moe_params(active=True)
    assert linear_fwd_flops_per_token(all_sparse) - linear_fwd_flops_per_token(m) == pytest.approx(
        2 * 3 * (sparse_mlp - dense_mlp) / 61)


def test_heads_of_their_own_width_count_their_queries():
    """Qwen3's 32 heads of 128 on hidden 2048: Q is 4096 wide, the output projection 4096 x 2048,
    the scores 4 s x 4096 per token (models.spec's q_dim), not hidden-wide."""
    from wsim.gpu.flops import attention_core_fwd_flops_per_token, block_shape
    q = zoo.get("qwen3-30b-a3b")
    shape = block_shape(q)
    assert (shape.head_dim, shape.q, shape.qkv_out) == (128, 4096, 4096 + 2 * 4 * 128)
    assert attention_core_fwd_flops_per_token(q, 4096) == 4.0 * 4096 * 4096
    dense = zoo.get("llama-3-8b")  # hidden / heads: as before
    assert block_shape(dense).q == dense.hidden


def test_searched_uneven_plan_is_one_estimate_accepts():
    """DeepSeek-V3's 61 layers on uneven stages: the searched interleave divides the fullest
    stage's layers (Megatron's rule, check_plan), and estimate reproduces the searched plan."""
    r = search(zoo.get("deepseek-v3"), seq=4096, batch=15360, gpus=2048, gpu="h800",
               attention="flash", precision="fp8", tp=2, cp=2, pp=8, ep=8, etp=1)
    p = r.plan
    assert (-(-61 // p.pp)) % p.interleave == 0
    e = estimate(zoo.get("deepseek-v3"), seq=4096, batch=15360, gpus=2048, gpu="h800",
                 attention="flash", precision="fp8", tp=p.tp, cp=p.cp, pp=p.pp, ep=p.ep, etp=p.etp,
                 micro_batch=p.micro_batch, interleave=p.interleave, recompute=p.recompute,
                 sequence_parallel=p.sequence_parallel, zero=p.zero, stack=p.stack,
                 **{n: getattr(p, n) for n in ("tp_comm_overlap", "grad_reduce_fp32",
                                               "fp8_param_gather", "cuda_graphs", "p2p_overlap",
                                               "recompute_modules")})
    assert e.step_time_s == pytest.approx(r.step_time_s, rel=1e-12)


# The archive's "Model TFLOP / sec / GPU" over its tokens/s/GPU is the FLOPs per token it counts:
# (container, model, TFLOP/s, tokens/s, MTP modules) as printed (Megatron-Bridge
# performance-summary-archive.md @ 067f987d). For Qwen3 it equals wsim's model FLOPs with the
# attention scores counted causal (half of wsim's non-causal 4 s q): the same model, another
# convention, no missing work. DeepSeek-V3 "w/o MTP" (25.11, GB200, lines 568-569: 782 / 3139 and
# 1003 / 4018, 249 G a token) too, since MLA is exact (250.5 G causal; with MLA timed as standard
# attention of equal parameters it was 229.6 G, -8%); and "w/ MTP" (25.11, B200, line 580: 557 /
# 2139, 260.4 G) with one MTP module counted as Megatron-LM counts it (wsim.gpu.flops, 260.6 G).
ARCHIVE_FLOPS = [("25.09", "q30", 524, 22775, 0), ("25.11", "q30", 214, 9299, 0),
                 ("25.11", "q30", 121, 5275, 0), ("25.09", "q235", 659, 4452, 0),
                 ("25.11", "q235", 233, 1575, 0), ("25.11", "dsv3", 782, 3139, 0),
                 ("25.11", "dsv3", 1003, 4018, 0), ("25.11", "dsv3", 557, 2139, 1)]


@pytest.mark.parametrize("ver,tag,tflops,tokens,mtp", ARCHIVE_FLOPS)
def test_archive_flops_per_token_are_wsims_with_causal_attention(ver, tag, tflops, tokens, mtp):
    from wsim.gpu.flops import attention_core_fwd_flops_per_token, model_flops_per_step
    from wsim.gpu.published_moe import MODELS
    m, s = MODELS[tag], 4096
    causal = (model_flops_per_step(m, seq=s, batch=1, mtp_layers=mtp) / s
              - 3.0 * (m.layers + mtp) * attention_core_fwd_flops_per_token(m, s) / 2.0)
    assert tflops * 1e12 / tokens == pytest.approx(causal, rel=0.01)


def test_bridge_rows_carry_their_recipes_settings():
    from wsim.gpu.published_moe import validation_rows
    rows = {r.name: r.plan for r in validation_rows() if r.group == "bridge-moe"}
    # 25.09 (v0.1.0rc4 run_script.py): token drop at capacity 1.0 except DeepSeek-V3 on H100
    assert rows["25.09-q30-fp8-b200-8"]["moe_capacity_factor"] == 1.0
    assert "moe_capacity_factor" not in rows["25.09-dsv3-fp8-h100-1024"]
    assert all("moe_capacity_factor" not in p for n, p in rows.items() if n.startswith("25.11"))
    # EP overlap only where the recipes set it (DeepSeek-V3: H100 only)
    assert [n for n, p in rows.items() if "dsv3" in n and p["moe_ep_overlap"]] == \
        ["25.09-dsv3-fp8-h100-1024"]
    assert rows["25.11-q30-fp8-h100-16"]["moe_ep_overlap"]
    # whole-block graphs (token drop, 25.09 YAMLs); 25.11 partial graphs: scope attn for
    # Qwen3-235B BF16 on GB200, scopes moe_router + moe_preprocess where the presets set them
    assert [n for n, p in rows.items() if p["cuda_graphs"]] == ["25.09-q30-fp8-gb200-8",
                                                              "25.09-q30-fp8-b200-8",
                                                              "25.11-q235-bf16-gb200-256"]
    assert sorted(n for n, p in rows.items() if p["moe_router_graphs"]) == sorted(
        ["25.11-dsv3-bf16-gb200-256", "25.11-dsv3-fp8-gb200-256", "25.11-q30-fp8-gb200-8",
         "25.11-q235-bf16-gb200-256", "25.11-q30-fp8-b200-8"])
    # v0.2.0 presets: HybridEP (flex) on GB200; v0.1.0rc4: DeepEP (flex) for dropless DeepSeek-V3
    # on H100; the alltoall dispatcher elsewhere
    assert sorted(n for n, p in rows.items() if p["moe_dispatcher"] == "flex") == sorted(
        ["25.09-dsv3-fp8-h100-1024", "25.11-dsv3-bf16-gb200-256", "25.11-dsv3-fp8-gb200-256",
         "25.11-q30-fp8-gb200-8", "25.11-q235-bf16-gb200-256"])
    # (the 26.04.01 rows: wsim.gpu.published_bridge26, group bridge26-moe, tests/gpu/test_gpu_bridge26.py)
