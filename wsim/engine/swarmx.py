"""SwarmX: broadcast weight chunks down the tree, sum gradient chunks on the way up.

The fabric's narrow interface is two calls: ``broadcast(node, chunk, head, payload)`` when a
weight chunk's tail reaches ``node``, and ``reduce(node, chunk, head, part)`` when a gradient
chunk's tail reaches it from one child. Nodes here are the representatives of the symmetry
quotient (``wsim.topology.symmetry_classes``); a reduce waits for one part per child class.
"""

from __future__ import annotations

from wsim.engine.fabric import Link
from wsim.topology import ClassNode


class FabricNode:
    __slots__ = ("name", "kind", "members", "children", "parent", "up", "pending", "leaf", "index",
                 "slowdown")

    def __init__(self, cls: ClassNode):
        self.name = cls.name
        self.kind = cls.kind
        self.members = cls.members
        self.index = cls.index
        self.slowdown = cls.slowdown
        self.children: list[tuple[FabricNode, Link]] = []
        self.parent: FabricNode | None = None
        self.up: Link | None = None
        self.pending: dict[int, list] = {}
        self.leaf = None  # the CS-2 model on leaves


class SwarmX:
    def __init__(self, sim, root: ClassNode, egress: Link, ingress: Link):
        self.sim = sim
        self.links_down: list[Link] = [egress]
        self.links_up: list[Link] = [ingress]
        self.leaves: list[FabricNode] = []
        self.memoryx = FabricNode(root)
        (top, _edge, _mult), = root.children
        self.root = self._make(top, self.memoryx, egress, ingress)

    def _make(self, cls: ClassNode, parent: FabricNode, down: Link, up: Link) -> FabricNode:
        node = FabricNode(cls)
        node.parent, node.up = parent, up
        parent.children.append((node, down))
        trace = self.sim.trace
        for child, edge, _mult in cls.children:
            lat = edge["latency_s"]
            d = Link(f"{cls.name}->{child.name}", edge["bytes_per_s"], lat, trace)
            u = Link(f"{child.name}->{cls.name}", edge.get("up_bytes_per_s", edge["bytes_per_s"]), lat, trace)
            self.links_down.append(d)
            self.links_up.append(u)
            self._make(child, node, d, u)
        if cls.kind == "cs2":
            self.leaves.append(node)
        return node

    # ---- weights down -------------------------------------------------------------------------
    def broadcast(self, ev) -> None:
        node, j, head, payload = ev._value
        sim = self.sim
        if node.leaf is not None:
            node.leaf.arrive(j, payload)
            return
        nbytes = sim.stream_bytes[j]
        now = sim.env.now
        for child, link in node.children:
            h, t = link.send(head, now, nbytes, sim.stream_label[j])
            sim.at(t, self.broadcast, (child, j, h, payload))

    # ---- gradients up -------------------------------------------------------------------------
    def send_up(self, node: FabricNode, g: int, head: float, part) -> None:
        sim = self.sim
        h, t = node.up.send(head, sim.env.now, sim.grad_bytes[g], sim.grad_label[g])
        sim.at(t, self.reduce, (node.parent, node, g, h, part))

    def reduce(self, ev) -> None:
        node, child, g, head, part = ev._value
        sim = self.sim
        if node is self.memoryx:
            sim.memoryx.gradient(g, part)
            return
        kids = node.children
        if len(kids) == 1:
            self.send_up(node, g, head, part)
            return
        entry = node.pending.get(g)
        if entry is None:
            entry = node.pending[g] = [0, head, {}]
        entry[0] += 1
        if head > entry[1]:
            entry[1] = head
        if part is not None:
            entry[2][child.name] = part
        if entry[0] < len(kids):
            return
        del node.pending[g]
        total = None
        if entry[2]:
            # sum in the tree's child order, whatever the arrival order: deterministic
            parts = [entry[2][c.name] for c, _ in kids if c.name in entry[2]]
            if sim.options.drop_gradient_fault:  # test-only: lose one system's contribution
                parts = parts[:-1]
            total = sim.payload.reduce(parts)
        self.send_up(node, g, entry[1], total)
