"""Megatron-Core's selective recompute modules (wsim.gpu.recompute): each module's freed bytes and
added time against closed forms written here from the byte counts of models.per_layer and the GEMM
shapes of Megatron-Core's modules; the default is the old "selective"; the refusals."""

import json
import subprocess
import sys

import pytest

from models import zoo
from wsim.errors import ConfigError
from wsim.gpu import EFFICIENCY, estimate
from wsim.gpu import moe as moe_cost
from wsim.gpu.calibration import STACKS
from wsim.gpu.inputs import make_consts
from wsim.gpu.knobs import resolve
from wsim.gpu.memory import act_bytes_per_token_layer
from wsim.gpu.step import _layer

DSV3 = zoo.get("deepseek-v3")
L8B = zoo.get("llama-3-8b")
H, A, RQ, RKV, NOPE, ROPE, DV = 7168, 128, 1536, 512, 128, 64, 128
DQK = NOPE + ROPE
MC = STACKS["megatron-core"]


def _consts(model, precision="bf16", attention="flash"):
    return make_consts(model, seq=4096, batch=64, gpus=64, gpu="h100-80gb", efficiency=EFFICIENCY,
                       attention=attention, precision=precision)


def _kn(c, modules, sp=True):
    return resolve(MC, fp8=c.fp8, sp=sp, zero=1, given={"recompute_modules": modules})


def _stored(c, modules, tp=2, sp=True):
    return act_bytes_per_token_layer(c, tp, "selective", sp, _kn(c, modules, sp).recompute_modules)


def _rec(c, modules, tp=2, b=1, sp=True):
    """(recompute seconds, recomputed tensor-parallel communication) of one dense block."""
    lay = _layer(c, tp, b, "selective", sp, 1, MC, _kn(c, modules, sp))
    return lay[3], lay[6]


@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_mla_up_proj_frees_q_k_v_and_reruns_the_up_projections(precision):
    c, tp, b = _consts(DSV3, precision), 2, 1
    freed = _stored(c, ("core_attn",), tp) - _stored(c, ("core_attn", "mla_up_proj"), tp)
    # 16-bit Q, K, V (tensor-parallel) and the normed latents (sequence-parallel)
    assert freed == pytest.approx(2 * A * (DQK + DQK + DV) / tp + 2 * (RQ + RKV) / tp)
    no_sp = _stored(c, (), tp, sp=False) - _stored(c, ("mla_up_proj",), tp, sp=False)
    assert no_sp == pytest.approx(2 * A * (DQK + DQK + DV) / tp + 2 * (RQ + RKV))
    T = b * 4096
    e = c.eff.gemm_efficiency
    gemm = (2 * T * RQ * A * DQK / tp / e(T, A * DQK / tp, RQ)
            + 2 * T * RKV * A * (NOPE + DV) / tp / e(T, A * (NOPE + DV) / tp, RKV)) / c.peak
    ew = c.eff.elementwise_passes * T * (2 * A * (2 * DQK + DV) + 2 * (RQ + RKV)) / tp \
        / c.gpu.hbm_bytes_per_s
    added = _rec(c, ("core_attn", "mla_up_proj"), tp, b)[0] - _rec(c, ("core_attn",), tp, b)[0]
    assert added == pytest.approx((gemm + ew) / MC.kernel_efficiency, rel=1e-12)
    # the column-parallel linears gather the normed latents again under sequence parallelism
    assert _rec(c, ("mla_up_proj",), tp, b)[1] == pytest.approx(
        c.group(tp, 1).all_gather_s(T * 2 * (RQ + RKV)))
    assert _rec(c, ("mla_up_proj",), tp, b, sp=False)[1] == 0.0


@pytest.mark.parametrize("precision, norm_bytes", [("bf16", 2 * H), ("fp8", H)])
def test_layernorm_frees_the_mla_input_norm_and_the_sparse_pre_mlp_norm(precision, norm_bytes):
    c, tp, b = _consts(DSV3, precision), 4, 1
    # the dense part: the input norm (its own module under MLA), sequence-parallel split
    assert _stored(c, ()) - _stored(c, ("layernorm",)) == pytest.approx(norm_bytes / 2)
    assert _stored(c, (), tp) - _stored(c, ("layernorm",), tp) == pytest.approx(norm_bytes / tp)
    T = b * 4096
    ew = c.eff.elementwise_passes * T * 2 * H / tp / c.gpu.hbm_bytes_per_s
    assert _rec(c, ("layernorm",), tp, b)[0] == pytest.approx(ew / MC.kernel_efficiency)
    # a sparse block: the pre-MLP norm too (moe.stored_bytes_per_token)
    plain = moe_cost.stored_bytes_per_token(c, tp, 1, 1.0, ())
    assert plain - moe_cost.stored_bytes_per_token(c, tp, 1, 1.0, ("layernorm",)) \
        == pytest.approx(norm_bytes / tp)


def test_layernorm_on_a_dense_model_without_mla_frees_nothing():
    """Transformer Engine fuses both norms into the next linear (IdentityOp): Megatron-Core
    recomputes none of them."""
    c = _consts(L8B)
    assert _stored(c, ("layernorm",)) == _stored(c, ())
    assert _rec(c, ("layernorm",))[0] == 0.0


