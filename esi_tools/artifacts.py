"""Artifact directories: one per command run, a manifest.json plus data files, written atomically.

The manifest records what made the artifact (argv, parameters, tool version), what it read (each input's
manifest digest) and what it holds (sha256, bytes and rows or shape of each file), so every number later
printed can be traced back to the exact inputs.

Writing is guarded so that `--force` can never destroy what is not the command's own: `--out` may not be,
sit inside, or contain an input artifact or a raw source directory, and an existing `--out` is replaced
only when it is an artifact of the same kind. One writer at a time holds a lock on each `--out`.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from . import __version__
from .errors import ArtifactError, EsiError, InputError, SchemaVersionError
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

    def input_path(self, role: str) -> Path | None:
        """Where this artifact's input of `role` was when it was made (None: no such input, or a portable
        artifact, which records no location)."""
        return next((Path(i["path"]) for i in self.manifest["inputs"] if i["role"] == role and i["path"]), None)

    def table(self, name: str, columns: list[str] | None = None):
        """A Parquet table of this artifact as a polars DataFrame."""
        import polars as pl

        path = self.file(name)
        try:
            return pl.read_parquet(path, columns=columns, glob=False)  # a path is a path, `[x]` included
        except Exception as exc:  # polars raises many types for a damaged file: name the file, not the type
            raise self._unreadable(path, exc) from None

    def array(self, name: str, mmap: bool = True):
        """A .npy array, memory-mapped read-only by default (flat memory whatever the size)."""
        import numpy as np

        path = self.file(name)
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise self._unreadable(path, exc) from None

    def _unreadable(self, path: Path, exc: Exception) -> ArtifactError:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return ArtifactError(f"{path}: unreadable ({reason}); `esi verify {self.path}` checks every file")

    def changes(self) -> list[str]:
        """Every difference from the manifest: files missing, resized, re-hashed or added, and inputs whose
        manifest changed since this artifact was made (inputs no longer at their recorded path are skipped)."""
        problems = self.file_changes()
        for inp in self.manifest["inputs"]:
            if not inp["path"]:  # a portable artifact (an export) records no location: nothing to compare
                continue
            manifest = Path(inp["path"]) / MANIFEST
            if manifest.is_file() and (now := sha256_file(manifest)) != inp["manifest_sha256"]:
                problems.append(f"input '{inp['role']}' at {inp['path']} changed since this artifact was made "
                                f"(manifest sha256 {inp['manifest_sha256'][:12]} recorded, {now[:12]} now)")
        return problems

    def file_changes(self) -> list[str]:
        """The artifact's own files missing, resized, re-hashed, added (or a link added) since it was written."""
        problems = []
        for name, info in sorted(self.manifest["files"].items()):
            path = self.path / name
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif path.stat().st_size != info["bytes"]:
                problems.append(f"{path}: {path.stat().st_size} bytes, its manifest records {info['bytes']}")
            elif sha256_file(path) != info["sha256"]:
                problems.append(f"{path}: sha256 differs from its manifest (modified after writing)")
        listed = {*self.manifest["files"], MANIFEST}
        for path in sorted(_entries(self.path)):
            if path.is_symlink():  # we never write links: one added (to a file or a folder) changes what is read
                problems.append(f"{path}: a symbolic link to {os.readlink(path)} (added after writing)")
            elif not path.is_dir() and path.relative_to(self.path).as_posix() not in listed:
                problems.append(f"{path}: not in the manifest (added after writing)")
        return problems

    def missing_inputs(self) -> list[dict]:
        """Recorded inputs no longer found at their recorded path (moved or deleted: cannot be checked); a
        portable artifact's inputs carry no path and are not looked for."""
        return [inp for inp in self.manifest["inputs"] if inp["path"] and not (Path(inp["path"]) / MANIFEST).is_file()]

    def verify(self) -> None:
        """Raise on the first of `changes()` (re-hashes every file: slow for big waveforms; `esi verify`)."""
        problems = self.changes()
        if problems:
            raise ArtifactError(problems[0])


def _entries(root: Path):
    """Every file, folder and link under `root`, links not followed."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            yield Path(folder) / name


def open_artifact(path: str | Path, kind: str | tuple[str, ...] | None = None, *, check_files: bool = True) -> Artifact:
    """Open and validate an artifact; refuse the wrong kind or an incompatible schema version.

    With `check_files` (the default) every listed file must exist with the size its manifest records: a cheap
    guard against truncated or replaced files. The full hash check is `Artifact.verify` (`esi verify`).
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.exists():
        raise InputError(f"{path}: no such artifact directory")
    if not manifest_path.is_file():
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
    root = path.resolve()
    for name in manifest["files"]:
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not (root / name).resolve().is_relative_to(root):
            raise ArtifactError(f"{path}: manifest lists '{name}', a path outside the artifact")
    if check_files:
        for name, info in manifest["files"].items():
            file = path / name
            if not file.is_file():
                raise ArtifactError(f"{path}: file '{name}' listed in the manifest is missing")
            if file.stat().st_size != info["bytes"]:
                raise ArtifactError(f"{file}: {file.stat().st_size} bytes, but its manifest records {info['bytes']} "
                                    f"(changed after writing; `esi verify {path}` checks every file)")
    return Artifact(path, manifest)


