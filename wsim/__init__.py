"""wsim: a simulator of Cerebras weight-streaming training, with GPU cost models to compare.

Layout (docs/design.md): ``wsim.cluster`` (what the hardware is), ``wsim.engine`` (how a step is timed:
the discrete-event engine and its closed form), ``wsim.functional`` (real tensors), ``wsim.gpu`` (GPU
cost models), ``wsim.studies`` (compare, sweep, faults, cost, calibration), ``wsim.commands`` (the CLI).
"""

import importlib

from wsim.errors import ConfigError
from wsim.cluster.hardware import ClusterSpec, CS2Spec, MemoryXSpec, PowerSpec, SwarmXSpec
from wsim.cluster.job import TrainingJob
from wsim.cluster.sparsity import Density

__all__ = ["ConfigError", "ClusterSpec", "CS2Spec", "MemoryXSpec", "PowerSpec", "SwarmXSpec", "TrainingJob",
           "Density", "simulate", "train", "generate", "gpu", "analytic", "hardware"]
__version__ = "0.2.0"

# Lazy (importing wsim must not pull in simpy or torch). ``analytic`` and ``hardware`` are the names the
# contract used before the layout of 0.2.0 (CHANGELOG.md): ``from wsim import analytic, hardware`` still
# gives the closed form and the cluster package (ClusterSpec, preset, load, from_dict).
_LAZY = {
    "simulate": ("wsim.engine.run", "simulate"),
    "train": ("wsim.functional.train", "train"),
    "generate": ("wsim.functional.generate", "generate"),
    "gpu": ("wsim.gpu", None),
    "analytic": ("wsim.engine.closed_form", None),
    "hardware": ("wsim.cluster", None),
}


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'wsim' has no attribute {name!r}")
