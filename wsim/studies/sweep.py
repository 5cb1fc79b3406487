"""``run_grid``: a grid of simulate / analytic / gpu runs, in parallel, resumable, to CSV or JSON.

- A ``Point`` is one run; its ``key`` names it. Rows already in the output file (matched by key)
  are not recomputed: an interrupted sweep picks up where it stopped. Rows are appended as they
  finish and the file is rewritten in grid order at the end, so the same grid gives the same file.
- Bad points (a batch that does not divide, a model that does not fit) become rows with
  ``status = invalid`` and the error; they are final. Unexpected failures (``status = failed``)
  are retried on the next run.
- Locally the grid runs in a ``concurrent.futures.ProcessPoolExecutor``; with ``scheduler`` (a
  ``tcp://host:port`` address or a ``distributed.Client``) it runs on an existing Dask cluster
  (the optional ``distributed`` extra). Progress goes to stderr with tqdm.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from wsim.errors import ConfigError, positive, require

KINDS = ("simulate", "analytic", "gpu")

COLUMNS = [
    "key", "status", "error", "kind", "model", "params", "seq", "systems", "gpus", "gpu", "batch",
    "seqs_per_system", "cluster", "micro_batches", "step_time_s", "tokens_per_s",
    "model_flops_per_s", "compute_utilization", "bottleneck", "recompute", "wafer_memory_bytes",
    "memoryx_bytes", "balance_tokens_per_system", "tp", "pp", "dp", "micro_batch", "interleave",
    "gpu_recompute", "sequence_parallel", "zero", "mfu", "memory_per_gpu_bytes", "cp", "gpu_stack",
]


@dataclass(frozen=True)
class Point:
    """One run. ``systems`` is the CS-2 count (simulate/analytic) or the GPU count (gpu)."""

    kind: str
    model: str
    systems: int
    batch: int
    seq: int = 2048
    cluster: str = "cs2"
    gpu: str = "a100-80gb"
    micro_batches: str = "best"
    attention_tile_seqs: int = 0  # Batch Tiling on Attention (wsim/cluster/moe.py); 0: off

    def __post_init__(self) -> None:
        require(self.kind in KINDS, f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        positive("systems", self.systems, integer=True)
        positive("batch", self.batch, integer=True)
        positive("seq", self.seq, integer=True)

    @property
    def key(self) -> str:
        parts = [self.kind, self.model, f"n{self.systems}", f"b{self.batch}", f"s{self.seq}"]
        parts.append(self.gpu if self.kind == "gpu" else f"{self.cluster}:mb{self.micro_batches}"
                     + (f":bta{self.attention_tile_seqs}" if self.attention_tile_seqs else ""))
        return "|".join(parts)


def grid(models, systems, *, kind: str = "simulate", seqs_per_system=None, batch=None,
         seq: int = 2048, cluster: str = "cs2", gpu="a100-80gb",
         micro_batches: str = "best", attention_tile_seqs: int = 0) -> list[Point]:
    """The cross product models x systems x (seqs_per_system | batch) x gpu types, in that order."""
    require((seqs_per_system is None) != (batch is None), "give seqs_per_system or batch (one of them)")
    models, systems = _as_list(models, "models"), _as_list(systems, "systems")
    per = _as_list(seqs_per_system if batch is None else batch, "batch")
    gpus = _as_list(gpu, "gpu") if kind == "gpu" else [gpu if isinstance(gpu, str) else "a100-80gb"]
    points = []
    for m in models:
        for n in systems:
            for b in per:
                for g in gpus:
                    global_batch = b * n if batch is None else b
                    points.append(Point(kind, m, n, global_batch, seq, cluster, g, str(micro_batches),
                                        attention_tile_seqs))
    return points


def _as_list(value, name) -> list:
    items = [value] if isinstance(value, (str, int)) else list(value)
    require(len(items) > 0, f"{name} is empty")
    return items


def run_point(p: Point) -> dict:
    """One run as a flat row; never raises for bad input (the row says why)."""
    row = dict.fromkeys(COLUMNS)
    row |= {"key": p.key, "kind": p.kind, "model": p.model, "seq": p.seq, "batch": p.batch,
            "status": "ok", "error": None}
    try:
        row |= _gpu_row(p) if p.kind == "gpu" else _cs2_row(p)
    except (ConfigError, ValueError) as exc:
        row |= {"status": "invalid", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a sweep reports, and retries these next time
        row |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return row


def _model(name: str):
    from models import zoo

    return zoo.get(name)


def _cs2_row(p: Point) -> dict:
    from wsim.engine import closed_form
    from wsim.cluster import generations
    from wsim.cluster.job import MICRO_BATCH_POLICIES, TrainingJob

    model = _model(p.model)
    cluster = generations.load(p.cluster, p.systems)
    mb = p.micro_batches if p.micro_batches in MICRO_BATCH_POLICIES else int(p.micro_batches)
    job = TrainingJob(model, seq=p.seq, batch_seqs=p.batch, micro_batches=mb,
                      attention_tile_seqs=p.attention_tile_seqs)
    a = closed_form.step_time(job, cluster)
    row = {"params": model.params, "systems": p.systems, "cluster": p.cluster,
           "seqs_per_system": p.batch // p.systems, "micro_batches": a.micro_batches,
           "recompute": a.recompute, "balance_tokens_per_system": a.balance_tokens_per_system,
           "memoryx_bytes": model.params * cluster.memoryx.bytes_per_param}
    if p.kind == "analytic":
        parts = {"cs2_compute": a.compute_s, "weight_stream": a.stream_s, "gradient_stream": a.gradient_s}
        return row | {"step_time_s": a.step_time_s, "tokens_per_s": a.tokens_per_s,
                      "model_flops_per_s": job.model_flops_per_step() / a.step_time_s,
                      "compute_utilization": a.compute_utilization,
                      "bottleneck": max(parts, key=parts.get)}
    from wsim.engine.run import simulate

    r = simulate(job, cluster)
    return row | {"step_time_s": r.step_time_s, "tokens_per_s": r.tokens_per_s,
                  "model_flops_per_s": r.model_flops_per_s,
                  "compute_utilization": r.compute_utilization, "bottleneck": r.bottleneck,
                  "wafer_memory_bytes": r.wafer_memory_bytes}


def _gpu_row(p: Point) -> dict:
    from wsim.gpu import search

    model = _model(p.model)
    r = search(model, seq=p.seq, batch=p.batch, gpus=p.systems, gpu=p.gpu)
    plan = r.plan
    return {"params": model.params, "gpus": p.systems, "gpu": p.gpu, "step_time_s": r.step_time_s,
            "tokens_per_s": r.tokens_per_s,
            "model_flops_per_s": r.model_flops_per_step / r.step_time_s, "mfu": r.mfu,
            "memory_per_gpu_bytes": r.memory.total_bytes, "tp": plan.tp, "pp": plan.pp,
            "dp": plan.dp, "micro_batch": plan.micro_batch, "interleave": plan.interleave,
            "gpu_recompute": plan.recompute, "sequence_parallel": plan.sequence_parallel,
            "zero": plan.zero, "cp": plan.cp, "gpu_stack": plan.stack}


# ---- output files --------------------------------------------------------------------------------

def parse_cell(value: str):
    """A CSV cell back to its value: "" -> None, "True"/"False" -> bool, then int, float or str."""
    if value == "":
        return None
    if value in ("True", "False"):
        return value == "True"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a sweep file (CSV or JSON); [] if it does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text() or "[]")
            rows = data["rows"] if isinstance(data, dict) else data
        else:
            with path.open(newline="") as f:
                rows = [{k: parse_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot resume from {str(path)!r}: {exc}") from None
    return [r for r in rows if isinstance(r, dict) and r.get("key")]


def _cell(v):
    return "" if v is None else v


def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Write all rows (atomically: a temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".json":
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
    else:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({k: _cell(r.get(k)) for k in COLUMNS})
    os.replace(tmp, path)


class _Appender:
    """Keeps the output file up to date as rows finish (CSV: append a line; JSON: rewrite)."""

    def __init__(self, path: Path | None, kept: list[dict]):
        self.path, self.rows = path, list(kept)
        if path is not None:
            try:
                write_rows(path, self.rows)
            except OSError as exc:  # before any point runs: bad input, not a failed sweep
                raise ConfigError(f"cannot write --out {str(path)!r}: {exc.strerror}") from None

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if self.path is None:
            return
        if self.path.suffix == ".json":
            write_rows(self.path, self.rows)
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore",
                               lineterminator="\n").writerow({k: _cell(row.get(k)) for k in COLUMNS})


# ---- running -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepResult:
    rows: list  # one per grid point, in grid order
    computed: int
    reused: int
    out: str | None
    executor: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["counts"] = {s: sum(r.get("status") == s for r in self.rows) for s in ("ok", "invalid", "failed")}
        return d


# Local processes are started on demand, one per busy worker; past this many a multi-machine
# scheduler is the tool (and multiprocessing's semaphores overflow near 2**31).
MAX_JOBS = 1024


def _executor(jobs: int, scheduler):
    if scheduler is not None:
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise ConfigError("--scheduler needs Dask distributed: pip install 'wsim[distributed]'") from None
        own = isinstance(scheduler, str)
        try:
            client = Client(scheduler, timeout="10s") if own else scheduler
        except (OSError, TimeoutError, ValueError) as exc:  # ValueError: not an address (no port)
            raise ConfigError(f"cannot reach the Dask scheduler {scheduler!r}: {exc}") from None

        def submit(points):
            futures = [client.submit(run_point, p, pure=False) for p in points]
            for fut in as_completed(futures):
                yield fut.result()

        return submit, (client.close if own else (lambda: None)), f"dask {getattr(client, 'scheduler', '')}"
    if jobs <= 1:
        return (lambda points: (run_point(p) for p in points)), (lambda: None), "serial"
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import as_completed as done

    pool = ProcessPoolExecutor(max_workers=jobs)

    def submit(points):
        futures = [pool.submit(run_point, p) for p in points]
        for fut in done(futures):
            yield fut.result()

    return submit, (lambda: pool.shutdown(cancel_futures=True)), f"processes x{jobs}"


def run_grid(points: list[Point], *, out: str | Path | None = None, jobs: int = 1, scheduler=None,
             resume: bool = True, progress: bool = True) -> SweepResult:
    """Run every point not already finished in ``out``; return all rows in grid order."""
    from tqdm import tqdm

    require(len(points) > 0, "the sweep grid is empty")
    positive("jobs", jobs, integer=True)
    require(jobs <= MAX_JOBS, f"jobs {jobs} exceeds {MAX_JOBS} local worker processes: for more "
                              f"workers run the grid on a Dask cluster (--scheduler)")
    keys = [p.key for p in points]
    require(len(set(keys)) == len(keys), "the sweep grid has duplicate points")
    path = Path(out) if out is not None else None
    if path is not None:
        require(path.suffix in (".csv", ".json"), f"--out must end in .csv or .json, got {str(path)!r}")
    old = {r["key"]: r for r in read_rows(path)} if (path is not None and resume) else {}
    done = {k: r for k, r in old.items() if r.get("status") in ("ok", "invalid")}
    todo = [p for p in points if p.key not in done]
    appender = _Appender(path, list(done.values()))
    submit, close, name = _executor(jobs, scheduler) if todo else (None, lambda: None, "none")
    new = {}
    try:
        with tqdm(total=len(points), initial=len(points) - len(todo), desc="sweep", unit="run",
                  file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
            if todo:
                for row in submit(todo):
                    new[row["key"]] = row
                    appender.add(row)
                    bar.update(1)
    finally:
        close()
    finished = done | new
    rows = [finished[k] for k in keys]
    if path is not None:  # the grid in order, then earlier rows that are not part of this grid
        extra = [r for k, r in finished.items() if k not in set(keys)]
        write_rows(path, rows + extra)
    return SweepResult(rows=rows, computed=len(new), reused=len(points) - len(todo),
                       out=str(path) if path else None, executor=name)


__all__ = ["Point", "grid", "run_point", "run_grid", "read_rows", "write_rows", "SweepResult",
           "COLUMNS", "KINDS"]
