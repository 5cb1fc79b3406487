"""Chrome/Perfetto trace of a simulation: one track per MemoryX stage, SwarmX link and CS-2.

Open the JSON in https://ui.perfetto.dev or chrome://tracing. Times are microseconds of simulated
time. Process 1 holds MemoryX (egress, ingress, optimizer), process 2 the SwarmX links (down and
up), process 3 the CS-2s (with symmetry on, one track per class of identical systems).
"""

from __future__ import annotations

import json


def _track(events: list, pid: int, tid: int, name: str, spans) -> None:
    events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
    for start, dur, label in spans:
        events.append({"ph": "X", "name": label, "pid": pid, "tid": tid,
                       "ts": start * 1e6, "dur": max(dur, 0.0) * 1e6})


def trace_events(sim) -> list[dict]:
    if not sim.trace:
        raise ValueError("the simulation ran without trace=True")
    ev: list[dict] = []
    for pid, name in ((1, "MemoryX"), (2, "SwarmX"), (3, "CS-2")):
        ev.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}})
    mx = sim.memoryx
    _track(ev, 1, 1, "egress (weights)", mx.egress.spans)
    if mx.ingress is not mx.egress:
        _track(ev, 1, 2, "ingress (gradients)", mx.ingress.spans)
    _track(ev, 1, 3, "optimizer", mx.optimizer.spans)
    tid = 1
    for link in sim.swarmx.links_down[1:] + sim.swarmx.links_up[1:]:
        _track(ev, 2, tid, link.name, link.spans)
        tid += 1
    for i, cs2 in enumerate(sim.cs2s):
        node = cs2.node
        label = f"{node.name}" + (f" (x{node.members} identical)" if node.members > 1 else "")
        _track(ev, 3, i + 1, label, cs2.spans)
    return ev


def write_trace(sim, path: str) -> None:
    with open(path, "w") as fh:
        json.dump({"traceEvents": trace_events(sim), "displayTimeUnit": "ms"}, fh)
