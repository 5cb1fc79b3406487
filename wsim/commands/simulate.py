"""``wsim simulate``: one (or ``--steps K``) weight-streaming step of a job on a CS-2 or CS-3 cluster."""

from __future__ import annotations

import dataclasses
import sys

from wsim.studies import faults as F
from wsim.cluster import generations
from wsim.cluster import hardware
from wsim.commands.common import (add_config_arg, add_json_arg, add_model_args, add_moe_args, apply_config,
                                  check_output, config_line, int_or_word, model_from_args, moe_job_fields)
from wsim.errors import ConfigError
from wsim.cluster.job import MICRO_BATCH_POLICIES, TrainingJob
from wsim.cluster.sparsity import Density


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate weight-streaming training steps on a CS-2 or CS-3 cluster",
                       description="Simulate weight-streaming training steps on a CS-2 or CS-3 cluster.")
    add_model_args(p, required=False)
    add_config_arg(p)
    p.add_argument("--seq", type=int, default=None, help="sequence length (tokens; default 2048)")
    p.add_argument("--batch", type=int, default=None,
                   help="global batch in sequences (default: 8 per system)")
    p.add_argument("--systems", type=int, default=None,
                   help="number of CS systems (overrides the preset; up to 192 CS-2 or 2048 CS-3)")
    p.add_argument("--cluster", default="cs2",
                   help="a preset: " + generations.describe() + "; or a cluster .json file "
                        "(its \"generation\": cs2 or cs3 picks the figures it starts from)")
    p.add_argument("--density", default=None, metavar="D|KIND=D,...",
                   help="weight density (sparse weight streaming): one number in (0, 1] for every "
                        "weight matrix, or per layer kind, e.g. block=0.5,head=1 (default 1: dense)")
    p.add_argument("--micro-batches", default=None,
                   help="micro-batches per system: best (default: the shortest step, the count and "
                        "activation recompute chosen jointly by the closed form), fit (the fewest "
                        "that fit without recompute; 'auto' is its older name) or an integer")
    add_moe_args(p)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--chunk-bytes", type=float, default=None,
                   help="simulation grain: bytes per weight chunk (default: auto)")
    p.add_argument("--max-chunk-passes", type=int, default=None,
                   help="refuse simulations needing more chunk passes than this (default 2000000, "
                        "about a minute)")
    p.add_argument("--no-symmetry", action="store_true",
                   help="simulate every CS-2 separately (identical results, slower)")
    p.add_argument("--trace", metavar="OUT.json", help="write a Chrome/Perfetto trace")
    p.add_argument("--straggler", action="append", default=[], metavar="I:FACTOR",
                   help="fault: CS-2 I computes FACTOR times slower (repeatable; see wsim faults)")
    p.add_argument("--degraded-link", action="append", default=[], metavar="NODE:FACTOR",
                   help="fault: the link into NODE (cs2.3, sx1.0, memoryx) at 1/FACTOR bandwidth")
    add_json_arg(p)
    p.set_defaults(func=run, human=human)


def parse_micro_batches(text):
    if isinstance(text, int) and not isinstance(text, bool):  # from --config
        return text
    return int_or_word(text, "--micro-batches", MICRO_BATCH_POLICIES)


DEFAULTS = {"seq": 2048, "micro_batches": "best"}


def job_and_cluster(args) -> tuple[TrainingJob, hardware.ClusterSpec]:
    """The job and cluster of ``simulate`` and ``faults``; ``args._config`` keeps what --config gave."""
    args._config = apply_config(args, DEFAULTS)
    if getattr(args, "_config_model", None) is None and not args.model and args.layers is None \
            and args.hidden is None and args.heads is None:
        raise ConfigError("no model: give --model NAME|config.json, --layers --hidden --heads, or "
                          "--config params.yaml")
    model = model_from_args(args, seq=args.seq)
    cluster = generations.load(args.cluster, args.systems)
    batch = args.batch if args.batch is not None else 8 * cluster.systems
    micro_batches = parse_micro_batches(args.micro_batches)
    density_text = getattr(args, "density", None)
    density = Density.parse(density_text) if density_text is not None else 1.0
    job = TrainingJob(model, seq=args.seq, batch_seqs=batch, micro_batches=micro_batches,
                      steps=args.steps, density=density, **moe_job_fields(args),
                      bytes_per_element=getattr(args, "_bytes_per_element", 2))
    config = args._config
    if config is not None and isinstance(micro_batches, int) and \
            not config["provenance"].get("micro_batches", "").startswith("flag"):
        # the file's micro-batch size, where wsim's wafer memory model holds it; else wsim's plan
        from wsim.cluster import memory

        try:
            memory.plan(job, cluster)
        except ConfigError as exc:
            job = dataclasses.replace(job, micro_batches="best")
            config["provenance"]["micro_batches"] = "default (best)"
            config["config"]["notes"].append(f"the file's micro_batch_size does not fit wsim's wafer "
                                             f"memory model ({exc}); wsim's best plan is used")
    return job, cluster


