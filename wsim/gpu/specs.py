"""What GPU hardware runs the job: one GPU, its node and its network, in SI units.

Every number carries its source (a vendor datasheet or user guide) or the word *assumption* and why.
The global parameters of the cost model (what fraction of these peaks real kernels and collectives
reach) live in ``wsim.gpu.calibration``; ``Efficiency`` is re-exported here for compatibility.

Bandwidths are per GPU and per direction: NVLink "600 GB/s" (A100) is bidirectional, 300 GB/s each
way; a node with 8 x 200 Gb/s InfiniBand NICs gives each GPU its own 25 GB/s NIC.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from models.suggest import hint
from wsim.errors import ConfigError, non_negative, positive

GIB = 2**30
FABRICS = ("infiniband", "roce")


@dataclass(frozen=True)
class GpuSpec:
    """One GPU in a DGX/HGX-style node: ``gpus_per_node`` GPUs on NVSwitch, one NIC per GPU."""

    name: str
    peak_flops_per_s: float  # dense 16-bit (BF16/FP16) tensor-core peak
    hbm_bytes: float
    hbm_bytes_per_s: float
    nvlink_bytes_per_s: float  # per GPU, per direction (half the bidirectional figure)
    nic_bytes_per_s: float  # the GPU's own InfiniBand NIC, per direction
    gpus_per_node: int = 8
    fp8_flops_per_s: float = 0.0  # dense FP8 tensor-core peak; 0 = no FP8 tensor cores
    node_power_w: float = 0.0  # maximum power of one node (all its GPUs, CPUs, NICs)
    source: str = ""
    # the scale-out network: "infiniband" or "roce" (RDMA over Converged Ethernet); NCCL drives
    # both through its IB verbs transport (NCCL docs, "NCCL_IB_*" variables apply to RoCE), so the
    # cost model differs only in Efficiency.roce_efficiency
    fabric: str = "infiniband"
    # FP16/BF16 and FP8 peaks *with* 2:4 structured sparsity, as datasheets headline them; kept
    # apart and never used by the cost model (training GEMMs are dense)
    sparse_peak_flops_per_s: float = 0.0
    # the GPU's link to its host's memory, per direction: what activation offloading
    # (wsim.gpu.offload) moves over; PCIe on x86 hosts, NVLink-C2C on Grace
    host_link_bytes_per_s: float = 64e9

    def __post_init__(self) -> None:
        for name in ("peak_flops_per_s", "hbm_bytes", "hbm_bytes_per_s", "nvlink_bytes_per_s",
                     "nic_bytes_per_s", "host_link_bytes_per_s"):
            positive(f"gpu.{name}", getattr(self, name))
        positive("gpu.gpus_per_node", self.gpus_per_node, integer=True)
        non_negative("gpu.fp8_flops_per_s", self.fp8_flops_per_s)
        non_negative("gpu.node_power_w", self.node_power_w)
        non_negative("gpu.sparse_peak_flops_per_s", self.sparse_peak_flops_per_s)
        if self.fabric not in FABRICS:
            raise ConfigError(f"gpu.fabric {self.fabric!r} is not one of {', '.join(FABRICS)}")

    @property
    def node_nic_bytes_per_s(self) -> float:
        return self.nic_bytes_per_s * self.gpus_per_node

    @property
    def power_per_gpu_w(self) -> float:
        return self.node_power_w / self.gpus_per_node

    def peak_for(self, precision: str) -> float:
        """Dense tensor-core peak for the GEMMs of ``precision`` ('bf16' or 'fp8')."""
        if precision == "fp8":
            if not self.fp8_flops_per_s:
                raise ConfigError(f"precision fp8 needs FP8 tensor cores; {self.name} has none "
                                  "(use --precision bf16, or an H100/H200/B200)")
            return self.fp8_flops_per_s
        return self.peak_flops_per_s


_A100 = ("NVIDIA A100 Tensor Core GPU datasheet (2021): 312 TFLOP/s dense BF16, NVLink 600 GB/s; "
         "DGX A100 user guide: 8 x 200 Gb/s HDR InfiniBand compute NICs, 6.5 kW max")
_H100 = ("NVIDIA H100 Tensor Core GPU datasheet (2023, SXM): 989 TFLOP/s dense BF16, 1,979 dense "
         "FP8 (headline 1,979 / 3,958 'with sparsity'), 80 GB HBM3 at 3.35 TB/s, NVLink 900 GB/s, "
         "700 W; DGX H100 user guide: 8 x 400 Gb/s NDR, 10.2 kW max. Dense peaks as NVIDIA's own "
         "MFU tables use them (github.com/NVIDIA/dgxc-benchmarking README 'Peak Theoretical "
         "Throughput' @ 841f5466: H100 BF16 989, FP8 1979)")
_H800 = ("NVIDIA H800 Tensor Core GPU (SXM5; NVIDIA's H800 product brief, 2023): the H100 SXM's GH100 "
         "with NVLink cut to 400 GB/s bidirectional (200 GB/s per direction), the same BF16/FP8 tensor "
         "cores, 80 GB HBM3 at 3.35 TB/s (the datasheet was not retrievable here; secondary sources "
         "agree: aiwiki.ai/wiki/nvidia_h800, 2026); DeepSeek-V3 report (arXiv 2412.19437) sec. 3.2.2: "
         "8 H800 per node on NVLink/NVSwitch, InfiniBand 50 GB/s per GPU across nodes (NVLink "
         "'160 GB/s' achieved)")
_H100_NVL = ("NVIDIA H100 Tensor Core GPU datasheet (2023, H100 NVL column): 94 GB HBM3 at 3.9 TB/s, "
             "1,671 TFLOP/s BF16 and 3,341 FP8 with sparsity (dense: half), NVLink bridge 600 GB/s "
             "between a pair of cards, PCIe Gen5 128 GB/s, 350-400 W configurable")
_H200 = ("NVIDIA H200 Tensor Core GPU datasheet (2024, SXM): 141 GB HBM3e at 4.8 TB/s, NVLink "
         "900 GB/s, 1,979 TFLOP/s BF16 and 3,958 FP8 with sparsity (dense: half), up to 700 W; DGX "
         "H200 datasheet: 8 x 400 Gb/s ConnectX-7, ~10.2 kW max; MLCommons inference v4.1 "
         "closed/NVIDIA/systems/H200-SXM-141GBx8_TRT_MaxQ.json ('141 GB', 'HBM3e', '18x 4th Gen "
         "NVLink, 900GB/s')")
_B200 = ("NVIDIA DGX B200 datasheet (2024): 8 B200, 1,440 GB HBM3e at 64 TB/s (180 GB, 8 TB/s per "
         "GPU), 72 PFLOP/s FP8 training with sparsity (4.5 dense per GPU; BF16 half of that: 2.25), "
         "NVLink 5 1.8 TB/s per GPU (14.4 TB/s aggregate), 8 x 400 Gb/s ConnectX-7, ~14.3 kW max; "
         "dgxc-benchmarking README @ 841f5466: B200 BF16 2250, FP8 4500 dense")
_GB200 = ("NVIDIA GB200 NVL72 datasheet (2024): 72 Blackwell GPUs and 36 Grace CPUs in one NVLink "
          "domain (130 TB/s NVLink Switch System: 1.8 TB/s per GPU), up to 13.4 TB HBM3e (186 GB "
          "per GPU) at 576 TB/s (8 TB/s per GPU), FP8 720 PFLOP/s and BF16 360 PFLOP/s with "
          "sparsity (dense per GPU: FP8 5.0, BF16 2.5 PFLOP/s); NVIDIA's MFU table "
          "(dgxc-benchmarking README @ 841f5466) uses 2,450 BF16 and 4,900 FP8: used here; one "
          "400 Gb/s ConnectX-7 per GPU for the scale-out network; rack power ~120 kW (assumption: "
          "secondary sources, e.g. datacrunch.io GB200 NVL72 blog, quote 120-132 kW)")

GPUS: dict[str, GpuSpec] = {
    # A100 SXM 40 GB: HBM2 at 1,555 GB/s; NVLink 300 GB/s per direction; one 200 Gb/s HDR NIC
    # (25 GB/s) per GPU. HBM bytes: nvidia-smi reports 40,960 MiB / 81,920 MiB, i.e. 40 / 80 GiB
    # (assumption that the datasheet's "GB" is GiB, as nvidia-smi shows). No FP8 tensor cores.
    # Host link: PCIe Gen4 x16, 64 GB/s bidirectional (A100 datasheet): 32 GB/s per direction.
    "a100-40gb": GpuSpec("a100-40gb", 312e12, 40 * GIB, 1555e9, 300e9, 25e9,
                         node_power_w=6500.0, source=_A100, sparse_peak_flops_per_s=624e12,
                         host_link_bytes_per_s=32e9),
    # A100 SXM 80 GB: HBM2e at 2,039 GB/s; everything else as above.
    "a100-80gb": GpuSpec("a100-80gb", 312e12, 80 * GIB, 2039e9, 300e9, 25e9,
                         node_power_w=6500.0, source=_A100, sparse_peak_flops_per_s=624e12,
                         host_link_bytes_per_s=32e9),
    # H100 SXM: 989 TFLOP/s dense BF16, 1,979 dense FP8 (Transformer Engine); NVLink 450 GB/s per
    # direction; one 400 Gb/s NDR NIC (50 GB/s) per GPU. Host link: PCIe Gen5 x16, 128 GB/s
    # bidirectional (H100 datasheet): 64 GB/s per direction (the default; H800, H100 NVL, H200 and
    # B200 hosts likewise: assumption for B200, whose DGX host is PCIe Gen5).
    "h100-80gb": GpuSpec("h100-80gb", 989e12, 80 * GIB, 3350e9, 450e9, 50e9,
                         fp8_flops_per_s=1979e12, node_power_w=10200.0, source=_H100,
                         sparse_peak_flops_per_s=1979e12),
    # H800 SXM: the H100 SXM with NVLink 200 GB/s per direction (400 bidirectional); the node's
    # 400 Gb/s NIC per GPU and power as DGX H100 (assumption: DeepSeek's cluster, 50 GB/s IB per GPU)
    "h800-80gb": GpuSpec("h800-80gb", 989e12, 80 * GIB, 3350e9, 200e9, 50e9,
                         fp8_flops_per_s=1979e12, node_power_w=10200.0, source=_H800,
                         sparse_peak_flops_per_s=1979e12),
    # H100 NVL (PCIe card, 94 GB): the NVLink domain is the bridged pair (gpus_per_node 2, 300 GB/s
    # per direction); across pairs traffic leaves through one 400 Gb/s NIC per GPU (assumption: an
    # HGX-like 1:1 NIC ratio; PCIe Gen5 x16 carries 64 GB/s per direction, more than the NIC).
    # Power per pair: 2 x 400 W plus a share of the host (assumption: 1.2 kW per pair, the DGX H100
    # node's non-GPU share per two GPUs).
    "h100-nvl-94gb": GpuSpec("h100-nvl-94gb", 835e12, 94e9, 3900e9, 300e9, 50e9, gpus_per_node=2,
                             fp8_flops_per_s=1670e12, node_power_w=2000.0, source=_H100_NVL,
                             sparse_peak_flops_per_s=1671e12),
    # H200 SXM: the H100's compute and NVLink with 141 GB of HBM3e at 4.8 TB/s. HBM bytes taken
    # as 141e9 (the datasheet's decimal GB; assumption: nvidia-smi shows ~143,771 MiB).
    "h200-141gb": GpuSpec("h200-141gb", 989e12, 141e9, 4800e9, 450e9, 50e9,
                          fp8_flops_per_s=1979e12, node_power_w=10200.0, source=_H200,
                          sparse_peak_flops_per_s=1979e12),
    # B200 (DGX B200): 2.25 PFLOP/s dense BF16, 4.5 dense FP8; 180 GB at 8 TB/s; NVLink 5 900 GB/s
    # per direction; one 400 Gb/s NIC per GPU. HBM bytes 180e9 (decimal, assumption as for H200).
    "b200-180gb": GpuSpec("b200-180gb", 2250e12, 180e9, 8000e9, 900e9, 50e9,
                          fp8_flops_per_s=4500e12, node_power_w=14300.0, source=_B200,
                          sparse_peak_flops_per_s=4500e12),
    # GB200 NVL72: one NVLink domain of 72 GPUs (gpus_per_node 72: every group of up to 72 ranks
    # stays on NVLink, 900 GB/s per direction); 186 GB HBM3e at 8 TB/s; a 400 Gb/s NIC per GPU.
    # Host link: NVLink-C2C, 900 GB/s bidirectional between one Grace CPU and the superchip's two
    # B200 (GB200 NVL72 datasheet); ASSUMPTION: shared evenly, 225 GB/s per GPU per direction (both
    # GPUs of a superchip offload at once in a data-parallel run).
    "gb200-nvl72": GpuSpec("gb200-nvl72", 2450e12, 186e9, 8000e9, 900e9, 50e9, gpus_per_node=72,
                           fp8_flops_per_s=4900e12, node_power_w=120e3, source=_GB200,
                           sparse_peak_flops_per_s=5000e12, host_link_bytes_per_s=225e9),
}

ALIASES = {"h200": "h200-141gb", "b200": "b200-180gb", "h100": "h100-80gb", "a100": "a100-80gb",
           "h100-sxm": "h100-80gb", "h800": "h800-80gb", "h100-nvl": "h100-nvl-94gb", "gb200": "gb200-nvl72"}


def gpu_spec(name: str | GpuSpec) -> GpuSpec:
    if isinstance(name, GpuSpec):
        return name
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in GPUS:
        raise ConfigError(f"gpu {name!r} is not known; "
                          f"{hint(key, [*GPUS, *ALIASES], 'wsim gpu --help and docs/gpu-model.md')}")
    return GPUS[key]


def with_network(gpu: GpuSpec, *, nic_bytes_per_s: float | None = None,
                 nvlink_bytes_per_s: float | None = None, fabric: str | None = None) -> GpuSpec:
    """``gpu`` with its per-GPU NIC and/or NVLink bandwidth or its fabric replaced (None keeps the
    preset's)."""
    changes = {}
    if fabric is not None:
        if fabric not in FABRICS:
            raise ConfigError(f"fabric {fabric!r} is not one of {', '.join(FABRICS)}")
        changes["fabric"] = fabric
    if nic_bytes_per_s is not None:
        changes["nic_bytes_per_s"] = nic_bytes_per_s
    if nvlink_bytes_per_s is not None:
        changes["nvlink_bytes_per_s"] = nvlink_bytes_per_s
    return dataclasses.replace(gpu, **changes) if changes else gpu


def generation(gpu: GpuSpec) -> str:
    """'ampere', 'hopper' or 'blackwell' (for validated regimes), from the peaks."""
    if gpu.peak_flops_per_s >= 2000e12:
        return "blackwell"
    if gpu.fp8_flops_per_s:  # FP8 tensor cores below Blackwell's peak: Hopper (H100 NVL included)
        return "hopper"
    return "ampere"


# Re-exported for compatibility: ``from wsim.gpu.specs import Efficiency`` keeps working.
from wsim.gpu.calibration import EFFICIENCY, Efficiency, efficiency_for  # noqa: E402,F401
