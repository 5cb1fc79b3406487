"""MemoryX checkpoints: everything needed to resume weight-streamed training bit for bit.

MemoryX holds the training state (docs/design.md): master weights, each layer's AdamW state, and the
position in the run. A checkpoint is a folder of four files:

    weights.safetensors    the master weights, in the training dtype
    optimizer.safetensors  every tensor of every layer's AdamW state (exp_avg, exp_avg_sq, step)
    state.json             step, data position, batch, model config, hyper-parameters, the rest of
                           the AdamW state dicts (param groups), and a fingerprint of the data
    manifest.json          SHA-256 and size of the three files above

``save`` writes it atomically: into a temporary folder beside the target, each file fsync'ed, then
one ``rename``; under a run folder (``save_latest``) each checkpoint gets its own ``step-NNNNNNNN``
folder and a ``LATEST`` file, replaced atomically, names the newest, so a crash at any point leaves
the previous checkpoint readable. ``load`` reads every file, checks the manifest (no file missing or
extra, every size and hash right) and only then parses: a truncated or corrupted checkpoint raises
``CheckpointError`` naming the file, and nothing is half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from models.decoder import DecoderConfig
from models.registry import config_from_hf_dict
from wsim.errors import ConfigError

FORMAT = "wsim-memoryx-checkpoint"
VERSION = 1
FILES = ("weights.safetensors", "optimizer.safetensors", "state.json")
MANIFEST = "manifest.json"
LATEST = "LATEST"


class CheckpointError(ConfigError):
    """A checkpoint that cannot be trusted: missing, truncated, corrupted or inconsistent."""


@dataclass
class Checkpoint:
    cfg: DecoderConfig
    weights: dict
    optimizer_state: dict  # as ``TrainReport.optimizer_state``: {"layers": [state_dict | None]}
    step: int  # the next step to run (steps 0..step-1 are done)
    batch: int
    train: dict = field(default_factory=dict)  # hyper-parameters the run used
    data_sha256: str | None = None
    path: str = ""

    @property
    def data_row(self) -> int:
        """The first data row the next step reads."""
        return self.step * self.batch

    def resume_kwargs(self) -> dict:
        """``train(cfg, weights, data, **ckpt.resume_kwargs(), ...)`` continues the run."""
        return {"first_step": self.step, "optimizer_state": self.optimizer_state}


def data_fingerprint(data: Tensor) -> str:
    h = hashlib.sha256(f"{tuple(data.shape)} {data.dtype}".encode())
    h.update(data.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


# ---- JSON that keeps tuples (AdamW's betas) ------------------------------------------------------
def _enc(v):
    if isinstance(v, tuple):
        return {"__tuple__": [_enc(x) for x in v]}
    if isinstance(v, list):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _enc(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot store {type(v).__name__} in a checkpoint")


def _dec(v):
    if isinstance(v, dict):
        if set(v) == {"__tuple__"}:
            return tuple(_dec(x) for x in v["__tuple__"])
        return {k: _dec(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v


# ---- save ----------------------------------------------------------------------------------------
def _split_optimizer(optimizer_state: dict) -> tuple[dict, list]:
    tensors: dict[str, Tensor] = {}
    meta: list = []
    for l, sd in enumerate(optimizer_state["layers"]):
        if sd is None:
            meta.append(None)
            continue
        state = {}
        for pid, entries in sd["state"].items():
            out = {}
            for name, value in entries.items():
                if isinstance(value, Tensor):
                    key = f"layers.{l}.state.{pid}.{name}"
                    tensors[key] = value.detach().contiguous().clone()
                    out[name] = {"tensor": key}
                else:
                    out[name] = {"value": _enc(value)}
            state[str(pid)] = out
        meta.append({"state": state, "param_groups": _enc(sd["param_groups"])})
    return tensors, meta


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(path, cfg: DecoderConfig, weights: dict, optimizer_state: dict, step: int, batch: int,
         train: dict | None = None, data_sha256: str | None = None) -> Path:
    """Write a checkpoint folder at ``path`` (which must not exist yet), atomically."""
    path = Path(path)
    if path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} already exists; checkpoints are never "
                              f"overwritten (use save_latest for a run folder)")
    if not isinstance(step, int) or step < 0 or not isinstance(batch, int) or batch <= 0:
        raise CheckpointError(f"checkpoint step must be >= 0 and batch > 0, got {step!r}, {batch!r}")
    opt_tensors, opt_meta = _split_optimizer(optimizer_state)
    w = {n: t.detach().contiguous().clone() for n, t in weights.items()}  # no shared storage
    state = {"format": FORMAT, "version": VERSION, "step": step, "batch": batch,
             "data_row": step * batch, "config": cfg.to_hf_dict(), "train": _enc(train or {}),
             "data_sha256": data_sha256, "optimizer": opt_meta}
    blobs = {
        "weights.safetensors": st_save(w, metadata={"format": FORMAT}),
        "optimizer.safetensors": st_save(opt_tensors, metadata={"format": FORMAT}),
        "state.json": json.dumps(state, indent=1, sort_keys=True, allow_nan=True).encode(),
    }
    manifest = {"format": FORMAT, "version": VERSION,
                "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
                          for n, b in blobs.items()}}
    manifest["self_sha256"] = _self_hash(manifest)  # damage to the manifest is named as such
    blobs[MANIFEST] = _manifest_bytes(manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        for name, data in blobs.items():
            _write(tmp / name, data)
        _fsync_dir(tmp)
        os.rename(tmp, path)  # atomic; fails if path appeared meanwhile
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def save_latest(run_dir, *args, keep: int = 2, **kwargs) -> Path:
    """Save as ``run_dir/step-NNNNNNNN`` and point ``run_dir/LATEST`` at it (atomic replace); keep
    the newest ``keep`` checkpoints. Arguments as ``save`` after the path."""
    run_dir = Path(run_dir)
    step = kwargs["step"] if "step" in kwargs else args[3]
    name = f"step-{step:08d}"
    target = run_dir / name
    if target.exists():  # a rerun of the same step: write beside it, then swap the pointer
        shutil.rmtree(target)
    save(target, *args, **kwargs)
    fd, tmp = tempfile.mkstemp(prefix=".LATEST.tmp-", dir=run_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, run_dir / LATEST)
        _fsync_dir(run_dir)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    old = sorted(p for p in run_dir.glob("step-*") if p.is_dir() and p.name != name)
    for p in old[:max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return target


# ---- load ----------------------------------------------------------------------------------------
def _resolve(path: Path) -> Path:
    if (path / MANIFEST).exists() or not (path / LATEST).exists():
        return path
    try:
        name = (path / LATEST).read_text().strip()
    except OSError as exc:
        raise CheckpointError(f"cannot read {str(path / LATEST)!r}: {exc.strerror}") from None
    if not name or "/" in name or name.startswith("."):
        raise CheckpointError(f"{str(path / LATEST)!r} does not name a checkpoint folder: {name!r}")
    return path / name


def _manifest_bytes(manifest: dict) -> bytes:
    """The manifest as save writes it (and load requires it, byte for byte)."""
    return json.dumps(manifest, indent=1, sort_keys=True).encode()


def _self_hash(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "self_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_verified(path: Path) -> dict[str, bytes]:
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a folder")
    mpath = path / MANIFEST
    try:
        raw = mpath.read_bytes()
        manifest = json.loads(raw)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} has no {MANIFEST} (not a wsim checkpoint, or "
                              f"an interrupted write)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{str(mpath)!r} is corrupted or truncated: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{str(mpath)!r} is not a {FORMAT} manifest")
    if manifest.get("self_sha256") != _self_hash(manifest):
        raise CheckpointError(f"{str(mpath)!r} is corrupted: its own SHA-256 does not match")
    # the self hash covers the manifest's values; a change that keeps them (a space turned into a
    # tab, an escaped character) is damage too: the file must be byte for byte what save wrote
    if raw != _manifest_bytes(manifest):
        raise CheckpointError(f"{str(mpath)!r} is corrupted: its values hold but its bytes are not "
                              f"those wsim wrote (whitespace or escapes changed)")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{str(mpath)!r}: version {manifest.get('version')!r}, this wsim reads {VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(FILES):
        raise CheckpointError(f"{str(mpath)!r} must list exactly {', '.join(FILES)}")
    blobs = {}
    for name in FILES:
        fpath = path / name
        try:
            data = fpath.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint file {str(fpath)!r} is missing") from None
        except OSError as exc:
            raise CheckpointError(f"cannot read {str(fpath)!r}: {exc.strerror}") from None
        entry = files[name]
        if not isinstance(entry, dict):
            raise CheckpointError(f"{str(mpath)!r} has a malformed entry for {name}")
        if len(data) != entry.get("bytes"):
            raise CheckpointError(f"checkpoint file {str(fpath)!r} is truncated or padded: "
                                  f"{len(data)} bytes, the manifest says {entry.get('bytes')!r}")
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise CheckpointError(f"checkpoint file {str(fpath)!r} is corrupted: its SHA-256 does not "
                                  f"match the manifest")
        blobs[name] = data
    return blobs


def load(path) -> Checkpoint:
    """Read and verify a checkpoint folder (or a run folder with ``LATEST``); all or nothing."""
    path = _resolve(Path(path))
    blobs = _read_verified(path)
    where = str(path)
    try:
        state = json.loads(blobs["state.json"])
        weights = st_load(blobs["weights.safetensors"])
        opt_tensors = st_load(blobs["optimizer.safetensors"])
        if state.get("format") != FORMAT:
            raise ValueError("state.json is not a wsim checkpoint state")
        cfg = config_from_hf_dict(state["config"])
        cfg.check_weights(weights, f"checkpoint {where!r} weights")
        layers = []
        for meta in state["optimizer"]:
            if meta is None:
                layers.append(None)
                continue
            st = {}
            for pid, entries in meta["state"].items():
                st[int(pid)] = {n: opt_tensors[e["tensor"]] if "tensor" in e else _dec(e["value"])
                                for n, e in entries.items()}
            layers.append({"state": st, "param_groups": _dec(meta["param_groups"])})
        if len(layers) != len(cfg.layer_names()):
            raise ValueError(f"{len(layers)} optimizer entries for {len(cfg.layer_names())} layers")
        step, batch = state["step"], state["batch"]
        if not (isinstance(step, int) and step >= 0 and isinstance(batch, int) and batch > 0
                and state.get("data_row") == step * batch):
            raise ValueError(f"inconsistent step {step!r}, batch {batch!r}, data_row {state.get('data_row')!r}")
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {where!r} is inconsistent: {type(exc).__name__}: {exc}") from None
    return Checkpoint(cfg=cfg, weights=weights, optimizer_state={"layers": layers}, step=step, batch=batch,
                      train=_dec(state.get("train", {})), data_sha256=state.get("data_sha256"), path=where)
