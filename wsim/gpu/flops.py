"""FLOPs of one training step, model and hardware, in the conventions of Megatron-LM.

Conventions (the same as ``models.spec``): a multiply-add is 2 FLOPs, attention is counted
non-causal (full s x s scores), backward is 2x forward, element-wise work and the embedding lookup
are not counted. Per token and per block the forward is ``2 (linear parameters) + 4 s h`` FLOPs
(QKV, output projection, MLP, then scores and the value product), the LM head ``2 V h``; for a
GPT block (f = 4h, no grouped-query attention) the linear part is ``2 (4h^2 + 2hf)``.

- **model FLOPs** count each matmul 3x its forward (no recompute). For f = 4h this is
  ``72 B s l h^2 (1 + s/(6h) + V/(12 l h))`` (Korthikanti et al. 2022, arXiv 2205.05198, sec. 6).
- **hardware FLOPs** add what recomputation does again: the whole block forward for ``full``
  (Narayanan et al. SC21 eq. (3): ``96 B s l h^2 (1 + s/(6h) + V/(16 l h))``, the formula of
  SC21 Table 1; the LM head is not recomputed), the attention core (``4 s h`` per token per layer,
  scores and value product) for ``selective``, nothing for ``none``.

What the hardware *spends time on* differs from these counts: a causal FlashAttention kernel skips
the masked half of the scores (``step``), and its backward recomputes the scores (FA-2 paper
sec. 3.1); those are timing effects, the FLOP counts above stay the published conventions.

``block_shape`` is the one place that reads a model's attention and MLP layout: grouped-query
attention (``kv_heads``) and gated MLPs (SwiGLU: three matrices) when ``models.spec`` provides them
(as an attribute or in ``ModelSpec.extra``), plain GPT blocks otherwise. Multi-head latent attention
(DeepSeek-V3, ``ModelSpec.kv_lora_rank`` > 0) counts its own products (``BlockShape.mla_linear``: q_a,
q_b, kv_a, kv_b, output) and an attention core of ``2 s a (d_qk + d_v)`` forward FLOPs a token (scores
of width d_qk = qk_nope + qk_rope, values of width d_v); every other model takes the code path it had.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.spec import ModelSpec

GATED = ("swiglu", "geglu", "silu_glu", "gated")


@dataclass(frozen=True)
class BlockShape:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    gated: bool
    q_dim: int = 0  # heads x head_dim: the queries' width (0: hidden)
    # multi-head latent attention (kv_lora 0: none): the ranks, the rope and nope parts of the q.k
    # width (head_dim = nope + rope) and the value width, per head
    q_lora: int = 0
    kv_lora: int = 0
    qk_rope: int = 0
    v_head: int = 0

    @property
    def mla(self) -> bool:
        return self.kv_lora > 0

    @property
    def mla_linear(self) -> tuple[tuple[str, int, int, str], ...]:
        """MLA's weight products (name, k, n, tensor-parallel split: 'none', 'column' or 'row'): the down projections q_a
        (h -> r_q) and kv_a (h -> r_kv + d_rope) are replicated, q_b (r_q -> a d_qk; or q, h -> a d_qk,
        when r_q is 0) and kv_b (r_kv -> a (d_nope + d_v)) column-parallel, the output (a d_v -> h)
        row-parallel: Megatron-Core's MLASelfAttention (github.com/NVIDIA/Megatron-LM
        megatron/core/transformer/multi_latent_attention.py @ d98e8a64: linear_q_down_proj and
        linear_kv_down_proj built with parallel_mode 'duplicated', linear_q_up_proj and
        linear_kv_up_proj column-parallel with gather_output False, linear_proj row-parallel;
        megatron/core/models/gpt/gpt_layer_specs.py @ d98e8a64: backend.linear() for the down
        projections)."""
        h, a, dqk, dv = self.hidden, self.heads, self.head_dim, self.v_head
        nope = dqk - self.qk_rope
        q = ((("q_a", h, self.q_lora, "none"), ("q_b", self.q_lora, a * dqk, "column")) if self.q_lora
             else (("q", h, a * dqk, "column"),))
        return q + (("kv_a", h, self.kv_lora + self.qk_rope, "none"),
                    ("kv_b", self.kv_lora, a * (nope + dv), "column"), ("o", a * dv, h, "row"))

    @property
    def attention_linear_params(self) -> int:
        """Weights of the attention's matmuls (no biases, no norms)."""
        if self.mla:
            return sum(k * n for _, k, n, _ in self.mla_linear)
        return self.hidden * self.qkv_out + self.q * self.hidden

    @property
    def q(self) -> int:
        return self.q_dim or self.hidden

    @property
    def qkv_out(self) -> int:
        """Width of the fused QKV projection's output: q + 2 kv_heads x head_dim (q = h unless the
        model's heads have their own width, ``ModelSpec.head_width``: Qwen3, DeepSeek-V3)."""
        return self.q + 2 * self.kv_heads * self.head_dim

    @property
    def linear_params(self) -> int:
        """Weights of the block's matmuls (no biases, no norms)."""
        h, f = self.hidden, self.ffn
        if self.mla:
            return self.attention_linear_params + (3 if self.gated else 2) * h * f
        return h * self.qkv_out + self.q * h + (3 if self.gated else 2) * h * f


