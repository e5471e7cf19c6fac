"""Checkpoints: periodic and on interrupt; `--resume` restores model, optimizer, scheduler, RNG, data position.

Layout: <dir>/latest holds the newest tag; <dir>/<tag>/ holds the engine's files (state.pt, or DeepSpeed's
own), `meta.json` (step, settings that must not change across a resume), `log.parquet` (rows so far) and
one `rng-rank<r>.pt` per rank. A tag directory is complete once `latest` names it.
"""

from __future__ import annotations

import json
import random
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
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(root: Path, engine, *, step: int, settings: dict, history: list[dict], rank: int, world_size: int) -> Path:
    """Write checkpoint `step-<n>` under root on every rank's behalf; returns its directory."""
    tag = root / f"step-{step:08d}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tag, ignore_errors=True)
        tag.mkdir()
    _barrier(world_size)
    engine.save(tag, rank)
    torch.save(rng_state(), tag / f"rng-rank{rank}.pt")
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


def find(path: str | Path) -> Path:
    """A checkpoint tag directory from a root (via `latest`) or a tag directory itself."""
    path = Path(path)
    if (path / LATEST).exists():
        path = path / (path / LATEST).read_text().strip()
    if not (path / "meta.json").exists():
        raise InputError(f"--resume {path}: not a checkpoint (no meta.json; pass the checkpoint directory)")
    return path


def load(path: str | Path, engine, *, settings: dict, rank: int, world_size: int) -> tuple[int, list[dict]]:
    """Restore everything; returns (step, log rows so far). Refuses a resume that would change the run."""
    tag = find(path)
    meta = json.loads((tag / "meta.json").read_text())
    if meta["engine"] != engine.name or meta["world_size"] != world_size:
        raise InputError(
            f"--resume {tag}: written by the {meta['engine']} engine with {meta['world_size']} rank(s); "
            f"this run uses {engine.name} with {world_size}"
        )
    saved = meta["settings"]
    changed = [k for k in MUST_MATCH if json.dumps(saved.get(k), default=str) != json.dumps(settings.get(k), default=str)]
    if changed:
        raise InputError(f"--resume {tag}: settings differ from the checkpoint's: {', '.join(changed)}")
    engine.load(tag)
    rng_file = tag / f"rng-rank{rank}.pt"
    set_rng_state(torch.load(rng_file, weights_only=False))  # numpy/python RNG states are plain tuples
    history = pl.read_parquet(tag / "log.parquet").to_dicts() if (tag / "log.parquet").exists() else []
    return int(meta["step"]), history
