"""The Megatron-Core / Transformer Engine options (wsim.gpu.knobs): each one's mechanism, in time and
in memory, against the byte counts of its source."""

import pytest

from models import zoo
from wsim.errors import ConfigError
from wsim.gpu import estimate

L70 = zoo.get("llama-3-70b")
BASE = dict(seq=8192, batch=128, gpus=64, gpu="h100-80gb", tp=4, pp=4, cp=2, micro_batch=1,
            interleave=5, recompute="none", sequence_parallel=True, zero=1, stack="megatron-core",
            attention="flash", allow_oom=True)


def _run(**kw):
    return estimate(L70, **{**BASE, **kw})


def test_grad_reduce_in_bf16_halves_the_gradient_buffer_and_its_reduction():
    fp32, bf16 = _run(grad_reduce_fp32=True), _run(grad_reduce_fp32=False)
    assert bf16.memory.gradients_bytes == pytest.approx(fp32.memory.gradients_bytes / 2)
    assert bf16.breakdown_s["dp_comm_s"] < fp32.breakdown_s["dp_comm_s"]
    # Megatron-LM docs, distributed optimizer: bf16 params + fp32 grads = 6 + 12/d bytes
    d = 2 * 2  # dp x cp
    per_param = (fp32.memory.weights_bytes + fp32.memory.gradients_bytes
                 + fp32.memory.optimizer_bytes) / (fp32.memory.weights_bytes / 2)
    assert per_param == pytest.approx(6 + 12 / d)


def test_fp8_param_gather_keeps_one_byte_weights_and_drops_the_copy():
    plain = _run(precision="fp8", fp8_param_gather=False)
    fp8p = _run(precision="fp8", fp8_param_gather=True)
    assert plain.memory.weights_bytes == pytest.approx(3 * fp8p.memory.weights_bytes)
    assert fp8p.step_time_s < plain.step_time_s
    with pytest.raises(ConfigError, match="precision fp8"):
        _run(fp8_param_gather=True)
    with pytest.raises(ConfigError, match="distributed"):
        _run(precision="fp8", fp8_param_gather=True, zero=0)


def test_tp_comm_overlap_hides_tensor_parallel_communication():
    off, on = _run(tp_comm_overlap=False), _run(tp_comm_overlap=True)
    assert on.breakdown_s["tp_comm_s"] < 0.5 * off.breakdown_s["tp_comm_s"]
    assert on.step_time_s < off.step_time_s
    with pytest.raises(ConfigError, match="sequence parallelism"):
        _run(tp_comm_overlap=True, sequence_parallel=False)


def test_cuda_graphs_remove_the_host_launch_floor():
    small = dict(tp=1, pp=1, cp=1, interleave=None, gpus=8, batch=64, seq=1024, micro_batch=1,
                 sequence_parallel=False)
    model = zoo.get("gpt3-125m")  # small kernels: the host issues them slower than they run
    eager = estimate(model, **{**BASE, **small, "cuda_graphs": False})
    graphs = estimate(model, **{**BASE, **small, "cuda_graphs": True})
    assert graphs.breakdown_s["launch_s"] == 0.0
    assert eager.breakdown_s["launch_s"] > 0.0
    assert graphs.step_time_s < eager.step_time_s


def test_p2p_overlap_hides_interleaved_pipeline_sends():
    off, on = _run(p2p_overlap=False), _run(p2p_overlap=True)
    assert on.breakdown_s["pp_comm_s"] < off.breakdown_s["pp_comm_s"]


def test_stacks_without_an_option_refuse_it_and_report_their_own():
    with pytest.raises(ConfigError, match="no tp_comm_overlap"):
        _run(stack="megatron", cp=1, interleave=None, zero=1, tp_comm_overlap=True)
    r = estimate(zoo.get("gpt3-1.3b"), seq=2048, batch=64, gpus=16, tp=2, stack="megatron")
    assert r.plan.grad_reduce_fp32 is False and r.plan.tp_comm_overlap is False
    n = _run(stack="nemo")
    assert n.plan.tp_comm_overlap is True and n.plan.grad_reduce_fp32 is False


def test_distributed_optimizer_with_pipeline_shards_the_optimizer_over_dp():
    z0, z1 = _run(zero=0), _run(zero=1)
    assert z1.memory.optimizer_bytes == pytest.approx(z0.memory.optimizer_bytes / 4)


def test_context_parallel_ring_hides_each_transfer_under_one_ring_step_only():
    """Megatron-Core's ring (Transformer Engine) overlaps each K/V transfer with one ring step's
    attention; Llama 3's all-gather CP exposes its gather. At sequence 8192 on one node the ring
    hides (almost) everything, the all-gather does not; the ring adds kernels per step."""
    base = dict(BASE, cp=2, stack="nemo", interleave=None, pp=1, tp=4, gpus=8, batch=8,
                micro_batch=1, recompute="full")
    ring = _run(**base)
    gather = _run(**dict(base, stack="meta-llama3", zero=1))
    assert gather.breakdown_s["cp_comm_s"] > ring.breakdown_s["cp_comm_s"]
    assert ring.breakdown_s["cp_comm_s"] < 0.01 * ring.step_time_s
    # 111M-sized work at micro-batch 1: the ring's kernels, not its bytes, set the floor
    tiny = dict(tp=1, pp=1, interleave=None, gpus=16, batch=120, seq=2048, micro_batch=1,
                sequence_parallel=False, recompute="none", zero=1, stack="nemo")
    model = zoo.get("cerebras-gpt-111m")
    cp1 = estimate(model, **{**BASE, **tiny, "cp": 1, "gpus": 8})
    cp2 = estimate(model, **{**BASE, **tiny, "cp": 2})
    assert cp2.breakdown_s["launch_s"] > cp1.breakdown_s["launch_s"]


