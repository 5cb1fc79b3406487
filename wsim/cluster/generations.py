"""Hardware generations (CS-2, CS-3) and the named clusters (presets), as data.

A generation is the figures every part of a cluster starts from: the CS system (``CS2Spec``, whose
``generation`` says which), MemoryX, SwarmX, power and the largest cluster. The wafer compute model
(``wsim/cluster/wafer.py``) carries over unchanged: it reads cores, clock, FP16 peak, element-wise issue
rate and SRAM bandwidth from the system's own figures. Each CS-3 number below is sourced, derived
(the arithmetic is given) or an assumption (named); ``docs/hardware.md`` has the table and the check
against measured CS-3 runs.

Dense vs sparse peak: Cerebras quotes the WSE-3 at "125 petaflops of peak AI performance" (press
release, 2024-03-13); that figure counts sparsity. It quoted the WSE-2 the same way: Andromeda's
16 CS-2 are "1 exaflop" of AI compute and "120 petaflops of dense compute" at 16 bits (press
release, 2022-11-14), 62.5 and 7.5 PFLOP/s per CS-2. No dense CS-3 figure is published; wsim
derives it from structure (cores x SIMD lanes x 2 x clock) and checks it two other ways.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from wsim.cluster.hardware import (GENERATION_NAMES, ClusterSpec, CS2Spec, MemoryXSpec, PowerSpec,
                                  SwarmXSpec)
from models.suggest import hint
from wsim.errors import ConfigError, require

# ---- CS-3 (WSE-3) -----------------------------------------------------------------------------
# Cerebras WSE-3 press release (2024-03-13) and product page: 900,000 cores, 44 GB on-chip SRAM,
# 21 PB/s memory bandwidth, 214 Pb/s fabric.
WSE3_CORES = 900_000
# Assumption: the WSE-3's clock is not published; taken equal to the WSE-2's 1.1 GHz (Zhang et al.
# 2024, Table I). The vendor says the WSE-3 is "twice as powerful" as the WSE-2 "at the same power"
# (press release 2024-03-13): with 8 lanes (below) and 6% more cores that holds at this clock.
WSE3_CLOCK_HZ = 1.1e9
# An 8-wide FP16 SIMD per core (WSE-2: 4-wide). TERTIARY source (an unattributed architecture
# essay); consistent with Cerebras' documentation that the CS-3 "boosts the SIMD width"
# (training-docs.cerebras.ai, rel-2.10.0, "Cerebras Wafer-Scale Cluster") and with the WSE-2's
# "3.4 million floating point units" over 850,000 cores = 4 (M. James, Cerebras blog, 2021-09-14).
WSE3_FP16_LANES = 8
# DERIVED dense FP16 peak: 900,000 cores x 8 lanes x 2 FLOPs (multiply-add) x 1.1 GHz = 15.84
# PFLOP/s. Cross-checks: 2 x the CS-2's 7.5 (vendor "twice as powerful") = 15.0; the vendor's 125
# PFLOP/s "AI" figure scaled by the WSE-2's dense/AI ratio (7.5 / 62.5) = 15.0. Within 6%.
WSE3_DENSE_FP16_FLOPS = WSE3_CORES * WSE3_FP16_LANES * 2 * WSE3_CLOCK_HZ
# Cerebras docs (rel-2.10.0, above): the CS-3 "enhances the ingress/egress bandwidth by 30%" over
# the CS-2's 1.2 Tb/s (150 GB/s each way): 195 GB/s each way (derived).
CS3_IO_BYTES_PER_S = 150e9 * 1.3

CS3 = CS2Spec(
    generation="cs3",
    peak_flops_per_s=WSE3_DENSE_FP16_FLOPS,
    cores=WSE3_CORES,
    clock_hz=WSE3_CLOCK_HZ,
    sram_bytes_per_s=21e15,
    # Assumption: the CS-2's fitted fraction of peak (wsim/cluster/wafer.py) carries over: the same
    # compiler and kernels on wider cores. Checked, not fitted, against measured CS-3 runs
    # (docs/hardware.md; tests/cluster/test_generations.py).
    matmul_peak_fraction=CS2Spec().matmul_peak_fraction,
    # Assumption: element-wise work issues on the 8 FP16 lanes, as on the WSE-2's 4 (wsim/cluster/wafer.py);
    # at 21 PB/s and 4 bytes an operation SRAM bandwidth binds first on the WSE-3 (5.25e15 op/s).
    elementwise_ops_per_core_per_cycle=float(WSE3_FP16_LANES),
    # Assumption, as on the WSE-2: fill and drain cross the mesh of sqrt(cores) = 949 each way.
    pass_overhead_cycles=2 * math.sqrt(WSE3_CORES),
    sram_bytes=44e9,
    io_bytes_per_s=CS3_IO_BYTES_PER_S,
)
# Cerebras WSE-3 press release (2024-03-13): external memory of 1.5 TB, 12 TB or 1.2 PB; Kundu et
# al. 2025 (arXiv 2503.11698) Table 1: MemoryX 1.2 TB to 1,200 TB. The largest.
CS3_MEMORYX = MemoryXSpec(
    capacity_bytes=1.2e15,
    # Assumption, as for the CS-2: MemoryX streams and ingests at the CS-3's I/O rate.
    stream_bytes_per_s=CS3_IO_BYTES_PER_S,
    ingest_bytes_per_s=CS3_IO_BYTES_PER_S,
    # Assumption, as for the CS-2: the optimizer keeps pace with the backward stream (2 bytes a
    # parameter at 195 GB/s = 9.75e10 parameters/s) with the CS-2's one-third margin.
    optimizer_params_per_s=1.3e11,
)
# Assumption: SwarmX links scale with the systems' I/O (+30%): 12 ports of 130 Gb/s equivalent.
CS3_SWARMX = SwarmXSpec(port_bytes_per_s=12.5e9 * 1.3)
# Kundu et al. 2025 (arXiv 2503.11698) Table 1: 23 kW per CS-3; vendor: the WSE-3 "uses the same
# amount of power" as the WSE-2 (press release 2024-03-13). Servers and network: assumption, the
# CS-2 cluster's per-system figures (Andromeda, hardware.PowerSpec); ALCF's 4-CS-3 cluster has 40
# support servers, 10 per system (ALCF user guide, "Cerebras system overview").
CS3_POWER = PowerSpec(system_w=23_000.0)


@dataclass(frozen=True)
class Generation:
    name: str
    system: CS2Spec
    memoryx: MemoryXSpec
    swarmx: SwarmXSpec
    power: PowerSpec
    max_systems: int


GENERATIONS = {
    # Glossary "SwarmX" / Wafer-Scale Cluster product page: up to 192 CS-2 in one cluster.
    "cs2": Generation("cs2", CS2Spec(), MemoryXSpec(), SwarmXSpec(), PowerSpec(), 192),
    # Cerebras press release (2024-03-13): clusters of up to 2048 CS-3.
    "cs3": Generation("cs3", CS3, CS3_MEMORYX, CS3_SWARMX, CS3_POWER, 2048),
}


@dataclass(frozen=True)
class Preset:
    generation: str
    systems: int
    description: str
    memoryx_capacity_bytes: float | None = None  # the installation's own MemoryX, where published


PRESETS = {
    "cs2": Preset("cs2", 1, "one CS-2 with its MemoryX and SwarmX"),
    # Cerebras press release (2022-11-14); Tom's Hardware (2022-11-14).
    "andromeda": Preset("cs2", 16, "Andromeda: 16 CS-2"),
    "cs2-192": Preset("cs2", 192, "the largest CS-2 cluster (glossary \"SwarmX\")"),
    # Cerebras blog "Introducing Condor Galaxy 1" (2023-07): 64 CS-2, "82 terabytes of parameter
    # memory".
    "cg1": Preset("cs2", 64, "Condor Galaxy 1: 64 CS-2, 82 TB of MemoryX", memoryx_capacity_bytes=82e12),
    "cs3": Preset("cs3", 1, "one CS-3 with its MemoryX and SwarmX"),
    # Condor Galaxy 3 (Cerebras press release 2024-03-13): 64 CS-3, "8 exaFLOPs" (of sparse AI
    # compute, 64 x 125 PF); its MemoryX size is not published (the generation's largest is used).
    "cs3-64": Preset("cs3", 64, "64 CS-3, the size of Condor Galaxy 3"),
    # Cerebras press release (2024-03-13): "up to 2048 CS-3" in one cluster.
    "cs3-2048": Preset("cs3", 2048, "the largest CS-3 cluster: 2048 CS-3"),
}


def cluster(generation: str, systems: int = 1, name: str | None = None) -> ClusterSpec:
    """``systems`` systems of ``generation`` with the generation's figures."""
    if generation not in GENERATIONS:
        raise ConfigError(f"unknown generation {generation!r}; {hint(generation, GENERATIONS)}")
    g = GENERATIONS[generation]
    return ClusterSpec(name=name or generation, systems=systems, cs2=g.system, memoryx=g.memoryx,
                       swarmx=g.swarmx, power=g.power, max_systems=g.max_systems)