def _extra(model: ModelSpec, name: str, default=None):
    value = getattr(model, name, None)
    if value is None:
        value = (model.extra or {}).get(name, default)
    return default if value is None else value


def block_shape(model: ModelSpec) -> BlockShape:
    # a mixture of experts: the shape of its dense blocks (ffn), its attention; the experts are
    # wsim.gpu.moe's (mlp_fwd_flops_per_token below counts them)
    h, a = model.hidden, model.heads
    kv = int(_extra(model, "kv_heads", a) or a)
    mlp = str(_extra(model, "mlp", "") or "").lower()
    gated = mlp in GATED or str(model.activation).lower() in GATED or bool(_extra(model, "gated_mlp",
                                                                                False))
    hd = model.head_dim  # hidden / heads unless the config gives its own (head_width)
    if getattr(model, "kv_lora_rank", 0):
        return BlockShape(hidden=h, heads=a, kv_heads=kv, head_dim=hd, ffn=model.ffn, gated=gated,
                          q_dim=a * hd, q_lora=model.q_lora_rank, kv_lora=model.kv_lora_rank,
                          qk_rope=model.qk_rope_head_dim, v_head=model.v_head_dim)
    return BlockShape(hidden=h, heads=a, kv_heads=kv, head_dim=hd, ffn=model.ffn, gated=gated,
                      q_dim=a * hd)


def linear_fwd_flops_per_token(model: ModelSpec) -> float:
    """Forward FLOPs per token of a block's weight products, averaged over the blocks. A mixture of
    experts counts, in each sparse block, the router (h x E), the k experts a token is routed to
    (SwiGLU, 3 h f_e each) and the shared expert with its gate (``ModelSpec.moe_params(active=True)``;
    Megatron's num_floating_point_operations counts the same k experts, without the router)."""
    shape = block_shape(model)
    if not model.experts:
        return 2.0 * shape.linear_params
    h = shape.hidden
    attention = shape.attention_linear_params if shape.mla else h * shape.qkv_out + shape.q * h
    dense_mlp = (3 if shape.gated else 2) * h * shape.ffn
    n = len(model.moe_layers)
    mlp = (n * model.moe_params(active=True) + (model.layers - n) * dense_mlp) / model.layers
    return 2.0 * (attention + mlp)


def attention_core_fwd_flops_per_token(model: ModelSpec, seq: int) -> float:
    """Scores and value product of every query head: 4 s (heads x head_dim); MLA 2 s heads (d_qk + d_v)."""
    shape = block_shape(model)
    if shape.mla:
        return 2.0 * seq * shape.heads * (shape.head_dim + shape.v_head)
    return 4.0 * seq * shape.q


