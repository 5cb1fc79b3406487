"""Collective and point-to-point costs: an alpha-beta model of NCCL ring algorithms.

Ring all-reduce of S bytes over n ranks moves 2(n-1)/n * S through each rank's link
(Patarasuk & Yuan 2009; nccl-tests "bus bandwidth"); reduce-scatter and all-gather move half that.
A group inside one node runs on NVLink. A group spanning nodes runs hierarchically: with g members
per node, its inter-node traffic shares those g NICs, so its bus bandwidth is
``min(NVLink, g * NIC)`` (the node's 8 NICs serve one ring each, NCCL's multi-rail layout).

Placement follows Megatron-LM's rank order: tensor ranks are adjacent, then data, then pipeline.
"""

from __future__ import annotations

from wsim.gpu.specs import Efficiency, GpuSpec


def members_per_node(group: int, stride: int, gpus_per_node: int) -> int:
    """How many ranks of a group of ``group`` ranks spaced ``stride`` apart share one node."""
    if stride >= gpus_per_node:
        return 1
    return max(1, min(group, gpus_per_node // stride))


def bus_bytes_per_s(gpu: GpuSpec, eff: Efficiency, group: int, per_node: int) -> float:
    """Per-rank bus bandwidth of a collective over ``group`` ranks, ``per_node`` of them per node."""
    nvlink = gpu.nvlink_bytes_per_s * eff.nvlink_efficiency
    if group <= per_node:
        return nvlink
    return min(nvlink, per_node * gpu.nic_bytes_per_s * eff.ib_efficiency)


def all_reduce_s(nbytes: float, group: int, bw: float, latency_s: float) -> float:
    if group <= 1 or nbytes <= 0:
        return 0.0
    return latency_s + 2.0 * (group - 1) / group * nbytes / bw


def reduce_scatter_s(nbytes: float, group: int, bw: float, latency_s: float) -> float:
    """Reduce-scatter (or all-gather) of a tensor of ``nbytes`` in full over ``group`` ranks."""
    if group <= 1 or nbytes <= 0:
        return 0.0
    return latency_s + (group - 1) / group * nbytes / bw


all_gather_s = reduce_scatter_s


def p2p_s(nbytes: float, bw: float, latency_s: float) -> float:
    if nbytes <= 0:
        return 0.0
    return latency_s + nbytes / bw


def tp_bus_bytes_per_s(gpu: GpuSpec, eff: Efficiency, tp: int) -> float:
    return bus_bytes_per_s(gpu, eff, tp, members_per_node(tp, 1, gpu.gpus_per_node))


def dp_bus_bytes_per_s(gpu: GpuSpec, eff: Efficiency, tp: int, dp: int) -> float:
    return bus_bytes_per_s(gpu, eff, dp, members_per_node(dp, tp, gpu.gpus_per_node))


def pp_p2p_bytes_per_s(gpu: GpuSpec, eff: Efficiency, tp: int, dp: int) -> float:
    """Per-GPU bandwidth between neighbouring stages (stride tp*dp ranks)."""
    if tp * dp < gpu.gpus_per_node and gpu.gpus_per_node % (tp * dp) == 0:
        return gpu.nvlink_bytes_per_s * eff.nvlink_efficiency
    return gpu.nic_bytes_per_s * eff.ib_efficiency


def pp_send_s(nbytes: float, gpu: GpuSpec, eff: Efficiency, tp: int, dp: int) -> float:
    """One activation (or gradient) send between stages. With tp > 1 Megatron's scatter/gather
    optimisation (SC21 sec. 4.1) sends 1/tp of it from each tensor rank over its own link, then
    all-gathers it over NVLink on the receiving node."""
    bw = pp_p2p_bytes_per_s(gpu, eff, tp, dp)
    t = p2p_s(nbytes / tp, bw, eff.p2p_latency_s)
    if tp > 1:
        t += all_gather_s(nbytes, tp, tp_bus_bytes_per_s(gpu, eff, tp), eff.collective_latency_s)
    return t