def check_artifact(path: str | Path) -> tuple[list[str], list[dict]]:
    """`esi verify` of one artifact: (every change found, inputs no longer at their recorded path)."""
    try:
        art = open_artifact(path, check_files=False)
    except EsiError as exc:
        return [str(exc)], []
    return art.changes(), art.missing_inputs()


TMP_MARKER = ".esi-temporary"  # inside each temporary directory we make: what the sweep may delete
LOCK_SIGNATURE = b"esi-tools --out lock\n"  # the content of every lock file we make


def _ours(tmp: Path) -> bool:
    """Whether `tmp` is a temporary directory an esi writer made (a real directory holding our marker)."""
    marker = tmp / TMP_MARKER
    return tmp.is_dir() and not tmp.is_symlink() and marker.is_file() and not marker.is_symlink()


def _remove_stale_temporaries(out: Path) -> None:
    """Delete temp dirs left by killed writers of `out`: ours (marked) and their process no longer exists.
    A user's `.NAME.tmp-N` without our marker is never touched."""
    for tmp in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists() and _ours(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _refuse_overlap(out: Path, guarded: list[tuple[str, Path]]) -> None:
    """--out may not be, sit inside, or contain an input or source: replacing it would delete that input."""
    target = out.resolve()
    for what, path in guarded:
        resolved = Path(path).resolve()
        if target == resolved:
            relation = "is"
        elif resolved in target.parents:
            relation = "is inside"
        elif target in resolved.parents:
            relation = "contains"
        else:
            continue
        raise InputError(f"--out {out} {relation} the {what} {path}; choose an --out outside it")


def check_out(out: str | Path, kind: str, *, inputs: Iterable[str | Path] = (), force: bool = False) -> None:
    """The writer's --out checks, for commands that work long before they write (fail before the work)."""
    _refuse_overlap(Path(out), [("input", Path(p)) for p in inputs])
    _refuse_existing(Path(out), kind, force)


def _kind_at(path: Path) -> str | None:
    """The kind a directory's manifest declares, or None when it is not a readable artifact."""
    try:
        kind = json.loads((path / MANIFEST).read_text()).get("kind")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _refuse_existing(out: Path, kind: str, force: bool) -> None:
    """An existing --out is replaced only if it is an artifact of this kind and --force was given.

    An empty directory holds nothing to lose and is used as it is.
    """
    if not out.exists() and not out.is_symlink():
        return
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        return
    found = None if out.is_symlink() else _kind_at(out)
    if found != kind:
        what = (f"a '{found}' artifact" if found else "a symbolic link" if out.is_symlink()
                else "a file" if not out.is_dir() else "a directory that is not an esi artifact")
        raise InputError(f"--out {out} exists and is not a {kind} artifact (it is {what}); --force replaces "
                         f"only a {kind} artifact: choose another --out")
    if not force:
        raise InputError(f"{out} already exists (pass --force to replace it)")


class OutLock:
    """An exclusive flock on the sibling file `.<name>.lock`, which we create with our signature and remove on
    release. A file at that path without the signature (a user's `.precious.lock`) is refused, never taken or
    deleted; one with it is a lock a killed writer left and is reused.

    The inode checks make removal safe: a writer that locked a file another writer then unlinked sees a
    different inode at the path and tries again, and release unlinks only the file it locked.
    """

    def __init__(self, out: Path):
        self.path = out.parent / f".{out.name}.lock"
        while True:
            self._create()
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
            except FileNotFoundError:
                continue  # released meanwhile: make it again
            except OSError:
                raise self._not_ours() from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise InputError(f"{out} is being written by another esi process (lock {self.path}); "
                                 f"wait for it to finish or choose another --out") from None
            except OSError:
                os.close(fd)
                raise self._not_ours() from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or os.pread(fd, len(LOCK_SIGNATURE) + 1, 0) != LOCK_SIGNATURE:
                os.close(fd)
                raise self._not_ours()
            try:
                same = st.st_ino == os.stat(self.path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd: int | None = fd
                return
            os.close(fd)

    def _create(self) -> None:
        """Put a signed lock file at the path unless something is there (written aside, then linked: never empty)."""
        if os.path.lexists(self.path):
            return
        fd, staged = tempfile.mkstemp(prefix=f"{self.path.name}-", dir=self.path.parent)
        try:
            os.write(fd, LOCK_SIGNATURE)
            os.close(fd)
            os.link(staged, self.path)
        except FileExistsError:
            pass  # another writer was quicker: its lock is tried next
        finally:
            os.unlink(staged)

    def _not_ours(self) -> InputError:
        return InputError(f"{self.path} exists and is not an esi lock file; esi will not use or delete it: "
                          f"move it away or choose another --out")

    def __enter__(self) -> OutLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self.fd is not None:
            try:
                if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(self.fd).st_ino:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None


class ArtifactWriter:
    """Build an artifact in a temporary sibling directory; `commit()` validates and renames it into place.

    Used as a context manager: an exception (or Ctrl-C) removes the temporary directory, so an interrupted
    command leaves nothing at `out`. `sources` are raw input directories (a collection being ingested):
    like `inputs`, --out may not be, sit inside, or contain one. The writer holds a lock on `out` from
    construction to commit or abort (or from earlier: `lock`, an OutLock the command took before its work), so a
    second writer to the same --out fails at once.
    """

    def __init__(
        self,
        out: str | Path,
        kind: str,
        *,
        parameters: dict,
        inputs: dict[str, Artifact] | None = None,
        sources: Iterable[str | Path] = (),
        force: bool = False,
        argv: list[str] | None = None,
        lock: OutLock | None = None,
        portable: bool = False,
    ):
        self.out = Path(out)
        self.kind = kind
        self.version = current_versions()[kind]
        self.parameters = parameters
        self.inputs = inputs or {}
        self.force = force
        self.argv = list(sys.argv if argv is None else argv)
        self.portable = portable  # to be shared (an export): inputs are recorded by digest, not by local path
        self.summary: dict[str, Any] = {}
        self._rows: dict[str, int] = {}
        _refuse_overlap(self.out, [("input", a.path) for a in self.inputs.values()] + [("source", Path(s)) for s in sources])
        _refuse_existing(self.out, kind, force)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {self.out}: cannot create its parent directory ({exc.strerror})") from None
        self._lock = lock or OutLock(self.out)  # a command that works long before writing takes it first
        try:
            _refuse_existing(self.out, kind, force)  # again, now that no other esi writer can change it
            _remove_stale_temporaries(self.out)
            self.tmp = self.out.parent / f".{self.out.name}.tmp-{os.getpid()}"
            if _ours(self.tmp):  # ours, left by an earlier writer in this very process
                shutil.rmtree(self.tmp)
            elif os.path.lexists(self.tmp):
                raise InputError(f"{self.tmp} exists and is not an esi temporary directory; esi will not "
                                 f"delete it: move it away or choose another --out")
            self.tmp.mkdir()
            (self.tmp / TMP_MARKER).write_text(f"esi-tools temporary of {self.out.name}, pid {os.getpid()}\n")
        except BaseException:
            self._lock.release()
            raise

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()  # after commit() only the lock is left to release

    def abort(self) -> None:
        if _ours(self.tmp):
            shutil.rmtree(self.tmp, ignore_errors=True)
        self._lock.release()

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

                info["rows"] = pl.scan_parquet(path, glob=False).select(pl.len()).collect().item()
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
                missing = [c for c in columns if c not in pl.scan_parquet(path, glob=False).collect_schema()]
                if missing:
                    raise ArtifactError(f"{self.kind} artifact: {name} lacks columns {missing}")

    def commit(self) -> Path:
        files = {}
        for path in sorted(p for p in self.tmp.rglob("*") if p.is_file()):
            name = path.relative_to(self.tmp).as_posix()
            if name not in (MANIFEST, TMP_MARKER):
                files[name] = self._describe(name)
        manifest = {
            "kind": self.kind,
            "schema_version": self.version,
            "esi_tools_version": __version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": self.argv,
            "parameters": self.parameters,
            "inputs": [
                {"role": role, "kind": art.kind, "path": "" if self.portable else str(art.path.resolve()),
                 "manifest_sha256": art.digest}
                for role, art in self.inputs.items()
            ],
            "files": files,
            "summary": self.summary,
        }
        manifest = json.loads(json.dumps(manifest, default=str))
        validate(manifest, self.kind, self.version, where=f"writing {self.out}")
        self._check_tables()
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _refuse_existing(self.out, self.kind, self.force)  # something may have appeared there meanwhile
        marker = (self.tmp / TMP_MARKER).read_text()
        (self.tmp / TMP_MARKER).unlink()
        try:
            if self.out.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))  # new: ours
                os.rename(self.out, trash / self.out.name)
                os.rename(self.tmp, self.out)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.rename(self.tmp, self.out)
        except OSError:
            (self.tmp / TMP_MARKER).write_text(marker)  # still ours: abort may remove it
            raise
        self._lock.release()
        return self.out
