"""What each streamed layer of a ``models.spec.ModelSpec`` holds and does, per token: its matrix
products, element-wise operations and stored activations, and the ``LayerSpec`` list (embedding,
``layers`` blocks, head) that the engine and the cost models read. ``ModelSpec``'s methods of the same
names call these functions, each of which takes the spec as ``m``.

Conventions (stated once, used everywhere):
- FLOPs count a multiply-add as 2 FLOPs and count attention as non-causal (the full s x s score
  matrix), as Megatron-LM does (Narayanan et al., SC21, arXiv 2104.04473, eq. (3)). Backward costs
  2x forward for every matmul. Element-wise work (norms, activations, softmax, rotary) is not
  counted in FLOPs.
- What a layer *does* is listed too, for cost models that care about shapes (the wafer compute
  model, ``wsim/cluster/wafer.py``): its matrix products (``MatmulOp``: the (1 x k) @ (k x n) product per
  token, weight or activation operand) and its element-wise operations (``ElementwiseOp``: elements
  per token and arithmetic operations per element). A layer's forward FLOPs are the sum of its
  matrix products (plus the embedding's position add). With grouped-query attention the query
  projection is h -> h and the key/value projection h -> 2 kv d (kv = ``kv_heads``, d the head
  dimension); families that store Q, K and V in one matrix (GPT-2, GPT-NeoX) list one ``qkv``
  product h -> h + 2 kv d. A gated MLP lists gate and up (h -> f each) and down (f -> h).
- Activation bytes follow Korthikanti et al. 2022 (arXiv 2205.05198, sec. 4.1), per token per
  block at 16-bit, generalised term by term (``block_activations``). Their 34h + 5as for
  a GPT block with f = 4h is: LayerNorm inputs 4h, QKV input 2h, Q and K 4h, softmax output 2as,
  its dropout mask as, dropout output 2as, V 2h, output-projection input 2h, MLP input 2h, GeLU
  input 2f and output 2f, two residual dropout masks 2h. Generalised:
    norm inputs       4h sequential; 2h with a parallel residual (both norms read the block input)
    norm outputs      2h per distinct norm feeding matrices: 4h, or 2h when one norm feeds
                      attention and MLP (GPT-J)
    attention         Q 2h, K and V 4 kv d, output-projection input 2h, softmax output 2as;
                      rotary adds nothing (its backward needs only the position's cos/sin)
    MLP               GeLU input and output 4f; SwiGLU 6f (gate and up outputs, which Megatron-LM's
                      fused ``bias_swiglu`` saves, and the down-projection input)
    dropout           2h of residual masks and 3as of attention dropout (mask and output), only
                      with ``dropout`` (Cerebras-GPT, Llama, GPT-J and GPT-NeoX train without)
  Multi-head latent attention (``kv_lora_rank`` > 0; a = heads, d_qk = qk_nope + qk_rope, d_v,
  r_q = q_lora_rank, r_kv = kv_lora_rank) replaces the attention term by what its backward reads:
    latents           4 r_q + 4 r_kv, with the norm inputs and outputs (replicated: computed by the
                      un-split down projections): q_a's output (its RMSNorm's input) and the RMSNorm's
                      output (q_b's input), 2 r_q each; the same for the key/value latent, 2 r_kv each
                      (no q_a, no 4 r_q, when r_q is 0: q reads the block's norm output)
    Q, K, V           2 a d_qk + 2 a d_qk + 2 a d_v: what the attention core saves (K: every head's
                      nope part from kv_b and the shared rope key broadcast to it); the up projections'
                      outputs are not kept besides (assumption: their backward reads their inputs,
                      the latents above); the shared rope key before rotary adds nothing (rotary)
    projection input  2 a d_v; softmax output 2as as before
  A GPT-2 block without dropout gives 16h + 4f + 2as, with dropout 18h + 4f + 5as (the paper's
  34h + 5as when f = 4h). Other element sizes scale the 16-bit numbers.
"""

from __future__ import annotations

import math

from models.records import ELEMENTWISE_OPS, BlockActivations, ElementwiseOp, LayerSpec, MatmulOp


def block_activations(m, seq: int, sparse: bool | None = None) -> BlockActivations:
    """Korthikanti et al. 2022 generalised (module docstring), bytes per token at 16-bit; a
    sparse block stores its k experts' inner activations (and the shared expert's) and the
    router's logits. ``sparse`` None: a sparse block when the model has experts."""
    sparse = bool(m.experts) if sparse is None else sparse
    h, f, a, kvd = m.hidden, m.mlp_width(sparse), m.heads, m.kv_dim
    norm_inputs = 2 * h if m.parallel_residual else 4 * h
    norm_outputs = 2 * h * m.block_norms
    replicated = norm_inputs + norm_outputs + (2 * h if m.dropout else 0)
    mlp = (6 if m.gated_mlp else 4) * f + (2 * m.experts if sparse else 0)
    if m.kv_lora_rank:  # MLA (module docstring): latents replicated, Q K V and projection input split
        replicated += 4 * m.q_lora_rank + 4 * m.kv_lora_rank
        tensor_parallel = 4 * a * (m.head_dim + m.v_head_dim) + mlp
    else:
        tensor_parallel = 4 * m.q_dim + 4 * kvd + mlp  # Q, K and V, projection input, MLP
    attention = (5 if m.dropout else 2) * a * seq
    return BlockActivations(float(replicated), float(tensor_parallel), float(attention))


