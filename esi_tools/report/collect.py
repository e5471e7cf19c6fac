"""Find the artifacts of a run directory and order them along the pipeline."""

from __future__ import annotations

from pathlib import Path

from ..artifacts import MANIFEST, Artifact, open_artifact
from ..console import warn
from ..errors import EsiError, InputError

PIPELINE = ["dataset", "features", "retrieval-index", "retrieval", "captions", "model", "embeddings", "probe",
            "identification"]


def collect(run_dir: Path) -> list[Artifact]:
    """Every valid artifact up to two levels below run_dir, in pipeline order then creation time."""
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    found = []
    for manifest in sorted([*run_dir.glob(f"*/{MANIFEST}"), *run_dir.glob(f"*/*/{MANIFEST}")]):
        if manifest.parent.name.startswith(".") or manifest.parent.name == "report":
            continue
        try:
            found.append(open_artifact(manifest.parent))
        except EsiError as exc:
            warn(f"skipping {manifest.parent}: {exc}")
    if not found:
        raise InputError(f"{run_dir}: holds no esi artifacts")
    rank = {kind: i for i, kind in enumerate(PIPELINE)}
    return sorted(found, key=lambda a: (rank.get(a.kind, len(PIPELINE)), a.manifest["created_at"], str(a.path)))
