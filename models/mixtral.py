"""Mixtral (Jiang et al. 2024, "Mixtral of Experts", arXiv 2401.04088): a Llama/Mistral decoder
whose every MLP is a sparse mixture of ``num_local_experts`` SwiGLU experts, ``num_experts_per_tok``
of them per token, their router weights renormalised over the chosen ones (sec. 2.1, eq. 1-2).

Names, shapes and numerics follow transformers 5's ``models/mixtral/modeling_mixtral.py`` (eager
attention, eager experts; the MoE pieces are ``models/moe.py``, the rest ``models/llama.py``).
Refused, as not modelled: a sliding attention window and router jitter noise (transformers multiplies
a training forward's MoE input by random noise).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.decoder import check_fields, require_keys
from models.llama import LlamaConfig
from models.moe import MoEConfig

_C = "MixtralConfig"


@dataclass(frozen=True)
class MixtralConfig(MoEConfig, LlamaConfig):
    """A Mixtral decoder; field names and meanings are those of Hugging Face ``MixtralConfig``
    (``intermediate_size`` is each expert's width)."""

    MODEL_TYPE = "mixtral"
    ARCHITECTURE = "MixtralForCausalLM"
    CAST_ROUTER_WEIGHTS = False  # float32 router weights promote the dtype's expert outputs
    DROPOUT_KEYS = ("attention_dropout",)

    num_local_experts: int = 8
    num_experts_per_tok: int = 2
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001
    max_position_embeddings: int = 4096 * 32  # MixtralConfig's defaults
    rms_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.attention_bias or self.mlp_bias:
            raise ValueError(f"{_C} has no attention or MLP biases")
        check_fields(_C, self, ints=("num_local_experts",))
        self.check_moe(_C, "num_local_experts")

    n_experts = property(lambda self: self.num_local_experts)
    experts_per_token = property(lambda self: self.num_experts_per_tok)
    expert_ffn = property(lambda self: self.intermediate_size)
    normalise_top_k = True  # Mixtral renormalises always

    @classmethod
    def from_hf_dict(cls, d: dict) -> MixtralConfig:
        require_keys(d, ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                         "num_attention_heads"), cls.MODEL_TYPE)
        for key, plain in (("sliding_window", None), ("router_jitter_noise", 0.0)):
            if (d.get(key) or plain) != plain:
                raise ValueError(f"config {key}={d[key]!r} is not supported: transformers' {key} is not modelled")
        fields = cls._hf_fields({**d, "attention_bias": False, "mlp_bias": False})
        return cls(**fields, num_local_experts=d.get("num_local_experts", 8),
                   num_experts_per_tok=d.get("num_experts_per_tok", 2),
                   output_router_logits=d.get("output_router_logits", False),
                   router_aux_loss_coef=d.get("router_aux_loss_coef", 0.001))

    def to_hf_dict(self) -> dict:
        out = super().to_hf_dict()
        for key in ("attention_bias", "mlp_bias", "pretraining_tp"):
            out.pop(key)
        return {**out, **self.moe_hf_fields(), "num_local_experts": self.num_local_experts,
                "sliding_window": None, "router_jitter_noise": 0.0}

    def spec(self, name: str = "mixtral", **overrides):
        from models.spec import ModelSpec

        return ModelSpec(**{**self._spec_fields(name), **self.moe_spec_fields(), **overrides})

    @classmethod
    def _from_spec_fields(cls, spec) -> dict:
        fields = super()._from_spec_fields(spec)
        return {**fields, "num_local_experts": spec.experts, "num_experts_per_tok": spec.experts_per_token,
                "intermediate_size": spec.expert_ffn}
