"""Collectives from first principles: ring and tree algorithms over NVLink and InfiniBand.

A collective over a group of ``n`` ranks, ``g`` of them per node on ``N = n / g`` nodes:

- **bandwidth** (alpha-beta model; Patarasuk & Yuan 2009, nccl-tests "bus bandwidth"): a ring
  all-reduce of S bytes moves ``2 (n-1)/n S`` through every rank's link, a reduce-scatter or an
  all-gather ``(n-1)/n S``; a tree all-reduce moves ``2 S`` (NCCL: algorithm bandwidth = half the
  bus bandwidth, 0.92 of it, src/graph/tuning.cc). Inside one node the link is NVLink; across nodes
  the slowest hop is the network, whose bandwidth per rank is ``nics x NIC``: NCCL spreads a ring's
  channels over the NICs of the group's members in the node (multi-rail: ``nics = g``), unless a
  rank's traffic crosses the network alone through its own NIC (``nics = 1``).
- **latency** (NCCL's own tuning model, src/graph/tuning.cc, v2.9.9): ring = base + NVLink hops +
  network hops, one hop per step (``n-1`` steps for all-gather / reduce-scatter, ``2(n-1)`` for
  all-reduce, of which ``N-1`` resp. ``2(N-1)`` cross nodes): it grows linearly with the group;
  tree all-reduce = base + 2 ((g-1) NVLink hops + log2 N network hops). NCCL picks the faster.

Placement follows Megatron-Core's rank order: tensor ranks are adjacent, then context, then data,
then pipeline (``tp-cp-dp-pp``), which decides how many members of each group share a node.
"""

from __future__ import annotations

import math

from wsim.gpu.calibration import Efficiency
from wsim.gpu.specs import GpuSpec

TREE_BW_FACTOR = 0.92  # NCCL tuning.cc: "if (a == NCCL_ALGO_TREE) busBw = min(busBw*.92, ...)"


def network_efficiency(gpu: GpuSpec, eff: Efficiency) -> float:
    """The fraction of NIC line rate NCCL reaches on the GPU's fabric (InfiniBand or RoCE)."""
    return eff.roce_efficiency if gpu.fabric == "roce" else eff.ib_efficiency