@pytest.mark.parametrize("precision, per_value", [("bf16", 2), ("fp8", 1)])
def test_moe_act_frees_the_routed_experts_fc2_input(precision, per_value):
    c, tp = _consts(DSV3, precision), 2
    k, fe = 8, 2048
    for ld in (1.0, 1.5):
        freed = (moe_cost.stored_bytes_per_token(c, tp, 1, ld, ())
                 - moe_cost.stored_bytes_per_token(c, tp, 1, ld, ("moe_act",)))
        assert freed == pytest.approx(per_value * k * fe / tp * ld)
    T = 4096
    assert moe_cost.moe_act_fwd_s(c, T, tp) == pytest.approx(
        c.eff.elementwise_passes * T * 2 * k * fe / tp / c.gpu.hbm_bytes_per_s)


@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_mlp_frees_a_dense_mlp_and_reruns_it_with_its_collective(precision):
    c, tp, b = _consts(L8B, precision), 2, 1
    h, f = 4096, 14336
    fp8 = precision == "fp8"
    norm = (1 if fp8 else 2) * h / tp  # the fused pre-MLP norm's output (sequence-parallel)
    inner = (6 * f - (f if fp8 else 0)) / tp  # gate, up, activation out (FC2 input FP8 under fp8)
    assert _stored(c, ("core_attn",), tp) - _stored(c, ("core_attn", "mlp"), tp) \
        == pytest.approx(norm + inner)
    T = b * 4096
    e = c.eff.gemm_efficiency
    gemm = (2 * T * h * 2 * f / tp / e(T, 2 * f / tp, h) + 2 * T * f * h / tp / e(T, h, f / tp)) / c.peak
    hbm = c.gpu.hbm_bytes_per_s
    ew = c.eff.elementwise_passes * T * (2 * 3 * f / tp + 2 * h / tp) / hbm
    rec, rec_tp = _rec(c, ("mlp",), tp, b)
    assert rec == pytest.approx((gemm + ew) / MC.kernel_efficiency, rel=1e-12)
    ar = c.group(tp, 1).all_reduce_s(T * h * 2.0)
    assert rec_tp == pytest.approx(ar)  # the MLP's reduce-scatter + all-gather: one all-reduce
    assert _rec(c, ("mlp",), tp, b, sp=False)[1] == pytest.approx(ar)


def test_mlp_leaves_a_sparse_block_as_it_was():
    """Megatron-Core's 'mlp' skips mixture-of-experts layers: the dense block's saving is taken
    back in a sparse block's extra (memory) and its delta (time)."""
    c, tp = _consts(DSV3), 2
    for ld in (1.0, 1.3):
        plain = _stored(c, (), tp) + moe_cost.stored_bytes_per_token(c, tp, 1, ld, (), True)
        mlp = _stored(c, ("mlp",), tp) + moe_cost.stored_bytes_per_token(c, tp, 1, ld, ("mlp",), True)
        assert mlp == pytest.approx(plain, rel=1e-12)
    kw = dict(seq=4096, batch=512, gpus=64, gpu="h100-80gb", tp=2, pp=1, ep=8, micro_batch=1,
              interleave=1, recompute="selective", sequence_parallel=True, zero=1,
              stack="megatron-core", attention="flash", allow_oom=True)
    base = estimate(DSV3, recompute_modules=("mla_up_proj",), **kw)
    mlp = estimate(DSV3, recompute_modules=("mla_up_proj", "mlp"), **kw)
    # the 3 dense layers recompute their MLPs, the 58 sparse ones not
    dense_rec = mlp.breakdown_s["recompute_s"] - base.breakdown_s["recompute_s"]
    assert dense_rec > 0
    lay = _layer(c, 2, 1, "selective", True, 1, MC, _kn(c, ("mlp",)))[3]
    m = 512 // 32  # micro-batches: batch / (dp x micro_batch), dp = 64 / 2
    assert dense_rec == pytest.approx(m * 3 * lay, rel=1e-6)
    # pp 4: the fullest stage's blocks are all sparse: 'mlp' changes neither its recompute nor
    # its memory (the bubble, from the mean stage with its dense layers, does change)
    kw4 = dict(kw, pp=4)
    base = estimate(DSV3, recompute_modules=("mla_up_proj",), **kw4)
    mlp = estimate(DSV3, recompute_modules=("mla_up_proj", "mlp"), **kw4)
    assert mlp.breakdown_s["recompute_s"] == pytest.approx(base.breakdown_s["recompute_s"], rel=1e-9)
    assert mlp.memory.total_bytes == pytest.approx(base.memory.total_bytes, rel=1e-12)


