"""torchtitan's published FSDP2 runs on 64 A100 80GB (PyTorch's own LLM trainer, 2024): held-out
validation rows of the ``fsdp`` stack, added after issue 19's fit and never fitted on.

Source: github.com/pytorch/torchtitan docs/performance.md @ 04133643 ("Llama 3 performance numbers"
and "Llama 2 performance numbers": FSDP2 (1D) on 64 A100 80GB, WPS per GPU and MFU). The table gives
the model, the local batch size (global = local x 64 FSDP ranks) and the activation-checkpointing
mode; the sequence is each family's default in torchtitan (Llama 3 8192, Llama 2 4096: "the default
sequence length in Llama 2 is 4096 which is halved compared with Llama 3", same file). Its WPS is a
rank's tokens per second (the MFU it prints, 6 N + 12 l h q t FLOPs a token at 312 TFLOP/s,
reproduces from the WPS per GPU: Llama 3 70B 331 WPS -> 51.7%).

Rows kept: the ones whose checkpointing wsim expresses, none ("no") and full (each block
recomputed: torchtitan's ``checkpoint_wrapper`` around every TransformerBlock). Left out: the
"selective layer" rows (every other block checkpointed) and "selective op" rows (PyTorch's
op-level selective checkpointing: every second matmul's output recomputed), which are neither
Megatron's selective recomputation (the attention core) nor full.
Full checkpointing there is PyTorch's non-reentrant checkpoint (torchtitan/parallelisms/
parallelize_llama.py @ 04133643, ``checkpoint_wrapper``: ``ptd_checkpoint_wrapper(module,
checkpoint_impl=CheckpointImpl.NO_REENTRANT, checkpoint_fn=checkpoint, use_reentrant=False)``) on
the PyTorch nightly torchtitan was tested with (README.md @ 04133643: ``torch-2.4.0.dev20240412``),
whose recompute stops early, before each block's ``w2`` GEMM (``recompute_early_stop``,
wsim.gpu.knobs); the full rows set it (without it: -11.0% and -11.3%).
Assumptions (the source does not state them): the A100 nodes are DGX A100-like (8 GPUs on NVLink,
the a100-80gb preset's network); attention is PyTorch's scaled_dot_product_attention with its flash
kernel (``attention="flash"``). Known difference: torchtitan reduces gradients in FP32 (its
``training.mixed_precision_reduce`` default, "float32", fed to FSDP2's MixedPrecisionPolicy
reduce_dtype), where the ``fsdp`` stack reduces 2 bytes an element; at 4 bytes these rows' predictions
move by under 0.5% (measured: their gradient traffic hides under compute), so it is not modelled.
"""

from __future__ import annotations

from models import zoo
from wsim.gpu.rows import VALIDATION, Row

_TITAN = ("github.com/pytorch/torchtitan docs/performance.md @ 04133643: FSDP2 (1D) on 64 A100 80GB, "
          "WPS (tokens/s per GPU)")


def validation_rows() -> list[Row]:
    rows = []
    # (tag, zoo model, sequence, local batch, checkpointing, WPS per GPU, published MFU)
    for tag, model, seq, local, ac, wps, mfu in (
            ("llama3-70b-full", "llama-3-70b", 8192, 1, "full", 331, "51.7%"),
            ("llama2-13b-none", "llama-2-13b", 4096, 2, "none", 2162, "61.1%"),
            ("llama2-70b-full", "llama-2-70b", 4096, 2, "full", 353, "50.5%")):
        rows.append(Row("titan-a100", tag, VALIDATION, zoo.get(model), "a100-80gb", 64, 64 * local,
                        seq, "tokens_per_s_per_gpu", float(wps), _TITAN,
                        dict(tp=1, pp=1, zero=3, stack="fsdp", micro_batch=local, recompute=ac,
                             attention="flash", precision="bf16",
                             **({"recompute_early_stop": True} if ac == "full" else {})),
                        notes=f"FSDP2 FULL_SHARD, local batch {local} (global {64 * local}), "
                              f"activation checkpointing {ac}; published MFU {mfu}; network and "
                              "attention kernel not stated (DGX A100 and flash assumed)"))
    return rows
