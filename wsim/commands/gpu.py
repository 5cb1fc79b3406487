"""``wsim gpu``: a GPU cluster's training step by analytical cost model (``wsim.gpu``)."""

from __future__ import annotations

import argparse

from wsim.commands.common import add_json_arg, add_model_args, int_or_word, model_from_args
from wsim.errors import ConfigError
from wsim.gpu import GPUS, RECOMPUTE, estimate, search

GIB = 2**30


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gpu", help="GPU cluster step time by cost model (Megatron PTD-P, ZeRO/FSDP)",
        description="Step time, TFLOP/s and memory per GPU of a tensor/pipeline/data-parallel plan; "
                    "--search finds the fastest plan that fits.")
    add_model_args(p)
    p.add_argument("--seq", type=int, default=2048, help="sequence length (default 2048)")
    p.add_argument("--batch", type=int, required=True, help="global batch, in sequences")
    p.add_argument("--gpus", type=int, required=True, help="number of GPUs")
    p.add_argument("--gpu", default="a100-80gb", choices=sorted(GPUS))
    p.add_argument("--tp", type=int, help="tensor-parallel size (default 1; searched with --search)")
    p.add_argument("--pp", type=int, help="pipeline-parallel size (default 1; searched with --search)")
    p.add_argument("--search", action="store_true", help="find the fastest plan that fits")
    p.add_argument("--micro-batch", default="auto", help="sequences per micro-batch, or auto")
    p.add_argument("--interleave", type=int, help="model chunks per stage (default: best that fits)")
    p.add_argument("--recompute", choices=RECOMPUTE,
                   help="activation recompute (default full; searched with --search)")
    p.add_argument("--sequence-parallel", action="store_true", default=None,
                   help="Megatron sequence parallelism (searched with --search unless given)")
    p.add_argument("--zero", type=int, choices=(0, 1, 2, 3),
                   help="ZeRO stage / FSDP (3) (default 0; searched with --search)")
    p.add_argument("--allow-oom", action="store_true",
                   help="report a plan that does not fit instead of failing")
    add_json_arg(p)
    p.set_defaults(func=run, human=human)


def run(args: argparse.Namespace) -> dict:
    model = model_from_args(args, seq=args.seq)
    if args.search:
        if args.micro_batch not in (None, "auto") or args.interleave is not None:
            raise ConfigError("--search chooses --micro-batch and --interleave itself; drop them")
        report = search(model, seq=args.seq, batch=args.batch, gpus=args.gpus, gpu=args.gpu,
                        tp=args.tp, pp=args.pp, recompute=args.recompute,
                        sequence_parallel=args.sequence_parallel, zero=args.zero)
    else:
        report = estimate(model, seq=args.seq, batch=args.batch, gpus=args.gpus, gpu=args.gpu,
                          tp=args.tp or 1, pp=args.pp or 1,
                          micro_batch=int_or_word(args.micro_batch or "auto", "--micro-batch", ("auto",)),
                          interleave=args.interleave,
                          recompute=args.recompute or "full",
                          sequence_parallel=bool(args.sequence_parallel), zero=args.zero or 0,
                          allow_oom=args.allow_oom)
    return report.to_dict()


def human(r: dict) -> str:
    p = r["plan"]
    chosen = f" (chosen: {', '.join(p['chosen'])})" if p["chosen"] else ""
    lines = [
        f"{r['model']} on {r['gpus']} x {r['gpu']}, batch {r['batch']} x {r['seq']}",
        f"plan: tp {p['tp']} x pp {p['pp']} x dp {p['dp']}, micro-batch {p['micro_batch']}, "
        f"interleave {p['interleave']}, recompute {p['recompute']}, "
        f"sequence-parallel {'on' if p['sequence_parallel'] else 'off'}, zero {p['zero']}{chosen}",
        f"step time       {r['step_time_s']:10.3f} s   ({r['tokens_per_s']:,.0f} tokens/s)",
        f"model TFLOP/s   {r['model_tflops_per_gpu']:10.1f} per GPU  (MFU {100 * r['mfu']:.1f}%)",
        f"hardware TFLOP/s{r['hardware_tflops_per_gpu']:10.1f} per GPU  (HFU {100 * r['hfu']:.1f}%)",
        f"bubble fraction {r['bubble_fraction']:10.3f}   ({r['micro_batches']} micro-batches)",
        f"memory per GPU  {r['memory_per_gpu_bytes'] / GIB:10.1f} GiB of "
        f"{r['memory_capacity_bytes'] / GIB:.0f}  ({'fits' if r['fits'] else 'DOES NOT FIT'})",
        "step time breakdown:",
    ]
    for key, value in r["breakdown"].items():
        share = value / r["step_time_s"] if r["step_time_s"] else 0.0
        lines.append(f"  {key[:-2]:<12} {value:10.3f} s  {100 * share:5.1f}%")
    lines.append("memory breakdown (fullest stage {}):".format(r["memory"]["stage"]))
    for key in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
                "reserved_bytes"):
        lines.append(f"  {key[:-6]:<12} {r['memory'][key] / GIB:10.2f} GiB")
    if "search" in r:
        s = r["search"]
        lines.append(f"search: {s['evaluations']} plans evaluated in {s['wall_s']:.2f} s "
                     f"({s['evaluations_per_s']:,.0f}/s), {s['pruned_memory']} subtrees pruned by "
                     f"memory, {s['pruned_compute']} by compute bound")
    return "\n".join(lines)
