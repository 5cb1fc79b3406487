"""The weight-holding guards see what they claim to see, for every family (docs/design.md, "weights
pass through"): a layer that keeps ``w.detach()`` of a streamed weight outside autograd holds the
weight's storage, which the storage guard counts (weak references to the tensors did not: the
detached tensor is a new object); a layer that keeps ``w.detach().clone()`` holds new storage,
which the live-tensor measure (``TrainingPayload.live_bytes``: the bytes of every tensor the
garbage collector reaches, after each step) shows as growth from step to step. The clean run shows
neither, and its training is unchanged by either fault (the equivalence alone cannot see them)."""

import pytest
import torch

from wsim.functional.executor import TrainingPayload
from wsim.functional.train import train
from tests.tiny_models import ALL_FAMILIES, perturbed, tiny

STEPS, SYSTEMS, BATCH, SEQ = 3, 2, 8, 16
HYPER = dict(lr=2e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def run(family, monkeypatch, fault=None, measure=False):
    cfg = tiny(family)
    w = perturbed(cfg, torch.float64, 1, scale=0.01)
    data = torch.randint(0, 101, (STEPS * BATCH, SEQ + 1), generator=torch.Generator().manual_seed(1))
    live: list[int] = []
    monkeypatch.setattr(TrainingPayload, "keep_weights_fault", fault)
    monkeypatch.setattr(TrainingPayload, "live_bytes", live if measure else None)
    r = train(cfg, w, data, systems=SYSTEMS, steps=STEPS, batch=BATCH, dtype="float64", **HYPER)
    weight_bytes = sum(t.numel() * t.element_size() for t in w.values())
    # growth of live tensor bytes from the end of step 1 to the end of step 2 (not the last step:
    # the next step's first weights are already streamed at the end of every step but the last)
    return r, live[1] - live[0] if measure else None, weight_bytes, len(cfg.param_shapes())


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_a_kept_detach_is_seen_by_the_storage_guard(family, monkeypatch):
    clean, _, weight_bytes, tensors = run(family, monkeypatch)
    assert clean.weights_held_between_passes == 0 and clean.weight_bytes_held_between_passes == 0
    leaky, _, _, _ = run(family, monkeypatch, "detach")
    assert leaky.losses == pytest.approx(clean.losses, rel=1e-12)  # the math is unchanged
    # every tensor of every layer pass, on every CS-2, every step (tied weights stream twice)
    assert leaky.weights_held_between_passes >= STEPS * SYSTEMS * tensors
    assert leaky.weight_bytes_held_between_passes >= STEPS * SYSTEMS * weight_bytes


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_a_kept_clone_is_seen_by_the_live_tensor_measure(family, monkeypatch):
    clean, clean_growth, weight_bytes, _ = run(family, monkeypatch, measure=True)
    # a clean step leaves behind its loss (a float64 scalar) and nothing else
    assert abs(clean_growth) <= 64, clean_growth
    leaky, growth, _, _ = run(family, monkeypatch, "clone", measure=True)
    assert leaky.losses == pytest.approx(clean.losses, rel=1e-12)
    # the storage guard cannot see a copy (new storage): this is what the measure is for
    assert leaky.weights_held_between_passes == 0
    assert growth >= SYSTEMS * weight_bytes  # a copy per CS-2 per step
