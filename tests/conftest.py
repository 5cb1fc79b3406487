"""Shared test setup: tiny models run on one torch thread; a fixed-seed Hypothesis profile for CI.

On a 2-core machine with pytest-xdist workers, torch's intra-op threads only fight each other for
the cores (tiny models ran ~30x slower). Benchmarks keep torch's default threads, so that their
figures are what a user would see."""

import os

import pytest
from hypothesis import settings

# CI runs the property tests on a fixed seed (HYPOTHESIS_PROFILE=ci in .ci/run), so a failure there
# replays here with the same command; without it every run draws new examples.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _one_torch_thread(request):
    if request.node.get_closest_marker("benchmark"):
        yield
        return
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
