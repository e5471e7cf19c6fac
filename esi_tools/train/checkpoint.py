"""Checkpoints: periodic and on interrupt; `--resume` restores model, optimizer, scheduler, RNG, data position.

Layout: <dir>/latest holds the newest tag; <dir>/<tag>/ holds the engine's files (state.pt, or DeepSpeed's
own), `meta.json` (step, settings that must not change across a resume), `log.parquet` (rows so far) and
one `rng-rank<r>.json` per rank. A tag directory is complete once `latest` names it.

A checkpoint may come from anywhere, so resuming never runs code from it: RNG states are plain JSON, every
torch file is read with `weights_only=True` (DeepSpeed's own loader is swapped for one that is), and
`latest` may only name a tag directory inside the checkpoint directory.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.distributed as dist

from ..errors import InputError

LATEST = "latest"
KEEP = 2  # checkpoints kept on disk: the newest plus one in case the newest is cut short
# Settings that fix the data stream and optimizer shapes: a resume with other values would not continue the run.
MUST_MATCH = ("seed", "batch_size", "grad_accum", "model", "size", "text_model", "text_source", "exclude_folds", "crop_seconds", "augment")


def _barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def rng_state() -> dict:
    """Every RNG the loop draws from, as JSON-ready lists and numbers (never a pickle)."""
    np_state = np.random.get_state(legacy=False)
    version, mt, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": {"key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "python": {"version": version, "state": list(mt), "gauss_next": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()`'s output; a malformed state raises ValueError/TypeError/KeyError."""
    torch_state = torch.tensor(state["torch"], dtype=torch.uint8)
    numpy_state = {"bit_generator": "MT19937", "has_gauss": int(state["numpy"]["has_gauss"]),
                   "gauss": float(state["numpy"]["gauss"]),
                   "state": {"key": np.array(state["numpy"]["key"], dtype=np.uint32), "pos": int(state["numpy"]["pos"])}}
    py = state["python"]
    python_state = (int(py["version"]), tuple(int(v) for v in py["state"]), None if py["gauss_next"] is None else float(py["gauss_next"]))
    cuda = [torch.tensor(s, dtype=torch.uint8) for s in state.get("cuda", [])]
    torch.set_rng_state(torch_state)
    np.random.set_state(numpy_state)
    random.setstate(python_state)
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save(root: Path, engine, *, step: int, settings: dict, history: list[dict], rank: int, world_size: int) -> Path:
    """Write checkpoint `step-<n>` under root on every rank's behalf; returns its directory."""
    tag = root / f"step-{step:08d}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tag, ignore_errors=True)
        tag.mkdir()
    _barrier(world_size)
    engine.save(tag, rank)
    (tag / f"rng-rank{rank}.json").write_text(json.dumps(rng_state()))
    _barrier(world_size)
    if rank == 0:
        meta = {"step": step, "world_size": world_size, "engine": engine.name, "settings": settings}
        (tag / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        pl.DataFrame(history).write_parquet(tag / "log.parquet")
        (root / f".{LATEST}.tmp").write_text(tag.name)
        (root / f".{LATEST}.tmp").replace(root / LATEST)
        for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier(world_size)
    return tag


TAG = re.compile(r"step-\d+")


def find(path: str | Path) -> Path:
    """A checkpoint tag directory from a root (via `latest`) or a tag directory itself.

    `latest` may only name a `step-N` directory inside `path` (not a path, not a link out of it).
    """
    path = Path(path)
    if (path / LATEST).is_file():
        name = (path / LATEST).read_text(errors="replace").strip()
        tag = path / name
        if not TAG.fullmatch(name):
            raise InputError(f"--resume {path}: 'latest' names {name!r}, not a step-N directory of this checkpoint")
        if tag.resolve().parent != path.resolve():
            raise InputError(f"--resume {path}: 'latest' names {name}, which links outside {path}")
        path = tag
    if not (path / "meta.json").is_file():
        raise InputError(f"--resume {path}: not a checkpoint (no meta.json; pass the checkpoint directory)")
    return path


@contextlib.contextmanager
def _weights_only(engine, loading: dict):
    """DeepSpeed's checkpoint engine unpickles whatever it reads; swap in a torch.load with weights_only=True.

    Its ZeRO optimizer files hold three small DeepSpeed classes besides tensors; only those are allowed.
    `loading["file"]` names the file being read, for the error message.
    """
    checkpoint_engine = getattr(getattr(engine, "engine", None), "checkpoint_engine", None)
    if checkpoint_engine is None:
        yield
        return
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    def load(path, map_location=None):
        loading["file"] = path
        with torch.serialization.safe_globals([LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]):
            return torch.load(path, map_location=map_location, weights_only=True)

    original = checkpoint_engine.load
    checkpoint_engine.load = load
    try:
        yield
    finally:
        checkpoint_engine.load = original


def _load_engine(tag: Path, engine) -> None:
    """engine.load(tag) reading weights only; a refused or damaged file becomes one InputError naming it."""
    loading = {"file": tag / "state.pt"}  # the plain engine's one file; DeepSpeed's loader records its own
    try:
        with _weights_only(engine, loading):
            engine.load(tag)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, TypeError, AttributeError,
            ValueError) as exc:
        text = str(exc)
        reason = ("it holds objects that loading would have to execute (refused, nothing was run)"
                  if "Weights only load failed" in text else (text.strip().splitlines() or [type(exc).__name__])[0])
        raise InputError(f"--resume {tag}: cannot load {Path(loading['file']).name}: {reason}") from None


def load(path: str | Path, engine, *, settings: dict, rank: int, world_size: int) -> tuple[int, list[dict]]:
    """Restore everything; returns (step, log rows so far). Refuses a resume that would change the run."""
    tag = find(path)
    try:
        meta = json.loads((tag / "meta.json").read_text())
        meta_engine, meta_world, saved, step = meta["engine"], meta["world_size"], meta["settings"], int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--resume {tag}: unreadable meta.json ({exc})") from None
    if meta_engine != engine.name or meta_world != world_size:
        raise InputError(
            f"--resume {tag}: written by the {meta_engine} engine with {meta_world} rank(s); "
            f"this run uses {engine.name} with {world_size}"
        )
    changed = [k for k in MUST_MATCH if json.dumps(saved.get(k), default=str) != json.dumps(settings.get(k), default=str)]
    if changed:
        raise InputError(f"--resume {tag}: settings differ from the checkpoint's: {', '.join(changed)}")
    rng_file = tag / f"rng-rank{rank}.json"
    if not rng_file.is_file():
        raise InputError(f"--resume {tag}: no {rng_file.name} (older checkpoints kept RNG state in a pickle, "
                         f"rng-rank{rank}.pt, which is never loaded: resume from a newer checkpoint or start over)")
    try:
        rng = json.loads(rng_file.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"--resume {tag}: {rng_file.name} is not a valid RNG state ({exc})") from None
    _load_engine(tag, engine)
    try:
        set_rng_state(rng)
    except (ValueError, TypeError, KeyError, RuntimeError, OverflowError) as exc:
        raise InputError(f"--resume {tag}: {rng_file.name} is not a valid RNG state ({exc})") from None
    history = pl.read_parquet(tag / "log.parquet", glob=False).to_dicts() if (tag / "log.parquet").exists() else []
    return step, history
