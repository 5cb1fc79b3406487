"""The arithmetic link booking equals a simpy.Resource FIFO server (store-and-forward case), and
cut-through never beats line rate."""

import random

import simpy

from wsim.engine.fabric import Link, Processor


def simpy_fifo(requests, bytes_per_s):
    """Reference: one simpy.Resource(capacity=1) serving transfers in request order."""
    env = simpy.Environment()
    link = simpy.Resource(env, capacity=1)
    done = {}

    def transfer(i, at, nbytes):
        yield env.timeout(at)
        with link.request() as req:
            yield req
            yield env.timeout(nbytes / bytes_per_s)
        done[i] = env.now

    for i, (at, nbytes) in enumerate(requests):
        env.process(transfer(i, at, nbytes))
    env.run()
    return [done[i] for i in range(len(requests))]


def test_booking_matches_simpy_resource():
    rng = random.Random(7)
    for _ in range(20):
        t, requests = 0.0, []
        for _ in range(50):
            t += rng.expovariate(1.0)
            requests.append((t, rng.uniform(0.1, 3.0)))
        link = Link("l", bytes_per_s=1.3, latency_s=0.0)
        ours = [link.send(at, at, nbytes)[1] for at, nbytes in requests]
        ref = simpy_fifo(requests, 1.3)
        assert all(abs(a - b) < 1e-9 for a, b in zip(ours, ref))


def test_cut_through_is_limited_by_the_slower_of_link_and_source():
    link = Link("l", bytes_per_s=10.0, latency_s=0.5)
    head, tail = link.send(0.0, 4.0, 10.0)  # source trickles: tail ready at 4 s
    assert (head, tail) == (0.5, 4.5)
    head, tail = link.send(4.0, 4.0, 100.0)  # link-bound: 10 s at line rate
    assert (head, tail) == (4.5, 14.5)
    assert link.busy_s == 11.0 and link.bytes == 110.0


def test_processor_is_fifo():
    p = Processor("opt")
    assert p.book(0.0, 2.0) == 2.0
    assert p.book(1.0, 1.0) == 3.0  # queued behind the first
    assert p.book(10.0, 1.0) == 11.0
    assert p.busy_s == 4.0
