"""``wsim compare``: the same model and token budget on a CS-2 cluster and on GPU plans (``wsim.studies.compare``)."""

from __future__ import annotations

from models import zoo
from models.suggest import hint
from wsim.commands.common import (add_config_arg, add_json_arg, add_model_args, apply_config, cluster_help,
                                  model_from_args, refuse_empty)
from wsim.studies.compare import GPU_GRID, GPUS_DEFAULT, METHODS, compare, phases_from, published_phases
from wsim.studies.cost import load as load_prices
from wsim.errors import ConfigError, positive


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="the same model and token budget on CS-2 clusters and on GPU plans",
        description="Time to train on a CS-2 cluster (weight streaming) next to the GPU count and "
                    "TP/PP/DP plan that matches it. Cerebras-GPT zoo models default to their "
                    "published batch, CS-2 count and steps (docs/sources.md).")
    add_model_args(p, required=False)
    add_config_arg(p)
    p.add_argument("--seq", type=int, default=None, help="sequence length (default 2048)")
    p.add_argument("--batch", type=int, help="global batch in sequences (default: published)")
    p.add_argument("--systems", type=int, help="CS-2 count (default: published)")
    p.add_argument("--steps", type=int, help="training steps (default: published, or from --tokens)")
    p.add_argument("--tokens", type=float,
                   help="token budget (default: published, or 20 tokens per parameter)")
    p.add_argument("--cluster", default="cs2", help=cluster_help())
    p.add_argument("--gpu", default=",".join(GPUS_DEFAULT),
                   help="GPU type(s), comma separated (default a100-80gb,h100-80gb)")
    p.add_argument("--gpus", type=int,
                   help="fix the GPU count (and report the CS-2 count that matches it); default: "
                        "the smallest count in a geometric grid that matches the CS-2 cluster")
    p.add_argument("--max-gpus", type=int, default=None,
                   help=f"largest GPU count tried (default {GPU_GRID[-1]}; not with --gpus)")
    p.add_argument("--basis", default="validated", choices=("validated", "fastest"),
                   help="GPU count matched with plans inside a validated regime of the GPU model "
                        "(default; the fastest plan of any regime is shown beside it), or with "
                        "the fastest plan of any regime")
    p.add_argument("--micro-batching", default="best", choices=["best", "fit", "auto"],
                   help="CS-2 micro-batching: best (default: count and recompute chosen jointly for "
                        "the shortest step) or fit (the fewest micro-batches without recompute; "
                        "'auto' is its older name)")
    p.add_argument("--batch-tiling-attention", type=int, default=0, metavar="B",
                   help="CS-2 Batch Tiling on Attention: attention in tiles of B sequences (default 0: off)")
    p.add_argument("--method", default="engine", choices=METHODS,
                   help="CS-2 step time from the simpy engine (default) or the closed form")
    p.add_argument("--switch-fraction", type=float, default=None,
                   help="13B's published run only: share of the published steps before the 720 -> "
                        "1080 batch switch (an assumption; default 0.5)")
    p.add_argument("--prices", metavar="PRICES.json",
                   help="price table: electricity_usd_per_kwh (default 0.0806, EIA 2023 US industrial), "
                        "pue (default 1), usd_per_device_hour {\"cs2\": .., \"a100-80gb\": ..} "
                        "(default none: hardware cost not reported)")
    add_json_arg(p)
    p.set_defaults(func=run, human=human)


def run(args) -> dict:
    refuse_empty(args, "prices")
    # a Model Zoo file's max_steps is the run's length, unless a token budget is given
    config = apply_config(args, {"seq": 2048}, config_steps=args.tokens is None)
    model = model_from_args(args, seq=args.seq)
    if model is None:
        raise ConfigError("no model: give --model NAME|config.json, --layers --hidden --heads, or "
                          "--config params.yaml")
    published = model.name in zoo.CEREBRAS_GPT_TRAINING
    custom = any(v is not None for v in (args.batch, args.systems, args.steps, args.tokens))
    if published and not custom:
        fraction = 0.5 if args.switch_fraction is None else args.switch_fraction
        phases = published_phases(model.name, fraction)
    else:
        if args.steps is not None and args.tokens is not None:
            raise ConfigError("give --steps or --tokens, not both")
        pub = zoo.CEREBRAS_GPT_TRAINING.get(model.name)
        batch = args.batch if args.batch is not None else (pub.batch_seqs if pub else None)
        systems = args.systems if args.systems is not None else (pub.cs2_systems if pub else None)
        if batch is None or systems is None:
            raise ConfigError(f"{model.name} has no published training run: give --batch and --systems")
        steps = args.steps
        if steps is None and args.tokens is None and pub is not None:
            steps = pub.steps
        phases = phases_from(batch, systems, steps=steps, tokens=args.tokens, seq=args.seq,
                             model=model)
    switches = published and not custom and zoo.CEREBRAS_GPT_TRAINING[model.name].batch_seqs_start
    if args.switch_fraction is not None and not switches:  # nothing to place: refused, not dropped
        names = [n for n, t in zoo.CEREBRAS_GPT_TRAINING.items() if t.batch_seqs_start]
        raise ConfigError(f"--switch-fraction places the batch switch of a published run that has one "
                          f"({', '.join(names)}, without --batch/--systems/--steps/--tokens/--config); "
                          f"this run has none: drop it")
    gpus = [g.strip() for g in args.gpu.split(",") if g.strip()]
    from wsim.gpu import GPUS

    bad = [g for g in gpus if g not in GPUS]
    if bad or not gpus:
        raise ConfigError(f"--gpu {args.gpu!r}: unknown GPU type(s) {bad}; " + (
            "; ".join(f"{g}: {hint(g, GPUS)}" for g in bad) or "none given"))
    if args.max_gpus is not None:
        if args.gpus is not None:
            raise ConfigError("--max-gpus bounds the GPU counts tried; --gpus fixes the count: give one")
        positive("--max-gpus", args.max_gpus, integer=True)
    report = compare(model, phases=phases, seq=args.seq, cluster=args.cluster, gpu=gpus,
                     gpus=args.gpus, micro_batching=args.micro_batching, method=args.method,
                     attention_tile_seqs=args.batch_tiling_attention,
                     max_gpus=GPU_GRID[-1] if args.max_gpus is None else args.max_gpus,
                     prices=load_prices(args.prices), basis=args.basis)
    out = report.to_dict()
    if config is not None:
        out |= config
    return out


