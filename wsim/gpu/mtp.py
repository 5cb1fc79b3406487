"""Multi-token prediction (DeepSeek-V3's MTP) and the last pipeline stage's layer count.

Mechanism (DeepSeek-AI, "DeepSeek-V3 Technical Report", arXiv 2412.19437 sec. 2.2; trained with
depth D = 1, sec. 4.2): the k-th of D modules takes the main model's (or module k - 1's) output and
the embedding of token i + k, RMS-normalises each (two norms), concatenates them (2h) and projects
them back to h (M_k, 2h x h), runs one Transformer block of the model's own kind and predicts
through the shared output head, with its own cross-entropy. Megatron-Core implements it so
(github.com/NVIDIA/Megatron-LM @ d98e8a64, megatron/core/transformer/multi_token_prediction.py):
``MultiTokenPredictionLayer`` holds ``enorm``, ``hnorm``, ``eh_proj`` (a column-parallel linear
``hidden_size * 2 -> hidden_size``, its output all-gathered over tensor ranks and scattered back to
the sequence-parallel split, ``_concat_embeddings``), one ``mtp_model_layer`` built from the decoder's
layer spec, and a ``final_layernorm``; ``process_mtp_loss`` runs ``output_layer`` again on each
module's hidden states and ``compute_language_model_loss`` on them. Placement
(megatron/core/models/gpt/gpt_model.py @ d98e8a64: ``mtp_process = mtp_on_this_rank(...)``, "without
custom PP layout, we only support put all of MTP layers on the last pipeline stage"): the MTP
block runs on the post-process (last) stage, and that stage builds an embedding too
(``if self.pre_process or self.mtp_process: self.embedding = LanguageModelEmbedding(...)``); with
pp > 1 it is a second copy of the word embeddings, kept equal to the first stage's by an all-reduce
of their gradients (megatron/core/models/common/language_module/language_module.py @ d98e8a64,
``setup_embeddings_and_output_layer``: "If use Multi-Token Prediction (MTP), we also need to
maintain duplicated embedding weights in mtp process stage").

Per micro-batch, on the last stage, each of the D modules costs (``extra``):
- one block of the model's last layer's kind (a sparse block for DeepSeek-V3: the dense block's
  ``step._layer`` terms plus ``moe.block_delta``), forward, backward and its recompute as the plan's
  recompute reruns any block (Megatron-Core checkpoints the MTP layer under "full",
  ``MultiTokenPredictionLayer._checkpointed_forward``; a selective recompute's modules are the
  layer's own), with its all-to-alls as any sparse block's;
- the projection GEMM T x 2h x h / tp (FP8 where the plan is), forward and 2x backward (and once
  more under full recompute), and its tensor-parallel collectives: with sequence parallelism the
  2h-wide input all-gathered and the h-wide output gathered (three h-wide all-gathers forward,
  three reduce-scatters backward: 1.5 all-reduces of the block's activation each way);
- element-wise: the three norms (enorm, hnorm, final_layernorm), the concatenation and the
  embedding lookup, at the block's element-wise rule, backward twice the forward;
- the embedding lookup's vocab-parallel all-reduce (as the first stage's) and a second pass of the
  LM head, forward and backward, with its cross-entropy (the last stage's head terms again).

Pipeline: ``last_stage_layers`` (Megatron-Core --decoder-last-pipeline-num-layers, or a
pipeline_model_parallel_layout whose last stage holds fewer layers, as Megatron-Bridge's DeepSeek-V3
presets set: "...tmL") gives the last stage that many transformer layers and the other pp - 1
stages the rest evenly; the pipeline's pace is the slower of the fullest stage (with the
embedding) and the last stage (its layers, the MTP modules, the head): ``step._pipeline``.

Memory on the last stage: the D blocks' weights, gradients and optimizer state as any block's
(expert weights sharded over ep and the expert-data-parallel group as the stage's others), the
projection and the norms, the embedding copy when pp > 1; activations: each block's as any block's
plus the saved projection input (2h) and the norms' inputs (2 x h), split by sequence parallelism,
and a second set of logits for the second head pass.

Model FLOPs (``wsim.gpu.flops``): Megatron-LM counts MTP (megatron/training/training.py @ d98e8a64,
``num_floating_point_operations``: ``num_moe_layers += last_layer_is_moe * mtp_num_layers``, "MTP
norms and proj": 3h + 2h^2 per module, "Logit" ``* (mtp_num_layers + 1)``); wsim follows it.
"""

