"""Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B; Qwen Team 2024, "Qwen2 Technical Report", arXiv
2407.10671, sec. 2.2.2): a Llama-like decoder (RMSNorm, SwiGLU, rotary, grouped-query attention with
biases on Q, K and V only) whose MLPs are ``num_experts`` fine-grained experts of width
``moe_intermediate_size``, ``num_experts_per_tok`` per token (renormalised with ``norm_topk_prob``),
plus a shared expert of width ``shared_expert_intermediate_size`` that every token passes through,
scaled by sigmoid(shared_expert_gate x). Blocks in ``mlp_only_layers``, or whose (index + 1) is not
a multiple of ``decoder_sparse_step``, keep a dense SwiGLU of ``intermediate_size``.

Names, shapes and numerics follow transformers 5's ``models/qwen2_moe/modeling_qwen2_moe.py`` (eager
attention, eager experts; ``models/moe.py``). Refused, as not modelled: sliding-window attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.decoder import check_fields, linear_shapes, require_keys
from models.llama import LlamaConfig
from models.moe import MoEConfig

_C = "Qwen2MoeConfig"


def read_moe_layers(cls, d: dict) -> dict:
    """The Qwen MoE fields of a config.json (both Qwen MoE families), sliding windows refused."""
    require_keys(d, ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads"), cls.MODEL_TYPE)
    if d.get("use_sliding_window"):
        raise ValueError("config use_sliding_window=true is not supported: transformers' sliding-window "
                         "attention is not modelled")
    # transformers 5's Qwen3MoeConfig maps num_experts to num_local_experts and writes the latter
    return dict(num_experts=d.get("num_experts", d.get("num_local_experts", cls.num_experts)),
                num_experts_per_tok=d.get("num_experts_per_tok", cls.num_experts_per_tok),
                moe_intermediate_size=d.get("moe_intermediate_size", cls.moe_intermediate_size),
                norm_topk_prob=d.get("norm_topk_prob", False),
                decoder_sparse_step=d.get("decoder_sparse_step", 1),
                mlp_only_layers=tuple(d.get("mlp_only_layers") or ()),
                output_router_logits=d.get("output_router_logits", False),
                router_aux_loss_coef=d.get("router_aux_loss_coef", 0.001))


class QwenMoE(MoEConfig):
    """What both Qwen MoE families share: their field names, dense layers and config.json."""

    n_experts = property(lambda self: self.num_experts)
    experts_per_token = property(lambda self: self.num_experts_per_tok)
    expert_ffn = property(lambda self: self.moe_intermediate_size)
    normalise_top_k = property(lambda self: self.norm_topk_prob)

    def sparse_layer(self, i: int) -> bool:
        # transformers' Qwen2MoeDecoderLayer / Qwen3MoeDecoderLayer
        return i not in self.mlp_only_layers and self.num_experts > 0 and (i + 1) % self.decoder_sparse_step == 0

    def check_qwen(self, cls: str) -> None:
        check_fields(cls, self, ints=("moe_intermediate_size", "decoder_sparse_step"),
                     bools=("norm_topk_prob",))
        if isinstance(self.num_experts, bool) or not isinstance(self.num_experts, int) or self.num_experts < 0:
            raise ValueError(f"{cls}.num_experts must be an integer >= 0, got {self.num_experts!r}")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in self.mlp_only_layers):
            raise ValueError(f"{cls}.mlp_only_layers must list block indices, got {self.mlp_only_layers!r}")
        self.check_moe(cls, "num_experts")

    def qwen_hf_dict(self, drop: tuple[str, ...]) -> dict:
        out = LlamaConfig.to_hf_dict(self)
        for key in drop:
            out.pop(key)
        return {**out, **self.moe_hf_fields(), "num_experts": self.num_experts,
                "moe_intermediate_size": self.moe_intermediate_size, "norm_topk_prob": self.norm_topk_prob,
                "decoder_sparse_step": self.decoder_sparse_step, "mlp_only_layers": list(self.mlp_only_layers),
                "use_sliding_window": False}

    def spec(self, name: str | None = None, **overrides):
        from models.spec import ModelSpec

        return ModelSpec(**{**self._spec_fields(name or self.MODEL_TYPE), **self.moe_spec_fields(), **overrides})


@dataclass(frozen=True)
class Qwen2MoeConfig(QwenMoE, LlamaConfig):
    """A Qwen2-MoE decoder; field names and meanings are those of Hugging Face ``Qwen2MoeConfig``."""

    MODEL_TYPE = "qwen2_moe"
    ARCHITECTURE = "Qwen2MoeForCausalLM"

    max_position_embeddings: int = 32768  # Qwen2MoeConfig's defaults
    num_experts: int = 60
    num_experts_per_tok: int = 4
    moe_intermediate_size: int = 1408
    shared_expert_intermediate_size: int = 5632
    norm_topk_prob: bool = False
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    qkv_bias: bool = True
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.attention_bias or self.mlp_bias:
            raise ValueError(f"{_C} has biases on Q, K and V only (qkv_bias)")
        check_fields(_C, self, ints=("shared_expert_intermediate_size",), bools=("qkv_bias",))
        self.check_qwen(_C)

    shared_expert_ffn = property(lambda self: self.shared_expert_intermediate_size)

    def attention_shapes(self):
        h, qd, kvd, b = self.hidden_size, self.num_attention_heads * self.head_dim, \
            self.num_key_value_heads * self.head_dim, self.qkv_bias
        return {**linear_shapes("self_attn.q_proj", qd, h, b), **linear_shapes("self_attn.k_proj", kvd, h, b),
                **linear_shapes("self_attn.v_proj", kvd, h, b), **linear_shapes("self_attn.o_proj", h, qd, False)}

    @classmethod
    def from_hf_dict(cls, d: dict) -> Qwen2MoeConfig:
        fields = read_moe_layers(cls, d)
        return cls(**cls._hf_fields({**d, "attention_bias": False, "mlp_bias": False}), **fields,
                   shared_expert_intermediate_size=d.get("shared_expert_intermediate_size", 5632),
                   qkv_bias=d.get("qkv_bias", True))

    def to_hf_dict(self) -> dict:
        return {**self.qwen_hf_dict(("attention_bias", "mlp_bias", "pretraining_tp")), "qkv_bias": self.qkv_bias,
                "shared_expert_intermediate_size": self.shared_expert_intermediate_size}

    def _spec_fields(self, name: str) -> dict:
        return {**super()._spec_fields(name), "attention_bias": self.qkv_bias, "attention_out_bias": False}

    @classmethod
    def _from_spec_fields(cls, spec) -> dict:
        fields = {k: v for k, v in super()._from_spec_fields(spec).items() if k not in ("attention_bias", "mlp_bias")}
        return {**fields, **spec_moe_fields(spec), "qkv_bias": spec.attention_bias,
                "shared_expert_intermediate_size": spec.shared_expert_ffn}


def spec_moe_fields(spec) -> dict:
    """A Qwen MoE config's layer fields from a ``ModelSpec`` (``moe_layers`` read back as dense layers)."""
    return dict(num_experts=spec.experts, num_experts_per_tok=spec.experts_per_token,
                moe_intermediate_size=spec.expert_ffn,
                mlp_only_layers=tuple(i for i in range(spec.layers) if i not in spec.sparse_layers))
