"""Sparse weight streaming, functionally (``wsim/functional/sparse.py``): weight-streamed training of a
masked model equals the same masked model trained by transformers with ``torch.optim.AdamW`` on the
whole batch, for every family (the MoE ones with masks on every stacked expert), 1, 2 and 4 CS-2s, densities 0.5 and 0.25 on the blocks only and on
every kind (GPT-2's tied head included), within the house tolerances (float64: losses 1e-10
relative, every parameter within 1e-9 of its tensor's largest magnitude); masked entries end exactly
0; the masks follow the rule the timing model counts; and the check has teeth: an unmasked gradient
or a wrong mask on the wafer breaks it."""

import pytest
import torch

from wsim.cluster import generations
from wsim.engine.run import simulate
from wsim.errors import ConfigError
from wsim.functional import sparse
from wsim.functional.executor import TrainingPayload
from wsim.functional.train import spec_from_config, train
from wsim.cluster.job import TrainingJob
from wsim.cluster.sparsity import Density, matrix_params
from tests.tiny_models import ALL_FAMILIES, adamw_reference, hf_model, perturbed, tiny
from tests.tiny_models import worst as _worst

STEPS, BATCH, SEQ = 3, 8, 16  # 8 rows divide over 1, 2 and 4 systems
HYPER = dict(lr=2e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
SCOPES = {"block": lambda d: Density(block=d), "all": Density.of}
MASK_SEED = 7


def setup(family, seed=1, **overrides):
    cfg = tiny(family, **overrides)  # GPT-2's tiny model ties its head, the others do not
    w = perturbed(cfg, torch.float64, seed, scale=0.01)
    data = torch.randint(0, 101, (STEPS * BATCH, SEQ + 1), generator=torch.Generator().manual_seed(seed))
    return cfg, w, data


_REF: dict = {}


def transformers_masked(family, density: Density):
    """transformers' model holding the masked weights, the whole batch, AdamW (decay on >= 2-D
    tensors), every masked gradient zeroed (``masked_fill``) after ``backward`` and before ``step``."""
    key = (family, density)
    if key in _REF:
        return _REF[key]
    cfg, w, data = setup(family)
    masks = sparse.masks(cfg, density, MASK_SEED)
    model = hf_model(cfg, {n: sparse.apply(t, masks[n]) if n in masks else t for n, t in w.items()})
    losses, final = adamw_reference(cfg, model, data, STEPS, BATCH, HYPER, masks)
    _REF[key] = (losses, final, masks)
    return _REF[key]


def worst(report, ref):
    losses, weights, _ = ref
    return _worst(report, losses, weights)


# ---- the rule -----------------------------------------------------------------------------------

@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_the_masked_tensors_are_the_timing_models_weight_matrices(family, tied):
    """Per family, the tensors each kind's density masks hold exactly the entries
    ``sparsity.matrix_params`` counts for that layer (the timing side's rule), no bias, norm gain or
    position table among them; each mask keeps round(d * n) entries."""
    cfg = tiny(family, tie_word_embeddings=tied)
    spec = cfg.spec("tiny")
    shapes = cfg.param_shapes()
    names = sparse.sparse_tensors(cfg)
    numel = {n: torch.Size(s).numel() for n, s in shapes.items()}
    layers = spec.layer_specs(SEQ, 2)
    for kind in ("embedding", "block", "head"):  # summed over the kind's layers (MoE blocks differ)
        assert sum(numel[n] for n in names[kind]) == sum(matrix_params(l, spec) for l in layers if l.kind == kind)
    # matrices, and an MoE block's stacked experts (all of them: every expert is streamed)
    assert all(len(shapes[n]) >= 2 for ns in names.values() for n in ns)
    assert (names["head"] == names["embedding"]) == tied
    density = Density(embedding=0.3, block=0.25, head=0.3 if tied else 0.7)
    masks = sparse.masks(cfg, density, 0)
    assert set(masks) == {n for ns in names.values() for n in ns}
    for kind, ns in names.items():
        for n in ns:
            assert masks[n].shape == shapes[n] and masks[n].dtype == torch.bool
            assert int(masks[n].sum()) == round(density.of_kind(kind) * numel[n])
    frac = sparse.nonzero_fraction(cfg, masks)
    for kind, ns in names.items():
        kept = sum(round(density.of_kind(kind) * numel[n]) for n in ns)
        assert frac[kind] == kept / sum(numel[n] for n in ns)


def test_masks_are_reproducible_seeded_and_nested():
    cfg = tiny("llama")
    a, b = sparse.masks(cfg, Density.of(0.5), 3), sparse.masks(cfg, Density.of(0.5), 3)
    other = sparse.masks(cfg, Density.of(0.5), 4)
    quarter = sparse.masks(cfg, Density.of(0.25), 3)
    for n in a:
        assert torch.equal(a[n], b[n])
        assert not torch.equal(a[n], other[n])
        assert not (quarter[n] & ~a[n]).any()  # one seed: a lower density keeps a subset
    assert sparse.masks(cfg, Density(block=0.5), 3).keys() == set(sparse.sparse_tensors(cfg)["block"])
    assert sparse.nonzeros(10, 0.25) == 2 and sparse.nonzeros(10, 0.35) == 4  # halves to even
    assert sparse.nonzeros(3, 0.1) == 0  # a tiny tensor at a tiny density keeps nothing


# ---- the equivalence ----------------------------------------------------------------------------

@pytest.mark.parametrize("systems", [1, 2, 4])
@pytest.mark.parametrize("d", [0.5, 0.25])
@pytest.mark.parametrize("scope", ["block", "all"])
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_masked_training_matches_transformers(family, scope, d, systems):
    density = SCOPES[scope](d)
    cfg, w, data = setup(family)
    ref = transformers_masked(family, density)
    r = train(cfg, w, data, systems=systems, steps=STEPS, batch=BATCH, dtype="float64",
              density=density, mask_seed=MASK_SEED, **HYPER)
    dl, dw = worst(r, ref)
    assert dl < 1e-10 and dw < 1e-9, (dl, dw)
    masks = ref[2]
    for n, m in masks.items():
        assert (r.final_weights[n][~m] == 0).all() and (ref[1][n][~m] == 0).all(), n
        assert (r.final_weights[n][m] != 0).all(), n  # the kept entries trained
    assert r.density == density.to_dict() and r.mask_seed == MASK_SEED
    assert r.nonzero_fraction == sparse.nonzero_fraction(cfg, masks)
    assert r.nonzero_fraction["block"] == pytest.approx(d, abs=1e-3)
    assert r.weights_held_between_passes == 0 and r.weight_bytes_held_between_passes == 0


def test_density_one_is_the_dense_run_bit_for_bit():
    cfg, w, data = setup("gpt_neox")
    kw = dict(systems=2, steps=2, batch=BATCH, dtype="float64", **HYPER)
    dense = train(cfg, w, data, **kw)
    for density in (1, 1.0, Density(), {"block": 1}):
        r = train(cfg, w, data, density=density, mask_seed=5, **kw)
        assert r.losses == dense.losses and r.simulated_step_time_s == dense.simulated_step_time_s
        assert all(torch.equal(r.final_weights[n], t) for n, t in dense.final_weights.items())
        assert r.nonzero_fraction == {"embedding": 1.0, "block": 1.0, "head": 1.0}


def test_resumed_sparse_run_equals_one_run_and_masks_a_dense_state():
    """Two calls (the second resuming the first's AdamW state) equal one call bit for bit; resuming
    a dense run's state under a mask drops the masked entries' moments, so they stay at 0."""
    cfg, w, data = setup("llama")
    kw = dict(systems=2, batch=BATCH, dtype="float64", density=0.5, **HYPER)
    whole = train(cfg, w, data, steps=2, **kw)
    first = train(cfg, w, data, steps=1, **kw)
    second = train(cfg, first.final_weights, data, steps=1, first_step=1,
                   optimizer_state=first.optimizer_state, **kw)
    assert first.losses + second.losses == whole.losses
    assert all(torch.equal(second.final_weights[n], t) for n, t in whole.final_weights.items())
    dense = train(cfg, w, data, steps=1, **{**kw, "density": 1})
    r = train(cfg, dense.final_weights, data, steps=1, first_step=1,
              optimizer_state=dense.optimizer_state, **kw)
    for n, m in sparse.masks(cfg, Density.of(0.5)).items():
        assert (r.final_weights[n][~m] == 0).all()


def test_the_simulated_step_time_uses_the_density():
    cfg, w, data = setup("gpt2")
    density = Density(block=0.25)
    r = train(cfg, w, data, systems=2, steps=1, batch=BATCH, micro_batches=2, density=density, **HYPER)
    cluster = generations.preset("cs2", 2)
    job = TrainingJob(spec_from_config(cfg), seq=SEQ, batch_seqs=BATCH, micro_batches=2, density=density)
    assert r.simulated_step_time_s == simulate(job, cluster).step_time_s
    dense = TrainingJob(spec_from_config(cfg), seq=SEQ, batch_seqs=BATCH, micro_batches=2)
    assert r.simulated_step_time_s < simulate(dense, cluster).step_time_s


@pytest.mark.parametrize("bad,needle", [
    (dict(density=0), "(0, 1]"), (dict(density=1.5), "(0, 1]"), (dict(density="0.5"), "density"),
    (dict(density={"blocks": 0.5}), "kinds must be among"), (dict(density=True), "density"),
    (dict(density={"embedding": 0.5}), "ties the embedding"),  # tiny GPT-2 ties its head
    (dict(mask_seed=1.5), "mask_seed"), (dict(mask_seed=True), "mask_seed"),
])
def test_bad_sparse_arguments_are_refused(bad, needle):
    cfg, w, data = setup("gpt2")
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("]", r"\]")):
        train(cfg, w, data, steps=1, batch=BATCH, **bad)


