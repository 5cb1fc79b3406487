"""The model families by Hugging Face ``model_type``, and dispatch on a ``config.json``.

``config_from_hf_dict`` reads a config.json dict into the family's config (``models.decoder``), so
that ``--model config.json``, ``--checkpoint DIR`` and the MemoryX checkpoints work for every family.
A config.json without ``model_type`` is read as GPT-2 (the format GPT-2 and Cerebras-GPT configs
were first published in, before transformers wrote the field).
"""

from __future__ import annotations

from models import deepseek_v3
from models.decoder import DecoderConfig
from models.gpt import GPTConfig
from models.gpt_neox import GPTNeoXConfig
from models.gptj import GPTJConfig
from models.llama import LlamaConfig
from models.mixtral import MixtralConfig
from models.qwen2_moe import Qwen2MoeConfig
from models.qwen3_moe import Qwen3MoeConfig
from models.suggest import hint

FAMILIES: dict[str, type[DecoderConfig]] = {
    c.MODEL_TYPE: c for c in (GPTConfig, LlamaConfig, GPTJConfig, GPTNeoXConfig, MixtralConfig, Qwen2MoeConfig,
                              Qwen3MoeConfig)}


def supported() -> str:
    return ", ".join(sorted(FAMILIES))


def family(model_type: str) -> type[DecoderConfig]:
    if model_type not in FAMILIES:
        raise ValueError(f"model_type {model_type!r} is not supported; {hint(model_type, FAMILIES, listing='supported')}")
    return FAMILIES[model_type]


def config_from_hf_dict(d) -> DecoderConfig:
    """The family config of a Hugging Face ``config.json`` dict, by its ``model_type``."""
    if not isinstance(d, dict):
        raise ValueError(f"a model config must be a JSON object, got {type(d).__name__}")
    model_type = d.get("model_type", "gpt2")
    if model_type not in FAMILIES:
        raise ValueError(f"model_type {model_type!r} is not supported; {hint(model_type, FAMILIES, listing='supported')}")
    return FAMILIES[model_type].from_hf_dict(d)


def config_from_spec(spec, **overrides) -> DecoderConfig:
    """The functional model of a ``ModelSpec`` (a zoo entry), of the spec's family."""
    if getattr(spec, "kv_lora_rank", 0):
        raise ValueError(f"model {spec.name!r} has multi-head latent attention (kv_lora_rank "
                         f"{spec.kv_lora_rank}): modelled for timing only (simulate, gpu), not run by train or generate")
    return family(spec.family).from_spec(spec, **overrides)


def model_name(d: dict, default: str) -> str:
    """A config's own name: ``_name_or_path`` (the hub id transformers writes), else its architecture
    (``LlamaForCausalLM``), else its model_type; ``default`` only when it has none of these."""
    name = d.get("_name_or_path")
    if isinstance(name, str) and name.strip():
        return name.strip()
    arch = d.get("architectures")
    if isinstance(arch, list) and arch and isinstance(arch[0], str):
        return arch[0]
    return str(d.get("model_type") or default)


def spec_from_hf_dict(d, source: str = ""):
    """The ``ModelSpec`` of a Hugging Face ``config.json`` dict (what ``--model config.json`` reads);
    a ``deepseek_v3`` config for timing only (``models.deepseek_v3``)."""
    if isinstance(d, dict) and d.get("model_type") == deepseek_v3.MODEL_TYPE:
        return deepseek_v3.spec_from_hf_dict(d, model_name(d, deepseek_v3.MODEL_TYPE), source=source)
    cfg = config_from_hf_dict(d)
    return cfg.spec(model_name(d, cfg.MODEL_TYPE), dropout=type(cfg).hf_dropout(d), source=source)
