"""CS-3 beside CS-2: the derived dense peak, the presets up to 2048 systems, cluster files that name
their generation, and the check of the CS-3 figures against measured CS-3 runs (reported and
bounded, never fitted)."""

import dataclasses
import json

import pytest

from models import zoo
from models.spec import ModelSpec
from wsim.engine import closed_form
from wsim.cluster import generations
from wsim.cluster import hardware
from wsim.studies.calibration import measured
from wsim.studies.calibration.fit import predict
from wsim.engine.run import SimOptions, Simulation, simulate
from wsim.errors import ConfigError
from wsim.cluster.job import TrainingJob


def test_cs3_dense_peak_is_derived_from_structure_not_the_sparse_figure():
    cs3 = generations.CS3
    assert cs3.peak_flops_per_s == pytest.approx(900_000 * 8 * 2 * 1.1e9)
    # the vendor's 125 PFLOP/s "peak AI" counts sparsity: never the dense peak
    assert cs3.peak_flops_per_s < 125e15 / 5
    # cross-checks (generations.py): 2 x the CS-2's dense 7.5 PF, and 125 PF x (7.5 / 62.5)
    for other in (2 * 7.5e15, 125e15 * 7.5e15 / 62.5e15):
        assert cs3.peak_flops_per_s == pytest.approx(other, rel=0.06)
    assert cs3.generation == "cs3" and cs3.label == "CS-3"
    assert (cs3.cores, cs3.sram_bytes, cs3.sram_bytes_per_s) == (900_000, 44e9, 21e15)
    assert cs3.io_bytes_per_s == pytest.approx(1.3 * hardware.CS2Spec().io_bytes_per_s)


@pytest.mark.parametrize("name,generation,systems", [
    ("cs2", "cs2", 1), ("andromeda", "cs2", 16), ("cs2-192", "cs2", 192), ("cg1", "cs2", 64),
    ("cs3", "cs3", 1), ("cs3-64", "cs3", 64), ("cs3-2048", "cs3", 2048)])
def test_presets(name, generation, systems):
    c = generations.load(name)
    assert (c.name, c.generation, c.systems) == (name, generation, systems)
    assert c.max_systems == (192 if generation == "cs2" else 2048)
    assert generations.load(name, 2).systems == 2


def test_condor_galaxy_1_has_its_published_memoryx():
    assert generations.preset("cg1").memoryx.capacity_bytes == 82e12


def test_cluster_size_limits_per_generation():
    with pytest.raises(ConfigError, match="max_systems 192"):
        generations.preset("cs2", 193)
    with pytest.raises(ConfigError, match="max_systems 2048"):
        generations.preset("cs3", 2049)
    with pytest.raises(ConfigError, match="unknown cluster preset"):
        generations.preset("cs4")


def test_cluster_file_names_its_generation(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"generation": "cs3", "systems": 300, "memoryx": {"capacity_bytes": 12e12}}))
    c = generations.load(str(path))
    assert c.generation == "cs3" and c.cs2 == generations.CS3 and c.systems == 300
    assert c.memoryx.capacity_bytes == 12e12
    assert c.memoryx.stream_bytes_per_s == generations.CS3_MEMORYX.stream_bytes_per_s
    assert generations.from_dict(c.to_dict()) == c  # round trip
    assert generations.from_dict({}).generation == "cs2"  # files without the key stay CS-2
    for bad, match in [({"generation": "cs4"}, "generation must be one of"),
                       ({"generation": "cs2", "cs2": {"generation": "cs3"}}, "disagree"),
                       ({"generation": "cs3", "systems": 2049}, "max_systems")]:
        with pytest.raises(ConfigError, match=match):
            generations.from_dict(bad)


def test_swarmx_tree_deepens_to_2048():
    job = TrainingJob(zoo.get("cerebras-gpt-111m"), seq=2048, batch_seqs=2048)
    r = simulate(job, generations.preset("cs3-2048"))
    assert r.extra["swarmx_depth"] == 6  # ceil(log4 2048)
    assert r.generation == "cs3" and r.systems == 2048
    assert closed_form.bandwidths(generations.preset("cs3-2048"))[2] == 7  # hops: 6 SwarmX levels + 1


