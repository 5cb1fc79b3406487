"""A small simpy model of Megatron-LM's pipeline schedules, to check the analytical bubble.

Each of ``p`` devices is a simpy process that runs its operations in Megatron-LM's order
(``schedules.py``: ``forward_backward_pipelining_without_interleaving`` and ``..._with_interleaving``,
SC21 sec. 2.2): warm-up forwards, then one-forward-one-backward, then cool-down backwards. An
operation starts when its device is free and its input is ready: a forward needs the previous model
stage's forward of the same micro-batch, a backward the next stage's backward (the last stage its own
forward). With ``v`` chunks per device, device i holds model stages i, p + i, ..., (v-1)p + i.
Sends take ``send_s`` (0 by default). With equal stages the step time is
``(m + (p-1)/v) * (f + b)`` (``analytic_step_s``): Megatron's bubble (p-1)/(v m).
"""

from __future__ import annotations

import simpy

from wsim.errors import ConfigError, non_negative, positive


def schedule(rank: int, p: int, m: int, v: int = 1) -> list[tuple[str, int, int]]:
    """Megatron-LM's order of ``(kind, chunk, microbatch)`` operations on device ``rank``."""
    total = m * v
    if v == 1:
        warm = min(p - rank - 1, m)
    else:
        warm = total if m == p else min((p - rank - 1) * 2 + (v - 1) * p, total)

    def fwd(k: int) -> tuple[str, int, int]:
        return ("F", (k % (p * v)) // p, (k // (p * v)) * p + k % p)

    def bwd(k: int) -> tuple[str, int, int]:
        return ("B", v - 1 - (k % (p * v)) // p, (k // (p * v)) * p + k % p)

    ops = [fwd(k) for k in range(warm)]
    for j in range(total - warm):
        ops += [fwd(warm + j), bwd(j)]
    ops += [bwd(k) for k in range(total - warm, total)]
    return ops


def simulate_pipeline(p: int, m: int, *, v: int = 1, fwd_s: float = 1.0, bwd_s: float = 2.0,
                      send_s: float = 0.0) -> float:
    """Step time of ``m`` micro-batches through ``p`` devices with ``v`` chunks each; ``fwd_s`` and
    ``bwd_s`` are one micro-batch's forward and backward time on one device (all its chunks)."""
    for name, value in (("p", p), ("m", m), ("v", v)):
        positive(f"pipeline.{name}", value, integer=True)
    positive("pipeline.fwd_s", fwd_s)
    positive("pipeline.bwd_s", bwd_s)
    non_negative("pipeline.send_s", send_s)
    if v > 1 and m % p:
        raise ConfigError(f"pipeline.m {m} must be a multiple of p {p} for the interleaved schedule")
    env = simpy.Environment()
    stages = p * v
    done = {}  # (kind, stage, microbatch) -> event

    def event(key):
        if key not in done:
            done[key] = env.event()
        return done[key]

    def device(rank: int):
        for kind, chunk, mb in schedule(rank, p, m, v):
            stage = chunk * p + rank
            if kind == "F":
                if stage > 0:
                    yield event(("F", stage - 1, mb))
                    if send_s:
                        yield env.timeout(send_s)
                yield env.timeout(fwd_s / v)
            else:
                if stage < stages - 1:
                    yield event(("B", stage + 1, mb))
                    if send_s:
                        yield env.timeout(send_s)
                else:
                    yield event(("F", stage, mb))
                yield env.timeout(bwd_s / v)
            event((kind, stage, mb)).succeed()

    for rank in range(p):
        env.process(device(rank))
    env.run()
    missing = [k for k, e in done.items() if not e.triggered]
    if missing:  # a schedule that deadlocks is a bug in ``schedule``, not bad input
        raise RuntimeError(f"pipeline schedule deadlocked at {missing[:3]}")
    return env.now


def analytic_step_s(p: int, m: int, *, v: int = 1, fwd_s: float = 1.0, bwd_s: float = 2.0) -> float:
    """Megatron's closed form: ideal time m (f + b) plus the bubble (p - 1)/v (f + b)."""
    return (m + (p - 1) / v) * (fwd_s + bwd_s)
