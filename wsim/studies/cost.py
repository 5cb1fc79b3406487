"""What a training run costs: its energy at an electricity price, and (if the user gives them) the
hours of hardware at a rental price. A ``PriceTable`` the user can override (``wsim compare
--prices prices.json``).

    energy cost   = energy (kWh) x PUE x electricity price
    hardware cost = sum over devices of device-hours x price per device-hour (a CS system, a GPU)

No rental price per CS-2 or CS-3 hour is published, and GPU cloud list prices move by tens of per
cent within a year, so the default table has none: hardware cost is reported only for the devices
the user prices, and the report says which were left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from wsim.errors import ConfigError, positive, require

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class PriceTable:
    # U.S. Energy Information Administration, Electric Power Annual 2023 (released 2024-10-17),
    # average revenue per kWh, industrial sector, U.S. total: 8.06 cents/kWh.
    electricity_usd_per_kwh: float = 0.0806
    # Assumption: 1.0 counts the IT load only (what wsim's power figures are). Set the facility's
    # power usage effectiveness to include cooling and distribution.
    pue: float = 1.0
    # Price per device-hour by device name: "cs2", "cs3" (one system with its share of MemoryX,
    # SwarmX and servers) or a GPU name of wsim.gpu ("a100-80gb", ...; one GPU). None published
    # for CS systems; none set by default (see the module docstring).
    usd_per_device_hour: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive("prices.electricity_usd_per_kwh", self.electricity_usd_per_kwh)
        positive("prices.pue", self.pue)
        require(self.pue >= 1.0, f"prices.pue must be at least 1 (IT load only), got {self.pue!r}")
        require(isinstance(self.usd_per_device_hour, dict),
                f"prices.usd_per_device_hour must be an object of device: price, got "
                f"{self.usd_per_device_hour!r}")
        from models.suggest import hint
        from wsim.cluster.generations import GENERATIONS
        from wsim.gpu import GPUS

        devices = sorted(GENERATIONS) + sorted(GPUS)
        for k, v in self.usd_per_device_hour.items():
            require(isinstance(k, str), f"prices.usd_per_device_hour keys must be device names, got {k!r}")
            # an unknown name would never be priced: refused rather than silently unused
            require(k in devices, f"prices.usd_per_device_hour: unknown device {k!r}; {hint(k, devices)}")
            positive(f"prices.usd_per_device_hour[{k!r}]", v)

    def to_dict(self) -> dict:
        return {"electricity_usd_per_kwh": self.electricity_usd_per_kwh, "pue": self.pue,
                "usd_per_device_hour": dict(self.usd_per_device_hour)}


def load(path: str | None) -> PriceTable:
    """The default table, or one read from a JSON file with any of its three keys."""
    if path is None:
        return PriceTable()
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"price table {path!r} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"price table {path!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"price table {path!r} must be a JSON object")
    allowed = {"electricity_usd_per_kwh", "pue", "usd_per_device_hour"}
    bad = set(data) - allowed
    require(not bad, f"unknown price table key(s) {sorted(bad)}; allowed: {sorted(allowed)}")
    return PriceTable(**data)


def cost(energy_j: float, device: str, device_hours: float, prices: PriceTable) -> dict:
    """Energy (kWh), its cost, and the hardware cost if ``prices`` has the device (else None)."""
    kwh = energy_j / J_PER_KWH
    energy_usd = kwh * prices.pue * prices.electricity_usd_per_kwh
    rate = prices.usd_per_device_hour.get(device)
    hardware_usd = None if rate is None else device_hours * rate
    return {"energy_kwh": kwh, "energy_usd": energy_usd, "device": device, "device_hours": device_hours,
            "hardware_usd": hardware_usd,
            "total_usd": energy_usd + (hardware_usd or 0.0) if hardware_usd is not None else None}