def roomy(cluster, buffer_bytes=64e9):
    cs2 = cluster.cs2
    grown = buffer_bytes - cs2.weight_buffer_bytes
    return dataclasses.replace(cluster, cs2=dataclasses.replace(
        cs2, weight_buffer_bytes=buffer_bytes, sram_bytes=cs2.sram_bytes + grown))


@pytest.mark.parametrize("name,n,spp", [("cerebras-gpt-1.3b", 1, 8), ("cerebras-gpt-13b", 2048, 8),
                                        ("cerebras-gpt-6.7b", 64, 2)])
def test_cs3_engine_matches_closed_form_without_contention(name, n, spp):
    job = TrainingJob(zoo.get(name), seq=2048, batch_seqs=n * spp)
    cluster = roomy(generations.preset("cs3", n))
    assert simulate(job, cluster).step_time_s == pytest.approx(closed_form.step_time(job, cluster).step_time_s,
                                                               rel=0.01)


def test_cs3_symmetry_changes_no_answer():
    model = ModelSpec("small", layers=3, hidden=256, heads=4, vocab=1000, positions=512)
    job = TrainingJob(model, seq=512, batch_seqs=3 * 70)
    cluster = generations.preset("cs3", 70)
    full = Simulation(job, cluster, SimOptions(symmetry=False)).run()
    sym = Simulation(job, cluster, SimOptions(symmetry=True)).run()
    assert full.step_time_s == sym.step_time_s and full.breakdown == sym.breakdown


# ---- the check against measured CS-3 runs ------------------------------------------------------
# The ALCF logs of GPT-J 6B at batch 120 (wsim.studies.calibration.measured: 1 CS-3, release 2.5/2.6, 44.75
# samples/s; 2 CS-2, release 2.0.3, 43.67 samples/s), with the exact GPT-J spec (models.zoo).
# Tolerance: wsim's wafer model is fitted on 2024 CS-2 measurements (Zhang et al.); against ALCF's
# CS-2 logs it is +4% (LLaMA-7B, R2.1.1) to +23% (GPT-J, R1.9.2): a band of +-25% holds the absolute
# CS-3 figure to what the CS-2 model achieves; the CS-3/CS-2 ratio, where software release effects
# largely cancel, to 10%.
ABS_TOL, RATIO_TOL = 0.25, 0.10
CS3_ROW = next(r for r in measured.rows() if r.label == "GPT-J 6B b120 on 1 CS-3 (ALCF)")
CS2_ROW = next(r for r in measured.rows() if r.label == "GPT-J 6B b120 on 2 CS-2 (ALCF)")
GPTJ = CS3_ROW.model


def test_cs3_figures_against_measured_gpt_j():
    cs3 = predict(CS3_ROW, method="engine").samples_per_s
    cs2 = predict(CS2_ROW, method="engine").samples_per_s
    ratio, measured_ratio = cs3 / (cs2 / 2), CS3_ROW.samples_per_s / (CS2_ROW.samples_per_s / 2)
    print(f"\nGPT-J 6B b120 on 1 CS-3: wsim {cs3:.2f} samples/s, measured {CS3_ROW.samples_per_s} "
          f"({cs3 / CS3_ROW.samples_per_s - 1:+.1%}); on 2 CS-2: wsim {cs2:.2f}, measured "
          f"{CS2_ROW.samples_per_s} ({cs2 / CS2_ROW.samples_per_s - 1:+.1%}); CS-3 / CS-2 per system: "
          f"wsim {ratio:.2f}, measured {measured_ratio:.2f}")
    assert abs(cs3 / CS3_ROW.samples_per_s - 1) <= ABS_TOL
    assert abs(ratio / measured_ratio - 1) <= RATIO_TOL
    # had the sparse 125 PF been taken as the dense peak, the CS-3 would be several times too fast
    sparse_as_dense = dataclasses.replace(generations.CS3, peak_flops_per_s=125e15)
    c = dataclasses.replace(generations.preset("cs3", 1), cs2=sparse_as_dense)
    wrong = 120 / simulate(TrainingJob(GPTJ, seq=2048, batch_seqs=120), c).step_time_s
    assert wrong > 3 * CS3_ROW.samples_per_s
