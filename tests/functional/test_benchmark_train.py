"""Functional-mode speed (run with `make bench`): prints figures, asserts no timings.

Issue target: a 6-layer x 384-hidden GPT, batch 16 x 256 tokens: weight-streamed training with
N = 1 takes at most 1.25x the reference trainer's wall time, and at most 1.4x with N = 8.

The three runs are interleaved (reference, N=1, N=8, then again, ``WSIM_BENCH_ROUNDS`` rounds, 5 by
default), so that another job on the machine slows all three alike: timed at different moments, the
ratios moved from 0.94x / 1.04x on a quiet machine to 1.16x / 3.05x beside a busy process. Printed: the
best of each (the run least disturbed) and the median of the per-round ratios with their spread.
"""

import os
import statistics
import time

import pytest
import torch

from models.gpt import GPTConfig, init_weights
from wsim.functional.reference import reference_train
from wsim.functional.train import train

pytestmark = pytest.mark.benchmark


def test_weight_streamed_training_speed():
    cfg = GPTConfig(n_layer=6, n_embd=384, n_head=6, vocab_size=1024, n_positions=256)
    weights = init_weights(cfg, 0, torch.float32)
    steps, batch = 2, 16
    rounds = int(os.environ.get("WSIM_BENCH_ROUNDS", "5"))
    data = torch.randint(0, 1024, (steps * batch, 257), generator=torch.Generator().manual_seed(0))
    hyper = dict(steps=steps, batch=batch, lr=6e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    # warm up torch's kernels and the streamed path once, then alternate
    reference_train(cfg, weights, data[:batch], 1, batch, lr=6e-4, betas=(0.9, 0.95), eps=1e-8,
                    weight_decay=0.1, dtype=torch.float32)
    train(cfg, weights, data[:batch], systems=1, dtype="float32", **(hyper | {"steps": 1}))
    times = {"reference": [], "N=1": [], "N=8": []}
    for _ in range(rounds):
        t = time.perf_counter()
        reference_train(cfg, weights, data, dtype=torch.float32, **hyper)
        times["reference"].append(time.perf_counter() - t)
        for n in (1, 8):
            t = time.perf_counter()
            train(cfg, weights, data, systems=n, dtype="float32", **hyper)
            times[f"N={n}"].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    print(f"\n[bench] 6x384 GPT, {steps} steps of {batch}x256 tokens, float32, "
          f"{torch.get_num_threads()} threads, {rounds} interleaved rounds")
    print(f"[bench]   reference trainer      best {best['reference']:.2f} s")
    for n, target in (("N=1", 1.25), ("N=8", 1.4)):
        ratios = sorted(t / r for t, r in zip(times[n], times["reference"]))
        print(f"[bench]   weight-streamed {n}  best {best[n]:.2f} s = {best[n] / best['reference']:.2f}x "
              f"reference; per-round ratio median {statistics.median(ratios):.2f}x "
              f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}; target <= {target}x)")
