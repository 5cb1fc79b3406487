"""Weight-streamed training of Llama, GPT-J and GPT-NeoX through the engine equals transformers' own
model trained with ``torch.optim.AdamW`` on the whole batch (docs/design.md, "Numerical equivalence":
float64, losses within 1e-10 relative, every parameter within 1e-9 of its tensor's largest
magnitude), for 1, 2 and 4 CS-2s; and the check has teeth: a stale-weight schedule or a dropped
gradient breaks it, for every family."""

import pytest
import torch

from wsim.engine.run import SimOptions
from wsim.functional.executor import TrainingPayload
from wsim.functional.train import train
from tests.tiny_models import ALL_FAMILIES, NEW_FAMILIES, adamw_reference, hf_model, perturbed, tiny
from tests.tiny_models import worst as _worst

STEPS, BATCH, SEQ = 4, 8, 16  # 8 rows divide over 1, 2 and 4 systems
HYPER = dict(lr=2e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
TIED = {"llama": dict(tie_word_embeddings=True, attention_bias=True, mlp_bias=True),
        "gptj": dict(tie_word_embeddings=True), "gpt_neox": dict(tie_word_embeddings=True, use_parallel_residual=False),
        "mixtral": dict(tie_word_embeddings=True, num_experts_per_tok=1),
        "qwen2_moe": dict(tie_word_embeddings=True, norm_topk_prob=True, qkv_bias=False, mlp_only_layers=(),
                          decoder_sparse_step=2),
        "qwen3_moe": dict(tie_word_embeddings=True, attention_bias=True, norm_topk_prob=False, num_experts_per_tok=3)}


def setup(family, variant=None, seed=1):
    cfg = tiny(family, **(TIED[family] if variant == "tied" else {}))
    w = perturbed(cfg, torch.float64, seed, scale=0.01)
    data = torch.randint(0, 101, (STEPS * BATCH, SEQ + 1), generator=torch.Generator().manual_seed(seed))
    return cfg, w, data


_REF: dict = {}


def transformers_trained(family, variant=None):
    """transformers' model, the whole batch, AdamW with decay on >= 2-D tensors (biases and norm
    gains not), the loss taken on its logits (its labels= loss casts logits to float32)."""
    if (family, variant) in _REF:
        return _REF[family, variant]
    cfg, w, data = setup(family, variant)
    losses, final = adamw_reference(cfg, hf_model(cfg, w, torch.float64), data, STEPS, BATCH, HYPER)
    _REF[family, variant] = (losses, final)
    return _REF[family, variant]


def worst(report, ref):
    return _worst(report, *ref)


@pytest.mark.parametrize("systems", [1, 2, 4])
@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_float64_matches_transformers(family, systems):
    cfg, w, data = setup(family)
    ref = transformers_trained(family)
    r = train(cfg, w, data, systems=systems, steps=STEPS, batch=BATCH, dtype="float64", **HYPER)
    dl, dw = worst(r, ref)
    assert dl < 1e-10 and dw < 1e-9, (dl, dw)
    assert r.weights_held_between_passes == 0 and r.weight_bytes_held_between_passes == 0
    # the training moved every tensor well beyond the tolerance
    assert min(((t - w[n]).abs().max() / w[n].abs().max()).item() for n, t in ref[1].items()) > 1e-4


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_tied_head_biases_and_micro_batches_match(family):
    """Tied heads (the embedding's gradient sums both uses; GPT-J keeps its head bias), Llama with
    biases, sequential GPT-NeoX, two micro-batches per CS-2."""
    cfg, w, data = setup(family, "tied")
    r = train(cfg, w, data, systems=2, steps=STEPS, batch=BATCH, dtype="float64", micro_batches=2, **HYPER)
    assert r.micro_batches == 2
    dl, dw = worst(r, transformers_trained(family, "tied"))
    assert dl < 1e-10 and dw < 1e-9, (dl, dw)


@pytest.mark.parametrize("fault", ["stale_weights_fault", "drop_gradient_fault"])
@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_a_broken_schedule_fails_the_equivalence(family, fault):
    cfg, w, data = setup(family)
    r = train(cfg, w, data, systems=4, steps=STEPS, batch=BATCH, dtype="float64",
              options=SimOptions(**{fault: True}), **HYPER)
    _, dw = worst(r, transformers_trained(family))
    assert dw > 1e-3


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_the_weight_holding_guard_fires_on_a_layer_that_keeps_weight_copies(family, monkeypatch):
    """A layer computing on ``weight * 1.0`` makes autograd keep a copy of every matrix until the
    backward. The result is still right (the equivalence cannot see it) and the streamed tensors
    are gone (weak references cannot see it); the saved-tensor guard counts the copies' bytes: at
    least every block matrix (an MoE block's stacked expert tensors too) and the head matrix, per
    CS-2 and step."""
    cfg, w, data = setup(family)
    steps, systems = 2, 2
    kw = dict(systems=systems, steps=steps, batch=BATCH, dtype="float64", **HYPER)
    clean = train(cfg, w, data, **kw)
    assert clean.weights_held_between_passes == 0 and clean.weight_bytes_held_between_passes == 0
    monkeypatch.setattr(TrainingPayload, "copy_weights_fault", True)
    leaky = train(cfg, w, data, **kw)
    assert leaky.losses == pytest.approx(clean.losses, rel=1e-12)  # the math is unchanged
    matrices = [n for n, s in cfg.param_shapes().items() if len(s) >= 2 and n != cfg.EMBEDDING_WEIGHT]
    per_pass = sum(torch.Size(cfg.param_shapes()[n]).numel() * 8 for n in matrices)  # float64 bytes
    assert leaky.weight_bytes_held_between_passes >= steps * systems * per_pass
    assert leaky.weights_held_between_passes >= steps * systems * len(matrices)
