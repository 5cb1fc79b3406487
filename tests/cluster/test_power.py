"""Cluster power and energy per step: the published Andromeda total, linear in systems, energy =
power x step time, in the JSON and the human output of ``wsim simulate``."""

import dataclasses
import json

import pytest

from models import zoo
from wsim.cluster import generations
from wsim.cluster import hardware
from wsim.cluster import power
from wsim.commands.cli import main
from wsim.engine.run import simulate
from wsim.errors import ConfigError
from wsim.cluster.job import TrainingJob


def test_andromeda_draws_its_published_500_kw():
    """Tom's Hardware (2022-11-14): "The entire system consumes 500 KW" for 16 CS-2 and their servers."""
    assert power.cluster_power_w(generations.preset("andromeda")) == pytest.approx(500e3, rel=1e-3)


def test_power_is_linear_in_systems_and_split_by_part():
    one = power.cluster_power_w(generations.preset("cs2", 1))
    assert power.cluster_power_w(generations.preset("cs2", 64)) == pytest.approx(64 * one)
    parts = power.power_breakdown_w(generations.preset("cs2", 8))
    assert parts["systems_w"] == 8 * 23e3
    assert sum(parts.values()) == pytest.approx(8 * one)


def test_cs3_draws_what_a_cs2_draws():
    """Kundu et al. 2025 Table 1: 23 kW per CS-3; the vendor: the WSE-3 uses the WSE-2's power."""
    assert generations.CS3_POWER.system_w == hardware.PowerSpec().system_w
    assert power.cluster_power_w(generations.preset("cs3", 8)) == power.cluster_power_w(generations.preset("cs2", 8))


def test_energy_per_step_is_power_times_step_time():
    job = TrainingJob(zoo.get("cerebras-gpt-111m"), seq=2048, batch_seqs=32)
    r = simulate(job, generations.preset("cs2", 4))
    assert r.power_w == power.cluster_power_w(generations.preset("cs2", 4))
    assert r.energy_per_step_j == pytest.approx(r.power_w * r.step_time_s, rel=1e-12)
    assert sum(r.extra["power_breakdown_w"].values()) == pytest.approx(r.power_w)


def test_power_figures_validate():
    with pytest.raises(ConfigError, match="power.server_w"):
        hardware.PowerSpec(server_w=-1.0)
    with pytest.raises(ConfigError, match="unknown power key"):
        generations.from_dict({"power": {"watts": 1}})
    quiet = generations.from_dict({"power": {"servers_per_system": 0, "network_w_per_system": 0}})
    assert power.cluster_power_w(quiet) == 23e3
    with pytest.raises(ConfigError, match="ClusterSpec"):
        power.cluster_power_w("cs2")


def test_simulate_reports_power_and_energy(capsys):
    code = main(["simulate", "--model", "cerebras-gpt-111m", "--cluster", "cs3", "--systems", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["generation"] == "cs3"
    assert out["energy_per_step_j"] == pytest.approx(out["power_w"] * out["step_time_s"])
    code = main(["simulate", "--model", "cerebras-gpt-111m", "--cluster", "cs3"])
    text = capsys.readouterr().out
    assert code == 0 and "on 1 CS-3" in text and "power" in text and "kWh per step" in text


def test_a_faster_generation_saves_energy_at_equal_power():
    job = TrainingJob(zoo.get("cerebras-gpt-1.3b"), seq=2048, batch_seqs=64)
    cs2 = simulate(job, generations.preset("cs2", 8))
    cs3 = simulate(job, generations.preset("cs3", 8))
    assert cs3.power_w == cs2.power_w and cs3.energy_per_step_j < cs2.energy_per_step_j
    # the support servers' figure (an assumption) moves the energy, not the time
    half = dataclasses.replace(generations.preset("cs2", 8), power=hardware.PowerSpec(server_w=200.0))
    assert simulate(job, half).energy_per_step_j < cs2.energy_per_step_j
