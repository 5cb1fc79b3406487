"""Read and write Hugging Face checkpoints of every family (``models/registry.py``: GPT-2, Llama,
GPT-J, GPT-NeoX, Mixtral, Qwen2-MoE, Qwen3-MoE): ``config.json`` plus ``model.safetensors`` or
``pytorch_model.bin``, sharded or not. MoE experts are read and written as transformers 5 holds them
(stacked ``mlp.experts.gate_up_proj`` / ``down_proj``); the per-expert layout of published
checkpoints (Mixtral's ``block_sparse_moe.experts.{j}.w1/w3/w2``, Qwen's ``mlp.experts.{j}.gate_proj``
...) is stacked on load as transformers 5 stacks it (``models.moe.MoEConfig.normalise_checkpoint``).

The family comes from config.json's ``model_type``. The layout is that of the family's
``save_pretrained`` (``GPT2LMHeadModel``, ``LlamaForCausalLM``, ``GPTJForCausalLM``,
``GPTNeoXForCausalLM``): a tied head's matrix is stored once, as the token embedding. Older
checkpoints (``.bin`` files written by transformers 4.x, such as Cerebras-GPT's or Pythia's) also
carry a tied head's copy and non-parameter buffers (causal masks, rotary ``inv_freq``); they are
dropped on load, as transformers does (each family's ``normalise_checkpoint``). Loading checks every
tensor before returning: it never half-loads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from models.decoder import DecoderConfig
from models.registry import config_from_hf_dict

SAFE, BIN = "model.safetensors", "pytorch_model.bin"


def _read_file(path: Path) -> dict[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"checkpoint weights file {str(path)!r} does not exist") from None
    except Exception as exc:  # SafetensorError; torch.load: RuntimeError, EOFError, UnpicklingError
        raise ValueError(f"checkpoint weights file {str(path)!r} is unreadable or truncated: {exc}") from None


def _weight_files(folder: Path) -> list[Path]:
    """The weight files, safetensors first (as transformers prefers), following a shard index."""
    for single, index in ((SAFE, SAFE + ".index.json"), (BIN, BIN + ".index.json")):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text())["weight_map"]
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"shard index {str(folder / index)!r} is not readable: {exc}") from None
            return [folder / f for f in sorted(set(weight_map.values()))]
    raise ValueError(f"checkpoint folder {str(folder)!r} has no {SAFE} or {BIN} (nor a shard index)")


def load_checkpoint(path: str | os.PathLike,
                    dtype: torch.dtype | None = None) -> tuple[DecoderConfig, dict[str, Tensor]]:
    """``(config, weights)`` from a Hugging Face checkpoint folder of any supported family; weights
    keyed by HF name (tied: no head matrix of its own), cast to ``dtype`` when given. Raises
    ``ValueError`` naming the problem."""
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"checkpoint folder {str(folder)!r} does not exist")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"checkpoint folder {str(folder)!r} has no config.json")
    try:
        cfg = config_from_hf_dict(json.loads(cfg_path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(cfg_path)!r} is not readable JSON: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{str(cfg_path)!r}: {exc}") from None
    raw: dict[str, Tensor] = {}
    for f in _weight_files(folder):
        raw.update(_read_file(f))
    weights = cfg.normalise_checkpoint(raw)
    cfg.check_weights(weights, where=f"checkpoint {str(folder)!r}")
    if dtype is not None:
        weights = {n: t.to(dtype) for n, t in weights.items()}
    return cfg, {n: weights[n] for n in cfg.param_shapes()}  # HF order


def save_checkpoint(path: str | os.PathLike, cfg: DecoderConfig, weights: dict[str, Tensor],
                    safe: bool = True) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin`` when not ``safe``)
    that the family's transformers class (``from_pretrained``) loads with no missing or unexpected keys."""
    weights = {n: t for n, t in weights.items() if not (cfg.tie_word_embeddings and n == cfg.LM_HEAD)}
    cfg.check_weights(weights)
    folder = Path(path)
    target = folder / (SAFE if safe else BIN)
    others = [f for f in (SAFE, BIN, SAFE + ".index.json", BIN + ".index.json") if (folder / f).exists()]
    if [f for f in others if f != target.name]:  # they would shadow ours, or mix with it, on load
        raise ValueError(f"checkpoint folder {str(folder)!r} already holds {others}; save to a fresh folder")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {n: weights[n].detach().to("cpu").contiguous().clone() for n in cfg.param_shapes()}
    config = cfg.to_hf_dict()
    dt = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    config.update(dtype=dt, torch_dtype=dt)  # transformers 5 reads "dtype", 4.x "torch_dtype"
    # write to a temporary name, then rename: a crash never leaves a truncated checkpoint behind
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    try:
        if safe:
            from safetensors.torch import save_file

            save_file(tensors, str(tmp), metadata={"format": "pt"})
        else:
            torch.save(tensors, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder
