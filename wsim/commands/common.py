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
    g.add_argument("--ffn", type=int, default=None, help="FFN width (default 4 x hidden)")
    g.add_argument("--vocab", type=int, default=None, help="vocabulary (default 50257)")
    g.add_argument("--activation", default=None, choices=["gelu", "gelu_new", "relu"],
                   help="default gelu")
    parser.set_defaults(_model_required=required)


def add_moe_args(parser: argparse.ArgumentParser) -> None:
    """Mixture-of-experts options (wsim/cluster/moe.py)."""
    g = parser.add_argument_group("mixture of experts")
    g.add_argument("--batch-tiling-attention", type=int, default=0, metavar="B",
                   help="Batch Tiling on Attention: attention runs on tiles of B sequences (its s x s "
                        "activations held for one tile and recomputed in the backward), so the experts "
                        "see larger micro-batches (default 0: off)")
    g.add_argument("--expert-shares", default=None, metavar="S1,S2,...|FILE.json",
                   help="a measured routing distribution: one share or count per expert (comma list or "
                        "a JSON list); default: uniform routing, T k / E tokens per expert")


def moe_job_fields(args: argparse.Namespace) -> dict:
    """TrainingJob fields from ``add_moe_args``'s flags."""
    import json

    text = getattr(args, "expert_shares", None)
    shares = None
    if text is not None:
        try:
            if text.endswith(".json"):
                shares = json.loads(Path(text).read_text())
            else:
                shares = [float(x) for x in text.split(",")]
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--expert-shares: cannot read {text!r} ({exc})") from None
        if not isinstance(shares, list):
            raise ConfigError(f"--expert-shares: {text!r} is not a list of numbers")
    tile = getattr(args, "batch_tiling_attention", 0) or 0
    if tile < 0:
        raise ConfigError(f"--batch-tiling-attention must be a positive integer (or 0: off), got {tile}")
    return {"expert_shares": shares, "attention_tile_seqs": tile}


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


def refuse_empty(args: argparse.Namespace, *names: str) -> None:
    """An empty (or blank) value of a name or path flag is refused, not read as the flag's absence."""
    for name in names:
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} is empty; give a value or drop {flag}")


def check_output(path: str | None, flag: str, *, folder: bool = False) -> None:
    """Refuse, before any work is done, an output ``path`` given to ``flag`` that cannot be written:
    an empty string, a file where a folder goes (``folder``) or a folder where a file goes, or a
    nearest existing parent folder where no file can be created (probed with a temporary file,
    removed at once: permission bits alone do not say it, e.g. for root under /proc). None: not asked."""
    import tempfile

    if path is None:
        return
    if not path.strip():
        raise ConfigError(f"{flag} is an empty path; give a {'folder' if folder else 'file'} or drop {flag}")
    target = Path(path)
    if target.exists() and target.is_dir() != folder:
        raise ConfigError(f"{flag} {path!r} is {'a file' if folder else 'a folder'}; give a "
                          f"{'folder' if folder else 'file'} path")
    parent = target if (folder and target.is_dir()) else target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write {flag} {path!r}: no file can be created in {str(parent)!r} "
                          f"({exc.strerror})") from None


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PARAMS.yaml",
                        help="a Cerebras Model Zoo config (params or trainer layout): model, batch, "
                             "sequence, systems (num_csx), precision, micro-batch size, sparsity; flags "
                             "given beside it override its values (the JSON's provenance says which)")


# (attribute, flag, what the value is called in the provenance)
CONFIG_VALUES = (("seq", "--seq", "seq"), ("batch", "--batch", "batch"), ("systems", "--systems", "systems"),
                 ("micro_batches", "--micro-batches", "micro_batches"), ("density", "--density", "density"),
                 ("steps", "--steps", "max_steps"))


