"""Engine speed (run with `make bench`): prints figures, asserts no timings.

Issue targets: one step of Cerebras-GPT 13B at batch 1152 on 192 CS-2 under 1 s; engine events
per second at least 40% of simpy's raw timeout rate measured in the same run; the sweep of the 7
Cerebras-GPT models x {1, 2, 4, ..., 192} systems at 8 sequences per system under 30 s."""

import time

import pytest
import simpy

from models import zoo
from wsim import hardware
from wsim.engine.run import simulate
from wsim.job import TrainingJob

pytestmark = pytest.mark.benchmark


def raw_simpy_rate(n=300_000) -> float:
    env = simpy.Environment()

    def proc():
        for _ in range(n):
            yield env.timeout(1)

    env.process(proc())
    t = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t)


def best_of(k, fn):
    best = None
    for _ in range(k):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = dt if best is None or dt < best else best
    return best, out


def test_engine_speed_13b_on_192():
    raw = max(raw_simpy_rate() for _ in range(3))
    job = TrainingJob(zoo.get("cerebras-gpt-13b"), seq=2048, batch_seqs=1152)
    cluster = hardware.preset("cs2", 192)
    wall, report = best_of(3, lambda: simulate(job, cluster))
    rate = report.events / wall
    print(f"\n[bench] simpy raw timeout rate: {raw:,.0f} events/s")
    print(f"[bench] 13B, batch 1152, 192 CS-2: {wall:.3f} s wall, {report.events:,} events, "
          f"{rate:,.0f} events/s = {rate / raw:.0%} of raw (target >= 40%; wall target < 1 s)")
    print(f"[bench]   simulated step {report.step_time_s:.4f} s, {report.micro_batches} micro-batches")


def test_sweep_speed():
    systems = [1, 2, 4, 8, 16, 32, 64, 128, 192]
    t = time.perf_counter()
    events = 0
    for name in zoo.CEREBRAS_GPT:
        for n in systems:
            r = simulate(TrainingJob(zoo.get(name), seq=2048, batch_seqs=8 * n), hardware.preset("cs2", n))
            events += r.events
    wall = time.perf_counter() - t
    print(f"\n[bench] sweep 7 models x {len(systems)} system counts at 8 seqs/system: {wall:.2f} s "
          f"wall (target < 30 s), {events:,} events")
