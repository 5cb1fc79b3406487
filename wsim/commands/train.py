"""``wsim train``: really train a GPT by weight streaming through the engine, on the CPU."""

from __future__ import annotations

from pathlib import Path

from wsim.commands.common import add_json_arg
from wsim.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("train", help="train a GPT by weight streaming on simulated CS-2s (CPU)",
                       description="Train a GPT by weight streaming through the engine, on the CPU. "
                                   "Step k uses rows k*B..(k+1)*B-1 of --data.")
    src = p.add_argument_group("model (one of)")
    src.add_argument("--checkpoint", help="Hugging Face GPT-2 checkpoint folder")
    src.add_argument("--model", help="zoo name (GPT-2 style), initialised with --init-seed")
    p.add_argument("--init-seed", type=int, default=0)
    p.add_argument("--data", required=True, help="tokens.npy: int array of shape (rows, seq+1)")
    p.add_argument("--systems", type=int, default=1)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default: systems)")
    p.add_argument("--micro-batches", default="auto")
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--betas", default="0.9,0.95")
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--cluster", default="cs2", help="preset or cluster .json for the simulated time")
    p.add_argument("--save", help="write the trained model as a Hugging Face checkpoint here")
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


def load_model(args):
    import torch

    from models import gpt, hf, zoo

    if bool(args.checkpoint) == bool(args.model):
        raise ConfigError("give exactly one of --checkpoint DIR or --model NAME")
    try:
        if args.checkpoint:
            cfg, weights = hf.load_checkpoint(args.checkpoint)
        else:
            cfg = gpt.GPTConfig.from_spec(zoo.get(args.model))
            weights = gpt.init_weights(cfg, args.init_seed, torch.float32)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return cfg, weights


def run(args) -> dict:
    from wsim import hardware
    from wsim.commands.simulate import parse_micro_batches
    from wsim.functional.train import train

    cfg, weights = load_model(args)
    data = load_tokens(args.data)
    cluster = hardware.load(args.cluster, args.systems)
    batch = args.batch if args.batch is not None else args.systems
    report = train(cfg, weights, data, systems=args.systems, steps=args.steps, batch=batch,
                   lr=args.lr, betas=parse_betas(args.betas), eps=args.eps,
                   weight_decay=args.weight_decay, dtype=args.dtype,
                   micro_batches=parse_micro_batches(args.micro_batches), grad_clip=args.grad_clip,
                   cluster=cluster, progress=True)
    out = report.to_dict()
    if args.save:
        from models import hf

        try:
            hf.save_checkpoint(Path(args.save), cfg, report.final_weights)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"cannot save to {args.save!r}: {exc}") from None
        out["saved"] = args.save
    return out


def human(r: dict) -> str:
    losses = ", ".join(f"{x:.4f}" for x in r["losses"])
    return (f"trained {r['steps']} steps on {r['systems']} simulated CS-2 ({r['micro_batches']} "
            f"micro-batches)\n  losses: {losses}\n  simulated step time on the cluster: "
            f"{r['simulated_step_time_s']:.4g} s\n  wall time: {r['wall_s']:.2f} s"
            + (f"\n  saved to {r['saved']}" if r.get("saved") else ""))
