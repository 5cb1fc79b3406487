"""Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B; Qwen Team 2025, "Qwen3 Technical Report", arXiv
2505.09388, sec. 2): a Llama-like decoder with an RMSNorm on each query and key head before the
rotary (``q_norm``, ``k_norm``), ``head_dim`` given apart from hidden/heads, and MLPs of
``num_experts`` fine-grained experts, ``num_experts_per_tok`` per token (renormalised with
``norm_topk_prob``), with no shared expert; ``decoder_sparse_step`` and ``mlp_only_layers`` keep
blocks dense as in Qwen2-MoE.

Names, shapes and numerics follow transformers 5's ``models/qwen3_moe/modeling_qwen3_moe.py`` (eager
attention, eager experts; ``models/moe.py``). Refused, as not modelled: sliding-window attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.llama import LlamaConfig
from models.qwen2_moe import QwenMoE, read_moe_layers, spec_moe_fields

_C = "Qwen3MoeConfig"


@dataclass(frozen=True)
class Qwen3MoeConfig(QwenMoE, LlamaConfig):
    """A Qwen3-MoE decoder; field names and meanings are those of Hugging Face ``Qwen3MoeConfig``."""

    MODEL_TYPE = "qwen3_moe"
    ARCHITECTURE = "Qwen3MoeForCausalLM"
    QK_NORM = True
    ROUTER_FIRST = False  # Qwen3MoeSparseMoeBlock registers its experts before its router

    max_position_embeddings: int = 32768  # Qwen3MoeConfig's defaults
    num_experts: int = 128
    num_experts_per_tok: int = 8
    moe_intermediate_size: int = 768
    norm_topk_prob: bool = False
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mlp_bias:
            raise ValueError(f"{_C} has no MLP biases")
        self.check_qwen(_C)

    def attention_shapes(self):
        d = self.head_dim
        return {**super().attention_shapes(), "self_attn.q_norm.weight": (d,), "self_attn.k_norm.weight": (d,)}

    @classmethod
    def from_hf_dict(cls, d: dict) -> Qwen3MoeConfig:
        return cls(**cls._hf_fields({**d, "mlp_bias": False}), **read_moe_layers(cls, d))

    def to_hf_dict(self) -> dict:
        return {**self.qwen_hf_dict(("mlp_bias", "pretraining_tp"))}

    def _spec_fields(self, name: str) -> dict:
        return {**super()._spec_fields(name), "qk_norm": True}

    @classmethod
    def _from_spec_fields(cls, spec) -> dict:
        fields = {k: v for k, v in super()._from_spec_fields(spec).items() if k != "mlp_bias"}
        return {**fields, **spec_moe_fields(spec)}
