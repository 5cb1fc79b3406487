"""``wsim train``: really train a model (GPT-2, Llama, GPT-J or GPT-NeoX) by weight streaming through
the engine, on the CPU."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from wsim.commands.common import add_json_arg, apply_config, check_output, cluster_help, refuse_empty
from wsim.errors import ConfigError
from wsim.cluster.sparsity import Density


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model by weight streaming on simulated CS-2s (CPU)",
                       description="Train a GPT-2, Llama, GPT-J or GPT-NeoX model by weight streaming "
                                   "through the engine, on the CPU. Step k uses rows k*B..(k+1)*B-1 of --data.")
    src = p.add_argument_group("model (one of)")
    src.add_argument("--checkpoint", help="Hugging Face checkpoint folder (GPT-2, Llama, GPT-J, GPT-NeoX)")
    src.add_argument("--model", help="zoo name or Hugging Face config.json, initialised with --init-seed")
    src.add_argument("--config", metavar="PARAMS.yaml",
                     help="a Cerebras Model Zoo config: its model (initialised with --init-seed), batch, "
                          "num_csx, micro-batch size and sparsity; flags given beside it override them")
    p.add_argument("--init-seed", type=int, default=None,
                   help="seed of the initial weights of --model / --config (default 0)")
    p.add_argument("--data", required=True, help="tokens.npy: int array of shape (rows, seq+1)")
    p.add_argument("--systems", type=int, default=None, help="default 1")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default: systems)")
    p.add_argument("--micro-batches", default=None, help="default auto")
    # None = the default below, or the checkpoint's value with --resume
    p.add_argument("--lr", type=float, default=None, help="default 6e-4")
    p.add_argument("--betas", default=None, help="default 0.9,0.95")
    p.add_argument("--eps", type=float, default=None, help="default 1e-8")
    p.add_argument("--weight-decay", type=float, default=None, help="default 0.1")
    p.add_argument("--grad-clip", type=float, default=None)
    p.add_argument("--dtype", default=None, choices=["float32", "float64"], help="default float32")
    p.add_argument("--cluster", default="cs2", help=cluster_help("for the simulated time"))
    p.add_argument("--density", default=None, metavar="D|KIND=D,...",
                   help="sparse weight streaming: train with a fixed random mask keeping this fraction "
                        "of the weight matrices, one number in (0, 1] or per layer kind, e.g. "
                        "block=0.5,head=1 (default 1: dense); the simulated time uses it too")
    p.add_argument("--mask-seed", type=int, default=None, help="seed of the masks (default 0)")
    p.add_argument("--save", help="write the trained model as a Hugging Face checkpoint here")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                   help="save MemoryX state (weights, AdamW, step) every K steps to --checkpoint-dir")
    p.add_argument("--checkpoint-dir", help="run folder for MemoryX checkpoints (step-N/ and LATEST)")
    p.add_argument("--resume", metavar="DIR", help="continue from a MemoryX checkpoint (or run folder): "
                   "model, weights, AdamW state, step and hyper-parameters come from it; --steps more")
    add_json_arg(p)
    p.set_defaults(func=run, human=human)


def load_tokens(path: str):
    import numpy as np
    import torch

    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"--data {path!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--data {path!r} is not a readable .npy array: {exc}") from None
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise ConfigError(f"--data must be an integer array of shape (rows, seq+1), got "
                          f"{arr.dtype} {arr.shape}")
    return torch.from_numpy(arr.astype("int64"))


def parse_betas(text: str) -> tuple[float, float]:
    try:
        b1, b2 = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--betas must be two numbers like 0.9,0.95, got {text!r}") from None
    return b1, b2


# Functional training holds, per parameter, the initial weights, MemoryX's master copy, its gradient,
# AdamW's two moments and the copy streamed to a CS-2: about 6 tensors of the training dtype.
TENSORS_PER_PARAM = 6


def physical_memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - platforms without sysconf
        return float("inf")


def check_fits_memory(params: int, dtype: str, name: str) -> None:
    """Refuse, before allocating anything, a model that functional training cannot hold in memory."""
    need = params * TENSORS_PER_PARAM * (8 if dtype == "float64" else 4)
    have = physical_memory_bytes()
    if need > have:
        raise ConfigError(f"training {name} ({params / 1e9:.3g}B parameters) in {dtype} on the CPU needs "
                          f"about {need / 1e9:.0f} GB (weights, gradients, AdamW state); this machine has "
                          f"{have / 1e9:.0f} GB: use a smaller model or a config.json of your own")


def load_model(args, dtype: str = "float32"):
    import torch

    from models import hf, registry, zoo

    config_model = getattr(args, "_config_model", None)
    if bool(args.checkpoint) == bool(args.model) and config_model is None:
        raise ConfigError("give exactly one of --checkpoint DIR, --model NAME or --config PARAMS.yaml")
    if args.checkpoint and args.model:
        raise ConfigError("give exactly one of --checkpoint DIR or --model NAME")
    if args.checkpoint and args.init_seed is not None:
        raise ConfigError("--init-seed seeds the weights of --model or --config; a --checkpoint brings "
                          "its own: drop --init-seed")
    seed = 0 if args.init_seed is None else args.init_seed
    try:
        if config_model is not None and not args.checkpoint and not args.model:
            check_fits_memory(config_model.params, dtype, config_model.name)
            cfg = registry.config_from_spec(config_model)
            weights = cfg.init_weights(seed, torch.float32)
        elif args.checkpoint:
            cfg, weights = hf.load_checkpoint(args.checkpoint)
        else:
            name = args.model
            if name.endswith(".json") or Path(name).is_dir():
                spec = zoo.from_hf_config(name)
            else:
                spec = zoo.get(name)
            check_fits_memory(spec.params, dtype, spec.name)
            cfg = registry.config_from_spec(spec)
            weights = cfg.init_weights(seed, torch.float32)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return cfg, weights


DEFAULTS = {"lr": 6e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1, "grad_clip": None,
            "dtype": "float32", "density": Density().to_dict(), "mask_seed": 0}


def hyper_parameters(args, ckpt) -> dict:
    """Each from the command line, else the checkpoint (``--resume``), else the default; a value
    given on the command line that differs from the checkpoint's is refused."""
    given = {"lr": args.lr, "betas": parse_betas(args.betas) if args.betas is not None else None,
             "eps": args.eps, "weight_decay": args.weight_decay, "grad_clip": args.grad_clip,
             "dtype": args.dtype,
             "density": Density.parse(args.density).to_dict() if args.density is not None else None,
             "mask_seed": args.mask_seed}
    out = {}
    for key, value in given.items():
        saved = ckpt.train.get(key, DEFAULTS[key]) if ckpt is not None else DEFAULTS[key]
        if isinstance(saved, list):
            saved = tuple(saved)
        if ckpt is not None and value is not None and value != saved:
            raise ConfigError(f"--resume: the checkpoint was trained with {key} {saved!r}, not {value!r}")
        out[key] = value if value is not None else saved
    return out