def _cost(c: dict | None) -> str:
    if not c:
        return ""
    hw = (f", hardware ${c['hardware_usd']:,.0f} ({c['device_hours']:,.0f} {c['device']}-hours)"
          if c["hardware_usd"] is not None else f" (no {c['device']} hourly price given)")
    return f"  energy {c['energy_kwh']:,.0f} kWh, ${c['energy_usd']:,.0f} of electricity{hw}"


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.3g} days" if seconds >= 86400 else f"{seconds / 3600:.3g} h"


def _plan(p: dict) -> str:
    cp = f" x cp {p['cp']}" if p.get("cp", 1) > 1 else ""
    if p.get("etp") is not None:  # a mixture of experts: its expert layout (wsim.gpu.moe)
        cp += f", experts etp {p['etp']} x ep {p['ep']}"
    return (f"tp {p['tp']} x pp {p['pp']} x dp {p['dp']}{cp}, micro-batch {p['micro_batch']}, "
            f"interleave {p['interleave']}, recompute {p['recompute']}, "
            f"SP {'on' if p['sequence_parallel'] else 'off'}, ZeRO {p['zero']}"
            + (f", {p['stack']}" if p.get("stack") else ""))


def human(r: dict) -> str:
    c = r["cs2"]
    lines = [f"{r['model']} ({r['params'] / 1e9:.3g}B params), {r['tokens']:.3g} tokens, "
             f"{r['model_flops']:.3g} model FLOPs",
             f"CS-2 ({r['method']}, micro-batching {r['micro_batching']}): time to train "
             f"{_days(c['time_to_train_s'])}, {c['tokens_per_s']:,.0f} tokens/s"]
    for ph in c["phases"]:
        lines.append(f"  {ph['steps']} steps x batch {ph['batch_seqs']} on {ph['systems']} CS-2: step "
                     f"{ph['step_time_s']:.4g} s, {ph['micro_batches']} micro-batches"
                     f"{' (recompute)' if ph['recompute'] else ''}, bottleneck {ph['bottleneck']}")
    lines.append(_cost(c.get("cost")))
    for g in r["gpu"]:
        x = g.get("fastest_extrapolated")
        extra = (f"  fastest plan of any regime (labelled, not the headline): {x['gpus']} GPUs, "
                 f"{_days(x['time_to_train_s'])}, regime {x['regime']}: {_plan(x['plan'])}") if x else None
        if g.get("gpus") is None:
            f = g.get("fastest_tried")
            lines.append(f"{g['gpu']}: no GPU count in the grid matches with a plan inside a "
                         "validated regime"
                         + (f" (fastest: {f['gpus']} GPUs, {_days(f['time_to_train_s'])})" if f else ""))
            if extra:
                lines.append(extra)
            continue
        tag = "matches with" if g["matched"] else "on"
        lines.append(f"{g['gpu']}: {tag} {g['gpus']} GPUs, time to train {_days(g['time_to_train_s'])} "
                     f"(x{g['time_ratio_gpu_over_cs2']:.2f} of CS-2), MFU {100 * g['mfu']:.1f}%")
        lines.append(f"  plan: {_plan(g['plan'])}; complexity: {g['complexity']['parallel_dims']} "
                     f"parallel dims, model-parallel degree {g['complexity']['model_parallel']}, "
                     f"{g['complexity']['knobs']} knobs; regime {g.get('regime')}")
        lines.append(_cost(g.get("cost")))
        if extra and x["gpus"] != g["gpus"]:
            lines.append(extra)
        m = g.get("cs2_match")
        if m is not None:
            lines.append(f"  fewest CS-2 as fast: {m['systems']} (step {m['step_time_s']:.4g} s)")
        elif "cs2_match" in g:
            lines.append("  no CS-2 count up to the cluster maximum is as fast")
    return "\n".join(lines)