# ---- the teeth ----------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_an_unmasked_gradient_breaks_the_invariant_and_the_equivalence(family, monkeypatch):
    """The CS-2s forget to mask one tensor's gradient: MemoryX's invariant check stops the run at
    the first update of that tensor; with the check off, the run ends far from the reference."""
    density = Density.of(0.5)
    cfg, w, data = setup(family)
    kw = dict(systems=2, steps=STEPS, batch=BATCH, dtype="float64", density=density,
              mask_seed=MASK_SEED, **HYPER)
    monkeypatch.setattr(TrainingPayload, "unmasked_gradient_fault", True)
    with pytest.raises(RuntimeError, match="masked entries of .* moved off zero"):
        train(cfg, w, data, **kw)
    monkeypatch.setattr(TrainingPayload, "check_mask_invariant", False)
    r = train(cfg, w, data, **kw)
    _, dw = worst(r, transformers_masked(family, density))
    assert dw > 1e-3, dw


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_a_wrong_mask_on_the_wafer_breaks_the_equivalence(family, monkeypatch):
    """The CS-2s compute with the weights re-masked by other masks of the same density (each shifted
    by one entry): MemoryX's masters keep their zeros (the invariant cannot see it), the losses and
    weights part from the reference."""
    density = Density.of(0.5)
    cfg, w, data = setup(family)
    monkeypatch.setattr(TrainingPayload, "wrong_mask_fault", True)
    r = train(cfg, w, data, systems=2, steps=STEPS, batch=BATCH, dtype="float64", density=density,
              mask_seed=MASK_SEED, **HYPER)
    dl, dw = worst(r, transformers_masked(family, density))
    assert dl > 1e-4 and dw > 1e-3, (dl, dw)
