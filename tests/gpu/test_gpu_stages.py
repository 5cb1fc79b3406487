"""The edge-balanced pipeline split (``wsim.gpu.stages``): the first and the last stage one layer
short when pp divides layers + 2 (Megatron-Core's account_for_embedding/loss_in_pipeline_split,
BLOOM's 'type:transformer|embedding', Llama 3), in time, in memory and in the search's bounds."""

import dataclasses
import itertools

import pytest

from models.spec import ModelSpec
from wsim.gpu import estimate
from wsim.gpu.calibration import STACKS
from wsim.gpu.inputs import make_consts
from wsim.gpu.knobs import resolve
from wsim.gpu.memory import act_bytes_per_token_layer, states_lower_bound
from wsim.gpu.published import all_rows
from wsim.gpu.published_modern import LLAMA31_405B
from wsim.gpu.stages import edge_balanced
from wsim.gpu.step import evaluate, step_lower_bound_s
from wsim.gpu.validation import predict

GIB = 2**30


@pytest.mark.parametrize("layers, pp, edge", [
    (126, 8, True), (126, 16, True), (70, 12, True), (6, 4, True),  # Megatron-Bridge, Llama 3, BLOOM
    (126, 9, False), (80, 8, False), (96, 8, False),  # even splits
    (10, 2, False), (7, 4, False), (5, 1, False)])  # pp 2 never; 7 + 2 not divisible by 4
def test_which_splits_are_edge_balanced(layers, pp, edge):
    assert edge_balanced(layers, pp) is edge


FLAT = dict(hidden=1024, heads=16, vocab=1, tied_embeddings=False)
KW = dict(seq=1024, batch=64, gpus=4, tp=1, pp=4, micro_batch=1, interleave=1, recompute="full",
          stack="megatron-core")


def test_edge_stages_shorten_the_bubble_by_their_missing_layers():
    """6 layers on 4 stages (1, 2, 2, 1) against 8 (2, 2, 2, 2), a 1-entry LM head of H seconds a
    micro-batch (lighter than a layer), tp 1: 8 layers pace at a stage of 2 layers and the head,
    6 at a middle stage of 2 layers (the last has 1 and the head), and the two short stages take
    one layer's time e each out of the bubble's mean stage: m H + (p - 1) x 2e / p less a step."""
    six = estimate(ModelSpec(name="six", layers=6, **FLAT), **KW)
    eight = estimate(ModelSpec(name="eight", layers=8, **FLAT), **KW)
    b, m = six.breakdown_s, six.micro_batches
    e = (b["compute_s"] + b["recompute_s"] + b["tp_comm_s"] + b["launch_s"]) / (m * 2)
    head = (eight.breakdown_s["compute_s"] - b["compute_s"]) / m  # the breakdowns: 2 layers each
    assert 0 < head < e
    assert eight.step_time_s - six.step_time_s == pytest.approx(m * head + 3 * 2 * e / 4,
                                                                rel=1e-9)
    assert sum(b.values()) == pytest.approx(six.step_time_s, rel=1e-12)  # a middle stage's


def test_bloom_runs_five_blocks_and_the_head_on_its_last_stage():
    """BLOOM on 12 stages: 5 blocks and the 250,880-entry head on the last, 6 blocks in the middle
    (bigscience tr11-176B-ml README): the last stage sets the pace, one block lighter than before."""
    row = next(r for r in all_rows() if r.group == "bloom")
    p = predict(row)
    b = p.report.breakdown_s
    assert p.report.memory.fits and abs(p.error) < 0.05  # -14.1% when every stage held 6
    assert sum(b.values()) == pytest.approx(p.report.step_time_s, rel=1e-12)


def test_llama3_405b_peaks_on_the_second_stage():
    """TP 8 x PP 16, no recompute, 1F1B: stage 0 holds 7 layers x 16 micro-batches, stage 1 8 x 15
    (the fullest: 120 layer-micro-batches, not the 128 of 8 layers on every stage)."""
    kw = dict(seq=8192, batch=2048, gpus=8192, gpu="h100-80gb", tp=8, pp=16, micro_batch=1,
              interleave=1, recompute="none", sequence_parallel=True, zero=1,
              stack="meta-llama3", attention="flash", fabric="roce", allow_oom=True)
    r = estimate(LLAMA31_405B, **kw)
    c = make_consts(LLAMA31_405B, seq=8192, batch=2048, gpus=8192, gpu="h100-80gb",
                    efficiency=None, attention="flash", fabric="roce")
    per_layer = 8192 * act_bytes_per_token_layer(c, 8, "none", True)
    assert r.memory.stage == 1
    assert r.memory.activations_bytes == pytest.approx(120 * per_layer, rel=1e-12)
    assert 80.5 * GIB < r.memory.total_bytes < 81.5 * GIB  # still over 80 GiB: recompute


@pytest.mark.parametrize("layers, hidden, vocab, seq", [
    (6, 1024, 50000, 1024), (6, 1024, 1, 1024), (70, 1024, 250880, 1024),
    (6, 4096, 60000, 128)])  # an embedding larger than a block, few activations and logits
def test_search_bounds_hold_for_edge_balanced_plans(layers, hidden, vocab, seq):
    """The step and memory lower bounds the search cuts with stay below every edge-balanced plan
    (the head may replace a layer on the last stage, so 'L layers and the head' is no bound, nor
    'L blocks and the smaller of the embedding and the head' for the states)."""
    model = ModelSpec(name="m", layers=layers, hidden=hidden, heads=16, vocab=vocab,
                      positions=seq)
    gpus, batch = 24, 1536  # many micro-batches: little bubble to hide a loose bound in
    c = make_consts(model, seq=seq, batch=batch, gpus=gpus, gpu="h100-80gb", efficiency=None)
    n = 0
    for pp in (p for p in (3, 4, 6, 8, 12) if edge_balanced(layers, p) and gpus % p == 0):
        dp = gpus // pp
        for name, b, rc in itertools.product(("nemo", "megatron-core", "deepspeed"), (1, 2),
                                             ("none", "full")):
            st = STACKS[name]
            zero = 1 if 1 in st.zero_stages else 0
            kn = resolve(st, fp8=False, sp=False, zero=zero)
            ev = evaluate(c, 1, pp, dp, b, 1, rc, False, zero, 1, st, kn)
            assert step_lower_bound_s(c, 1, pp, dp, b) <= ev.step_s
            assert states_lower_bound(c, 1, pp, dp, zero) <= ev.memory.total_bytes
            n += 1
    assert n > 0


def test_published_405b_recipe_stage_split():
    """Megatron-Bridge's Llama 3.1 405B on 8 stages (account_for_embedding/loss): 15, 16 x 6, 15
    layers; the model's pace is the middle stage's 16 or the last's 15 and the head, whichever is
    slower, never 16 and the head."""
    row = next(r for r in all_rows() if r.label == "bridge-h100/25.11-405b-h100-1024")
    p = predict(row)
    flat = dataclasses.replace(row, plan=dict(row.plan, stack="nemo"))
    assert predict(flat).report.step_time_s == p.report.step_time_s
    b = p.report.breakdown_s
    assert sum(b.values()) == pytest.approx(p.report.step_time_s, rel=1e-12)