def block_matmuls(m, seq: int, sparse: bool = False) -> tuple[MatmulOp, ...]:
    """A block's forward matrix products per token (module docstring). A sparse block's experts
    are ``count`` = experts_per_token products of one expert's matrices (the active FLOPs)."""
    h, f, a, d, kvd, q = m.hidden, m.ffn, m.heads, m.head_dim, m.kv_dim, m.q_dim
    if m.fused_qkv:
        qkv: tuple[MatmulOp, ...] = (MatmulOp("qkv", h, q + 2 * kvd),)
    else:
        qkv = (MatmulOp("q", h, q), MatmulOp("kv", h, 2 * kvd))
    # every query head scores against seq keys and mixes seq values, whatever kv_heads is
    attention = (MatmulOp("attn_scores", d, seq, a, weight=False),
                 MatmulOp("attn_values", seq, d, a, weight=False), MatmulOp("attn_proj", q, h))
    if m.kv_lora_rank:
        qkv, attention = mla_matmuls(m, seq)
    if sparse:
        k, fe, fs = m.experts_per_token, m.expert_ffn, m.shared_expert_ffn
        e = m.experts
        mlp = (MatmulOp("router", h, e), MatmulOp("expert_gate", h, fe, k, stored=e),
               MatmulOp("expert_up", h, fe, k, stored=e), MatmulOp("expert_down", fe, h, k, stored=e))
        if fs:
            mlp += (MatmulOp("shared_gate", h, fs), MatmulOp("shared_up", h, fs),
                    MatmulOp("shared_down", fs, h), MatmulOp("shared_expert_gate", h, 1))
    elif m.gated_mlp:
        mlp = (MatmulOp("mlp_gate", h, f), MatmulOp("mlp_up", h, f), MatmulOp("mlp_down", f, h))
    else:
        mlp = (MatmulOp("mlp_fc", h, f), MatmulOp("mlp_proj", f, h))
    return qkv + attention + mlp


def mla_matmuls(m, seq: int) -> tuple[tuple[MatmulOp, ...], tuple[MatmulOp, ...]]:
    """Multi-head latent attention's products per token, non-absorbed (training's form: the up
    projections run, then attention with a heads): q_a h -> r_q and q_b r_q -> a d_qk (or q h -> a
    d_qk when q_lora_rank is 0), kv_a h -> r_kv + d_rope, kv_b r_kv -> a (d_nope + d_v); scores of
    width d_qk and values of width d_v per head; the output projection a d_v -> h."""
    h, a, rq, rkv, dqk, dv = m.hidden, m.heads, m.q_lora_rank, m.kv_lora_rank, m.head_dim, m.v_head_dim
    if rq:
        proj: tuple[MatmulOp, ...] = (MatmulOp("q_a", h, rq), MatmulOp("q_b", rq, a * dqk))
    else:
        proj = (MatmulOp("q", h, a * dqk),)
    proj += (MatmulOp("kv_a", h, rkv + m.qk_rope_head_dim), MatmulOp("kv_b", rkv, a * (m.qk_nope_head_dim + dv)))
    attention = (MatmulOp("attn_scores", dqk, seq, a, weight=False),
                 MatmulOp("attn_values", seq, dv, a, weight=False), MatmulOp("attn_proj", a * dv, h))
    return proj, attention


