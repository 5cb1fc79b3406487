"""wsim: a simulator of Cerebras weight-streaming training, with GPU cost models to compare."""

from wsim.errors import ConfigError
from wsim.hardware import ClusterSpec, CS2Spec, MemoryXSpec, PowerSpec, SwarmXSpec
from wsim.job import TrainingJob
from wsim.sparsity import Density

__all__ = ["ConfigError", "ClusterSpec", "CS2Spec", "MemoryXSpec", "PowerSpec", "SwarmXSpec", "TrainingJob",
           "Density"]
__version__ = "0.1.0"


def __getattr__(name):  # lazy: importing wsim must not pull in simpy or torch
    if name == "simulate":
        from wsim.engine.run import simulate
        return simulate
    if name == "train":
        from wsim.functional.train import train
        return train
    if name == "generate":
        from wsim.functional.generate import generate
        return generate
    if name == "gpu":
        import importlib
        return importlib.import_module("wsim.gpu")
    raise AttributeError(f"module 'wsim' has no attribute {name!r}")
