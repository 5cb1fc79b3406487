"""``wsim generate``: generate like Hugging Face, every forward pass through the weight-streaming
engine, with the simulated latency of that inference on a CS-2 cluster."""

from __future__ import annotations

from wsim.commands.common import add_json_arg, cluster_help, refuse_empty
from wsim.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text by weight-streamed inference (CPU) with simulated latency",
                       description="Greedy or beam-search generation, token for token as transformers' "
                                   "generate, each forward pass run through the weight-streaming engine.")
    p.add_argument("--checkpoint", required=True,
                   help="Hugging Face checkpoint folder (GPT-2, Llama, GPT-J, GPT-NeoX)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text (needs the checkpoint's tokenizer files)")
    src.add_argument("--prompt-ids", help="prompt token ids, comma separated")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--no-repeat-ngram-size", type=int, default=0)
    p.add_argument("--early-stopping", action="store_true")
    p.add_argument("--batch", type=int, default=1, help="copies of the prompt decoded together")
    p.add_argument("--systems", type=int, default=1)
    p.add_argument("--cluster", default="cs2", help=cluster_help("for the simulated time"))
    add_json_arg(p)
    p.set_defaults(func=run, human=human)


def _prompt_ids(args, tokenizer) -> list[int]:
    if args.prompt_ids is not None:
        try:
            ids = [int(x) for x in args.prompt_ids.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--prompt-ids must be comma-separated integers, got {args.prompt_ids!r}") from None
        if not ids:
            raise ConfigError("--prompt-ids is empty")
        return ids
    if tokenizer is None:
        raise ConfigError(f"checkpoint {args.checkpoint!r} has no tokenizer files: use --prompt-ids")
    ids = tokenizer(args.prompt)["input_ids"]
    if not ids:
        raise ConfigError("--prompt encodes to no tokens")
    return list(ids)


def run(args) -> dict:
    import torch

    from models import hf
    from wsim.cluster import generations
    from wsim.functional.generate import check_rows, generate, load_tokenizer

    refuse_empty(args, "checkpoint")
    if args.max_new_tokens is None and args.max_length is None:
        args.max_new_tokens = 20  # transformers' default generation length
    try:
        cfg, weights = hf.load_checkpoint(args.checkpoint)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.batch <= 0:
        raise ConfigError(f"--batch must be a positive integer, got {args.batch}")
    if args.systems <= 0:
        raise ConfigError(f"--systems must be a positive integer, got {args.systems}")
    check_rows(args.batch, args.num_beams)
    if args.early_stopping and args.num_beams == 1:  # greedy decoding ignores it (transformers: a warning)
        raise ConfigError("--early-stopping applies to beam search; give --num-beams > 1 or drop it")
    tokenizer = load_tokenizer(args.checkpoint)
    ids = _prompt_ids(args, tokenizer)
    bad = [i for i in ids if not 0 <= i < cfg.vocab_size]
    if bad:
        raise ConfigError(f"prompt ids {bad[:3]} are outside the vocabulary [0, {cfg.vocab_size})")
    prompt = torch.tensor([ids] * args.batch, dtype=torch.long)
    cluster = generations.load(args.cluster, args.systems)
    report = generate(cfg, weights, prompt, max_new_tokens=args.max_new_tokens, max_length=args.max_length,
                      num_beams=args.num_beams, no_repeat_ngram_size=args.no_repeat_ngram_size,
                      early_stopping=args.early_stopping, systems=args.systems, cluster=cluster,
                      tokenizer=tokenizer)
    out = report.to_dict()
    if out["text"] is None:
        out.pop("text")
    return out


def human(r: dict) -> str:
    lines = [f"generated {r['forward_calls']} forward passes on {r['systems']} simulated CS-2"]
    for i, seq in enumerate(r["token_ids"][:4]):
        lines.append(f"  [{i}] " + (repr(r["text"][i]) if r.get("text") else " ".join(map(str, seq))))
    lines.append(f"  simulated latency {r['simulated_latency_s']:.4g} s, "
                 f"{r['simulated_tokens_per_s']:.4g} tokens/s (stream bound "
                 f"{r['stream_bound_tokens_per_s']:.4g} tokens/s)")
    return "\n".join(lines)
