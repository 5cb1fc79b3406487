"""Context parallelism's cost from Transformer Engine's ring attention (AttnFuncWithCPAndKVP2P,
transformer_engine/pytorch/attention/dot_product_attention/context_parallel.py @ d0067d0d): it
runs only on the flash / fused attention backends, each ring step is a kernel of its own smaller
shape, and the steps' partial results are merged through HBM."""

import pytest

from models import zoo
from wsim.errors import ConfigError
from wsim.gpu import STACKS, estimate, search
from wsim.gpu.inputs import make_consts
from wsim.gpu.step import CP_DKV_BYTES, CP_DQ_BYTES, CP_OUT_CORRECTION_BYTES, _layer
from wsim.gpu.knobs import resolve

M = zoo.get("gpt3-1.3b")


def test_context_parallelism_needs_flash_attention():
    """TE utils.py: "Disabling UnfusedDotProductAttention as it does not support context
    parallelism": a given cp > 1 with eager attention is refused, the search never picks one."""
    kw = dict(seq=2048, batch=16, gpus=16, tp=2, cp=2, stack="megatron-core", micro_batch=1)
    with pytest.raises(ConfigError, match="cp 2 needs --attention flash"):
        estimate(M, **kw)
    assert estimate(M, attention="flash", **kw).plan.cp == 2
    # 111M, batch 120 on 16 A100: dp 16 does not divide the batch; it used to split the sequence
    r = search(zoo.get("cerebras-gpt-111m"), seq=2048, batch=120, gpus=16)
    assert r.plan.cp == 1 and r.plan.tp * r.plan.pp == 2


def test_ring_steps_run_at_their_own_shape():
    """The attention core at cp 2: one diagonal block (s/cp x s/cp) and cp - 1 off-diagonal
    halves (s/cp x s/2cp), equal work each, at the GEMM-shape efficiency of each."""
    c = make_consts(M, seq=2048, batch=8, gpus=8, gpu="h100-80gb", efficiency=None,
                    attention="flash")
    e = c.eff.gemm_efficiency
    s, cp, b = 2048, 4, 1
    q = s / cp
    flops = 2.0 * b * s / cp * s * c.h  # tp 1
    inv = (1 / e(q, q, c.hd) + (cp - 1) / e(q, q / 2, c.hd)) / cp
    want = 2.0 * flops * 0.5 * inv / (c.peak16 * c.eff.flash_forward_efficiency)
    assert c.gemm_times(1, b, cp)[1] == pytest.approx(want, rel=1e-12)
    # one rank's share is 1/cp of the work, each step a smaller (slower) kernel
    assert c.gemm_times(1, b, cp)[1] > c.gemm_times(1, b, 1)[1] / cp


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
def test_ring_merges_cost_their_hbm_traffic(recompute):
    """Forward: cp - 1 output corrections (6 bytes a query element); backward: cp - 1 dQ (10)
    and dK, dV (6 a key/value element) accumulations; a recompute repeats the forward's."""
    c = make_consts(M, seq=2048, batch=8, gpus=8, gpu="h100-80gb", efficiency=None,
                    attention="flash")
    st = STACKS["megatron-core"]
    kn = resolve(st, fp8=False, sp=False, zero=1)
    tp, b, cp = 1, 2, 4
    lay = _layer(c, tp, b, recompute, False, cp, st, kn)
    fwd, bwd, rec = lay[1], lay[2], lay[3]
    linear, core_f, core_b, _ = c.gemm_times(tp, b, cp)
    ew, ew_core, _ = c.elementwise_times(tp, b, False, cp)
    ke, hbm = st.kernel_efficiency, c.gpu.hbm_bytes_per_s
    q = b * 2048 / cp * c.h
    kv = b * 2048 / cp * 2 * c.kv * c.hd
    merge_f = (cp - 1) * CP_OUT_CORRECTION_BYTES * q / hbm / ke
    merge_b = (cp - 1) * (CP_DQ_BYTES * q + CP_DKV_BYTES * kv) / hbm / ke
    assert fwd == pytest.approx((linear + core_f + ew) / ke + merge_f, rel=1e-12)
    assert bwd == pytest.approx((2 * linear + core_b + 2 * ew) / ke + merge_b, rel=1e-12)
    want_rec = {"none": 0.0, "selective": (core_f + ew_core) / ke + merge_f, "full": fwd}[recompute]
    assert rec == pytest.approx(want_rec, rel=1e-12)
