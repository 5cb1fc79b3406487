"""Energy and cost to train (wsim.studies.cost, wsim compare --prices): arithmetic, refusals, what is charged."""

import json

import pytest

from wsim.studies.compare import compare
from wsim.studies.cost import J_PER_KWH, PriceTable, cost, load
from wsim.errors import ConfigError
from wsim.cluster.power import cluster_power_w
from wsim.cluster import generations


def test_energy_cost_is_kwh_times_pue_times_price():
    c = cost(10 * J_PER_KWH, "cs2", 3.0, PriceTable(electricity_usd_per_kwh=0.1, pue=1.5))
    assert c["energy_kwh"] == pytest.approx(10.0) and c["energy_usd"] == pytest.approx(1.5)
    assert c["hardware_usd"] is None and c["total_usd"] is None  # no hourly price: nothing invented
    priced = cost(10 * J_PER_KWH, "cs2", 3.0, PriceTable(usd_per_device_hour={"cs2": 100.0}))
    assert priced["hardware_usd"] == pytest.approx(300.0)
    assert priced["total_usd"] == pytest.approx(300.0 + 10 * 0.0806)


@pytest.mark.parametrize("data,needle", [({"pue": 0.9}, "pue"), ({"electricity_usd_per_kwh": -1}, "electricity"),
                                         ({"usd_per_device_hour": {"cs2": 0}}, "cs2"), ({"euro": 1}, "unknown"),
                                         ([1], "object")])
def test_bad_price_tables_are_refused(tmp_path, data, needle):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=needle):
        load(str(path))


def test_compare_energy_is_power_times_time():
    r = compare("cerebras-gpt-111m", gpu=("a100-80gb",), method="analytic", basis="fastest").to_dict()
    c = r["cs2"]
    p = cluster_power_w(generations.preset("cs2", 1))
    assert c["energy_j"] == pytest.approx(p * c["time_to_train_s"], rel=1e-12)
    assert c["cost"]["energy_kwh"] == pytest.approx(c["energy_j"] / J_PER_KWH)
    g = r["gpu"][0]
    assert g["energy_j"] == pytest.approx(g["power_w"] * g["time_to_train_s"], rel=1e-9)
    assert r["extra"]["prices"]["electricity_usd_per_kwh"] == 0.0806