def preset(name: str, systems: int | None = None) -> ClusterSpec:
    if name not in PRESETS:
        raise ConfigError(f"unknown cluster preset {name!r}; {hint(name, PRESETS)} "
                          f"(or give a cluster .json file)")
    p = PRESETS[name]
    spec = cluster(p.generation, p.systems if systems is None else systems, name=name)
    if p.memoryx_capacity_bytes is not None:
        spec = replace(spec, memoryx=replace(spec.memoryx, capacity_bytes=p.memoryx_capacity_bytes))
    return spec


def describe() -> str:
    """One line per preset, for ``--cluster`` help."""
    return ", ".join(f"{n} ({p.description})" for n, p in PRESETS.items())


_SECTIONS = {"cs2": CS2Spec, "memoryx": MemoryXSpec, "swarmx": SwarmXSpec, "power": PowerSpec}


def from_dict(data: dict, name: str = "custom") -> ClusterSpec:
    """A cluster from a JSON-like dict; every key optional, unknown keys refused.

    ``generation`` ("cs2", the default, or "cs3") picks the figures every section starts from; the
    sections (``cs2`` — the CS system, whichever generation —, ``memoryx``, ``swarmx``, ``power``)
    override single fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"cluster description must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(ClusterSpec)} | {"generation"}
    unknown = set(data) - known
    require(not unknown, f"unknown cluster key(s) {sorted(unknown)}; allowed: {sorted(known)}")
    system = data.get("cs2", {})
    inner = system.get("generation") if isinstance(system, dict) else None
    gen_name = data.get("generation", inner if inner is not None else "cs2")
    require(isinstance(gen_name, str) and gen_name in GENERATION_NAMES,
            f"cluster generation must be one of {', '.join(GENERATION_NAMES)}, got {gen_name!r}")
    require(inner is None or inner == gen_name,
            f"cluster generation {gen_name!r} and cs2.generation {inner!r} disagree")
    gen = GENERATIONS[gen_name]
    base = {"cs2": gen.system, "memoryx": gen.memoryx, "swarmx": gen.swarmx, "power": gen.power}
    kwargs = {"name": data.get("name", name), "max_systems": gen.max_systems}
    for key in ("systems", "max_systems"):
        if key in data:
            kwargs[key] = data[key]
    for key, cls in _SECTIONS.items():
        section = data.get(key, {})
        if not isinstance(section, dict):
            raise ConfigError(f"cluster {key} must be a JSON object, got {section!r}")
        allowed = {f.name for f in dataclasses.fields(cls)}
        bad = set(section) - allowed
        require(not bad, f"unknown {key} key(s) {sorted(bad)}; allowed: {sorted(allowed)}")
        kwargs[key] = dataclasses.replace(base[key], **section)
    return ClusterSpec(**kwargs)


def load(spec: str, systems: int | None = None) -> ClusterSpec:
    """A preset name or a path to a cluster JSON file; ``systems`` overrides the count."""
    if spec.endswith(".json") or Path(spec).is_file():
        path = Path(spec)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"cluster file {spec!r} does not exist") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cluster file {spec!r} is not valid JSON: {exc}") from None
        cluster = from_dict(data, name=path.stem)
        return cluster if systems is None else cluster.with_systems(systems)
    return preset(spec, systems)