def run(args) -> dict:
    from wsim.cluster import generations
    from wsim.commands.simulate import parse_micro_batches
    from wsim.functional import checkpoint as ck
    from wsim.functional.train import train

    if args.checkpoint_every is not None:
        if args.checkpoint_every <= 0:
            raise ConfigError(f"--checkpoint-every must be a positive integer, got {args.checkpoint_every}")
        if not args.checkpoint_dir:
            raise ConfigError("--checkpoint-every needs --checkpoint-dir DIR")
    refuse_empty(args, "checkpoint", "model", "config", "resume")
    check_output(args.save, "--save", folder=True)
    check_output(args.checkpoint_dir, "--checkpoint-dir", folder=True)
    ckpt = None
    config = None
    if args.resume:
        if args.config:
            raise ConfigError("--resume takes the model and its run from the checkpoint; drop --config")
        for key, value in (("systems", 1), ("micro_batches", "auto")):
            if getattr(args, key) is None:
                setattr(args, key, value)
    else:
        config = apply_config(args, {"systems": 1, "micro_batches": "auto"})
    if args.resume:
        if args.checkpoint or args.model or args.init_seed is not None:
            raise ConfigError("--resume takes the model and its weights from the checkpoint; drop "
                              "--checkpoint/--model/--init-seed")
        ckpt = ck.load(args.resume)
        cfg, weights = ckpt.cfg, ckpt.weights
    else:
        cfg, weights = load_model(args, hyper_parameters(args, None)["dtype"])
    data = load_tokens(args.data)
    fingerprint = ck.data_fingerprint(data)
    first = 0
    if ckpt is not None:
        if ckpt.data_sha256 and ckpt.data_sha256 != fingerprint:
            raise ConfigError(f"--resume: --data {args.data!r} is not the data the checkpoint was trained on")
        if args.batch is not None and args.batch != ckpt.batch:
            raise ConfigError(f"--resume: the checkpoint's batch is {ckpt.batch}, not {args.batch} "
                              f"(its data position is step x batch)")
        first = ckpt.step
    hyper = hyper_parameters(args, ckpt)
    if args.mask_seed is not None and hyper["density"] == DEFAULTS["density"]:
        raise ConfigError("--mask-seed seeds the masks of sparse training; the run is dense: give "
                          "--density or drop --mask-seed")
    cluster = generations.load(args.cluster, args.systems)
    batch = args.batch if args.batch is not None else (ckpt.batch if ckpt else args.systems)
    if not isinstance(args.steps, int) or args.steps <= 0:
        raise ConfigError(f"--steps must be a positive integer, got {args.steps}")
    every = args.checkpoint_every or args.steps
    state = ckpt.optimizer_state if ckpt else None
    losses, saved, wall, report, step = [], [], 0.0, None, first
    while step < first + args.steps:
        n = min(every, first + args.steps - step)
        report = train(cfg, weights, data, systems=args.systems, steps=n, batch=batch,
                       lr=hyper["lr"], betas=hyper["betas"], eps=hyper["eps"],
                       weight_decay=hyper["weight_decay"], dtype=hyper["dtype"],
                       micro_batches=parse_micro_batches(args.micro_batches),
                       grad_clip=hyper["grad_clip"], cluster=cluster, progress=True,
                       density=hyper["density"], mask_seed=hyper["mask_seed"],
                       first_step=step, optimizer_state=state)
        weights, state, step = report.final_weights, report.optimizer_state, step + n
        losses += report.losses
        wall += report.wall_s
        if args.checkpoint_dir is not None:
            try:
                path = ck.save_latest(args.checkpoint_dir, cfg, weights, state, step=step, batch=batch,
                                      train=hyper, data_sha256=fingerprint)
            except OSError as exc:
                raise ConfigError(f"cannot write checkpoint to {args.checkpoint_dir!r}: {exc}") from None
            print(f"wsim: MemoryX checkpoint at step {step}: {path}", file=sys.stderr)
            saved.append(str(path))
    out = report.to_dict() | {"losses": losses, "steps": args.steps, "first_step": first,
                              "wall_s": wall}
    if saved:
        out["checkpoints"] = saved
    if config is not None:
        out |= config
    if args.save is not None:
        from models import hf

        try:
            hf.save_checkpoint(Path(args.save), cfg, weights)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"cannot save to {args.save!r}: {exc}") from None
        out["saved"] = args.save
    return out


def human(r: dict) -> str:
    losses = ", ".join(f"{x:.4f}" for x in r["losses"])
    sparse = "" if all(v == 1 for v in r["density"].values()) else (
        "\n  density " + ", ".join(f"{k} {v:g}" for k, v in r["density"].items())
        + f" (mask seed {r['mask_seed']}; nonzero "
        + ", ".join(f"{k} {v:.4f}" for k, v in r["nonzero_fraction"].items()) + ")")
    return (f"trained {r['steps']} steps on {r['systems']} simulated CS-2 ({r['micro_batches']} "
            f"micro-batches){sparse}\n  losses: {losses}\n  simulated step time on the cluster: "
            f"{r['simulated_step_time_s']:.4g} s\n  wall time: {r['wall_s']:.2f} s"
            + (f"\n  saved to {r['saved']}" if r.get("saved") else ""))
