"""Tiny random models of every family, built here from configs (no downloads), and their transformers
twins with the same weights. Imported by tests as ``tests.tiny_models``.

Every tiny model has 2 blocks, 32 features, 4 heads and a vocabulary of 101 with bos 0 and eos 100
(inside the vocabulary, so that generation can stop). The Llama one uses grouped-query attention
(2 KV heads), the GPT-NeoX one rotates half of each head (4 of 8 dims), the GPT-J one 4 of 8 dims.
The MoE ones (Llama-like, 2 KV heads) have 4 experts, 2 per token: Mixtral's of width 24; Qwen2-MoE's
of width 16 with a shared expert of 24 in block 0 and a dense block 1 (``mlp_only_layers``);
Qwen3-MoE's of width 16 with 16-dim heads (wider than hidden/heads) and renormalised top-2 weights.
transformers' twins use its eager experts (its default grouped_mm takes no float64 on CPU).
"""

from __future__ import annotations

import torch
import transformers

from models.decoder import DecoderConfig
from models.gpt import GPTConfig
from models.gpt_neox import GPTNeoXConfig
from models.gptj import GPTJConfig
from models.llama import LlamaConfig
from models.mixtral import MixtralConfig
from models.qwen2_moe import Qwen2MoeConfig
from models.qwen3_moe import Qwen3MoeConfig

FAMILIES = ("gpt2", "llama", "gptj", "gpt_neox")  # the dense ones
MOE_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe")
NEW_FAMILIES = ("llama", "gptj", "gpt_neox", *MOE_FAMILIES)
ALL_FAMILIES = FAMILIES + MOE_FAMILIES
VOCAB, EOS = 101, 100
_LLAMA_LIKE = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                   vocab_size=VOCAB, max_position_embeddings=64, rope_theta=500.0, bos_token_id=0,
                   eos_token_id=EOS)
_TINY = {
    "gpt2": (GPTConfig, dict(n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=64,
                             bos_token_id=0, eos_token_id=EOS)),
    "llama": (LlamaConfig, dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                num_key_value_heads=2, intermediate_size=48, vocab_size=VOCAB,
                                max_position_embeddings=64, rope_theta=500.0, bos_token_id=0,
                                eos_token_id=EOS)),
    "gptj": (GPTJConfig, dict(n_layer=2, n_embd=32, n_head=4, rotary_dim=4, vocab_size=VOCAB,
                              n_positions=64, bos_token_id=0, eos_token_id=EOS)),
    "gpt_neox": (GPTNeoXConfig, dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                     intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=64,
                                     rotary_pct=0.5, bos_token_id=0, eos_token_id=EOS)),
    "mixtral": (MixtralConfig, dict(_LLAMA_LIKE, intermediate_size=24, num_local_experts=4, num_experts_per_tok=2)),
    "qwen2_moe": (Qwen2MoeConfig, dict(_LLAMA_LIKE, intermediate_size=48, num_experts=4, num_experts_per_tok=2,
                                       moe_intermediate_size=16, shared_expert_intermediate_size=24,
                                       mlp_only_layers=(1,))),
    "qwen3_moe": (Qwen3MoeConfig, dict(_LLAMA_LIKE, intermediate_size=48, num_experts=4, num_experts_per_tok=2,
                                       moe_intermediate_size=16, head_dim=16, norm_topk_prob=True)),
}
# transformers' config class of each family (its model class is the config's ARCHITECTURE)
HF_CONFIG = {"gpt2": "GPT2Config", "llama": "LlamaConfig", "gptj": "GPTJConfig", "gpt_neox": "GPTNeoXConfig",
             "mixtral": "MixtralConfig", "qwen2_moe": "Qwen2MoeConfig", "qwen3_moe": "Qwen3MoeConfig"}


def tiny(model_type: str, **overrides) -> DecoderConfig:
    cls, fields = _TINY[model_type]
    return cls(**{**fields, **overrides})


def perturbed(cfg: DecoderConfig, dtype: torch.dtype = torch.float64, seed: int = 0,
              scale: float = 0.05) -> dict[str, torch.Tensor]:
    """The family's init with every tensor moved off it (biases off 0, norm gains off 1), so that
    every parameter's arithmetic shows in a comparison."""
    g = torch.Generator().manual_seed(seed + 1)
    return {n: t + scale * torch.randn(t.shape, generator=g, dtype=dtype)
            for n, t in cfg.init_weights(seed, dtype).items()}


