"""Artifact directories: one per command run, a manifest.json plus data files, written atomically.

The manifest records what made the artifact (argv, parameters, tool version), what it read (each input's
manifest digest) and what it holds (sha256, bytes and rows or shape of each file), so every number later
printed can be traced back to the exact inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ArtifactError, InputError, SchemaVersionError
from .schemas import current_versions, required_columns, validate

MANIFEST = "manifest.json"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Artifact:
    """A committed artifact directory, opened for reading."""

    path: Path
    manifest: dict

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def parameters(self) -> dict:
        return self.manifest["parameters"]

    @property
    def summary(self) -> dict:
        return self.manifest["summary"]

    @property
    def digest(self) -> str:
        """sha256 of manifest.json: what downstream manifests record as this input's identity."""
        return sha256_file(self.path / MANIFEST)

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise ArtifactError(f"{self.path}: {self.kind} artifact has no file '{name}'")
        return self.path / name

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def table(self, name: str, columns: list[str] | None = None):
        """A Parquet table of this artifact as a polars DataFrame."""
        import polars as pl

        return pl.read_parquet(self.file(name), columns=columns)

    def array(self, name: str, mmap: bool = True):
        """A .npy array, memory-mapped read-only by default (flat memory whatever the size)."""
        import numpy as np

        return np.load(self.file(name), mmap_mode="r" if mmap else None, allow_pickle=False)

    def verify(self) -> None:
        """Re-hash every file against the manifest (slow for big waveforms; used by tests and `esi verify`)."""
        for name, info in self.manifest["files"].items():
            if sha256_file(self.path / name) != info["sha256"]:
                raise ArtifactError(f"{self.path / name}: sha256 differs from its manifest (modified after writing)")


def open_artifact(path: str | Path, kind: str | tuple[str, ...] | None = None) -> Artifact:
    """Open and validate an artifact; refuse the wrong kind or an incompatible schema version."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.exists():
        raise InputError(f"{path}: no such artifact directory")
    if not manifest_path.exists():
        raise ArtifactError(f"{path}: not an esi artifact (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or "kind" not in manifest or "schema_version" not in manifest:
        raise ArtifactError(f"{manifest_path}: manifest lacks kind or schema_version")
    found = manifest["kind"]
    wanted = (kind,) if isinstance(kind, str) else kind
    if wanted and found not in wanted:
        raise ArtifactError(f"{path}: is a '{found}' artifact, expected {' or '.join(repr(k) for k in wanted)}")
    supported = current_versions().get(found)
    if supported is None:
        raise ArtifactError(f"{path}: unknown artifact kind '{found}'")
    if manifest["schema_version"] != supported:
        raise SchemaVersionError(
            f"{path}: {found} artifact has schema version {manifest['schema_version']}, but esi-tools "
            f"{__version__} reads {found} schema version {supported}; re-create it with this version "
            f"(or use the esi-tools that wrote it)"
        )
    validate(manifest, found, supported, where=str(path))
    for name in manifest["files"]:
        if not (path / name).exists():
            raise ArtifactError(f"{path}: file '{name}' listed in the manifest is missing")
    return Artifact(path, manifest)


def _remove_stale_temporaries(out: Path) -> None:
    """Delete temp dirs left by killed writers of `out` (their process no longer exists)."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(tmp, ignore_errors=True)


class ArtifactWriter:
    """Build an artifact in a temporary sibling directory; `commit()` validates and renames it into place.

    Used as a context manager: an exception (or Ctrl-C) removes the temporary directory, so an interrupted
    command leaves nothing at `out`.
    """

    def __init__(
        self,
        out: str | Path,
        kind: str,
        *,
        parameters: dict,
        inputs: dict[str, Artifact] | None = None,
        force: bool = False,
        argv: list[str] | None = None,
    ):
        self.out = Path(out)
        self.kind = kind
        self.version = current_versions()[kind]
        self.parameters = parameters
        self.inputs = inputs or {}
        self.argv = list(sys.argv if argv is None else argv)
        self.summary: dict[str, Any] = {}
        self._rows: dict[str, int] = {}
        if self.out.exists() and not force:
            raise InputError(f"{self.out} already exists (pass --force to replace it)")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(self.out)
        self.tmp = self.out.parent / f".{self.out.name}.tmp-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where to write data file `name` (inside the temporary directory)."""
        return self.tmp / name

    def write_table(self, name: str, frame) -> None:
        frame.write_parquet(self.path(name))
        self._rows[name] = frame.height

    def write_json(self, name: str, obj: Any) -> None:
        self.path(name).write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))

    def write_array(self, name: str, array) -> None:
        import numpy as np

        np.save(self.path(name), array, allow_pickle=False)

    def _describe(self, name: str) -> dict:
        path = self.tmp / name
        info: dict[str, Any] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        if name.endswith(".parquet"):
            if name in self._rows:
                info["rows"] = self._rows[name]
            else:
                import polars as pl

                info["rows"] = pl.scan_parquet(path).select(pl.len()).collect().item()
        elif name.endswith(".npy"):
            import numpy as np

            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            info["shape"], info["dtype"] = list(arr.shape), str(arr.dtype)
            info["rows"] = int(arr.shape[0]) if arr.ndim else 1
        return info

    def _check_tables(self) -> None:
        import polars as pl

        for name, columns in required_columns(self.kind, self.version).items():
            path = self.tmp / name
            if path.exists():
                missing = [c for c in columns if c not in pl.read_parquet_schema(path)]
                if missing:
                    raise ArtifactError(f"{self.kind} artifact: {name} lacks columns {missing}")

    def commit(self) -> Path:
        files = {}
        for path in sorted(p for p in self.tmp.rglob("*") if p.is_file()):
            name = path.relative_to(self.tmp).as_posix()
            if name != MANIFEST:
                files[name] = self._describe(name)
        manifest = {
            "kind": self.kind,
            "schema_version": self.version,
            "esi_tools_version": __version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": self.argv,
            "parameters": self.parameters,
            "inputs": [
                {"role": role, "kind": art.kind, "path": str(art.path.resolve()), "manifest_sha256": art.digest}
                for role, art in self.inputs.items()
            ],
            "files": files,
            "summary": self.summary,
        }
        manifest = json.loads(json.dumps(manifest, default=str))
        validate(manifest, self.kind, self.version, where=f"writing {self.out}")
        self._check_tables()
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if self.out.exists():
            trash = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
            os.rename(self.out, trash)
            os.rename(self.tmp, self.out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(self.tmp, self.out)
        return self.out
