"""What hardware runs the job: CS-2, MemoryX, SwarmX and the cluster, in SI units.

Every default carries its source or the word *assumption* and why. The defaults here are the
CS-2's; the CS-3's, and the named clusters (presets), are in ``wsim/cluster/generations.py``. Cerebras has not
published MemoryX or SwarmX speeds (Microprocessor Report, Sep 2021), so those are assumptions meant
to be varied (``experiments/sensitivity.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from wsim.errors import positive, non_negative, require

GENERATION_NAMES = ("cs2", "cs3")  # the systems wsim has figures for (wsim/cluster/generations.py)


@dataclass(frozen=True)
class CS2Spec:
    """One CS-2 system (WSE-2): its published structure and the wafer compute model's parameters.

    How a layer's time follows from these is ``wsim/cluster/wafer.py``. Structure is sourced; the two
    matmul peak fraction is *fitted* (global, on the development set stated there, leave-one-out
    errors in ``experiments/wafer_validation.py``); the rest are assumptions, named as such.
    """

    # Estimate: Andromeda is quoted at 120 PFLOP/s dense 16-bit for 16 CS-2 (press release 2022-11);
    # Zhang et al. 2024 (HPEC, arXiv 2409.00287) Table I: 7.5 PFLOP/s.
    peak_flops_per_s: float = 7.5e15
    # CS-2 product page; Tom's Hardware on Andromeda (2022-11): 850,000 cores.
    cores: int = 850_000
    # Zhang et al. 2024 Table I: 1.1 GHz.
    clock_hz: float = 1.1e9
    # CS-2 product page: 20 PB/s on-chip memory bandwidth (about 21 bytes per core per cycle).
    sram_bytes_per_s: float = 20e15
    # FITTED (the only fitted parameter): the fraction of the FP16 peak a large matrix product
    # sustains inside a training step (wsim/cluster/wafer.py; development set and leave-one-out errors there).
    matmul_peak_fraction: float = 0.4597
    # Hockney's half-performance length n_1/2 of a product's dimension on the wafer. None (default):
    # the side of the core grid, sqrt(cores) = 922 for the WSE-2 (structure; wsim/cluster/wafer.py).
    matmul_half_dim: float | None = None
    # Derived, an assumption on issue rate: the 8 FLOPs per core per cycle of the FP16 peak
    # (7.5e15 / (850,000 x 1.1e9)) are 4 fused multiply-adds, a 4-wide 16-bit SIMD; other
    # element-wise operations (LayerNorm, GeLU, softmax, adds) are taken to issue 4 per cycle too,
    # unless SRAM bandwidth binds first (wsim/cluster/wafer.py: it does not at 20 PB/s).
    elementwise_ops_per_core_per_cycle: float = 4.0
    # Assumption: a layer pass starts by filling the wafer and ends by draining it: data crosses the
    # 2-D mesh of ~sqrt(850,000) = 922 cores each way, one hop per cycle, about 1.7 us per pass.
    pass_overhead_cycles: float = 2 * 922.0
    # What-if override (not a default): when set, every FLOP runs at peak x this fraction and the
    # shape model above is ignored, as wsim did before the wafer model. None: the wafer model.
    compute_efficiency: float | None = None
    # CS-2 product page; Tom's Hardware on Andromeda (2022-11): 40 GB on-chip SRAM.
    sram_bytes: float = 40e9
    # Assumption: SRAM the compiled kernels, I/O buffers and runtime keep for themselves.
    sram_reserved_bytes: float = 2e9
    # cerebras.net glossary "SwarmX": 1.2 Tb/s external I/O (12 x 100 GbE) = 150 GB/s each direction.
    io_bytes_per_s: float = 150e9
    # Assumption: SRAM set aside for weights that arrive ahead of compute (the prefetch bound);
    # half a gigabyte is ~3 ms of stream at 150 GB/s, ample to hide SwarmX latency.
    weight_buffer_bytes: float = 512e6
    # VENDOR CLAIM, not an independent measurement: the fraction of the matrix-product time that
    # unstructured weight sparsity saves, relative to the FLOPs it removes (1 = a layer at density d
    # takes d of its dense weight-product time). Cerebras: the CS-2 "accelerat[es] unstructured
    # sparsity" (blog "Harnessing the Power of Sparsity for Large GPT AI Models", 2022; Thangarasa et
    # al., "SPDF", arXiv 2303.10464); the WSE's cores skip multiplications by zero (Lie, Hot Chips 34,
    # 2022; Zhang et al. 2024). No published measurement of the realised fraction: vary it
    # (experiments/sparsity.py). wsim/cluster/sparsity.py applies it.
    sparse_flop_efficiency: float = 1.0
    # Which system this is: "cs2" (WSE-2) or "cs3" (WSE-3); the figures above are the CS-2's, the
    # CS-3's are in wsim/cluster/generations.py. A label for reports and cluster files, not a switch.
    generation: str = "cs2"

    def __post_init__(self) -> None:
        require(self.generation in GENERATION_NAMES,
                f"cs2.generation must be one of {', '.join(GENERATION_NAMES)}, got {self.generation!r}")
        positive("cs2.peak_flops_per_s", self.peak_flops_per_s)
        positive("cs2.cores", self.cores, integer=True)
        positive("cs2.clock_hz", self.clock_hz)
        positive("cs2.sram_bytes_per_s", self.sram_bytes_per_s)
        positive("cs2.matmul_peak_fraction", self.matmul_peak_fraction)
        require(self.matmul_peak_fraction <= 1.0,
                f"cs2.matmul_peak_fraction must be at most 1, got {self.matmul_peak_fraction!r}")
        if self.matmul_half_dim is not None:
            non_negative("cs2.matmul_half_dim", self.matmul_half_dim)
        positive("cs2.elementwise_ops_per_core_per_cycle", self.elementwise_ops_per_core_per_cycle)
        non_negative("cs2.pass_overhead_cycles", self.pass_overhead_cycles)
        if self.compute_efficiency is not None:
            positive("cs2.compute_efficiency", self.compute_efficiency)
            require(self.compute_efficiency <= 1.0,
                    f"cs2.compute_efficiency must be at most 1 (or null for the wafer model), "
                    f"got {self.compute_efficiency!r}")
        for name in ("matmul_peak_fraction", "compute_efficiency"):
            value = getattr(self, name)
            require(value is None or self.peak_flops_per_s * value > 0,
                    f"cs2.peak_flops_per_s x cs2.{name} underflows to 0 "
                    f"({self.peak_flops_per_s!r} x {value!r})")
        positive("cs2.sram_bytes", self.sram_bytes)
        non_negative("cs2.sram_reserved_bytes", self.sram_reserved_bytes)
        require(self.sram_reserved_bytes < self.sram_bytes,
                f"cs2.sram_reserved_bytes ({self.sram_reserved_bytes:g}) must be below cs2.sram_bytes "
                f"({self.sram_bytes:g})")
        positive("cs2.io_bytes_per_s", self.io_bytes_per_s)
        positive("cs2.weight_buffer_bytes", self.weight_buffer_bytes)
        non_negative("cs2.sparse_flop_efficiency", self.sparse_flop_efficiency)
        require(self.sparse_flop_efficiency <= 1.0,
                f"cs2.sparse_flop_efficiency must be at most 1 (the whole FLOP saving), "
                f"got {self.sparse_flop_efficiency!r}")

    @property
    def label(self) -> str:
        """``CS-2`` or ``CS-3``."""
        return self.generation.upper().replace("CS", "CS-")

    @property
    def usable_sram_bytes(self) -> float:
        return self.sram_bytes - self.sram_reserved_bytes


@dataclass(frozen=True)
class MemoryXSpec:
    """MemoryX: weights and optimizer state; streams weights, takes gradients, runs the optimizer."""

    # cerebras.net glossary "MemoryX": capacity 4 TB to 2.4 PB; we default to the largest.
    capacity_bytes: float = 2.4e15
    # ZeRO (Rajbhandari et al. 2020, sec. 3.1): mixed-precision Adam keeps 16 bytes per parameter
    # (16-bit weights and gradients, fp32 master, momentum, variance); the glossary's 2.4 PB for
    # 120 trillion parameters (20 bytes each) leaves room for it.
    bytes_per_param: float = 16.0
    # Assumption: glossary "MemoryX": its "storage and I/O can match or exceed the I/O bandwidth of a
    # CS-2", so 150 GB/s out (weights) and 150 GB/s in (gradients), full duplex.
    stream_bytes_per_s: float = 150e9
    ingest_bytes_per_s: float = 150e9
    # Assumption: MemoryX is sized so that a layer's update keeps pace with that layer's backward
    # stream (glossary "MemoryX": it updates while the CS-2s go on). AdamW moves ~32 bytes of DRAM
    # per parameter (read 16-bit grad, fp32 master, m, v; write them and the 16-bit copy); the
    # backward streams 2 bytes per parameter at 150 GB/s = 7.5e10 parameters/s. 1e11 parameters/s
    # is ~3.2 TB/s of DRAM, ~16 EPYC 7713 servers at ~200 GB/s (Andromeda has 284 servers for
    # MemoryX, SwarmX and input workers together, press release 2022-11).
    optimizer_params_per_s: float = 1e11
    full_duplex: bool = True  # glossary "SwarmX": bidirectional links; False shares one direction
    # Assumption (Cerebras has not published its sparse weight format): a sparse layer is stored and
    # streamed as its nonzero values plus a bitmap of 1 bit per weight position (smaller than a 16-bit
    # index per nonzero above 1/16 density); ``sparse_index_bits_per_nonzero`` models an index format
    # instead (set the bitmap to 0). Gradients need neither: MemoryX knows the mask and the order.
    sparse_mask_bits_per_weight: float = 1.0
    sparse_index_bits_per_nonzero: float = 0.0

    def __post_init__(self) -> None:
        positive("memoryx.capacity_bytes", self.capacity_bytes)
        positive("memoryx.bytes_per_param", self.bytes_per_param)
        positive("memoryx.stream_bytes_per_s", self.stream_bytes_per_s)
        positive("memoryx.ingest_bytes_per_s", self.ingest_bytes_per_s)
        positive("memoryx.optimizer_params_per_s", self.optimizer_params_per_s)
        require(isinstance(self.full_duplex, bool),
                f"memoryx.full_duplex must be true or false, got {self.full_duplex!r}")
        non_negative("memoryx.sparse_mask_bits_per_weight", self.sparse_mask_bits_per_weight)
        non_negative("memoryx.sparse_index_bits_per_nonzero", self.sparse_index_bits_per_nonzero)


@dataclass(frozen=True)
class SwarmXSpec:
    """The broadcast/reduce tree between MemoryX and the CS-2s."""

    # Glossary "SwarmX": each node does one 1:4 broadcast-reduce or two 1:2.
    fanout: int = 4
    # Glossary "SwarmX": nodes have a set of 100 Gb/s interfaces.
    port_bytes_per_s: float = 12.5e9
    # Assumption: every tree edge carries a CS-2's full 12 x 100 GbE, so that the broadcast keeps up
    # with "each CS-2 needs weights at 1.2 Tb/s" (glossary "SwarmX", worst case).
    ports_per_link: int = 12
    # Assumption: store-and-forward hop of a 100 GbE switch/FPGA stage, a few microseconds.
    hop_latency_s: float = 2e-6

    def __post_init__(self) -> None:
        require(self.fanout in (2, 4), f"swarmx.fanout must be 2 or 4 (glossary: one 1:4 or two 1:2), "
                                       f"got {self.fanout!r}")
        positive("swarmx.port_bytes_per_s", self.port_bytes_per_s)
        positive("swarmx.ports_per_link", self.ports_per_link, integer=True)
        non_negative("swarmx.hop_latency_s", self.hop_latency_s)

    @property
    def link_bytes_per_s(self) -> float:
        return self.port_bytes_per_s * self.ports_per_link


@dataclass(frozen=True)
class PowerSpec:
    """Electrical power of the cluster, per CS system (wsim/cluster/power.py adds it up).

    The CS-2 figures add up to Andromeda's published 500 kW for 16 CS-2 (Tom's Hardware, 2022-11-14):
    16 x 23 kW systems + 16 x 17.75 x 400 W servers + 16 x 1,150 W network = 500 kW. A system is
    taken to draw this power throughout a step, busy or waiting (no idle figure is published)."""

    # CS-2 whitepaper: power supplies "deliver up to 23,000 watts" per CS-2 (a rating: the wafer
    # itself draws 15 kW, Tom's Hardware on Andromeda, 2022-11-14). The system's draw.
    system_w: float = 23_000.0
    # EnterpriseAI (2022-11-14): Andromeda's 16 CS-2 are fed by 284 single-socket AMD EPYC 7713
    # servers (MemoryX, SwarmX, input workers): 17.75 per system. Condor Galaxy 1 agrees: "over
    # 72,000" EPYC cores for 64 CS-2 (vendor blog, 2023-07) is 17.6 64-core CPUs per system.
    servers_per_system: float = 17.75
    # Assumption: one such server at load: EPYC 7713 TDP 225 W (AMD datasheet), 128 GB DRAM, 3 NVMe
    # drives, 2 x 100 GbE NICs, fans and power-supply loss: about 400 W.
    server_w: float = 400.0
    # Derived: Andromeda's 500 kW less 16 x 23 kW less 284 x 400 W, per system: the 100 GbE
    # switches (and whatever the two figures above miss).
    network_w_per_system: float = 1_150.0

    def __post_init__(self) -> None:
        non_negative("power.system_w", self.system_w)
        non_negative("power.servers_per_system", self.servers_per_system)
        non_negative("power.server_w", self.server_w)
        non_negative("power.network_w_per_system", self.network_w_per_system)


@dataclass(frozen=True)
class ClusterSpec:
    name: str = "cs2"
    systems: int = 1
    cs2: CS2Spec = field(default_factory=CS2Spec)  # the CS system (a CS-3 too: cs2.generation)
    memoryx: MemoryXSpec = field(default_factory=MemoryXSpec)
    swarmx: SwarmXSpec = field(default_factory=SwarmXSpec)
    # Glossary "SwarmX" / Wafer-Scale Cluster page: up to 192 CS-2 in one cluster (CS-3: 2048,
    # wsim/cluster/generations.py).
    max_systems: int = 192
    power: PowerSpec = field(default_factory=PowerSpec)

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and self.name != "",
                f"cluster name must be a non-empty string, got {self.name!r}")
        positive("systems", self.systems, integer=True)
        positive("max_systems", self.max_systems, integer=True)
        require(self.systems <= self.max_systems,
                f"systems {self.systems} exceeds the cluster's max_systems {self.max_systems} "
                f"(a cluster JSON may raise max_systems to extrapolate)")

    @property
    def generation(self) -> str:
        return self.cs2.generation

    def with_systems(self, systems: int) -> "ClusterSpec":
        return dataclasses.replace(self, systems=systems)

    def to_dict(self) -> dict:
        return {"generation": self.generation} | dataclasses.asdict(self)