def run(args) -> dict:
    from wsim.engine.run import SimOptions, Simulation

    check_output(args.trace, "--trace")
    job, cluster = job_and_cluster(args)
    limit = {} if args.max_chunk_passes is None else {"max_chunk_passes": args.max_chunk_passes}
    options = SimOptions(chunk_bytes=args.chunk_bytes, symmetry=not args.no_symmetry,
                         trace=args.trace is not None, **limit)
    injected = [F.parse_straggler(x) for x in getattr(args, "straggler", [])] + \
        [F.parse_degraded_link(x) for x in getattr(args, "degraded_link", [])]
    graph = None
    if injected:
        cluster, graph = F.apply(cluster, injected)
    sim = Simulation(job, cluster, options, graph=graph)
    report = sim.run()
    out = report.to_dict()
    if injected:
        out["faults"] = [f.describe() for f in injected]
    if args._config is not None:
        out |= args._config
    if args.trace is not None:
        from wsim.engine.trace import write_trace

        try:
            write_trace(sim, args.trace)
        except OSError as exc:
            raise ConfigError(f"cannot write trace {args.trace!r}: {exc.strerror}") from None
        print(f"wsim: trace written to {args.trace}", file=sys.stderr)
        out["trace"] = args.trace
    return out


def human(r: dict) -> str:
    b = r["breakdown"]
    system = r["generation"].upper().replace("CS", "CS-")
    density = r["density"]
    sparse = "" if all(v == 1 for v in density.values()) else \
        "   density " + ", ".join(f"{k} {v:g}" for k, v in density.items())
    lines = [
        f"{r['model']} ({r['params'] / 1e9:.3g}B params) on {r['systems']} {system}, batch "
        f"{r['batch_seqs']} x {r['seq']}{sparse}",
        f"  step time          {r['step_time_s']:.4g} s   ({r['tokens_per_s']:.4g} tokens/s)",
        f"  model FLOP/s       {r['model_flops_per_s']:.4g}   utilization {r['compute_utilization']:.1%}",
        f"  bottleneck         {r['bottleneck']}   "
        + ", ".join(f"{k} {v:.0%}" for k, v in r["utilization_by_resource"].items()),
        f"  micro-batches      {r['micro_batches']}{'  (activation recompute)' if r['recompute'] else ''}",
        f"  plan ({r['plan_choice'].get('policy')})".ljust(21) + r["plan_choice"].get("reason", ""),
        f"  wafer memory       {r['wafer_memory_bytes'] / 1e9:.2f} GB per {system} (activations + weight buffer)",
        f"  MemoryX            {r['memoryx_bytes'] / 1e12:.3g} TB (weights + optimizer state)",
        f"  power              {r['power_w'] / 1e3:.4g} kW (systems, servers, network)   energy "
        f"{r['energy_per_step_j'] / 3.6e6:.4g} kWh per step",
        "  breakdown (s)      " + ", ".join(f"{k[:-2]} {v:.4g}" for k, v in b.items()),
        f"  simpy events       {r['events']}",
    ]
    moe = r.get("extra", {}).get("moe")
    if moe:
        bta = f", attention in tiles of {moe['attention_tile_seqs']} seqs" if moe["attention_tile_seqs"] else ""
        lines.insert(1, f"  experts            {moe['experts']} top-{moe['experts_per_token']} in "
                        f"{moe['moe_layers']} layers, {moe['active_params'] / 1e9:.3g}B active; "
                        f"{moe['tokens_per_expert_product']:.4g} tokens per expert product, routing "
                        f"{moe['routing']}{bta}")
    if r.get("config"):
        lines.append(config_line(r))
    return "\n".join(lines)
