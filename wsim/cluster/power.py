"""Electrical power and energy of a CS cluster (the figures and their sources: ``hardware.PowerSpec``;
CS-3: ``wsim/cluster/generations.py``).

    P = N x (system_w + servers_per_system x server_w + network_w_per_system)
    energy per step = P x step time

Every part is taken to draw its figure throughout the step: no idle or partial-load power is
published for a CS system (an assumption, stated in ``docs/hardware.md``). ``cluster_power_w`` is
the one number other modules (``wsim compare``, reports) need.
"""

from __future__ import annotations

from wsim.errors import ConfigError
from wsim.cluster.hardware import ClusterSpec


def power_breakdown_w(cluster: ClusterSpec) -> dict[str, float]:
    """Watts by part: the CS systems, the MemoryX/SwarmX/input servers and the network."""
    if not isinstance(cluster, ClusterSpec):
        raise ConfigError(f"cluster must be a ClusterSpec, got {type(cluster).__name__}")
    p, n = cluster.power, cluster.systems
    return {
        "systems_w": n * p.system_w,
        "servers_w": n * p.servers_per_system * p.server_w,
        "network_w": n * p.network_w_per_system,
    }


def cluster_power_w(cluster: ClusterSpec) -> float:
    """The whole cluster's draw in watts (systems, servers, network)."""
    return sum(power_breakdown_w(cluster).values())


def energy_j(cluster: ClusterSpec, seconds: float) -> float:
    """Energy in joules of ``seconds`` of the cluster at its draw."""
    return cluster_power_w(cluster) * seconds
