"""The engine's event loop: simpy's queue, simpy's order, fewer heap entries.

Every hop of a chunk, compute item and update is a *call* ``callback(value)`` at an absolute time,
booked with ``at(t, callback, value)`` on the simpy environment's own queue (entries
``(time, priority, eid, entry)``, popped in that order, exactly as ``simpy.Environment.step`` pops
them). Two things make it cheaper than one ``simpy.Timeout`` per call, and neither changes the
order in which calls run:

- **Batching.** A call booked for the same time and callback as the newest entry, with nothing
  booked in between (no eid taken since), joins that entry instead of taking a new one. Its eid
  would have followed the entry's at once, so no other entry can run between them: running the
  batch's calls back to back is the order simpy would use. (A broadcast to four children, or 192
  CS-2s finishing the same chunk at the same instant, is one entry.) Once an entry is popped it
  takes no more calls: a call booked while it runs goes behind everything already queued.
- **A lean dispatch loop** (``run``): batches are dispatched directly; any other entry is a simpy
  event (the MemoryX stream is a simpy process) and is processed as ``Environment.step`` does.

``events`` counts the queue's entries (simpy's eids); ``calls`` counts the calls dispatched.
"""

from __future__ import annotations

from heapq import heappop, heappush

import simpy
from simpy.events import NORMAL


class _Eids:
    """simpy's event-id counter (``next(env._eid)``), readable without consuming an id."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __iter__(self):
        return self

    def __next__(self) -> int:
        n = self.n
        self.n = n + 1
        return n


class Batch:
    """A queue entry: calls of one callback at one time, in booking order."""

    __slots__ = ("callback", "values")

    def __init__(self, callback, value):
        self.callback = callback
        self.values = [value]


class EventLoop:
    """``at`` and ``run`` are closures over the loop's state: the hot path reads local cells, not
    attributes."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.eids = env._eid = _Eids()
        self.calls = 0
        queue = env._queue
        eids = self.eids
        # the newest batch, while it is still queued and no other entry was pushed after it
        last: Batch | None = None
        last_t = 0.0
        last_eid = -1

        def at(t: float, callback, value) -> None:
            """Call ``callback(value)`` at absolute time ``t`` (now, if ``t`` is in the past)."""
            nonlocal last, last_t, last_eid
            now = env._now
            if t < now:
                t = now
            eid = eids.n
            if last is not None and t == last_t and eid == last_eid + 1 and last.callback is callback:
                last.values.append(value)
                return
            eids.n = eid + 1
            last = Batch(callback, value)
            last_t, last_eid = t, eid
            heappush(queue, (t, NORMAL, eid, last))

        def run() -> None:
            """Process every entry, in simpy's order, until the queue is empty."""
            nonlocal last
            calls = 0
            try:
                while queue:
                    t, _, _, entry = heappop(queue)
                    env._now = t
                    if entry.__class__ is Batch:
                        if entry is last:
                            last = None
                        callback = entry.callback
                        values = entry.values
                        calls += len(values)
                        for value in values:
                            callback(value)
                        continue
                    # a simpy event: as simpy.Environment.step processes it
                    callbacks, entry.callbacks = entry.callbacks, None
                    for callback in callbacks:
                        callback(entry)
                    if not entry._ok and not hasattr(entry, "_defused"):
                        exc = type(entry._value)(*entry._value.args)
                        exc.__cause__ = entry._value
                        raise exc
            finally:
                self.calls += calls

        self.at = at
        self.run = run

    @property
    def events(self) -> int:
        """Queue entries so far (simpy's event ids): batches and simpy events."""
        return self.eids.n