def apply_config(args: argparse.Namespace, defaults: dict, *, config_steps: bool = False) -> dict | None:
    """Fill the values of ``args`` that no flag gave from ``--config`` (a Model Zoo file), else from
    ``defaults``; return ``{"provenance": {value: source}, "config": {...}}`` or None without a file.

    The model comes from the file unless ``--model`` or ``--layers/--hidden/--heads`` is given.
    ``config_steps``: ``--steps`` defaults to the file's max_steps (a whole run: ``compare``), not the
    one simulated step of ``simulate``."""
    refuse_empty(args, "config")
    path = getattr(args, "config", None)
    if not path:
        for key, value in defaults.items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)
        return None
    from wsim.cluster import generations, modelzoo

    run = modelzoo.load(path)
    prov: dict = {}
    model_flags = [f for f, v in (("--model", getattr(args, "model", None)),
                                  ("--checkpoint", getattr(args, "checkpoint", None)),
                                  ("--layers", getattr(args, "layers", None)),
                                  ("--hidden", getattr(args, "hidden", None)),
                                  ("--heads", getattr(args, "heads", None))) if v is not None]
    if model_flags:
        prov["model"] = "flag " + " ".join(model_flags)
    else:
        args._config_model = run.model
        prov.update({k: v for k, v in run.provenance.items() if k.startswith("model.")})
    systems = run.systems
    if systems is None and getattr(args, "systems", None) is None and hasattr(args, "cluster"):
        systems = generations.load(args.cluster).systems
        run.provenance["systems"] = f"--cluster {args.cluster} (the file states no num_csx)"
    values = {"seq": run.seq, "batch": run.batch_seqs, "systems": systems, "steps": run.max_steps,
              "density": None if run.block_density == 1 else f"block={run.block_density:.12g}"}
    for attr, flag, name in CONFIG_VALUES:
        if not hasattr(args, attr) or (attr == "steps" and not config_steps):
            continue
        if getattr(args, attr) is not None:
            prov[name] = f"flag {flag}"
            continue
        if attr == "micro_batches":
            value = run.micro_batches(args.systems or 1)
            src = run.provenance.get("micro_batch_size", "default")
        else:
            value = values[attr]
            src = run.provenance.get(name, "default")
        if value is None:
            value = defaults.get(attr)
            src = "default" if value is None else f"default ({value})"
        setattr(args, attr, value)
        prov[name] = src
    args._bytes_per_element = run.bytes_per_element
    prov["precision"] = run.provenance.get("precision", "default")
    return {"provenance": prov,
            "config": {"file": str(path), "layout": run.layout, "modelzoo_model": run.modelzoo_name,
                       "precision": run.precision, "micro_batch_size": run.micro_batch_size,
                       "notes": list(run.notes)}}


def config_line(r: dict) -> str:
    """One line for the human output: the Model Zoo file and where the values came from."""
    c = r.get("config")
    if not c:
        return ""
    kinds = [v.split(" ")[0] for v in r["provenance"].values()]
    given = sum(k == "flag" for k in kinds)
    default = sum(k in ("default", "--cluster") for k in kinds)
    line = (f"  config             {c['file']} ({c['layout']} layout, {c['modelzoo_model']}, {c['precision']}): "
            f"{len(kinds) - given - default} values from the file, {given} from flags, {default} defaults")
    return line + "".join(f"\n  note               {n}" for n in c["notes"])


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def model_from_args(args: argparse.Namespace, seq: int | None = None) -> ModelSpec | None:
    """Resolve ``--model`` or ``--layers/--hidden/--heads``; raise ConfigError naming the problem."""
    refuse_empty(args, "model")
    dims = [args.layers, args.hidden, args.heads]
    config_model = getattr(args, "_config_model", None)
    # the explicit model's other dimensions: refused beside a named model rather than dropped
    extra = [f for f, v in (("--ffn", args.ffn), ("--vocab", args.vocab),
                            ("--activation", args.activation)) if v is not None]
    if extra and all(d is None for d in dims) and (args.model or config_model is not None):
        raise ConfigError(f"{', '.join(extra)} describe a model given by --layers/--hidden/--heads; "
                          f"the model comes from {'--model' if args.model else '--config'}: drop them")
    if config_model is not None and not args.model and all(d is None for d in dims):
        return config_model
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
            heads=args.heads, ffn=args.ffn or 0, vocab=50257 if args.vocab is None else args.vocab,
            positions=positions, activation=args.activation or "gelu",
        )
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def cluster_help(what: str = "") -> str:
    """The --cluster help of every command: the preset names (wsim.cluster.generations.PRESETS)."""
    from wsim.cluster import generations

    return (f"preset ({', '.join(generations.PRESETS)}) or a cluster .json file" + (f" {what}" if what else ""))
