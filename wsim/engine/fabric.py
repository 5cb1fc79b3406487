"""Links: FIFO, cut-through, one direction each. The fabric's only resource type.

A link serves transfers one at a time in the order they were requested (a capacity-1 FIFO
resource, as ``simpy.Resource`` would be), but it is booked by arithmetic instead of request and
release events: a transfer may start once the link is free and the chunk's first byte (head) has
arrived; it ends when the link has sent every byte and the chunk's last byte (tail) has arrived
(cut-through at line rate: a slower upstream holds the link). The far end sees head and tail one
hop latency later. ``tests/engine/test_fabric.py`` checks this booking against ``simpy.Resource``.
"""

from __future__ import annotations


class Link:
    __slots__ = ("name", "bytes_per_s", "latency_s", "free_at", "busy_s", "bytes", "transfers",
                 "spans")

    def __init__(self, name: str, bytes_per_s: float, latency_s: float, trace: bool = False):
        self.name = name
        self.bytes_per_s = bytes_per_s
        self.latency_s = latency_s
        self.free_at = 0.0
        self.busy_s = 0.0  # time spent moving bytes
        self.bytes = 0.0
        self.transfers = 0
        self.spans: list | None = [] if trace else None

    def send(self, head_s: float, tail_s: float, nbytes: float, label: str = "") -> tuple[float, float]:
        """Book a transfer whose head is ready at ``head_s`` and tail at ``tail_s``.

        Returns (head, tail) arrival times at the far end."""
        duration = nbytes / self.bytes_per_s
        start = head_s if head_s > self.free_at else self.free_at
        end = start + duration
        if tail_s > end:
            end = tail_s
        self.free_at = end
        self.busy_s += duration
        self.bytes += nbytes
        self.transfers += 1
        if self.spans is not None:
            self.spans.append((start, end - start, label))
        return start + self.latency_s, end + self.latency_s


class Processor:
    """A FIFO compute resource booked the same way (MemoryX's optimizer)."""

    __slots__ = ("name", "free_at", "busy_s", "spans")

    def __init__(self, name: str, trace: bool = False):
        self.name = name
        self.free_at = 0.0
        self.busy_s = 0.0
        self.spans: list | None = [] if trace else None

    def book(self, now_s: float, duration_s: float, label: str = "") -> float:
        start = now_s if now_s > self.free_at else self.free_at
        self.free_at = start + duration_s
        self.busy_s += duration_s
        if self.spans is not None:
            self.spans.append((start, duration_s, label))
        return self.free_at
