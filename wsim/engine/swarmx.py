"""SwarmX: broadcast weight chunks down the tree, sum gradient chunks on the way up.

The fabric's narrow interface is two callbacks (``SwarmX.callbacks``): ``broadcast((node, chunk,
head, payload))`` when a weight chunk's tail reaches ``node``, and ``reduce((node, child, chunk,
head, part))`` when a gradient chunk's tail reaches it from one child. Nodes here are the
representatives of the symmetry quotient (``wsim.cluster.topology.symmetry_classes``); a reduce waits for
one part per child class. A node whose children are CS-2s delivers to them directly.
"""

from __future__ import annotations

from wsim.engine.fabric import Link
from wsim.cluster.topology import ClassNode


class FabricNode:
    __slots__ = ("name", "kind", "members", "children", "parent", "up", "pending", "leaf", "index",
                 "slowdown", "leaf_children")

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
        self.leaf_children = False  # the children are CS-2s


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
        node.leaf_children = bool(cls.children) and all(c.kind == "cs2" for c, _, _ in cls.children)
        if cls.kind == "cs2":
            self.leaves.append(node)
        return node

    def callbacks(self):
        """``broadcast`` and ``reduce``: closures over the simulation's flat per-chunk lists."""
        sim = self.sim
        env, at, memoryx = sim.env, sim.at, self.memoryx
        stream_bytes, stream_label = sim.stream_bytes, sim.stream_label
        grad_bytes, grad_label = sim.grad_bytes, sim.grad_label

        def broadcast(value) -> None:
            """A weight chunk's tail reached ``node`` (a SwarmX node): send it on to every child."""
            node, j, head, payload = value
            nbytes = stream_bytes[j]
            label = stream_label[j]
            now = env._now
            if node.leaf_children:  # the next hop delivers to the CS-2s
                arrive = sim.arrive
                for child, link in node.children:
                    _h, t = link.send(head, now, nbytes, label)
                    at(t, arrive, (child.leaf, j, payload))
                return
            for child, link in node.children:
                h, t = link.send(head, now, nbytes, label)
                at(t, broadcast, (child, j, h, payload))

        def reduce(value) -> None:
            """A gradient chunk's tail reached ``node`` from ``child``: sum; send up when complete."""
            node, child, g, head, part = value
            if node is memoryx:
                sim.memoryx.gradient(g, part)
                return
            kids = node.children
            if len(kids) > 1:
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
                head = entry[1]
                part = None
                if entry[2]:
                    # sum in the tree's child order, whatever the arrival order: deterministic
                    parts = [entry[2][c.name] for c, _ in kids if c.name in entry[2]]
                    if sim.options.drop_gradient_fault:  # test-only: lose one system's contribution
                        parts = parts[:-1]
                    part = sim.payload.reduce(parts)
            h, t = node.up.send(head, env._now, grad_bytes[g], grad_label[g])
            at(t, reduce, (node.parent, node, g, h, part))

        return broadcast, reduce
