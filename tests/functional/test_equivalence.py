"""Weight-streamed training through the engine equals standard training (docs/design.md, "Numerical
equivalence"), and the check has teeth: a stale-weight schedule or a dropped gradient breaks it."""

import dataclasses

import pytest
import torch
import transformers

from models.gpt import GPTConfig, init_weights
from wsim.cluster import generations
from wsim.engine.run import SimOptions
from wsim.functional.reference import reference_train
from wsim.functional.train import train

STEPS, BATCH, SEQ = 5, 24, 16  # 24 rows divide over 1, 2, 3, 4 and 8 systems
HYPER = dict(lr=2e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def setup(activation="gelu", tied=True, seed=1):
    cfg = GPTConfig(n_layer=2, n_embd=32, n_head=4, vocab_size=101, n_positions=64,
                    activation_function=activation, tie_word_embeddings=tied)
    weights = init_weights(cfg, seed, torch.float64)
    # move biases and LayerNorm off 0/1 so that every parameter's arithmetic is exercised
    g = torch.Generator().manual_seed(seed + 100)
    weights = {n: w + 0.01 * torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in weights.items()}
    data = torch.randint(0, 101, (STEPS * BATCH, SEQ + 1), generator=torch.Generator().manual_seed(seed))
    return cfg, weights, data


_REF: dict = {}


def reference(cfg, weights, data, dtype):
    key = (cfg, dtype, data.sum().item())
    if key not in _REF:
        _REF[key] = reference_train(cfg, weights, data, STEPS, BATCH, dtype=dtype, **HYPER)
    return _REF[key]


def max_rel_diff(a: dict, b: dict) -> dict:
    """Per tensor: the largest element difference over the tensor's largest magnitude."""
    return {n: ((a[n] - b[n]).abs().max() / b[n].abs().max()).item() for n in b}


@pytest.mark.parametrize("systems", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("micro_batches", ["auto", 3])
@pytest.mark.parametrize("activation", ["gelu", "gelu_new"])
def test_float64_matches_reference(systems, micro_batches, activation):
    cfg, weights, data = setup(activation)
    ref_losses, ref_w = reference(cfg, weights, data, torch.float64)
    r = train(cfg, weights, data, systems=systems, steps=STEPS, batch=BATCH, dtype="float64",
              micro_batches=micro_batches, **HYPER)
    if micro_batches == 3:
        assert r.micro_batches == 3
    assert max(max_rel_diff(r.final_weights, ref_w).values()) < 1e-9
    for got, want in zip(r.losses, ref_losses, strict=True):
        assert got == pytest.approx(want, rel=1e-10)
    assert r.weights_held_between_passes == 0 and r.weight_bytes_held_between_passes == 0


def test_untied_head_and_grad_clip_match():
    cfg, weights, data = setup("gelu_new", tied=False)
    ref_losses, ref_w = reference_train(cfg, weights, data, STEPS, BATCH, dtype=torch.float64,
                                        grad_clip=0.05, **HYPER)
    r = train(cfg, weights, data, systems=4, steps=STEPS, batch=BATCH, dtype="float64",
              grad_clip=0.05, **HYPER)
    assert max(max_rel_diff(r.final_weights, ref_w).values()) < 1e-9
    assert r.losses == pytest.approx(ref_losses, rel=1e-10)


@pytest.mark.parametrize("systems", [1, 4, 8])
def test_float32_within_reduction_order_noise(systems):
    """float32: both trainers sum in a different order, so they differ by rounding, and AdamW
    turns rounding in near-zero gradients into steps of up to ~lr (the attention key bias has an
    exactly-zero true gradient). The bound is the float32 reference's own distance from the float64
    result: weight streaming may be at most twice as far from the float64 result, plus 1e-6 of the
    tensor's largest magnitude; losses within 1e-5 relative."""
    cfg, weights, data = setup("gelu")
    _, truth = reference(cfg, weights, data, torch.float64)
    ref_losses, ref32 = reference(cfg, weights, data, torch.float32)
    r = train(cfg, weights, data, systems=systems, steps=STEPS, batch=BATCH, dtype="float32", **HYPER)
    truth32 = {n: t.float() for n, t in truth.items()}
    floor = max_rel_diff(ref32, truth32)
    ours = max_rel_diff(r.final_weights, truth32)
    for n in truth:
        assert ours[n] <= 2 * floor[n] + 1e-6, n
    assert r.losses == pytest.approx(ref_losses, rel=1e-5)


@pytest.mark.parametrize("fault", ["stale_weights_fault", "drop_gradient_fault"])
def test_a_broken_schedule_fails_the_equivalence(fault):
    cfg, weights, data = setup("gelu")
    _, ref_w = reference(cfg, weights, data, torch.float64)
    r = train(cfg, weights, data, systems=4, steps=STEPS, batch=BATCH, dtype="float64",
              options=SimOptions(**{fault: True}), **HYPER)
    assert max(max_rel_diff(r.final_weights, ref_w).values()) > 1e-3


def test_weights_pass_through_within_the_prefetch_bound():
    """No CS-2 keeps weights between a layer's forward and backward (weak references to the
    forward's weights are dead when the backward starts, and the graph saved no copy of them: the
    guard's negative test is in test_family_equivalence.py) and the weight bytes held on a CS-2
    never exceed the buffer (engine instrumentation, sampled at every arrival)."""
    cfg, weights, data = setup("gelu")
    layer_bytes = 2 * (4 * 32 * 32 + 2 * 32 * 128 + 128 + 9 * 32)  # one block, 16-bit on the wafer
    base = generations.preset("cs2", 4)
    cluster = dataclasses.replace(base, cs2=dataclasses.replace(base.cs2, weight_buffer_bytes=3 * layer_bytes))
    r = train(cfg, weights, data, systems=4, steps=2, batch=BATCH, dtype="float64", cluster=cluster, **HYPER)
    assert r.weights_held_between_passes == 0 and r.weight_bytes_held_between_passes == 0
    assert 0 < r.peak_weight_bytes_per_cs2 <= 3 * layer_bytes
    # the event log shows each layer's backward after its forward on every CS-2, the update after
    # the last backward of the layer, and the next step's forward of a layer after its update
    log = r.event_log
    pos = {e: i for i, e in enumerate(log)}
    for system in range(4):
        for layer in range(4):
            assert pos[("fwd", 0, 0, layer, system)] < pos[("bwd", 0, 0, layer, system)]
            assert pos[("bwd", 0, 0, layer, system)] < pos[("update", 0, -1, layer, -1)]
            assert pos[("update", 0, -1, layer, -1)] < pos[("fwd", 1, 0, layer, system)]


def test_matches_hugging_face_after_save(tmp_path):
    """The trained weights, saved, load into transformers and give the same loss."""
    from models import hf

    cfg, weights, data = setup("gelu_new")
    r = train(cfg, weights, data, systems=2, steps=2, batch=BATCH, dtype="float64", **HYPER)
    hf.save_checkpoint(tmp_path, cfg, r.final_weights)
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, dtype=torch.float64).eval()
    x = data[:BATCH, :-1]
    with torch.no_grad():
        logits = model(input_ids=x).logits
    from models.gpt import GPT

    ours, _ = GPT(cfg, r.final_weights, dtype=torch.float64)(x)
    assert torch.allclose(logits, ours, rtol=1e-10, atol=1e-12)


def test_simulated_step_time_is_the_callers_job_cluster_and_options():
    """``simulated_step_time_s`` is one step of the same job on the caller's cluster and systems,
    with the run's plan (micro-batches) and the caller's SimOptions, from the timing engine."""
    from wsim.engine.run import simulate
    from wsim.functional.train import spec_from_config
    from wsim.cluster.job import TrainingJob

    cfg, weights, data = setup("gelu")
    base = generations.preset("cs2", 2)
    slow = dataclasses.replace(base, memoryx=dataclasses.replace(base.memoryx, stream_bytes_per_s=20e9))
    options = SimOptions(global_update=True)
    r = train(cfg, weights, data, systems=2, steps=1, batch=BATCH, micro_batches=3, cluster=slow,
              options=options, **HYPER)
    job = TrainingJob(spec_from_config(cfg), seq=SEQ, batch_seqs=BATCH, micro_batches=3)
    want = simulate(job, slow, options)
    assert r.micro_batches == 3
    assert r.simulated_step_time_s == want.step_time_s and r.simulated_tokens_per_s == want.tokens_per_s
    # each of these matters, so a timing run that dropped one would be caught
    assert want.step_time_s != simulate(job, slow).step_time_s  # the options
    assert want.step_time_s != simulate(job, base, options).step_time_s  # the cluster
    assert want.step_time_s != simulate(dataclasses.replace(job, micro_batches=1), slow, options).step_time_s
