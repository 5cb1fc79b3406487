"""Speed of the GPU cost model (run with ``-m benchmark --benchmark-enable -s``): prints figures.

Targets (issue 12): one plan evaluation under 1 ms; the complete GPT-3 175B search on 4,096 GPUs
under 10 s. Printed, not asserted as timings (machines differ).
"""

import time

import pytest

from models import zoo
from wsim.gpu import STACKS, estimate, search
from wsim.gpu.inputs import make_consts
from wsim.gpu.step import evaluate

GPT3 = zoo.get("gpt3-175b")


@pytest.mark.benchmark
def test_bench_one_plan_evaluation(benchmark):
    """``estimate`` of one fully specified plan (validation, evaluation, regime, report)."""
    kw = dict(seq=2048, batch=3072, gpus=4096, tp=8, pp=8, micro_batch=1, interleave=2,
              stack="megatron")
    estimate(GPT3, **kw)  # builds the validated regimes once
    benchmark(lambda: estimate(GPT3, **kw))
    n, t0 = 1000, time.perf_counter()
    for _ in range(n):
        estimate(GPT3, **kw)
    per_call = (time.perf_counter() - t0) / n
    c = make_consts(GPT3, seq=2048, batch=3072, gpus=4096, gpu="a100-80gb", efficiency=None)
    st = STACKS["megatron-core"]
    n2, t1 = 20000, time.perf_counter()
    for i in range(n2):
        evaluate(c, 8, 8, 64, 1 + i % 2, 2, "full", False, 1, 1, st)
    core = (time.perf_counter() - t1) / n2
    print(f"\nestimate(): {per_call * 1e6:.1f} us per plan ({1 / per_call:,.0f} plans/s); "
          f"core evaluate(): {core * 1e6:.1f} us ({1 / core:,.0f} evaluations/s)")


@pytest.mark.benchmark
def test_bench_search_gpt3_175b_on_4096_a100(benchmark):
    """--search for GPT-3 175B on 4,096 A100-80GB, batch 3072 (every combination, bounds only)."""
    r = benchmark.pedantic(lambda: search(GPT3, seq=2048, batch=3072, gpus=4096, gpu="a100-80gb"),
                           rounds=3, iterations=1)
    s = r.search
    print(f"\nsearch GPT-3 175B / 4096 A100 / batch 3072: {s['wall_s']:.3f} s wall, "
          f"{s['evaluations']} evaluations ({s['evaluations_per_s']:,.0f}/s), "
          f"{s['parallel_layouts']} tp x cp x pp layouts, pruned {s['pruned_memory']} by memory, "
          f"{s['pruned_compute']} by compute; best {r.plan} at "
          f"{r.model_tflops_per_gpu:.1f} model TFLOP/s per GPU, {r.step_time_s:.2f} s per step, "
          f"regime {r.regime.get('status')}")
    assert r.fits


@pytest.mark.benchmark
def test_bench_compare_default_grid():
    """``compare`` of Cerebras-GPT 111M and 1.3B (analytic CS-2 side) on the default GPU grid
    (A100 and H100, up to 8,192 GPUs): one GPU search per grid count and phase."""
    from wsim.studies import compare as C
    for name in ("cerebras-gpt-111m", "cerebras-gpt-1.3b"):
        C._CACHE.clear()  # measure the searches, not the cache
        t0 = time.perf_counter()
        r = C.compare(name, method="analytic")
        wall = time.perf_counter() - t0
        print(f"\ncompare {name} (analytic) on the default grid: {wall:.2f} s; GPUs matched "
              f"{[g.get('gpus') for g in r.gpu]}")
        assert r.gpu
