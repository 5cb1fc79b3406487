"""Collectives against their closed forms: ring and tree all-reduce, reduce-scatter, all-gather,
NCCL's latency model, bus bandwidth over NVLink and NICs, byte conservation."""

import dataclasses
import math

import pytest

from wsim.gpu import GPUS, Efficiency
from wsim.gpu import comm

A100 = GPUS["a100-80gb"]
E = Efficiency()
NVL = A100.nvlink_bytes_per_s * E.nvlink_efficiency
NIC = A100.nic_bytes_per_s * E.ib_efficiency


def test_ring_all_reduce_inside_a_node_is_the_textbook_formula():
    g = comm.Group(A100, E, 8, 1)
    S, n = 1e9, 8
    latency = E.collective_base_latency_s + 2 * (n - 1) * E.nvlink_hop_latency_s
    assert g.all_reduce_s(S) == pytest.approx(latency + 2 * (n - 1) / n * S / NVL, rel=1e-12)
    assert comm.ring_all_reduce_s(S, n, NVL, latency) == pytest.approx(g.all_reduce_s(S), rel=1e-12)


def test_reduce_scatter_plus_all_gather_moves_the_bytes_of_an_all_reduce():
    """Byte conservation: a ring all-reduce is a reduce-scatter followed by an all-gather."""
    for size, stride in ((8, 1), (64, 1), (128, 8), (1024, 4)):
        g = comm.Group(A100, E, size, stride)
        S = 3.7e9
        rs_bw = g.reduce_scatter_s(S) - g.ring_latency_s(1)
        ag_bw = g.all_gather_s(S) - g.ring_latency_s(1)
        ring_ar_bw = 2 * (size - 1) / size * S / g.bw
        assert rs_bw + ag_bw == pytest.approx(ring_ar_bw, rel=1e-12)
        assert g.ring_latency_s(2) - g.base == pytest.approx(2 * (g.ring_latency_s(1) - g.base))


def test_ring_latency_is_nccls_model_and_grows_linearly_with_the_group():
    """NCCL tuning.cc: base + (nsteps - nInterSteps) x NVLink hop + nInterSteps x network hop."""
    g = comm.Group(A100, E, 1536, 1)  # 192 nodes of 8
    assert (g.per_node, g.nodes) == (8, 192)
    expect = E.collective_base_latency_s + (1535 - 191) * E.nvlink_hop_latency_s \
        + 191 * E.network_hop_latency_s
    assert g.ring_latency_s(1) == pytest.approx(expect, rel=1e-12)
    g2 = comm.Group(A100, E, 768, 1)
    assert g.ring_latency_s(1) - g.base == pytest.approx(2 * (g2.ring_latency_s(1) - g2.base),
                                                          rel=0.01)


def test_tree_wins_small_messages_ring_wins_large_ones():
    g = comm.Group(A100, E, 1024, 1)
    tree_lat = E.collective_base_latency_s + 2 * (7 * E.nvlink_hop_latency_s
                                                  + math.log2(128) * E.network_hop_latency_s)
    assert g.tree_latency_s() == pytest.approx(tree_lat, rel=1e-12)
    small, large = 1e4, 1e10
    assert g.all_reduce_s(small) == pytest.approx(tree_lat + 2 * small / (g.bw * comm.TREE_BW_FACTOR))
    assert g.all_reduce_s(large) == pytest.approx(g.ring_latency_s(2) + 2 * 1023 / 1024 * large / g.bw)


def test_bus_bandwidth_counts_the_nics_a_group_really_uses():
    # tensor-parallel 8: one node, NVLink
    assert comm.Group(A100, E, 8, 1).bw == NVL
    # data parallel across nodes with tp 8: one member per node, its own NIC
    assert comm.Group(A100, E, 16, 8).bw == pytest.approx(NIC)
    # tp 4: two members per node share the ring's inter-node traffic over their two NICs
    assert comm.Group(A100, E, 64, 4).bw == pytest.approx(2 * NIC)
    # a whole-node group spreads over all 8 NICs (NCCL multi-rail), capped by NVLink
    assert comm.Group(A100, E, 64, 1).bw == pytest.approx(min(NVL, 8 * NIC))
    # unless its traffic crosses the network through each rank's own NIC only
    assert comm.Group(A100, E, 64, 1, single_nic=True).bw == pytest.approx(NIC)


def test_faster_nic_and_nvlink_are_faster():
    fast = dataclasses.replace(A100, nic_bytes_per_s=50e9, nvlink_bytes_per_s=450e9)
    for size, stride in ((64, 8), (8, 1)):
        assert comm.Group(fast, E, size, stride).all_reduce_s(1e9) < \
            comm.Group(A100, E, size, stride).all_reduce_s(1e9)


def test_single_rank_and_empty_messages_cost_nothing():
    g = comm.Group(A100, E, 1, 1)
    assert g.all_reduce_s(1e9) == g.all_gather_s(1e9) == 0.0
    assert comm.Group(A100, E, 8, 1).all_reduce_s(0) == 0.0


def test_pipeline_send_uses_megatrons_scatter_gather():
    tp = comm.Group(A100, E, 8, 1)
    S = 8e7
    t = comm.pp_send_s(S, A100, E, 64, tp)
    lat = E.collective_base_latency_s + E.network_hop_latency_s
    assert t == pytest.approx(lat + S / 8 / NIC + tp.all_gather_s(S), rel=1e-12)