from __future__ import annotations

from wsim.gpu.recompute import norm_fwd_s

# per module: enorm, hnorm and the final norm before the shared head (multi_token_prediction.py)
NORMS = 3
# the projection's tensor-parallel collectives each way, in all-reduces of one block activation
# (three h-wide all-gathers or reduce-scatters: module docstring)
PROJ_ALL_REDUCES = 1.5


def last_is_sparse(model) -> bool:
    """Megatron-Core builds the MTP block from the last decoder layer's spec (training.py counts it
    as a sparse block when ``moe_layer_pattern[-1]``)."""
    return bool(model.experts) and (model.layers - 1) in model.sparse_layers


def stage_split(layers: int, pp: int, last: int | None) -> tuple[int, int]:
    """(layers on the fullest of the first pp - 1 stages, layers on the last stage): the even split
    puts the ceiling everywhere (``step``'s fullest stage); ``last`` given, the other stages hold
    the rest, the fullest of them its ceiling (a layout string may split the rest unevenly too:
    Megatron-Bridge's H100 DeepSeek-V3 layout "Et|(tt|)*30mL" gives 7, 8 x 6 and 6 + MTP)."""
    if last is None or pp == 1:
        L = -(-layers // pp)
        return L, L
    return -(-(layers - last) // (pp - 1)), last


def sparse_on_last(model, last: int) -> int:
    """Sparse blocks among the model's last ``last`` layers."""
    if not model.experts:
        return 0
    return sum(1 for i in model.moe_layers if i >= model.layers - last)


def proj_fwd_s(c, T: float, tp: int) -> float:
    """The projection M_k (2h -> h, column-parallel), forward, on one GPU."""
    h = c.h
    return 2.0 * T * 2.0 * h * h / tp / c.eff.gemm_efficiency(T, h / tp, 2.0 * h) / c.peak


def elementwise_fwd_s(c, T: float, tp: int, sp: bool) -> float:
    """The module's norms, concatenation (read and write 2h) and embedding lookup (write h)."""
    div = tp if sp else 1
    norms = NORMS * norm_fwd_s(c, T, div)
    copies = (2.0 * 2.0 * 2.0 * c.h + 2.0 * c.h) * T / div / c.gpu.hbm_bytes_per_s
    return norms + copies


def extra(c, tp: int, b: int, cp: int, sp: bool, recompute: str, ke: float,
          ar: float) -> tuple[float, float, float]:
    """One module's projection, norms and copies per micro-batch (beyond its block, the embedding
    and the head pass, which the caller adds): (compute, recompute, tensor-parallel seconds)."""
    T = b * c.seq / cp
    fwd = (proj_fwd_s(c, T, tp) + elementwise_fwd_s(c, T, tp, sp)) / ke
    full = recompute == "full"
    return 3.0 * fwd, (fwd if full else 0.0), PROJ_ALL_REDUCES * ar * (3.0 if full else 2.0)


def act_bytes_per_token(c, tp: int, sp: bool) -> float:
    """A module's stored bytes per token beyond its block's: the projection's input (2h, 16-bit)
    and the two input norms' inputs (h each)."""
    return 2.0 * (2.0 * c.h + 2.0 * c.h) / (tp if sp else 1)


def params_tp(c, tp: int) -> float:
    """A module's weights beyond its block's, per tensor rank: the projection (split) and the
    three norms (replicated)."""
    return 2.0 * c.h * c.h / tp + NORMS * c.h
