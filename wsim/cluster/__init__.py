"""What the hardware is: the CS systems, MemoryX, SwarmX and clusters (``hardware``), the generations and
named clusters (``generations``: ``preset``, ``load``, ``from_dict``), the SwarmX tree (``topology``), the
wafer's memory plan (``memory``) and compute model (``wafer``), sparsity, power and the training job.

Nothing here imports the engine, the studies or the commands (docs/design.md, "Layout")."""

from wsim.cluster.generations import GENERATIONS, PRESETS, cluster, describe, from_dict, load, preset
from wsim.cluster.hardware import ClusterSpec, CS2Spec, MemoryXSpec, PowerSpec, SwarmXSpec
from wsim.cluster.job import TrainingJob

__all__ = ["GENERATIONS", "PRESETS", "cluster", "describe", "from_dict", "load", "preset", "ClusterSpec",
           "CS2Spec", "MemoryXSpec", "PowerSpec", "SwarmXSpec", "TrainingJob"]
