"""Activation offloading to host memory (Megatron-Core ``--cpu-offloading`` with
``cpu_offloading_num_layers``; Transformer Engine ``get_cpu_offload_context``).

The saved activations of the first ``n`` of a stage's ``N`` layers go to host memory during the
forward and come back during the backward, on a stream of their own (copy engines), while the
layers compute. Transformer Engine's schedule (transformer_engine/pytorch/cpu_offload.py @
00382b96, ``OffloadSynchronizer._default_offload_sync_init``): layer i's offload starts after its
forward and "needs to finish before [the forward of layer] num_layers - num_offloaded_layers + i";
its reload "needs to start after [the backward of layer] num_layers - 1 - num_offloaded_layers + i"
and finish before layer i's backward. "If all layers have memory footprint of T then peak memory
usage of saving activations is (num_layers - num_offloaded_layers) * T": that is the memory
(``memory.memory``). Time (``exposed_s``): the copies queue on one stream at the GPU's host link
bandwidth (``GpuSpec.host_link_bytes_per_s``: PCIe, or NVLink-C2C on Grace); the compute waits
when a deadline passes before the copy is done. ASSUMPTION: a copy holds no SMs (copy engines), so
a hidden copy costs nothing; its HBM traffic (at most the host link's rate, 3% of a B200's HBM
bandwidth over NVLink-C2C) is not charged.

Megatron-Core refuses offloading with pipeline parallelism ("Currently there is no support for
Pipeline parallelism with CPU offloading"), with activation recomputation ("CPU offloading does
not work when activation recomputation is enabled") and with per-layer CUDA graphs ("CUDA graphs
not supported with CPU offloading"), and needs fewer offloaded layers than layers
(megatron/core/transformer/transformer_config.py @ d98e8a64, ``__post_init__``): the plan checks
the same (``wsim.gpu.plan``).
"""

from __future__ import annotations

from wsim.gpu.memory import act_bytes_per_token_layer


def exposed_s(layers: int, offloaded: int, copy_s: float, fwd_s: float, bwd_s: float) -> float:
    """Seconds per micro-batch that the compute waits for offload copies: ``layers`` layers of
    ``fwd_s`` forward and ``bwd_s`` backward each, the first ``offloaded`` of them copied out in
    forward and back in backward, ``copy_s`` each way (Transformer Engine's deadlines, module
    docstring). 0 when nothing is offloaded."""
    if offloaded <= 0:
        return 0.0
    keep = layers - offloaded  # layer i's offload is due before the forward of layer keep + i
    wait = 0.0
    # forward: layer j computes, then its offload queues on the copy stream
    t = stream = 0.0
    done = [0.0] * offloaded
    for j in range(layers):
        i = j - keep
        if 0 <= i < offloaded and done[i] > t:
            wait += done[i] - t
            t = done[i]
        t += fwd_s
        if j < offloaded:
            stream = max(stream, t) + copy_s
            done[j] = stream
    # backward, layers in reverse: layer i's reload starts at the backward of layer keep - 1 + i
    # and is due before layer i's backward
    t, stream = 0.0, 0.0
    for k in range(layers - 1, -1, -1):
        i = k - (keep - 1)
        if 0 <= i < offloaded:
            stream = max(stream, t) + copy_s
            done[i] = stream
        if k < offloaded and done[k] > t:
            wait += done[k] - t
            t = done[k]
        t += bwd_s
    return wait


def layer_bytes(c, tp: int, b: int, cp: int, sp: bool) -> float:
    """One layer's saved activations for a micro-batch of ``b`` sequences: what one offload copy
    moves (no recompute: offloading excludes it)."""
    return b * c.seq / cp * act_bytes_per_token_layer(c, tp, "none", sp)


def offload_runs(pp: int, recompute: str, layers_per_stage: int, kn) -> bool:
    """Whether a plan can offload ``kn.cpu_offload_layers`` layers (Megatron-Core's checks)."""
    return pp == 1 and recompute == "none" and kn.cpu_offload_layers < layers_per_stage \
        and not kn.cuda_graphs


def offload_to_fit(c, st, kn, given: dict, pp: int, recompute: str, layers: int, b: int, cp: int,
                   tp: int, sp: bool, over_bytes: float, sparse):
    """The search's choice: the options ``kn`` with the fewest offloaded layers that free
    ``over_bytes`` of activations (CUDA graphs off, which offloading excludes, unless given on),
    or None where the plan cannot offload (pp > 1, recompute, a mixture of experts, a stack
    without the option, an offload or CUDA graphs given, or not enough layers)."""
    if pp != 1 or recompute != "none" or sparse is not None or c.moe is not None \
            or "cpu_offload_layers" not in st.knobs or given.get("cpu_offload_layers") is not None \
            or given.get("cuda_graphs"):
        return None
    n = -(-over_bytes // layer_bytes(c, tp, b, cp, sp))
    if n >= layers:
        return None
    return kn._replace(cpu_offload_layers=int(n), cuda_graphs=False)
