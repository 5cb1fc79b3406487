"""Shared test setup: tiny models run on one torch thread.

On a 2-core machine with pytest-xdist workers, torch's intra-op threads only fight each other for
the cores (tiny models ran ~30x slower). Benchmarks keep torch's default threads, so that their
figures are what a user would see."""

import pytest


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
