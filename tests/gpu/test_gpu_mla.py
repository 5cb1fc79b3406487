"""Multi-head latent attention on GPUs (wsim.gpu.flops, consts, step, memory): its GEMMs split as
Megatron-Core's MLASelfAttention splits them, its attention core's time and FLOPs against closed forms
written here, and dense models on their old code path (kv_lora_rank 0)."""

import dataclasses

import pytest

from models import zoo
from wsim.gpu import EFFICIENCY, estimate
from wsim.gpu.flops import attention_core_fwd_flops_per_token, block_shape, model_flops_per_step
from wsim.gpu.inputs import make_consts

DSV3 = zoo.get("deepseek-v3")
H, A, RQ, RKV, NOPE, ROPE, DV = 7168, 128, 1536, 512, 128, 64, 128
DQK = NOPE + ROPE


def _consts(model, attention="flash", seq=4096):
    return make_consts(model, seq=seq, batch=64, gpus=64, gpu="h100-80gb", efficiency=EFFICIENCY,
                       attention=attention)


def test_model_flops_count_mla_core_and_products():
    s, B = 4096, 3
    core = 2 * s * A * (DQK + DV)
    assert attention_core_fwd_flops_per_token(DSV3, s) == core
    attn = H * RQ + RQ * A * DQK + H * (RKV + ROPE) + RKV * A * (NOPE + DV) + A * DV * H
    assert block_shape(DSV3).attention_linear_params == attn
    mlp = (3 * 3 * H * 18432 + 58 * (256 * H + 8 * 3 * H * 2048 + 3 * H * 2048 + H)) / 61
    expect = B * s * 3.0 * (61 * (2 * (attn + mlp) + core) + 2 * 129280 * H)
    assert model_flops_per_step(DSV3, seq=s, batch=B) == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize("tp, cp", [(1, 1), (4, 1), (8, 2)])
def test_mla_attention_core_time_is_the_closed_form(tp, cp):
    """FlashAttention: forward 2 x 0.5 (causal) of the mean product's FLOPs, backward 2.5x that, at
    the 16-bit peak x the kernel-shape efficiency at (q, s, d_qk) x the flash efficiencies; eager:
    scores at (q, s, d_qk), values at (q, d_v, s), backward 2x."""
    b, s = 2, 4096
    T, q = b * s / cp, s / cp
    e = EFFICIENCY.gemm_efficiency
    scores, values = 2 * T * s * A * DQK / tp, 2 * T * s * A * DV / tp
    c = _consts(DSV3)
    _, fwd, bwd, _ = c.gemm_times(tp, b, cp)
    base = e(q, s, DQK) if cp == 1 else 1 / ((1 / e(q, q, DQK) + (cp - 1) / e(q, q / 2, DQK)) / cp)
    peak = c.peak16
    assert fwd == pytest.approx((scores + values) / 2 / (peak * base * EFFICIENCY.flash_forward_efficiency), rel=1e-12)
    assert bwd == pytest.approx(2.5 * (scores + values) / 2 / (peak * base * EFFICIENCY.flash_backward_efficiency),
                                rel=1e-12)
    _, fwd_e, bwd_e, _ = _consts(DSV3, "eager").gemm_times(tp, b, cp)
    assert fwd_e == pytest.approx((scores / e(q, s, DQK) + values / e(q, DV, s)) / peak, rel=1e-12)
    assert bwd_e == pytest.approx(2 * fwd_e, rel=1e-12)


