"""Tiny random models of every family, built here from configs (no downloads), and their transformers
twins with the same weights. Imported by tests as ``tests.tiny_models``.

Every tiny model has 2 blocks, 32 features, 4 heads and a vocabulary of 101 with bos 0 and eos 100
(inside the vocabulary, so that generation can stop). The Llama one uses grouped-query attention
(2 KV heads), the GPT-NeoX one rotates half of each head (4 of 8 dims), the GPT-J one 4 of 8 dims.
"""

from __future__ import annotations

import torch
import transformers

from models.decoder import DecoderConfig
from models.gpt import GPTConfig
from models.gpt_neox import GPTNeoXConfig
from models.gptj import GPTJConfig
from models.llama import LlamaConfig

FAMILIES = ("gpt2", "llama", "gptj", "gpt_neox")
NEW_FAMILIES = ("llama", "gptj", "gpt_neox")
VOCAB, EOS = 101, 100
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
}
# transformers' config class of each family (its model class is the config's ARCHITECTURE)
HF_CONFIG = {"gpt2": "GPT2Config", "llama": "LlamaConfig", "gptj": "GPTJConfig", "gpt_neox": "GPTNeoXConfig"}


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
    hf_cfg = getattr(transformers, HF_CONFIG[cfg.MODEL_TYPE])(**cfg.to_hf_dict(), attn_implementation=attn)
    model = getattr(transformers, cfg.ARCHITECTURE)(hf_cfg).to(dtype)
    if weights is not None:
        res = model.load_state_dict({hf_name(cfg, n): t for n, t in weights.items()}, strict=False)
        assert res.unexpected_keys == [], res.unexpected_keys
        assert res.missing_keys == ([hf_name(cfg, cfg.LM_HEAD)] if cfg.tie_word_embeddings else []), res.missing_keys
    return model


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest element difference over b's largest magnitude."""
    return ((a - b).abs().max() / b.abs().max()).item()