def members_per_node(group: int, stride: int, gpus_per_node: int) -> int:
    """How many ranks of a group of ``group`` ranks spaced ``stride`` apart share one node."""
    if stride >= gpus_per_node:
        return 1
    return max(1, min(group, gpus_per_node // stride))


class Group:
    """A communicator: its size, layout over nodes, bus bandwidth and latencies (plain floats)."""

    __slots__ = ("size", "per_node", "nodes", "bw", "nics", "base", "nv_hop", "net_hop",
                 "nvlink_bw", "nic_bw")

    def __init__(self, gpu: GpuSpec, eff: Efficiency, size: int, stride: int, *,
                 single_nic: bool = False) -> None:
        self.size = size
        self.per_node = members_per_node(size, stride, gpu.gpus_per_node)
        self.nodes = max(1, -(-size // self.per_node))
        nvlink = gpu.nvlink_bytes_per_s * eff.nvlink_efficiency
        self.nics = 1 if single_nic else self.per_node
        self.nvlink_bw = nvlink
        self.nic_bw = gpu.nic_bytes_per_s * network_efficiency(gpu, eff)  # the rank's own NIC
        if self.nodes == 1:
            self.bw = nvlink
        else:
            self.bw = min(nvlink, self.nics * gpu.nic_bytes_per_s * network_efficiency(gpu, eff))
        self.base = eff.collective_base_latency_s
        self.nv_hop = eff.nvlink_hop_latency_s
        self.net_hop = eff.network_hop_latency_s

    # ---- latency ---------------------------------------------------------------------------
    def ring_latency_s(self, passes: int) -> float:
        """NCCL's ring latency: ``passes`` = 1 (all-gather, reduce-scatter) or 2 (all-reduce)."""
        steps = passes * (self.size - 1)
        inter = passes * (self.nodes - 1)
        return self.base + (steps - inter) * self.nv_hop + inter * self.net_hop

    def tree_latency_s(self) -> float:
        return self.base + 2.0 * ((self.per_node - 1) * self.nv_hop
                                  + math.log2(self.nodes) * self.net_hop)

    # ---- collectives -----------------------------------------------------------------------
    def all_reduce_s(self, nbytes: float) -> float:
        """The faster of NCCL's ring and tree all-reduce of ``nbytes``."""
        n = self.size
        if n <= 1 or nbytes <= 0:
            return 0.0
        ring = self.ring_latency_s(2) + 2.0 * (n - 1) / n * nbytes / self.bw
        if self.nodes == 1:
            return ring  # NCCL trees pay off across nodes; inside one it rings
        tree = self.tree_latency_s() + 2.0 * nbytes / (self.bw * TREE_BW_FACTOR)
        return min(ring, tree)

    def reduce_scatter_s(self, nbytes: float) -> float:
        """Reduce-scatter of a tensor of ``nbytes`` in full (each rank keeps 1/n of it)."""
        n = self.size
        if n <= 1 or nbytes <= 0:
            return 0.0
        return self.ring_latency_s(1) + (n - 1) / n * nbytes / self.bw

    all_gather_s = reduce_scatter_s  # the same traffic, the other way

    def all_to_all_s(self, nbytes: float) -> float:
        """All-to-all in which every rank sends ``nbytes`` in all, 1/n of it to each rank (itself
        included: that share never leaves the GPU). NCCL runs it as one grouped ncclSend/ncclRecv
        per peer (NCCL user guide, "Point-to-point communication: all-to-all"), all peers at once:
        the (g-1)/n share for the rank's own node crosses NVLink while the (n-g)/n share for other
        nodes leaves through the rank's own NIC (each GPU has its own; a point-to-point transfer
        does not spread over the node's other NICs), so the slower of the two sets the time;
        latency: NCCL's base plus one hop (``all_to_all_bytes`` gives the closed form)."""
        n = self.size
        if n <= 1 or nbytes <= 0:
            return 0.0
        nvlink_share, network_share = all_to_all_bytes(nbytes, n, self.per_node)
        nvlink = self.nvlink_bw
        if self.nodes == 1:
            return self.base + self.nv_hop + nvlink_share / nvlink
        return self.base + self.net_hop + max(nvlink_share / nvlink, network_share / self.nic_bw)

    def node_limited_all_to_all_s(self, nbytes: float, copies: float, max_nodes: int,
                                  node_copies: float | None = None) -> float:
        """DeepSeek-V3's dispatch (arXiv 2412.19437 sec. 3.2.2), as DeepEP and HybridEP run it: a
        token's ``copies`` routed copies go to experts on at most ``max_nodes`` nodes; it crosses
        InfiniBand once per target node (to the GPU of the same in-node index) and is forwarded
        inside the node over NVLink. Each rank sends ``nbytes`` of copies in all; over the network
        it sends nbytes x m / copies with m = min(max_nodes, copies, nodes, node_copies) x
        (nodes - 1) / nodes remote nodes per token (``node_copies``: the expected number of
        distinct nodes a token's experts are on, when known; *assumption*: a token's nodes uniform
        over the group's, its own among them in proportion), over NVLink (g - 1) / g of the
        copies once (the forwarding); latency: NCCL's base plus a network and an NVLink hop. One
        node: ``all_to_all_s``."""
        n = self.size
        if n <= 1 or nbytes <= 0:
            return 0.0
        if self.nodes == 1:
            return self.all_to_all_s(nbytes)
        nodes, g = self.nodes, self.per_node
        reach = min(max_nodes, copies, nodes)
        if node_copies is not None:
            reach = min(reach, node_copies)
        remote = reach * (nodes - 1) / nodes
        network = nbytes * remote / copies
        nvlink = nbytes * (g - 1) / g
        return self.base + self.net_hop + self.nv_hop + max(nvlink / self.nvlink_bw,
                                                            network / self.nic_bw)

    def to_dict(self) -> dict:
        return {"size": self.size, "per_node": self.per_node, "nodes": self.nodes,
                "nics": self.nics, "bus_bytes_per_s": self.bw}


def p2p_s(nbytes: float, bw: float, latency_s: float) -> float:
    if nbytes <= 0:
        return 0.0
    return latency_s + nbytes / bw


def pp_send_s(nbytes: float, gpu: GpuSpec, eff: Efficiency, stride: int, tp: Group) -> float:
    """One activation (or gradient) send between pipeline stages ``stride`` ranks apart. With
    tp > 1 Megatron's scatter/gather optimisation (SC21 sec. 4.1) sends 1/tp of it from each tensor
    rank over its own link, then all-gathers it over NVLink on the receiving node."""
    same_node = stride < gpu.gpus_per_node and gpu.gpus_per_node % stride == 0
    if same_node:
        bw = gpu.nvlink_bytes_per_s * eff.nvlink_efficiency
        lat = eff.collective_base_latency_s + eff.nvlink_hop_latency_s
    else:
        bw = gpu.nic_bytes_per_s * network_efficiency(gpu, eff)
        lat = eff.collective_base_latency_s + eff.network_hop_latency_s
    t = p2p_s(nbytes / tp.size, bw, lat)
    if tp.size > 1:
        t += tp.all_gather_s(nbytes)
    return t


# Closed forms kept as plain functions (tests check the classes against them).
def ring_all_reduce_s(nbytes: float, n: int, bw: float, latency_s: float) -> float:
    """``2(n-1)/n S / B`` plus a latency term: the textbook ring all-reduce."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return latency_s + 2.0 * (n - 1) / n * nbytes / bw


def all_to_all_bytes(nbytes: float, n: int, per_node: int) -> tuple[float, float]:
    """(bytes a rank sends over NVLink, bytes it sends over the network) in an all-to-all of n
    ranks, per_node of them in each node, where the rank sends ``nbytes`` in all, nbytes/n to each
    rank: (per_node - 1)/n of it to the other ranks of its node, (n - per_node)/n to other nodes;
    1/n stays. Every rank receives as much as it sends (uniform routing): what leaves the n ranks,
    (n - 1)/n x nbytes x n, is what arrives."""
    g = min(per_node, n)
    return nbytes * (g - 1) / n, nbytes * (n - g) / n


def ring_reduce_scatter_s(nbytes: float, n: int, bw: float, latency_s: float) -> float:
    if n <= 1 or nbytes <= 0:
        return 0.0
    return latency_s + (n - 1) / n * nbytes / bw
