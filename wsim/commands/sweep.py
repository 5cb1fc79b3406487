"""``wsim sweep``: a grid of simulate / analytic / gpu runs in parallel, resumable (``wsim.studies.sweep``)."""

from __future__ import annotations

from models.suggest import hint
from wsim.commands.common import check_output, cluster_help
from wsim.errors import ConfigError
from wsim.cluster.job import MICRO_BATCH_POLICIES
from wsim.studies.sweep import KINDS


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="a grid of simulate/analytic/gpu runs in parallel, resumable, to CSV/JSON",
        description="Run models x systems x batch (x GPU types) in parallel processes (or on a Dask "
                    "cluster with --scheduler), with a progress bar on stderr. Rows already in --out "
                    "are not recomputed.")
    p.add_argument("--kind", default="simulate", choices=KINDS,
                   help="simulate (engine), analytic (closed form) or gpu (best plan by search)")
    p.add_argument("--models", required=True, help="comma-separated zoo names")
    p.add_argument("--systems", help="comma-separated CS-2 counts (simulate/analytic)")
    p.add_argument("--gpus", help="comma-separated GPU counts (kind gpu)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--seqs-per-system", help="comma-separated sequences per system (weak scaling; "
                                                "default 8)")
    size.add_argument("--batch", help="comma-separated global batches in sequences (strong scaling)")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--cluster", default=None, help=cluster_help("(simulate/analytic; default cs2)"))
    p.add_argument("--gpu", default=None, help="comma-separated GPU types (kind gpu; default a100-80gb)")
    p.add_argument("--micro-batches", default=None,
                   help="micro-batches per system: best (default), fit or an integer (as in simulate; "
                        "simulate/analytic)")
    p.add_argument("--batch-tiling-attention", type=int, default=None, metavar="B",
                   help="Batch Tiling on Attention: attention in tiles of B sequences (default 0: off; "
                        "simulate/analytic)")
    p.add_argument("--out", default="results/sweep.csv", help="output .csv or .json (resumable)")
    p.add_argument("--no-resume", action="store_true", help="recompute rows already in --out")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--scheduler", help="Dask scheduler address tcp://HOST:PORT (needs wsim[distributed])")
    p.add_argument("--plot", metavar="OUT.png", help="also plot tokens/s against systems")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run, human=human, exit_status=exit_status)


def _ints(text: str | None, name: str) -> list[int]:
    if text is None:
        raise ConfigError(f"{name} is required")
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated positive integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{name} must be comma-separated positive integers, got {text!r}")
    return values


def run(args) -> dict:
    from models import zoo
    from wsim.studies.sweep import grid, run_grid

    models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in zoo.ZOO]
    if unknown or not models:
        raise ConfigError(f"--models: unknown model(s) {unknown}; " + (
            "; ".join(f"{m}: {hint(m, zoo.names(), 'models/zoo.py')}" for m in unknown) or "none given"))
    # a flag the kind does not read is refused, not dropped
    unread = (("--cluster", args.cluster), ("--micro-batches", args.micro_batches),
              ("--batch-tiling-attention", args.batch_tiling_attention)) if args.kind == "gpu" \
        else (("--gpu", args.gpu),)
    given = [flag for flag, value in unread if value is not None]
    if given:
        raise ConfigError(f"kind {args.kind} does not use {', '.join(given)}; drop "
                          f"{'it' if len(given) == 1 else 'them'}")
    cluster = "cs2" if args.cluster is None else args.cluster
    micro_batches = "best" if args.micro_batches is None else args.micro_batches
    tile = 0 if args.batch_tiling_attention is None else args.batch_tiling_attention
    if args.kind == "gpu":
        if args.systems:
            raise ConfigError("kind gpu takes --gpus, not --systems")
        counts = _ints(args.gpus, "--gpus")
        from wsim.gpu import GPUS

        gpus = [g.strip() for g in ("a100-80gb" if args.gpu is None else args.gpu).split(",") if g.strip()]
        bad = [g for g in gpus if g not in GPUS]
        if bad or not gpus:
            raise ConfigError(f"--gpu: unknown GPU type(s) {bad}; " + (
                "; ".join(f"{g}: {hint(g, GPUS)}" for g in bad) or "none given"))
    else:
        if args.gpus:
            raise ConfigError(f"kind {args.kind} takes --systems, not --gpus")
        counts = _ints(args.systems, "--systems")
        gpus = "a100-80gb"
        from wsim.cluster import generations

        generations.load(cluster, 1)  # a bad preset or file fails here, once, not per point
    if args.jobs <= 0:
        raise ConfigError(f"--jobs must be a positive integer, got {args.jobs}")
    if micro_batches not in MICRO_BATCH_POLICIES:
        _ints(micro_batches, "--micro-batches")
    if tile < 0:
        raise ConfigError(f"--batch-tiling-attention must be a positive integer (or 0: off), got {tile}")
    check_output(args.out, "--out")
    check_output(args.plot, "--plot")
    if args.batch is not None:
        sizes = {"batch": _ints(args.batch, "--batch")}
    else:
        sizes = {"seqs_per_system": _ints("8" if args.seqs_per_system is None else args.seqs_per_system,
                                          "--seqs-per-system")}
    points = grid(models, counts, kind=args.kind, seq=args.seq, cluster=cluster, gpu=gpus,
                  micro_batches=micro_batches, attention_tile_seqs=tile, **sizes)
    result = run_grid(points, out=args.out, jobs=args.jobs, scheduler=args.scheduler,
                      resume=not args.no_resume, progress=not args.quiet)
    out = result.to_dict()
    c, rows = out["counts"], out["rows"]
    if rows and not c["ok"] and not c["failed"]:  # nothing ran: bad input, one line, exit 2
        raise ConfigError(f"none of the {len(rows)} sweep points is valid (first: {rows[0]['key']}: "
                          f"{rows[0]['error']}); every row is in {out['out']}")
    if args.plot is not None:
        from wsim.studies.plots import sweep_plot

        try:
            out["plot"] = sweep_plot(result.rows, args.plot, title=f"wsim sweep ({args.kind})")
        except OSError as exc:
            raise ConfigError(f"cannot write --plot {args.plot!r}: {exc.strerror}") from None
    return out


def exit_status(r: dict) -> tuple[int, str | None]:
    """The sweep's exit code after its rows are printed: 1 if a point failed unexpectedly (a bug or
    a lost worker: scripts must notice), else 0. (No valid point at all is bad input: ``run``
    raises, exit 2 with one line and nothing on stdout.)"""
    c, rows = r["counts"], r["rows"]
    if c["failed"]:
        first = next(row for row in rows if row["status"] == "failed")
        return 1, f"{c['failed']} of {len(rows)} sweep points failed (first: {first['key']}: {first['error']})"
    return 0, None


def human(r: dict) -> str:
    c = r["counts"]
    lines = [f"{len(r['rows'])} runs ({r['computed']} computed, {r['reused']} reused from {r['out']}) "
             f"on {r['executor']}: {c['ok']} ok, {c['invalid']} invalid, {c['failed']} failed"]
    for row in r["rows"]:
        if row["status"] == "ok":
            lines.append(f"  {row['key']:<48} step {row['step_time_s']:.4g} s  "
                         f"{row['tokens_per_s']:.4g} tokens/s  {row.get('bottleneck') or ''}")
        else:
            lines.append(f"  {row['key']:<48} {row['status']}: {row['error']}")
    if r.get("plot"):
        lines.append(f"plot: {r['plot']}")
    return "\n".join(lines)