def hf_name(cfg: DecoderConfig, name: str) -> str:
    """transformers' parameter name for ours (GPT-NeoX's head: our checkpoint name embed_out, its
    module lm_head)."""
    return {ours: theirs for theirs, ours in cfg.CHECKPOINT_RENAMES.items()}.get(name, name)


def hf_model(cfg: DecoderConfig, weights: dict[str, torch.Tensor] | None = None,
             dtype: torch.dtype = torch.float64, attn: str = "eager") -> torch.nn.Module:
    """transformers' own model of ``cfg`` holding ``weights`` (eager attention: the numerics our layer
    functions mirror), in ``dtype``, in train mode as a freshly built model is."""
    hf_cfg = getattr(transformers, HF_CONFIG[cfg.MODEL_TYPE])(**cfg.to_hf_dict(), attn_implementation=attn,
                                                              experts_implementation="eager")
    model = getattr(transformers, cfg.ARCHITECTURE)(hf_cfg).to(dtype)
    if weights is not None:
        res = model.load_state_dict({hf_name(cfg, n): t for n, t in weights.items()}, strict=False)
        assert res.unexpected_keys == [], res.unexpected_keys
        assert res.missing_keys == ([hf_name(cfg, cfg.LM_HEAD)] if cfg.tie_word_embeddings else []), res.missing_keys
    return model


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest element difference over b's largest magnitude."""
    return ((a - b).abs().max() / b.abs().max()).item()


def adamw_reference(cfg: DecoderConfig, model, data: torch.Tensor, steps: int, batch: int, hyper: dict,
                    masks: dict | None = None, router_slices: int = 0) -> tuple[list[float], dict[str, torch.Tensor]]:
    """transformers' ``model`` trained on the whole batch with ``torch.optim.AdamW`` (decay on >= 2-D
    tensors, biases and norm gains not), the loss taken on its logits (its labels= loss casts logits
    to float32); ``masks`` (our parameter name -> kept entries) zero those gradients after
    ``backward`` and before ``step``. ``router_slices`` (an MoE config with output_router_logits):
    each step's rows cut into that many equal slices (CS-2s x micro-batches), each slice's loss its
    cross-entropy sum over the step's targets + router_aux_loss_coef x its own load-balancing loss x
    its share of the step's tokens, gradients summed (data parallelism). Returns the losses and the
    final weights under our names."""
    import torch.nn.functional as F

    params = dict(model.named_parameters())
    hf_masks = {params[hf_name(cfg, n)]: m for n, m in (masks or {}).items()}
    groups = [{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": hyper["weight_decay"]},
              {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=hyper["lr"], betas=hyper["betas"], eps=hyper["eps"])
    losses = []
    for k in range(steps):
        rows = data[k * batch:(k + 1) * batch]
        opt.zero_grad()
        if router_slices:
            loss, tokens = 0.0, rows[:, 1:].numel()
            for part in rows.chunk(router_slices):
                out = model(part[:, :-1], output_router_logits=True)
                ce = F.cross_entropy(out.logits.reshape(-1, cfg.vocab_size), part[:, 1:].reshape(-1), reduction="sum")
                share = part[:, 1:].numel() / tokens
                term = ce / tokens + (cfg.router_aux_loss_coef * out.aux_loss).to(torch.float64) * share
                term.backward()
                loss = loss + term.detach()
        else:
            logits = model(rows[:, :-1]).logits
            loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), rows[:, 1:].reshape(-1))
            loss.backward()
        for p, m in hf_masks.items():
            p.grad.masked_fill_(~m, 0.0)
        opt.step()
        losses.append(loss.item())
    return losses, {n: params[hf_name(cfg, n)].detach().clone() for n in cfg.param_shapes()}


def worst(report, losses: list[float], weights: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(worst relative loss difference, worst parameter difference over its tensor's largest value)"""
    dl = max(abs(a - b) / abs(b) for a, b in zip(report.losses, losses, strict=True))
    dw = max(((report.final_weights[n] - t).abs().max() / t.abs().max()).item() for n, t in weights.items())
    return dl, dw
