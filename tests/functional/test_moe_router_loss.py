"""The MoE router's load-balancing loss (``output_router_logits``) in weight-streamed training: each
CS-2, and each micro-batch, balances its own tokens, as data parallelism has it. On one CS-2 with one
micro-batch that is transformers' own loss (its model, output_router_logits, torch.optim.AdamW); on 2
and 4 CS-2s (and 2 micro-batches) it is transformers' model run on each slice with its own auxiliary
loss, weighted by the slice's share of the step's tokens, gradients summed, one AdamW step."""

import pytest
import torch

from wsim.functional.train import train
from tests.tiny_models import MOE_FAMILIES, adamw_reference, hf_model, perturbed, tiny
from tests.tiny_models import worst as _worst

STEPS, BATCH, SEQ = 3, 8, 12
HYPER = dict(lr=2e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
COEF = 0.25  # large enough that the term moves the routers well beyond the tolerance


def sliced_reference(cfg, w, data, slices: int):
    return adamw_reference(cfg, hf_model(cfg, w, torch.float64), data, STEPS, BATCH, HYPER, router_slices=slices)


@pytest.mark.parametrize("family", MOE_FAMILIES)
@pytest.mark.parametrize("systems,micro_batches", [(1, 1), (2, 1), (4, 1), (2, 2)])
def test_streamed_router_loss_is_each_systems_own(family, systems, micro_batches):
    cfg = tiny(family, output_router_logits=True, router_aux_loss_coef=COEF)
    w = perturbed(cfg, torch.float64, 1, scale=0.01)
    data = torch.randint(0, 101, (STEPS * BATCH, SEQ + 1), generator=torch.Generator().manual_seed(1))
    ref = sliced_reference(cfg, w, data, systems * micro_batches)
    r = train(cfg, w, data, systems=systems, steps=STEPS, batch=BATCH, dtype="float64",
              micro_batches=micro_batches, **HYPER)
    dl, dw = _worst(r, *ref)
    assert dl < 1e-10 and dw < 1e-9, (dl, dw)
    assert r.weights_held_between_passes == 0 and r.weight_bytes_held_between_passes == 0
    if systems == 1:  # the term is live: without it the routers train differently
        plain = train(tiny(family), w, data, systems=1, steps=STEPS, batch=BATCH, dtype="float64", **HYPER)
        routers = [n for n in w if n.endswith("mlp.gate.weight")]
        assert max(((plain.final_weights[n] - ref[1][n]).abs().max() / ref[1][n].abs().max()).item()
                   for n in routers) > 1e-6
