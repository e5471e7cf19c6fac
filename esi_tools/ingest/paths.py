"""Safe access to files named by headers and tables: kept inside the source root, regular files only.

A header naming `/etc/passwd` or `../../x` as its signal file, a table row pointing outside the collection,
or a FIFO in place of a `.dat` (which would block a reader forever) must cost one reject, never a read.
"""

from __future__ import annotations

import os
import stat
from functools import lru_cache
from pathlib import Path

from ..errors import RecordError


@lru_cache(maxsize=4096)
def _real_dir(folder: Path) -> Path:
    return folder.resolve()


def _resolve(path: Path) -> Path:
    """path.resolve(), cheaper for the common case: the folder's resolution is cached, the file is not a link."""
    if ".." in path.parts:
        return path.resolve()
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            return path.resolve()
    except OSError:
        pass
    return _real_dir(path.parent) / path.name


def inside(root: Path, path: Path, *, what: str = "file") -> Path:
    """`path` resolved (symlinks followed); RecordError unless it lies inside `root` (itself resolved)."""
    resolved = _resolve(path)
    if not resolved.is_relative_to(root):
        raise RecordError(f"{what} {str(path)!r} points outside the source ({root})")
    return resolved


def named_inside(root: Path, base: Path, name: str, *, what: str = "file") -> Path:
    """`base / name` for a name read from a header or table: relative, and inside `root` once resolved."""
    if not name or Path(name).is_absolute():
        raise RecordError(f"{what} {name!r} is not a relative path (only files inside the source are read)")
    resolved = _resolve(base / name)
    if not resolved.is_relative_to(root):
        raise RecordError(f"{what} {name!r} points outside the source ({root})")
    return resolved


def open_regular(path: Path, *, what: str = "file"):
    """Open for binary reading without blocking; RecordError if missing or not a regular file (FIFO, device, dir)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise RecordError(f"{what} missing: {path.name}") from None
    except OSError as exc:
        raise RecordError(f"{what} unreadable: {path.name} ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise RecordError(f"{what} is not a regular file: {path.name}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def regular_size(path: Path, *, what: str = "file") -> int:
    """Size in bytes of a regular file; RecordError if missing or not a regular file. Opens nothing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RecordError(f"{what} missing: {path.name}") from None
    except OSError as exc:
        raise RecordError(f"{what} unreadable: {path.name} ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise RecordError(f"{what} is not a regular file: {path.name}")
    return st.st_size


def read_text(path: Path, *, limit: int, what: str = "file") -> str:
    """A small text file (at most `limit` bytes, else RecordError), decoded leniently."""
    with open_regular(path, what=what) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise RecordError(f"{what} {path.name} is larger than {limit // (1 << 20)} MiB: not a WFDB header")
    return data.decode("utf-8", errors="replace")