def test_mla_down_projections_are_replicated_up_column_out_row():
    """Megatron-Core: linear_q_down_proj and linear_kv_down_proj duplicated on every tensor rank (on
    its sequence shard under sequence parallelism, on all tokens without), the up projections
    column-parallel, the output row-parallel."""
    c = _consts(DSV3)
    e, tp, b, s = EFFICIENCY.gemm_efficiency, 4, 1, 4096
    T = b * s

    def down(t):
        return 2 * t * H * RQ / e(t, RQ, H) + 2 * t * H * (RKV + ROPE) / e(t, RKV + ROPE, H)

    up = (2 * T * RQ * A * DQK / tp / e(T, A * DQK / tp, RQ)
          + 2 * T * RKV * A * (NOPE + DV) / tp / e(T, A * (NOPE + DV) / tp, RKV))
    out = 2 * T * A * DV * H / tp / e(T, H, A * DV / tp)
    mlp = 2 * T * H * 2 * 18432 / tp / e(T, 2 * 18432 / tp, H) + 2 * T * 18432 * H / tp / e(T, H, 18432 / tp)
    for sp, t in ((True, T / tp), (False, T)):
        linear = c.gemm_times(tp, b, 1, sp)[0]
        assert linear == pytest.approx((down(t) + up + out + mlp) / c.peak, rel=1e-12)
    # the down projections' weights are whole on every rank: 15.1M a block beyond block_params / tp
    assert c.replicated_tp(tp) == pytest.approx(H * (RQ + RKV + ROPE) * (1 - 1 / tp), rel=1e-12)
    assert c.replicated_tp(1) == 0


def test_dense_models_take_the_old_code_path():
    """kv_lora_rank 0: gemm_times is the standard-attention closed form bit for bit, no replicated
    weights, sequence parallelism does not enter the GEMM times."""
    m = zoo.get("llama-2-7b") if "llama-2-7b" in zoo.ZOO else zoo.get("gpt3-1.3b")
    c = _consts(m, "eager", seq=2048)
    e, tp, b, s, h = EFFICIENCY.gemm_efficiency, 2, 1, 2048, m.hidden
    T, q, hd = b * s, s, m.head_dim
    assert not c.mla and c.replicated_tp(tp) == 0.0
    linear = (2.0 * T * h * c.qkv_out / tp / e(T, c.qkv_out / tp, h)
              + 2.0 * T * c.q * h / tp / e(T, h, c.q / tp)
              + 2.0 * T * h * c.mlp_in / tp / e(T, c.mlp_in / tp, h)
              + 2.0 * T * c.f * h / tp / e(T, h, c.f / tp)) / c.peak
    flops = 2.0 * T * s * c.q / tp
    fwd = (flops / e(q, s, hd) + flops / e(q, hd, s)) / c.peak16
    assert c.gemm_times(tp, b, 1, False) == c.gemm_times(tp, b, 1, True)
    assert c.gemm_times(tp, b)[:3] == (linear, fwd, 2.0 * fwd)
    assert c.linear_fwd_flops == c.block_fwd_flops - 4.0 * s * c.q


def test_mla_costs_more_than_its_equal_parameter_stand_in():
    """The zoo's former stand-in (128 standard heads of 51): the same weights within 0.04%, 3.1x fewer
    score and value FLOPs, smaller Q/K/V activations; MLA's step is longer and needs more memory."""
    stand_in = dataclasses.replace(DSV3, q_lora_rank=0, kv_lora_rank=0, qk_nope_head_dim=0,
                                   qk_rope_head_dim=0, v_head_dim=0, head_width=51, rotary_fraction=2 / 3)
    assert stand_in.attention_params == pytest.approx(DSV3.attention_params, rel=5e-4)
    kw = dict(seq=4096, batch=256, gpus=256, gpu="h100-80gb", attention="flash", tp=4, pp=16, ep=8, etp=1,
              sequence_parallel=True, recompute="full", allow_oom=True)
    mla, std = estimate(DSV3, **kw), estimate(stand_in, **kw)
    # longer on the GPU by more than 5% (the host's wait for the per-expert loop, the same in both,
    # hides part of the difference in the step: moe._launch_floor)
    gpu = {n: r.step_time_s - r.breakdown_s["launch_s"] for n, r in (("mla", mla), ("std", std))}
    assert gpu["mla"] > 1.05 * gpu["std"] and mla.step_time_s > std.step_time_s
    # per token: 3 x 61 x (2 x the weights' difference + the scores' and values' difference)
    dw = block_shape(DSV3).attention_linear_params - block_shape(stand_in).attention_linear_params
    extra = 3 * 61 * (2 * dw + 2 * 4096 * A * (DQK + DV) - 4 * 4096 * A * 51)
    assert mla.model_flops_per_step / std.model_flops_per_step == pytest.approx(
        1 + extra / (std.model_flops_per_step / 256 / 4096), rel=1e-9)
    assert 1 + extra / (std.model_flops_per_step / 256 / 4096) == pytest.approx(1.175, abs=1e-3)
