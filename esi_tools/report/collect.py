"""Find the artifacts of a run directory, order them along the pipeline, and keep their reads inside them.

A manifest is data like any other: one listing `../../../secret.md`, or a file that is a link out of its
directory, would make the report read (and embed) a file that is not part of the run. Such an artifact is
skipped with the reason, and every file the report opens goes through `member`.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import MANIFEST, Artifact, open_artifact
from ..console import warn
from ..errors import EsiError, InputError

PIPELINE = ["dataset", "features", "retrieval-index", "retrieval", "captions", "audit", "model", "embeddings", "probe",
            "identification"]


def member(art: Artifact, name: str) -> Path | None:
    """The file `name` of `art` resolved, or None unless it is a regular file inside the artifact's directory."""
    root = art.path.resolve()
    path = (art.path / name).resolve()
    return path if path.is_relative_to(root) and path != root and path.is_file() else None


def collect(run_dir: Path) -> tuple[list[Artifact], list[tuple[str, str]]]:
    """Every valid artifact up to two levels below run_dir, in pipeline order then creation time, and the
    (path, reason) of each directory skipped."""
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    found, skipped = [], []
    for manifest in sorted([*run_dir.glob(f"*/{MANIFEST}"), *run_dir.glob(f"*/*/{MANIFEST}")]):
        if manifest.parent.name.startswith(".") or manifest.parent.name == "report":
            continue
        try:
            art = open_artifact(manifest.parent)
        except EsiError as exc:
            skipped.append((str(manifest.parent), str(exc)))
            continue
        outside = [name for name in art.manifest["files"] if member(art, name) is None]
        if outside:
            skipped.append((str(art.path), f"lists files that are not regular files inside it: {outside[:3]}"))
            continue
        found.append(art)
    for path, reason in skipped:
        warn(f"skipping {path}: {reason}")
    if not found:
        raise InputError(f"{run_dir}: holds no esi artifacts")
    rank = {kind: i for i, kind in enumerate(PIPELINE)}
    return sorted(found, key=lambda a: (rank.get(a.kind, len(PIPELINE)), a.manifest["created_at"], str(a.path))), skipped
