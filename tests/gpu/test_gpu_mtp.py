"""Multi-token prediction and the last stage's layer count (wsim.gpu.mtp): closed-form checks
against the same cost functions, the defaults reproduce the model exactly, bad values refused."""

import json

import pytest

from models import zoo
from wsim.commands.cli import main
from wsim.errors import ConfigError
from wsim.gpu import memory as mem
from wsim.gpu import mtp, step
from wsim.gpu.calibration import STACKS
from wsim.gpu.flops import head_fwd_flops_per_token, model_flops_per_step, mtp_fwd_flops_per_token
from wsim.gpu.inputs import make_consts
from wsim.gpu.knobs import resolve
from wsim.gpu.moe import PLAIN
from wsim.gpu.plan import Plan, check_plan
from wsim.gpu import estimate

DSV3 = zoo.get("deepseek-v3")
ST = STACKS["nemo"]


def _consts():
    return make_consts(DSV3, seq=4096, batch=256, gpus=256, gpu="b200-180gb", efficiency=None,
                       attention="flash", precision="fp8")


def _stage(c, kn, pp, recompute="none"):
    dp = 256 // pp
    return step._stage(c, 1, pp, dp, 1, recompute, False, 1, 1, ST, kn, (8, 1, 1.0, PLAIN))


def _layer_s(c, kn, recompute="none"):
    lay = step._layer(c, 1, 1, recompute, False, 1, ST, kn)
    fwd, bwd, rec, tp_f, tp_b, tp_r, cp_exposed, launch = lay[1:9]
    return fwd + bwd + rec + tp_f + tp_b + tp_r + cp_exposed + launch, lay[12]


@pytest.mark.parametrize("recompute", ["none", "full"])
def test_one_module_costs_one_sparse_block_the_projection_and_a_head_pass(recompute):
    c = _consts()
    kn0 = resolve(ST, fp8=True, sp=False, zero=1)
    kn1 = kn0._replace(mtp_layers=1)
    s0, s1 = _stage(c, kn0, 1, recompute), _stage(c, kn1, 1, recompute)
    layer_s, ar = _layer_s(c, kn0, recompute)
    sparse_total = s0.sparse_max / min(DSV3.layers, len(DSV3.moe_layers))  # one sparse block's
    own = sum(mtp.extra(c, 1, 1, 1, False, recompute, ST.kernel_efficiency, ar))
    expected = layer_s + sparse_total + own + s0.head_extra + s0.embed_extra
    assert s0.mtp_extra == 0.0 and s1.mtp_extra == pytest.approx(expected, rel=1e-12)
    # pp 1: the step grows by the module's time on every micro-batch
    e0 = step.evaluate(c, 1, 1, 256, 1, 1, recompute, False, 1, 1, ST, kn0, (8, 1, 1.0, PLAIN))
    e1 = step.evaluate(c, 1, 1, 256, 1, 1, recompute, False, 1, 1, ST, kn1, (8, 1, 1.0, PLAIN))
    assert e1.step_s - e0.step_s == pytest.approx(e0.m * expected, rel=1e-9)


def test_the_projection_is_a_2h_by_h_gemm():
    c = _consts()
    T, h = 4096.0, DSV3.hidden
    assert mtp.proj_fwd_s(c, T, 1) == pytest.approx(
        2.0 * T * 2 * h * h / c.eff.gemm_efficiency(T, h, 2 * h) / c.peak)


def test_the_pace_is_the_slower_of_the_fullest_stage_and_the_last():
    c = _consts()
    kn0 = resolve(ST, fp8=True, sp=False, zero=1)
    short = _stage(c, kn0._replace(last_stage_layers=13), 4)
    layer_s, _ = _layer_s(c, kn0)
    sparse_total = _stage(c, kn0, 4).sparse_max / 16
    # 16, 16, 16, 13 layers (all sparse on the last stage): three layers short
    assert short.last_short == pytest.approx(3 * (layer_s + sparse_total), rel=1e-12)
    both = _stage(c, kn0._replace(last_stage_layers=13, mtp_layers=1), 4)
    tau = both.tau_before_send + both.L_launch + both.dp_per_mb
    send = 2.0 * both.send_one
    step_s, _ = step._pipeline(both, 4, 1, send)
    last = both.head_extra + both.mtp_extra - both.last_short
    tau_max = tau + send + both.sparse_max + max(last, both.embed_extra)
    tau_mean = tau + send + both.sparse_mean + (last + both.embed_extra) / 4
    assert step_s == pytest.approx(both.m * tau_max + 3 * tau_mean + both.dp_exposed
                                   + both.optimizer_s, rel=1e-12)
    # MTP on a full last stage is slower than on the presets' shorter one
    full = _stage(c, kn0._replace(mtp_layers=1), 4)
    assert step._pipeline(both, 4, 1, send)[0] < step._pipeline(full, 4, 1, send)[0]


