"""``wsim faults``: what faults cost on a CS-2 cluster (``wsim.studies.faults``): a table, JSON, a trace.

With no fault flags it prints one row per kind of fault (straggler, degraded SwarmX and MemoryX
links, a CS-2 or a link failing mid-step, a MemoryX server lost); fault flags choose the rows.
"""

from __future__ import annotations

import sys

from wsim.studies import faults as F
from wsim.commands.common import add_config_arg, add_json_arg, add_model_args, check_output, cluster_help
from wsim.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("faults", help="the step-time cost of faults (stragglers, links, failures)",
                       description="Step-time cost of faults on a CS-2 cluster: slow-downs run "
                                   "through the engine, fail-stops are modelled at step level.")
    add_model_args(p, required=False)
    add_config_arg(p)
    p.add_argument("--seq", type=int, default=None, help="sequence length (default 2048)")
    p.add_argument("--batch", type=int, default=None, help="global batch (default: 8 per system)")
    p.add_argument("--systems", type=int, default=None)
    p.add_argument("--cluster", default="cs2", help=cluster_help())
    p.add_argument("--micro-batches", default=None, help="per system: best (default), fit or an "
                                                           "integer (as in wsim simulate)")
    p.add_argument("--straggler", action="append", default=[], metavar="I:FACTOR",
                   help="CS-2 I computes FACTOR times slower (repeatable)")
    p.add_argument("--degraded-link", action="append", default=[], metavar="NODE:FACTOR",
                   help="the link into NODE (cs2.3, sx1.0, memoryx) at 1/FACTOR bandwidth (repeatable)")
    p.add_argument("--fail", action="append", default=[], metavar="cs2:I|link:NODE",
                   help="a CS-2 or the link into NODE fails mid-step (repeatable)")
    p.add_argument("--at", type=float, default=None,
                   help="fraction of the step at which --fail / --memoryx-loss strikes (default 0.5)")
    p.add_argument("--policy", default=None, choices=F.POLICIES,
                   help="--fail: rerun the lost step on the survivors (shrink, default) or after a repair")
    p.add_argument("--batch-policy", default=None, choices=F.BATCH_POLICIES,
                   help="--fail with policy shrink: keep the global batch (default; must divide) or cut "
                        "to the largest that does")
    p.add_argument("--memoryx-loss", action="store_true", help="a MemoryX server is lost")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="--memoryx-loss: MemoryX checkpoint interval (steps, default 100)")
    a = F.FaultAssumptions()
    p.add_argument("--detection-s", type=float, default=a.detection_s)
    p.add_argument("--reconfigure-s", type=float, default=a.reconfigure_s)
    p.add_argument("--repair-s", type=float, default=a.repair_s)
    p.add_argument("--restart-s", type=float, default=a.restart_s)
    p.add_argument("--reload-gbps", type=float, default=a.reload_bytes_per_s / 1e9,
                   help="MemoryX checkpoint reload and write bandwidth, GB/s")
    p.add_argument("--failure-interval-steps", type=int, default=a.failure_interval_steps)
    p.add_argument("--trace", metavar="OUT.json", help="Chrome trace of the first fault")
    add_json_arg(p)
    p.set_defaults(func=run, human=human, steps=1)


def _check_shaping(args) -> None:
    """The options that shape --fail / --memoryx-loss, refused (not dropped) without them: the
    default table places its own faults."""
    for flag, value, needs, present in (
            ("--at", args.at, "--fail or --memoryx-loss", args.fail or args.memoryx_loss),
            ("--policy", args.policy, "--fail", args.fail),
            ("--batch-policy", args.batch_policy, "--fail", args.fail),
            ("--checkpoint-every", args.checkpoint_every, "--memoryx-loss", args.memoryx_loss)):
        if value is not None and not present:
            raise ConfigError(f"{flag} shapes {needs}, and none is given (the default table places its "
                              f"own faults): add {needs.split(' or ')[0]} or drop {flag}")
    if args.batch_policy is not None and args.policy == "repair":
        raise ConfigError("--batch-policy applies to --policy shrink (a repair keeps every CS-2); drop it")


def chosen_faults(args, cluster, batch_seqs: int | None = None) -> list:
    _check_shaping(args)
    at = 0.5 if args.at is None else args.at
    slow = [F.parse_straggler(s) for s in args.straggler] + [F.parse_degraded_link(s) for s in args.degraded_link]
    out = [slow] if slow else []
    for text in args.fail:
        kind, target = F.parse_fail(text)
        out.append(F.FailStop(kind, target, at, args.policy or "shrink", args.batch_policy or "keep"))
    if args.memoryx_loss:
        out.append(F.MemoryXLoss(100 if args.checkpoint_every is None else args.checkpoint_every, at))
    return out or F.default_faults(cluster, batch_seqs)


def run(args) -> dict:
    from wsim.commands.simulate import job_and_cluster

    check_output(args.trace, "--trace")
    job, cluster = job_and_cluster(args)
    if isinstance(args.reload_gbps, float) and args.reload_gbps > 0:
        reload = args.reload_gbps * 1e9
    else:
        raise ConfigError(f"--reload-gbps must be a positive number, got {args.reload_gbps!r}")
    assumptions = F.FaultAssumptions(
        detection_s=args.detection_s, reconfigure_s=args.reconfigure_s, repair_s=args.repair_s,
        restart_s=args.restart_s, reload_bytes_per_s=reload, checkpoint_bytes_per_s=reload,
        failure_interval_steps=args.failure_interval_steps)
    faults = chosen_faults(args, cluster, job.batch_seqs)
    cache: dict = {}
    results = [F.evaluate(job, cluster, f, assumptions, trace=args.trace is not None and i == 0, cache=cache)
               for i, f in enumerate(faults)]
    out = {"model": job.model.name, "systems": cluster.systems, "batch": job.batch_seqs, "seq": job.seq,
           "nominal_step_s": results[0].report["nominal_step_s"],
           "faults": [r.report for r in results], "assumptions": assumptions.to_dict()}
    if args.trace is not None:
        F.write_fault_trace(results[0], args.trace)
        print(f"wsim: trace written to {args.trace}", file=sys.stderr)
        out["trace"] = args.trace
    if args._config is not None:
        out |= args._config
    return out


def human(r: dict) -> str:
    head = (f"{r['model']} on {r['systems']} CS-2, batch {r['batch']} x {r['seq']}: nominal step "
            f"{r['nominal_step_s']:.4g} s")
    a = ", ".join(f"{k} {v:g}" for k, v in r["assumptions"].items())
    return f"{head}\n{F.format_table(r['faults'])}\nassumptions: {a}"
