"""Arguments every command shares: the model (zoo name, explicit dimensions or HF config.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from models import zoo
from models.spec import ModelSpec
from wsim.errors import ConfigError


def add_model_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    g = parser.add_argument_group("model (a zoo name, a config.json, or explicit dimensions)")
    g.add_argument("--model", help="zoo name (e.g. cerebras-gpt-1.3b, llama-3-8b) or a Hugging Face "
                                   "config.json or checkpoint folder (gpt2, llama, gptj, gpt_neox)")
    g.add_argument("--layers", type=int)
    g.add_argument("--hidden", type=int)
    g.add_argument("--heads", type=int)
    g.add_argument("--ffn", type=int, default=0, help="FFN width (default 4 x hidden)")
    g.add_argument("--vocab", type=int, default=50257)
    g.add_argument("--activation", default="gelu", choices=["gelu", "gelu_new", "relu"])
    parser.set_defaults(_model_required=required)


def int_or_word(text: str, flag: str, words: tuple[str, ...]):
    """A flag's value: one of ``words`` as given, else a positive integer (ConfigError naming the flag)."""
    if text in words:
        return text
    allowed = "a positive integer" + "".join(f", {w}" for w in words[:-1]) + f" or {words[-1]}"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{flag} must be {allowed}, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"{flag} must be {allowed}, got {value}")
    return value


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def model_from_args(args: argparse.Namespace, seq: int | None = None) -> ModelSpec | None:
    """Resolve ``--model`` or ``--layers/--hidden/--heads``; raise ConfigError naming the problem."""
    dims = [args.layers, args.hidden, args.heads]
    if args.model and any(d is not None for d in dims):
        raise ConfigError("give either --model or --layers/--hidden/--heads, not both")
    try:
        if args.model:
            name = args.model
            if name.endswith(".json") or Path(name).is_dir() or Path(name).is_file():
                return zoo.from_hf_config(name)
            return zoo.get(name)
        if all(d is None for d in dims):
            if getattr(args, "_model_required", True):
                raise ConfigError("no model: give --model NAME|config.json or --layers --hidden --heads")
            return None
        missing = [n for n, d in zip(("--layers", "--hidden", "--heads"), dims) if d is None]
        if missing:
            raise ConfigError(f"explicit model dimensions need {', '.join(missing)} as well")
        positions = max(2048, seq or 0)
        return ModelSpec(
            name=f"custom-{args.layers}x{args.hidden}", layers=args.layers, hidden=args.hidden,
            heads=args.heads, ffn=args.ffn, vocab=args.vocab, positions=positions,
            activation=args.activation,
        )
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def cluster_help(what: str = "") -> str:
    """The --cluster help of every command: the preset names (wsim.cluster.generations.PRESETS)."""
    from wsim.cluster import generations

    return (f"preset ({', '.join(generations.PRESETS)}) or a cluster .json file" + (f" {what}" if what else ""))