def block_elementwise(m, seq: int, sparse: bool = False) -> tuple[ElementwiseOp, ...]:
    h, f, a, ew = m.hidden, m.mlp_width(sparse), m.heads, ELEMENTWISE_OPS
    attn_bias = m.q_dim + 2 * m.kv_dim + (h if m.attention_out_bias else 0)
    biases = (attn_bias if m.attention_bias else 0) + (
        ((2 * f if m.gated_mlp else f) + h) if m.mlp_bias else 0)
    ops = [ElementwiseOp(m.norm, float(m.block_norms * h), ew[m.norm])]
    if m.kv_lora_rank:  # MLA's RMSNorms on the query and key/value latents
        ops.append(ElementwiseOp("latent_norm", float(m.q_lora_rank + m.kv_lora_rank), ew["rmsnorm"]))
    if m.qk_norm:  # every query and key head
        ops.append(ElementwiseOp("qk_norm", float(m.head_dim * (a + m.kv_heads)), ew["rmsnorm"]))
    if biases:
        ops.append(ElementwiseOp("bias", float(biases), ew["bias"]))
    if m.positional == "rotary":  # on the rotated dims of every query and key head (MLA: one shared key)
        keys = 1 if m.kv_lora_rank else m.kv_heads
        ops.append(ElementwiseOp("rotary", float(m.rotary_dims * (a + keys)), ew["rotary"]))
    ops.append(ElementwiseOp("softmax", float(a * seq), ew["softmax"]))
    if sparse:  # the router's softmax, then k weighted expert outputs (and the gated shared one)
        ops.append(ElementwiseOp("router_softmax", float(m.experts), ew["softmax"]))
        ops.append(ElementwiseOp("router_topk", float(m.experts),
                                 max(1.0, math.log2(m.experts_per_token))))
        shared = 1 if m.shared_expert_ffn else 0
        ops.append(ElementwiseOp("combine", float((m.experts_per_token + shared) * h), ew["combine"]))
        if shared:
            ops.append(ElementwiseOp("shared_expert_gate", 1.0, ew["sigmoid"]))
    ops.append(ElementwiseOp("activation", float(f), ew[m.activation]))
    if m.gated_mlp:
        ops.append(ElementwiseOp("gate", float(f), ew["gate"]))
    # two adds per element either way: x + attn, then + mlp (sequential) or x + attn + mlp
    ops.append(ElementwiseOp("residual", 2.0 * h, ew["residual"]))
    return tuple(ops)


def layer_specs(m, seq: int, bytes_per_element: int = 2) -> list[LayerSpec]:
    """Embedding, ``layers`` blocks, head: FLOPs and activation bytes per token at ``seq``."""
    m.check_seq(seq)
    h, v = m.hidden, m.vocab
    scale = bytes_per_element / 2.0  # the activation formulas are written for 16-bit
    ew = ELEMENTWISE_OPS
    # Megatron (SC21, eq. 3): 24 h^2 per token for f = 4h is 6h^2 (QKV) + 2h^2 (proj) + 4hf (MLP);
    # attention scores and the value product add 4 s h per token. A sparse (MoE) block streams
    # every expert (params) but a token computes with its k experts only (the FLOPs).
    kinds = {}
    sparse_layers = m.sparse_layers
    present = ([True] if sparse_layers else []) + ([False] if len(sparse_layers) < m.layers else [])
    for sparse in present:  # the block kinds this model has: sparse (MoE), dense
        mm = m.block_matmuls(seq, sparse)
        params = m.attention_params + m.norm_params(m.block_norms) + (
            m.moe_params() if sparse else m.mlp_params)
        kinds[sparse] = (mm, sum(m.flops_per_token for m in mm), m.block_elementwise(seq, sparse),
                         m.block_activations(seq, sparse).total, params)
    learned = m.positional == "learned"
    head_ew = [ElementwiseOp(m.norm, float(h), ew[m.norm])]
    if m.head_bias:
        head_ew.append(ElementwiseOp("bias", float(v), ew["bias"]))
    head_ew.append(ElementwiseOp("cross_entropy", float(v), ew["cross_entropy"]))
    specs = [
        LayerSpec(
            name="embedding",
            kind="embedding",
            params=m.embedding_params,
            owned_params=m.embedding_params,
            fwd_flops_per_token=float(h) if learned else 0.0,  # adding the position vector
            bwd_flops_per_token=float(h),  # scatter-adding the gradient rows
            act_bytes_per_token=0.0,  # token ids only
            input_bytes_per_token=0.0,
            needs_weights_in_backward=False,
            elementwise=(ElementwiseOp("position", float(h), ew["position"]),) if learned else (),
        )
    ]
    for i in range(m.layers):
        block_mm, block_fwd, block_ew, block_act, block_params = kinds[i in sparse_layers]
        specs.append(
            LayerSpec(
                name=f"block{i}",
                kind="block",
                params=block_params,
                owned_params=block_params,
                fwd_flops_per_token=block_fwd,
                bwd_flops_per_token=2.0 * block_fwd,
                act_bytes_per_token=block_act * scale,
                input_bytes_per_token=2 * h * scale,
                matmuls=block_mm,
                elementwise=block_ew,
            )
        )
    head_owned = m.head_params - (v * h if m.tied_embeddings else 0)
    specs.append(
        LayerSpec(
            name="head",
            kind="head",
            params=m.head_params,
            owned_params=head_owned,
            fwd_flops_per_token=2.0 * v * h,
            bwd_flops_per_token=4.0 * v * h,
            # final norm input and LM head input (2h each) plus the softmax over V
            act_bytes_per_token=(4 * h + 2 * v) * scale,
            input_bytes_per_token=2 * h * scale,
            matmuls=(MatmulOp("lm_head", h, v),),
            elementwise=tuple(head_ew),
        )
    )
    return specs