def test_memory_grows_by_the_module_on_the_last_stage():
    c = _consts()
    kn0 = resolve(ST, fp8=True, sp=False, zero=1)
    kn1 = kn0._replace(mtp_layers=1)
    s0, s1 = _stage(c, kn0, 4), _stage(c, kn1, 4)
    f0 = mem._fixed(c, 1, 4, 64, 1, "none", False, 1, 1, ST, kn0, s0.sparse_mem)
    f1 = mem._fixed(c, 1, 4, 64, 1, "none", False, 1, 1, ST, kn1, s1.sparse_mem)
    block = c.block_params + c.replicated_tp(1)
    assert f1[9] - f0[9] == pytest.approx(block + mtp.params_tp(c, 1) + c.embed_params_tp(1))
    assert f1[0:9] == f0[0:9] and f0[13] is None
    blocks, act, scale = f1[13]
    tokens = 4096.0
    assert blocks == 17 and scale == pytest.approx(17 / 16)
    assert act == pytest.approx(tokens * mtp.act_bytes_per_token(c, 1, False) + f0[7])  # + logits
    # the first stage (16 layers, the in-flight micro-batches) is unchanged
    m0 = mem.memory(c, 1, 4, 64, 1, 1, "none", False, 1, 16, 1, ST, kn0, s0.sparse_mem)
    m1 = mem.memory(c, 1, 4, 64, 1, 1, "none", False, 1, 16, 1, ST, kn1, s1.sparse_mem)
    assert m1.total_bytes >= m0.total_bytes


def test_defaults_reproduce_the_model_exactly():
    kw = dict(seq=4096, batch=256, gpus=256, gpu="b200-180gb", tp=1, pp=4, ep=8, etp=1,
              attention="flash", precision="fp8", zero=1, stack="nemo", recompute="none",
              micro_batch=1, interleave=1, allow_oom=True)
    a = estimate(DSV3, **kw)
    b = estimate(DSV3, mtp_layers=0, last_stage_layers=None, **kw)
    assert a.step_time_s == b.step_time_s and a.memory == b.memory
    assert b.plan.mtp_layers == 0 and b.plan.last_stage_layers is None
    c = estimate(DSV3, mtp_layers=1, last_stage_layers=13, **kw)
    assert c.plan.mtp_layers == 1 and c.plan.last_stage_layers == 13
    assert c.model_flops_per_step > a.model_flops_per_step


def test_model_flops_count_mtp_as_megatron_does():
    h, tokens = DSV3.hidden, 8.0 * 4096
    delta = model_flops_per_step(DSV3, seq=4096, batch=8, mtp_layers=1) \
        - model_flops_per_step(DSV3, seq=4096, batch=8)
    assert delta == pytest.approx(tokens * 3.0 * mtp_fwd_flops_per_token(DSV3, 4096))
    # a sparse block of the last layer's kind, norms and projection 2 (3h + 2h^2), the head 2 V h
    block = mtp_fwd_flops_per_token(DSV3, 4096) - 2.0 * (3 * h + 2 * h * h) \
        - head_fwd_flops_per_token(DSV3)
    assert block > 2.0 * DSV3.moe_params(active=True)


@pytest.mark.parametrize("field, value, needle", [
    ("mtp_layers", -1, "plan.mtp_layers"), ("mtp_layers", True, "plan.mtp_layers"),
    ("mtp_layers", 1.5, "plan.mtp_layers"), ("last_stage_layers", 0, "plan.last_stage_layers")])
def test_bad_values_name_the_field(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        Plan(pp=4, **{field: value})


def test_layout_checks():
    with pytest.raises(ConfigError, match="needs pipeline parallelism"):
        Plan(last_stage_layers=3)
    with pytest.raises(ConfigError, match="every stage needs a layer"):
        check_plan(Plan(pp=4, dp=64, ep=8, etp=1, last_stage_layers=60, stack="nemo", zero=1),
                   DSV3, batch=256, gpus=256, seq=4096)
    with pytest.raises(ConfigError, match="stack megatron has no mtp_layers"):
        Plan(pp=4, mtp_layers=1, stack="megatron").knobs(fp8=False)


@pytest.mark.parametrize("argv, needle", [
    (["--mtp-layers", "-1"], "plan.mtp_layers"),
    (["--mtp-layers", "x"], "--mtp-layers"),
    (["--last-stage-layers", "0", "--pp", "4"], "plan.last_stage_layers"),
    (["--mtp-layers", "1", "--search"], "--mtp-layers is modelled for a given plan only")])
def test_cli_refuses_bad_values_in_one_line(capsys, argv, needle):
    code = main(["gpu", "--model", "deepseek-v3", "--batch", "256", "--gpus", "256", "--gpu",
                 "b200-180gb", "--ep", "8", "--etp", "1", "--stack", "nemo", "--allow-oom"] + argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err, err


def test_cli_flag_reaches_the_plan(capsys):
    code = main(["gpu", "--model", "deepseek-v3", "--batch", "256", "--gpus", "256", "--gpu",
                 "b200-180gb", "--ep", "8", "--etp", "1", "--pp", "4", "--stack", "nemo",
                 "--zero", "1", "--precision", "fp8", "--attention", "flash", "--recompute", "none",
                 "--mtp-layers", "1", "--last-stage-layers", "13", "--allow-oom", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert plan["mtp_layers"] == 1 and plan["last_stage_layers"] == 13
