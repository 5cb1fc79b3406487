"""How a pipeline splits the layers when pp does not divide them: the edge-balanced split.

Three published stacks count the embedding and the LM head as one layer each and give the first
and the last stage one transformer layer fewer, when pp divides layers + 2:
- Megatron-Core ``account_for_embedding_in_pipeline_split`` and ``account_for_loss_in_pipeline_split``
  (megatron/core/transformer/transformer_config.py @ d98e8a64), which Megatron-Bridge's Llama 3.1
  405B recipes set (src/megatron/bridge/recipes/llama/h100/llama3.py @ 067f987d): 126 layers on
  8 stages are 15, 16 x 6, 15 (128 slots of 16);
- Megatron-DeepSpeed's ``--pp-partition-method 'type:transformer|embedding'`` as BLOOM ran it
  (github.com/bigscience-workshop/bigscience train/tr11-176B-ml/README.md @ e726b159: "pp rank 0:
  [embed | 5 transformer blocks] ... pp rank 11: [5 transformer blocks | embed]", 70 layers on 12);
- Meta's Llama 3 (arXiv 2407.21783 sec. 3.3.2: "we reduce one Transformer layer each from the first
  and the last stages", 126 layers on 16).
Every stack with ``Stack.uneven_stages`` splits so (those three); any other uneven split puts the
ceiling on the fullest stage, as before. A mixture of experts keeps its own split
(``wsim.gpu.moe``).

Time (``step._pipeline``): the middle stages hold L = (layers + 2) / pp layers and no embedding or
head, the first and the last L - 1 layers and the embedding or the head: the slowest of them sets
the pipeline's pace. Memory (``memory.memory``): the first stage holds L - 1 layers of activations
for its in-flight micro-batches, the second L layers for one fewer (``inflight_layers``).
"""

from __future__ import annotations


def edge_balanced(layers: int, pp: int) -> bool:
    """Whether an uneven-stage stack runs ``layers`` on ``pp`` stages with the first and the last
    stage one layer short (module docstring)."""
    return pp > 2 and layers % pp != 0 and (layers + 2) % pp == 0
