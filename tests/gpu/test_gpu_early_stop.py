"""PyTorch 2.1+ non-reentrant checkpoint's early stop (``recompute_early_stop``, wsim.gpu.knobs):
a full recompute that stops before each block's MLP down projection."""

import pytest

from models import zoo
from wsim.commands.cli import main
from wsim.errors import ConfigError
from wsim.gpu import estimate
from wsim.gpu import validation as V
from wsim.gpu.calibration import STACKS
from wsim.gpu.inputs import make_consts
from wsim.gpu.published import MPT

# MPT-30B as MosaicML ran it on 8 A100-80GB (FSDP, full checkpointing), 2 micro-batches of 3
KW = dict(seq=2048, batch=48, gpus=8, gpu="a100-80gb", tp=1, pp=1, zero=3, stack="fsdp",
          micro_batch=3, attention="flash", recompute="full")


def test_early_stop_skips_exactly_the_down_projection_of_every_block():
    model = MPT["30b"]
    off = estimate(model, **KW)
    on = estimate(model, **KW, recompute_early_stop=True)
    c = make_consts(model, seq=2048, batch=48, gpus=8, gpu="a100-80gb", attention="flash",
                    precision="bf16", efficiency=None)
    m = 48 // (8 * 3)
    saved = m * model.layers * c.down_proj_s(1, 3) / STACKS["fsdp"].kernel_efficiency
    assert off.breakdown_s["recompute_s"] - on.breakdown_s["recompute_s"] == pytest.approx(saved, rel=1e-9)
    assert off.breakdown_s["compute_s"] == on.breakdown_s["compute_s"]  # forward, backward unchanged
    # theory: a GPT block's down projection is 4h^2 of its 12h^2 linear FLOPs a token, a third
    linear = c.gemm_times(1, 3)[0]
    assert c.down_proj_s(1, 3) / linear == pytest.approx(1 / 3, rel=0.01)
    assert on.step_time_s < off.step_time_s
    assert on.memory.total_bytes == off.memory.total_bytes  # what is saved does not change


def test_early_stop_with_tensor_parallelism_skips_the_down_projections_all_reduce():
    model = zoo.get("gpt3-13b")
    kw = dict(KW, gpus=16, batch=64, tp=8, micro_batch=2, zero=3)
    off, on = estimate(model, **kw), estimate(model, **kw, recompute_early_stop=True)
    # full recompute reruns both forward all-reduces; early stop the first one only
    assert on.breakdown_s["tp_comm_s"] < off.breakdown_s["tp_comm_s"]


@pytest.mark.parametrize("recompute", ["none", "selective"])
def test_early_stop_changes_nothing_without_full_recompute(recompute):
    model = MPT["7b"]
    kw = dict(KW, recompute=recompute, micro_batch=1)
    assert estimate(model, **kw, recompute_early_stop=True).step_time_s == \
        estimate(model, **kw).step_time_s


def test_default_is_off_and_other_stacks_refuse_it():
    model = MPT["7b"]
    assert estimate(model, **KW).step_time_s == \
        estimate(model, **KW, recompute_early_stop=False).step_time_s
    assert estimate(model, **KW).plan.recompute_early_stop is False
    for stack in ("megatron", "deepspeed", "megatron-core"):
        kw = dict(KW, stack=stack, zero=3 if stack == "deepspeed" else 1)
        with pytest.raises(ConfigError, match="no recompute_early_stop"):
            estimate(model, **kw, recompute_early_stop=True)
    with pytest.raises(ConfigError, match="true or false"):
        estimate(model, **KW, recompute_early_stop="yes")


def test_torchtitan_full_rows_use_it_and_mosaic_rows_do_not():
    preds = {p.row.label: p for p in V.current()}
    for label in ("titan-a100/llama3-70b-full", "titan-a100/llama2-70b-full"):
        assert preds[label].report.plan.recompute_early_stop is True
        assert abs(preds[label].error) < 0.08  # -11% without it
    assert not any(p.report.plan.recompute_early_stop for lbl, p in preds.items()
                   if lbl.startswith("mosaic"))


def test_cli_flag_and_its_refusal(capsys):
    args = ["gpu", "--model", "gpt3-6.7b", "--gpus", "8", "--batch", "16", "--zero", "3",
            "--stack", "fsdp", "--attention", "flash"]
    assert main(args + ["--recompute", "full", "--recompute-early-stop"]) == 0
    assert "recompute-early-stop on" in capsys.readouterr().out
    code = main(args + ["--recompute", "none", "--recompute-early-stop"])
    err = capsys.readouterr().err
    assert code == 2 and "--recompute full only" in err and len(err.strip().splitlines()) == 1