# ---- optimizer_bf16: the distributed optimizer's state in bf16 ------------------------------------
def test_bf16_optimizer_state_halves_the_sharded_optimizer_bytes():
    """Apex DistributedFusedAdam(dtype=bf16): master weights and both moments in bf16, 6 bytes a
    parameter instead of 12, sharded over data parallelism as before; nothing else in memory moves,
    and the optimizer step reads and writes 2 x 6 bytes fewer a parameter."""
    from wsim.gpu.published_modern import NEMOTRON4_340B
    kw = dict(seq=4096, batch=32, gpus=128, gpu="h100-80gb", tp=8, pp=8, interleave=12, micro_batch=1,
              recompute="none", sequence_parallel=True, zero=1, stack="nemo", attention="flash",
              allow_oom=True)
    fp32 = estimate(NEMOTRON4_340B, **kw)
    bf16 = estimate(NEMOTRON4_340B, optimizer_bf16=True, **kw)
    assert bf16.memory.optimizer_bytes == pytest.approx(fp32.memory.optimizer_bytes / 2, rel=1e-12)
    for part in ("weights_bytes", "gradients_bytes", "activations_bytes"):
        assert getattr(bf16.memory, part) == getattr(fp32.memory, part)
    assert not fp32.fits and bf16.fits  # the v24.11.1 340B BF16 row on 128 GPUs runs without recompute
    assert bf16.plan.optimizer_bf16 is True
    # the step's HBM traffic: 2 x 6 bytes fewer for each parameter of the fullest stage's shard
    # (the memory's optimizer bytes / 12; the stage's edge layers differ by under 1%)
    saved = fp32.breakdown_s["optimizer_s"] - bf16.breakdown_s["optimizer_s"]
    from wsim.gpu import gpu_spec
    hbm = gpu_spec("h100-80gb").hbm_bytes_per_s
    assert saved == pytest.approx(fp32.memory.optimizer_bytes / 12 * 12 / hbm, rel=0.01)


def test_the_v2411_340b_rows_run_their_recipe_optimizer_dtype_and_recompute():
    """nemotron4-340b-synth.yaml @ 35a9aecc: optim dtype bf16 (lines 182-186) and
    activations_checkpoint_granularity selective (lines 138-139), for all four 340B rows; the
    release's other recipes state neither (fp32 state, no recompute: their rows' fastest plan
    that fits recomputes nothing). Selective under flash: the core attention rerun, no memory."""
    import wsim.gpu.validation as V
    got = {p.row.name: p for p in V.current() if p.row.group == "dgxc-24.11"}
    big = {n: p for n, p in got.items() if n.startswith("340b-")}
    assert len(big) == 4
    for n, p in got.items():
        assert p.row.plan.get("optimizer_bf16", False) is n.startswith("340b-"), n
        assert p.report.plan.recompute == ("selective" if n in big else "none"), n
    for n, p in big.items():
        assert 0 < p.report.breakdown_s["recompute_s"] < 0.05 and abs(p.error) < 0.06, n


@pytest.mark.parametrize("kw, message", [
    (dict(zero=0, stack="nemo"), "needs --zero 1"),
    (dict(zero=3, stack="fsdp"), "has no bf16 optimizer state"),
    (dict(zero=1, stack="megatron"), "has no bf16 optimizer state"),
    (dict(zero=1, stack="nemo", optimizer_bf16="yes"), "must be true or false"),
])
def test_bf16_optimizer_state_is_refused_where_no_distributed_optimizer_has_it(kw, message):
    kw = {"optimizer_bf16": True, **kw}
    with pytest.raises(ConfigError, match=message):
        estimate(zoo.get("llama-3-8b"), seq=2048, batch=64, gpus=8, **kw)


def test_bf16_optimizer_state_cli_exit_2(capsys):
    from wsim.commands.cli import main
    code = main(["gpu", "--model", "llama-3-8b", "--gpus", "8", "--batch", "64", "--zero", "0",
                 "--stack", "nemo", "--optimizer-bf16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "optimizer_bf16" in err[0]


def test_the_search_never_turns_on_bf16_optimizer_state():
    from wsim.gpu import search
    r = search(zoo.get("llama-3-8b"), seq=2048, batch=64, gpus=8, gpu="a100-40gb")
    assert r.plan.optimizer_bf16 is False
    asked = search(zoo.get("llama-3-8b"), seq=2048, batch=64, gpus=8, gpu="a100-40gb",
                   zero=1, stack="nemo", optimizer_bf16=True)
    assert asked.plan.optimizer_bf16 is True and asked.step_time_s <= r.step_time_s * 1.2
