"""The CS-3 Llama rows found after the mechanism study (issue 18, items 2-3): Llama-2-7B at batch 32 to
2048 and Llama-3-8B on one CS-3, the batch dependence they show, and the per-step candidates tried on it
(wsim/studies/calibration/batch_sweep.py, mechanisms.py; docs/wafer-model.md "The batch dependence").
Every figure pinned as the docs print it."""

import pytest

from wsim.cluster import generations
from wsim.studies.calibration import batch_sweep as B
from wsim.studies.calibration import fit as F
from wsim.studies.calibration import measured
from wsim.studies.calibration import mechanisms as X

L3 = "Llama-3-8B b960 on 1 CS-3 (ALCF)"
MISS = 0.15  # the bound on a measured row: beyond it a row is a named miss
# Closed form, defaults (the engine agrees within 0.5%, below). Every one is beyond MISS: named misses.
PINNED = {"Llama-2-7B b32 on 1 CS-3 (ALCF, Lee)": +0.551, "Llama-2-7B b64 on 1 CS-3 (ALCF, Lee)": +0.414,
          "Llama-2-7B b128 on 1 CS-3 (ALCF, Lee)": +0.368, "Llama-2-7B b256 on 1 CS-3 (ALCF, Xie)": +0.352,
          "Llama-2-7B b512 on 1 CS-3 (ALCF, Nguyen)": +0.335,
          "Llama-2-7B b1024 on 1 CS-3 (ALCF, Nguyen)": +0.344,
          "Llama-2-7B b2048 on 1 CS-3 (ALCF, Xie)": +0.304, L3: +1.088}


@pytest.fixture(scope="module")
def sweep():
    return B.sweep_rows()


def test_new_rows_are_validation_with_sources():
    new = {r.label: r for r in measured.CS3_LLAMA_ROWS}
    assert set(new) == set(PINNED)
    for r in new.values():
        assert r.role == "validation" and r.generation == "cs3" and r.systems == 1
        assert "commit" in r.source and r.release != "not stated" and r.seq == 2048 and r.note
    assert new[L3].model.vocab == 128256 and new[L3].batch == 960


@pytest.mark.parametrize("label", list(PINNED))
def test_new_rows_are_named_misses_at_their_pinned_error(label):
    row = next(r for r in measured.rows() if r.label == label)
    err = F.predict(row).error
    assert err == pytest.approx(PINNED[label], abs=0.002)
    assert err > MISS  # optimistic beyond the bound: reported as a miss, not hidden


def test_engine_and_closed_form_agree_on_the_new_rows():
    for r in measured.CS3_LLAMA_ROWS:
        assert F.predict(r, method="engine").samples_per_s == pytest.approx(F.predict(r).samples_per_s, rel=0.005)


def test_leave_one_out_is_unchanged_by_the_validation_rows():
    """Recomputed: the new rows are never fitted on, so the fit and its leave-one-out are those of the
    development set alone, and each new row's leave-one-out error is its prediction."""
    dev = measured.rows("development")
    assert not [r for r in dev if r.generation == "cs3"]
    f = F.fit(dev)
    assert f.matmul_peak_fraction == pytest.approx(0.4597, abs=5e-5)
    loo = F.leave_one_out(dev)
    assert max(abs(p.error) for _, _, p, _ in loo) == pytest.approx(0.047, abs=0.002)
    for r in measured.CS3_LLAMA_ROWS:  # held out by construction
        assert F.predict(r, F.fitted_cs2(f)).error == pytest.approx(PINNED[r.label], abs=0.002)


def test_measured_throughput_rises_with_batch_and_falls_16_percent_at_32(sweep):
    rates = [r.samples_per_s for r in sweep]
    assert [r.batch for r in sweep] == [32, 64, 128, 256, 512, 1024, 2048]
    assert rates[:5] == sorted(rates[:5])  # 32 -> 512 rising; 512 -> 2048 flat within 3.1%
    assert max(rates[4:]) / min(rates[4:]) < 1.032
    assert rates[0] / rates[-1] == pytest.approx(0.836, abs=0.001)


