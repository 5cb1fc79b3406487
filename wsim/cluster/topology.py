"""The SwarmX broadcast/reduce tree between MemoryX and N CS-2 systems, as a networkx graph.

Nodes: ``"memoryx"``, SwarmX nodes ``"sx{level}.{i}"`` (level 1 sits above the CS-2s), and
``"cs2.{i}"``. Edges point downwards (weights flow down, gradients flow up the same edge's other
direction: links are full duplex). Every CS-2 sits at the same depth; each SwarmX node has at most
``fanout`` children (glossary "SwarmX": one 1:4 or two 1:2), so the depth is ceil(log_fanout N),
at least 1, and the node count grows linearly with N.

Edge attributes: ``bytes_per_s`` and ``latency_s`` (per hop). Node attributes: ``kind`` and, on
CS-2 nodes, ``slowdown`` (1.0 = nominal; fault injection sets more). The engine simulates the
*quotient* of this tree under symmetry (``symmetry_classes``): identical subtrees behave identically,
so one representative per class is enough when no tensors ride along.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from wsim.errors import ConfigError
from wsim.cluster.hardware import ClusterSpec

MEMORYX = "memoryx"


def cs2_node(i: int) -> str:
    return f"cs2.{i}"


def build(cluster: ClusterSpec) -> nx.DiGraph:
    """The tree for ``cluster.systems`` CS-2s. Children are spread evenly over parents."""
    n, fanout = cluster.systems, cluster.swarmx.fanout
    g = nx.DiGraph()
    link_bw = cluster.swarmx.link_bytes_per_s
    lat = cluster.swarmx.hop_latency_s
    level_nodes = [cs2_node(i) for i in range(n)]
    for i, name in enumerate(level_nodes):
        g.add_node(name, kind="cs2", index=i, slowdown=1.0)
    # A CS-2's link can carry no more than its own I/O (glossary "SwarmX": 12 x 100 GbE).
    leaf_bw = min(link_bw, cluster.cs2.io_bytes_per_s)
    level = 0
    while True:
        level += 1
        parents = max(1, math.ceil(len(level_nodes) / fanout))
        # spread evenly: sizes differ by at most one
        base, extra = divmod(len(level_nodes), parents)
        nxt, k = [], 0
        for p in range(parents):
            name = f"sx{level}.{p}"
            g.add_node(name, kind="swarmx", level=level)
            for _ in range(base + (1 if p < extra else 0)):
                child = level_nodes[k]
                k += 1
                g.add_edge(name, child, bytes_per_s=leaf_bw if level == 1 else link_bw, latency_s=lat)
            nxt.append(name)
        level_nodes = nxt
        if len(level_nodes) == 1:
            break
    g.add_node(MEMORYX, kind="memoryx")
    g.add_edge(MEMORYX, level_nodes[0], bytes_per_s=cluster.memoryx.stream_bytes_per_s,
               up_bytes_per_s=cluster.memoryx.ingest_bytes_per_s, latency_s=lat)
    g.graph["depth"] = level  # SwarmX levels
    g.graph["systems"] = n
    return g


def swarmx_levels(systems: int, fanout: int) -> int:
    """SwarmX levels of the tree ``build`` makes for ``systems`` CS-2s, without building it:
    ceil(log_fanout systems), at least 1."""
    level, n = 0, systems
    while True:
        level += 1
        n = max(1, math.ceil(n / fanout))
        if n == 1:
            return level


def validate(g: nx.DiGraph, fanout: int) -> None:
    """A rooted tree from MemoryX, every CS-2 a leaf at one depth, no node over its fan-out."""
    if not nx.is_arborescence(g):
        raise ConfigError("SwarmX topology is not a tree rooted at MemoryX")
    if g.out_degree(MEMORYX) != 1:
        raise ConfigError("MemoryX must feed exactly one SwarmX root")
    depths = nx.shortest_path_length(g, MEMORYX)
    leaves = [v for v in g if g.nodes[v]["kind"] == "cs2"]
    if any(g.out_degree(v) for v in leaves):
        raise ConfigError("a CS-2 cannot forward to other nodes")
    if len({depths[v] for v in leaves}) != 1:
        raise ConfigError("all CS-2 must sit at the same depth of the SwarmX tree")
    for v in g:
        if g.nodes[v]["kind"] == "swarmx" and not 1 <= g.out_degree(v) <= fanout:
            raise ConfigError(f"SwarmX node {v} has {g.out_degree(v)} children, fan-out is {fanout}")
    for u, v, d in g.edges(data=True):
        if not d["bytes_per_s"] > 0:
            raise ConfigError(f"link {u}->{v} has non-positive bandwidth {d['bytes_per_s']!r}")


def route(g: nx.DiGraph, system: int) -> list[str]:
    """MemoryX -> ... -> cs2.{system}: the nodes a weight chunk visits."""
    return nx.shortest_path(g, MEMORYX, cs2_node(system))


def depth(g: nx.DiGraph) -> int:
    """Hops from MemoryX to any CS-2 (SwarmX levels + 1)."""
    return g.graph["depth"] + 1


@dataclass
class ClassNode:
    """A representative of a symmetry class of subtrees, in the quotient tree."""

    name: str  # the representative's node name in the full tree
    kind: str
    members: int  # how many full-tree nodes it stands for
    children: list  # [(ClassNode, edge attrs dict, siblings merged into it)]
    index: int = -1  # the representative CS-2's index (leaves only)
    slowdown: float = 1.0


def symmetry_classes(g: nx.DiGraph, use_symmetry: bool = True) -> ClassNode:
    """The quotient tree: siblings with identical subtrees (same links, same CS-2 speed) merged.

    Merging changes no timing: identical subtrees see identical inputs at identical times. With
    ``use_symmetry=False`` every node is its own class (needed when tensors differ per CS-2)."""
    sig: dict[str, tuple] = {}

    def edge_key(v: str, c: str) -> tuple:
        e = g.edges[v, c]
        return (e["bytes_per_s"], e.get("up_bytes_per_s", e["bytes_per_s"]), e["latency_s"], sig[c])

    for v in reversed(list(nx.topological_sort(g))):
        d = g.nodes[v]
        kids = tuple(sorted(edge_key(v, c) for c in g.successors(v)))
        sig[v] = (d["kind"], d.get("slowdown", 1.0), kids) if use_symmetry else (v,)

    def make(v: str, members: int) -> ClassNode:
        d = g.nodes[v]
        node = ClassNode(name=v, kind=d["kind"], members=members, children=[],
                         index=d.get("index", -1), slowdown=d.get("slowdown", 1.0))
        groups: dict[tuple, list[str]] = {}
        for c in g.successors(v):
            groups.setdefault(edge_key(v, c), []).append(c)
        for group in groups.values():
            rep = group[0]
            node.children.append((make(rep, members * len(group)), dict(g.edges[v, rep]), len(group)))
        return node

    return make(MEMORYX, 1)
