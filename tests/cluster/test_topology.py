"""The SwarmX tree: shape, depth ~ log N, linear node count, and its symmetry quotient."""

import math

import pytest

from wsim.cluster import hardware
from wsim.cluster import generations
from wsim.cluster import topology
from wsim.errors import ConfigError


def leaves(cls):
    if cls.kind == "cs2":
        return [cls]
    return [leaf for child, _, _ in cls.children for leaf in leaves(child)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 16, 17, 64, 100, 192, 1000, 2048])
@pytest.mark.parametrize("fanout", [2, 4])
def test_tree_shape(n, fanout):
    cluster = hardware.ClusterSpec(systems=n, swarmx=hardware.SwarmXSpec(fanout=fanout), max_systems=2048)
    g = topology.build(cluster)
    topology.validate(g, fanout)  # the engine relies on build's trees being valid
    levels = max(1, math.ceil(math.log(n, fanout) - 1e-12))
    assert topology.depth(g) == levels + 1  # SwarmX levels + the MemoryX hop
    assert topology.swarmx_levels(n, fanout) == levels  # the closed form's count, without the graph
    swarmx = [v for v in g if g.nodes[v]["kind"] == "swarmx"]
    # linear in N: sum over levels of ceil(n / fanout^k) <= n / (fanout - 1) + levels
    assert len(swarmx) <= n / (fanout - 1) + levels
    for i in range(n):
        path = topology.route(g, i)
        assert path[0] == topology.MEMORYX and path[-1] == f"cs2.{i}"


@pytest.mark.parametrize("n", [1, 3, 5, 16, 17, 50, 192])
def test_symmetry_quotient_stands_for_every_system(n):
    g = topology.build(generations.preset("cs2", n))
    q = topology.symmetry_classes(g)
    assert sum(leaf.members for leaf in leaves(q)) == n
    full = topology.symmetry_classes(g, use_symmetry=False)
    assert len(leaves(full)) == n and all(leaf.members == 1 for leaf in leaves(full))


def test_power_of_fanout_collapses_to_one_chain():
    g = topology.build(generations.preset("cs2", 192))
    assert len(leaves(topology.symmetry_classes(g))) == 1


def test_a_slow_system_gets_its_own_class():
    g = topology.build(generations.preset("cs2", 16))
    g.nodes["cs2.5"]["slowdown"] = 2.0
    # the slow one, its three siblings (their parent differs now) and the other twelve
    assert [l.members for l in leaves(topology.symmetry_classes(g))] == [12, 3, 1]


def test_validate_rejects_non_positive_bandwidth():
    g = topology.build(generations.preset("cs2", 4))
    u, v = next(iter(g.edges))
    g.edges[u, v]["bytes_per_s"] = 0.0
    with pytest.raises(ConfigError, match="bandwidth"):
        topology.validate(g, 4)


def test_fanout_must_be_2_or_4():
    with pytest.raises(ConfigError, match="swarmx.fanout"):
        hardware.SwarmXSpec(fanout=3)