def test_default_is_the_old_selective_and_empty_is_none():
    """("core_attn",) is what selective always meant; a selective recompute of no module
    recomputes nothing: step time and memory of recompute none."""
    kw = dict(seq=2048, batch=64, gpus=16, gpu="h100-80gb", tp=2, pp=2, micro_batch=1,
              interleave=1, sequence_parallel=True, zero=1, stack="megatron-core",
              attention="eager", allow_oom=True)
    m = zoo.get("gpt3-1.3b")
    old = estimate(m, recompute="selective", **kw)
    assert old.plan.recompute_modules == ("core_attn",)
    assert estimate(m, recompute="selective", recompute_modules=["core_attn"], **kw).to_dict() \
        == old.to_dict()
    empty = estimate(m, recompute="selective", recompute_modules=(), **kw)
    none = estimate(m, recompute="none", **kw)
    assert empty.step_time_s == none.step_time_s
    assert empty.memory.total_bytes == none.memory.total_bytes
    assert old.memory.total_bytes < none.memory.total_bytes  # eager: the scores are dropped
    assert old.step_time_s > none.step_time_s


def test_refusals():
    kw = dict(seq=2048, batch=64, gpus=16, gpu="h100-80gb", tp=2, micro_batch=1,
              recompute="selective", sequence_parallel=True, zero=1, stack="megatron-core",
              attention="flash", allow_oom=True)
    with pytest.raises(ConfigError, match="unknown module.*bogus"):
        estimate(L8B, recompute_modules=("core_attn", "bogus"), **kw)
    with pytest.raises(ConfigError, match="multi_latent_attention"):
        estimate(L8B, recompute_modules=("mla_up_proj",), **kw)
    with pytest.raises(ConfigError, match="moe_grouped_gemm"):
        estimate(L8B, recompute_modules=("moe_act",), **kw)
    with pytest.raises(ConfigError, match="not modelled"):
        estimate(L8B, recompute_modules=("mhc",), **kw)
    with pytest.raises(ConfigError, match="no recompute_modules"):
        estimate(L8B, **{**kw, "stack": "deepspeed", "zero": 1, "sequence_parallel": False,
                         "tp": 1}, recompute_modules=("mlp",))
    # Megatron-Core builds no MoE layer in a dense model: moe, shared_experts do nothing there
    plain = estimate(L8B, **kw)
    assert estimate(L8B, recompute_modules=("core_attn", "moe", "shared_experts"), **kw).step_time_s \
        == plain.step_time_s
    # ...and wsim does not model them on a mixture of experts
    with pytest.raises(ConfigError, match="not modelled"):
        estimate(DSV3, recompute_modules=("moe",), **{**kw, "batch": 512, "gpus": 64, "ep": 8})
    # outside selective Megatron-Core ignores the modules (no model check)
    estimate(L8B, **{**kw, "recompute": "full"}, recompute_modules=("mla_up_proj",))


def test_cli_flag_and_its_refusal():
    base = [sys.executable, "-c", "import sys; from wsim.commands.cli import main; sys.exit(main())",
            "gpu", "--model", "llama-3-8b", "--gpus", "8", "--batch", "64", "--gpu", "h100-80gb",
            "--recompute", "selective", "--stack", "megatron-core", "--allow-oom"]
    bad = subprocess.run(base + ["--recompute-modules", "core_attn,nope"], capture_output=True,
                         text=True)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "nope" in bad.stderr
    ok = subprocess.run(base + ["--recompute-modules", "core_attn,mlp", "--json"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["plan"]["recompute_modules"] == ["core_attn", "mlp"]
    # typed modules are never dropped: outside selective (given, or estimate's default full) exit 2
    for rc in (["--recompute", "none"], ["--recompute", "full"], []):
        cmd = [a for a in base if a not in ("--recompute", "selective")] + rc
        off = subprocess.run(cmd + ["--recompute-modules", "mlp"], capture_output=True, text=True)
        assert off.returncode == 2 and len(off.stderr.strip().splitlines()) == 1, off.stderr
        assert "--recompute selective" in off.stderr


def test_mla_up_proj_gather_is_rerun_in_every_block_sparse_included():
    """Every DeepSeek-V3 block (3 dense, 58 sparse) has MLA: each reruns the latents' all-gather
    under sequence parallelism; 'mlp' adds its collective to the 3 dense blocks only."""
    kw = dict(seq=4096, batch=512, gpus=64, gpu="h100-80gb", tp=2, pp=1, ep=8, micro_batch=1,
              interleave=1, recompute="selective", sequence_parallel=True, zero=1,
              stack="megatron-core", attention="flash", allow_oom=True)
    c = _consts(DSV3)
    m, T = 512 // 32, 4096
    g = c.group(2, 1).all_gather_s(T * 2 * (RQ + RKV))
    none = estimate(DSV3, recompute_modules=(), **kw).breakdown_s["tp_comm_s"]
    mla = estimate(DSV3, recompute_modules=("mla_up_proj",), **kw).breakdown_s["tp_comm_s"]
    assert mla - none == pytest.approx(m * 61 * g, rel=1e-9)
    mlp = estimate(DSV3, recompute_modules=("mlp",), **kw).breakdown_s["tp_comm_s"]
    ar = c.group(2, 1).all_reduce_s(T * H * 2.0)
    assert mlp - none == pytest.approx(m * 3 * ar, rel=1e-9)