def block_fwd_flops_per_token(model: ModelSpec, seq: int) -> float:
    return linear_fwd_flops_per_token(model) + attention_core_fwd_flops_per_token(model, seq)


def head_fwd_flops_per_token(model: ModelSpec) -> float:
    return 2.0 * model.vocab * model.hidden


def recompute_fwd_flops_per_token(model: ModelSpec, seq: int, recompute: str,
                                  modules: tuple = ("core_attn",)) -> float:
    """Extra forward FLOPs per token per block that the recompute policy runs again (selective:
    the ``modules`` it names, ``wsim.gpu.recompute``; mla_up_proj the up projections' 2 k n)."""
    if recompute == "full":
        return block_fwd_flops_per_token(model, seq)
    if recompute == "selective":
        out = attention_core_fwd_flops_per_token(model, seq) if "core_attn" in modules else 0.0
        if "mla_up_proj" in modules:
            out += sum(2.0 * k * n for _, k, n, split in block_shape(model).mla_linear
                       if split == "column")
        return out
    return 0.0


def mtp_fwd_flops_per_token(model: ModelSpec, seq: int) -> float:
    """One multi-token-prediction module's forward FLOPs a token (``wsim.gpu.mtp``), as Megatron-LM
    counts them (megatron/training/training.py @ d98e8a64, num_floating_point_operations): a block
    of the last layer's kind (``num_moe_layers += last_layer_is_moe * mtp_num_layers``), the norms
    and the projection (2 x (3h + 2h^2)) and a second pass of the head (``mtp_num_layers + 1``)."""
    shape = block_shape(model)
    h = shape.hidden
    if model.experts:
        attention = shape.attention_linear_params if shape.mla else h * shape.qkv_out + shape.q * h
        last = model.layers - 1
        mlp = model.moe_params(active=True) if last in model.sparse_layers \
            else (3 if shape.gated else 2) * h * shape.ffn
        block = 2.0 * (attention + mlp) + attention_core_fwd_flops_per_token(model, seq)
    else:
        block = block_fwd_flops_per_token(model, seq)
    return block + 2.0 * (3.0 * h + 2.0 * h * h) + head_fwd_flops_per_token(model)


def model_flops_per_step(model: ModelSpec, *, seq: int, batch: int, mtp_layers: int = 0) -> float:
    tokens = float(batch) * seq
    out = tokens * 3.0 * (model.layers * block_fwd_flops_per_token(model, seq)
                          + head_fwd_flops_per_token(model))
    if mtp_layers:  # multi-token prediction, counted as Megatron-LM counts it
        out += tokens * 3.0 * mtp_layers * mtp_fwd_flops_per_token(model, seq)
    return out


def hardware_flops_per_step(model: ModelSpec, *, seq: int, batch: int, recompute: str,
                            modules: tuple = ("core_attn",), mtp_layers: int = 0) -> float:
    """Model FLOPs plus the recomputed forward work (the MTP modules' blocks as the mean block's)."""
    tokens = float(batch) * seq
    extra = tokens * (model.layers + mtp_layers) * recompute_fwd_flops_per_token(model, seq,
                                                                                recompute, modules)
    if recompute == "selective" and "mlp" in modules:  # the dense blocks' MLPs (wsim.gpu.recompute)
        shape = block_shape(model)
        dense = model.layers - (len(model.moe_layers) if model.experts else 0)
        extra += tokens * dense * 2.0 * model.hidden * model.ffn * (3 if shape.gated else 2)
    return model_flops_per_step(model, seq=seq, batch=batch, mtp_layers=mtp_layers) + extra


def megatron_flops_per_step(*, batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """SC21 eq. (3), full recompute, f = 4h: the closed form that Table 1's TFLOP/s count."""
    B, s, l, h, V = batch, seq, layers, hidden, vocab
    return 96.0 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))
