"""The engine's event loop runs calls in exactly simpy's order, batching or not.

Reference: the same bookings made as ``simpy.Timeout`` events with one callback each, run by
``simpy.Environment.run``. Ties are frequent (integer times), callbacks book more calls, and a simpy
process shares the queue: the (time, call) logs must be identical."""

import random

import simpy

from wsim.engine.events import EventLoop


def scenario(book, env, log, rng_seed):
    """Agents that, when called, log and book 0-3 more calls at integer delays (many ties)."""
    rng = random.Random(rng_seed)
    budget = [400]

    def make(name):
        def call(value):
            log.append((env.now, name, value))
            if budget[0] <= 0:
                return
            for _ in range(rng.choice([0, 1, 1, 2, 3])):
                budget[0] -= 1
                target = agents[rng.randrange(len(agents))]
                book(env.now + rng.choice([0, 0, 1, 2]), target, budget[0])
        return call

    agents = [make(f"a{i}") for i in range(4)]
    for i in range(6):
        book(rng.choice([0, 0, 1]), agents[i % len(agents)], -i)

    def proc():  # a simpy process sharing the queue
        for k in range(20):
            yield env.timeout(rng.choice([0, 1]))
            log.append((env.now, "proc", k))

    env.process(proc())


def run_simpy(seed):
    env = simpy.Environment()
    log = []

    def book(t, callback, value):
        ev = env.timeout(max(t - env.now, 0))
        ev.callbacks.append(lambda _e: callback(value))

    scenario(book, env, log, seed)
    env.run()
    return log


def run_loop(seed):
    env = simpy.Environment()
    loop = EventLoop(env)
    log = []
    scenario(loop.at, env, log, seed)
    loop.run()
    return log, loop


def test_same_order_as_simpy_timeouts():
    batched = 0
    for seed in range(30):
        ours, loop = run_loop(seed)
        assert ours == run_simpy(seed)
        simpy_entries = 1 + 20 + 1  # the process's start, its 20 timeouts, its end
        batched += loop.calls - (loop.events - simpy_entries)  # calls that joined an entry
    assert batched > 0  # the scenarios did exercise batching


def test_calls_booked_back_to_back_share_one_entry():
    env = simpy.Environment()
    loop = EventLoop(env)
    seen = []
    f = seen.append
    for v in range(5):
        loop.at(1.0, f, v)
    loop.at(2.0, f, "later")
    loop.run()
    assert seen == [0, 1, 2, 3, 4, "later"]
    assert loop.events == 2 and loop.calls == 6


def test_a_call_booked_while_its_entry_runs_goes_behind_the_queue():
    """At one instant: entry A (calls a1, a2) then entry B; a1 books another A-call at the same
    instant: simpy runs it after B, and so must the loop (no joining an entry already popped)."""
    env = simpy.Environment()
    loop = EventLoop(env)
    seen = []

    def a(v):
        seen.append(v)
        if v == "a1":
            loop.at(env.now, a, "a3")

    loop.at(1.0, a, "a1")
    loop.at(1.0, a, "a2")
    loop.at(1.0, seen.append, "b")
    loop.run()
    assert seen == ["a1", "a2", "b", "a3"]