def test_the_model_rises_monotonically_but_misses_the_small_batch_fall(sweep):
    """Every plan of the sweep is compute-bound (32 sequences = 65,536 tokens, above the CS-3's balance
    point), so the model's throughput rises with batch by half a per cent only: the measured fall of
    16% at batch 32 is a named miss."""
    sh = B.shape()
    pred = [sh["predicted"][r.batch] for r in sweep]
    assert pred == sorted(pred)
    assert sh["relative_predicted"][32] > 0.99
    assert sh["relative_measured"][32] < 0.84


def test_a_fixed_cost_per_step_is_the_shape(sweep):
    """t(B) = t0 + B / r fits the seven points within 1.5% (rms 0.9%); left out one at a time, each is
    predicted within 3% and t0 stays within 0.14-0.18 s."""
    fit = B.fit_step_cost(sweep)
    assert fit.fixed_s == pytest.approx(0.167, abs=0.002)
    assert fit.plateau_samples_per_s == pytest.approx(33.74, abs=0.02)
    assert fit.rms < 0.01 and max(abs(e) for _, e in fit.residuals) < 0.016
    loo = B.leave_one_out(sweep)
    assert all(0.14 < t0 < 0.18 and abs(e) < 0.03 for _, t0, e in loo)


def test_the_cs2_pairs_refuse_a_per_step_cost_of_that_size():
    """Zhang et al.'s batch-128 and batch-256 steps on one CS-2 show at most 0.083 s a step (20B) and
    0.026 s for 590M-13B: a per-step cost growing with the parameters at the CS-3 sweep's 25 ps a
    parameter would be 0.32 s for 13B."""
    costs = B.zhang_step_costs()
    assert max(c for _, _, c in costs) == pytest.approx(0.083, abs=0.001)
    assert max(c for tag, _, c in costs if tag != "20B") < 0.027
    per_param = B.fit_step_cost(B.sweep_rows()).fixed_s / B.sweep_rows()[0].model.params
    assert per_param * dict((t, p) for t, p, _ in costs)["13B"] > 10 * 0.027


def test_per_step_candidates_reproduce_the_fall_but_break_the_cs2_fit():
    fit = B.fit_step_cost(B.sweep_rows())
    fixed = B.shape(X.Setting("step_fixed", fit.fixed_s))
    assert fixed["relative_predicted"][32] == pytest.approx(0.80, abs=0.01)
    e = fixed["all_errors"]
    assert max(abs(v) for k, v in e.items() if "ALCF" not in k) > 0.25  # the small models
    rate = generations.preset("cs3").memoryx.optimizer_params_per_s
    f = B.sweep_rows()[0].model.params / (fit.fixed_s * rate)
    assert f == pytest.approx(0.31, abs=0.005)
    upd = B.shape(X.Setting("step_update", f))
    assert upd["relative_predicted"][32] == pytest.approx(0.81, abs=0.01)
    zhang = max(abs(v) for k, v in upd["all_errors"].items() if "ALCF" not in k)
    assert zhang == pytest.approx(0.057, abs=0.002) and zhang > 0.042 + 0.001  # beyond the tolerance
    assert upd["all_errors"][X.LLAMA_CS3] > MISS and upd["all_errors"][L3] > 1.0  # the gaps stay


def test_the_vocabulary_cannot_carry_llama3():
    """The head of Llama-3's 128k vocabulary would have to be 80x costlier to make its row exact,
    which wrecks the Zhang et al. fit (GPT-3 shapes with a 50k head) and leaves Llama-2 +52%."""
    eta, e = X.errors(X.Setting("head", 80.4))
    assert abs(e[L3]) < 0.01
    assert max(abs(v) for k, v in e.items() if "ALCF" not in k) > 0.5
    assert e[X.LLAMA_CS3] > 0.4
