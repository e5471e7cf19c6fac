"""`esi download`: fetch an open PhysioNet dataset, resumably, verified file by file against SHA256SUMS.txt."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from .artifacts import MANIFEST, OutLock, sha256_file
from .console import log, progress, warn
from .errors import EsiError, InputError

# Open-access datasets and their PhysioNet roots (the layout `esi ingest` expects).
DATASETS = {
    "ptb-xl": "https://physionet.org/files/ptb-xl/1.0.3/",
    "ludb": "https://physionet.org/files/ludb/1.0.1/",
}
CHUNK = 1 << 20
ATTEMPTS = 4  # per file: transient network errors and hash mismatches are retried with backoff
TIMEOUT_S = 60.0  # per connect/read: PhysioNet answers within seconds; a stalled socket is retried


class DownloadError(EsiError):
    exit_code = 4


def parse_sums(text: str) -> tuple[dict[str, str], int]:
    """(relative path -> sha256, entries naming no file) from a `sha256sum` listing.

    Paths that would escape the target are refused; entries that name the directory itself (`.`, `./`)
    hold nothing to download and are counted, not fetched.
    """
    sums, skipped = {}, 0
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            continue
        digest, name = parts[0].lower(), parts[1].lstrip("*").strip()
        rel = PurePosixPath(name[2:] if name.startswith("./") else name)
        if rel.is_absolute() or ".." in rel.parts or len(digest) != 64:
            raise DownloadError(f"SHA256SUMS.txt has an unsafe or malformed entry: {line!r}")
        if not rel.parts or name.endswith("/"):
            skipped += 1
            continue
        sums[rel.as_posix()] = digest
    return sums, skipped


def _get(url: str, headers: dict | None = None, timeout: float = TIMEOUT_S):
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout)


def _url(base_url: str, rel: str) -> str:
    """The file's URL: spaces and other reserved characters in names are percent-encoded."""
    return base_url + urllib.parse.quote(rel)


def _fetch(base_url: str, rel: str, digest: str, root: Path, timeout: float = TIMEOUT_S) -> tuple[str, int]:
    """Download one file into place (resuming a .part); returns (status, bytes transferred).

    A local file that fails verification is removed before it is fetched again, so a failed run never
    leaves a known-bad file where `esi ingest` would read it.
    """
    dest = root / rel
    if dest.is_file() and sha256_file(dest) == digest:
        return "present", 0
    if dest.is_file():
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    moved, last_error = 0, ""
    for attempt in range(ATTEMPTS):
        offset = part.stat().st_size if part.exists() else 0
        answered_416 = False
        try:
            with _get(_url(base_url, rel), {"Range": f"bytes={offset}-"} if offset else None, timeout) as response:
                if offset and response.status != 206:  # server ignored Range: start over
                    offset = 0
                with open(part, "ab" if offset else "wb") as fh:
                    while block := response.read(CHUNK):
                        fh.write(block)
                        moved += len(block)
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
            if exc.code in (404, 403, 401) or (exc.code == 416 and not offset):  # no retry can help
                break
            if exc.code != 416:
                time.sleep(0.5 * 2**attempt)
                continue
            answered_416 = True  # to a range past the end: the .part may already hold the whole file
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            last_error = str(getattr(exc, "reason", exc))
            time.sleep(0.5 * 2**attempt)
            continue
        if sha256_file(part) == digest:
            part.replace(dest)
            return "downloaded", moved
        last_error = "HTTP 416 to a partial file that fails verification" if answered_416 else "sha256 mismatch"
        part.unlink()
    return f"failed: {last_error}", moved


def _refuse_artifact(out: Path) -> None:
    """Downloading into an esi artifact (or a folder inside one) would change files its manifest vouches for."""
    for folder in (out, *out.resolve().parents):
        if (folder / MANIFEST).is_file():
            raise InputError(f"--out {out}: {folder} is an esi artifact; download into a directory of its own")


def download(dataset: str, out: Path, *, base_url: str | None = None, records100_only: bool = False,
             workers: int = 8, timeout: float = TIMEOUT_S) -> Path:
    if dataset not in DATASETS and not base_url:
        raise InputError(f"unknown dataset '{dataset}' (choose from {', '.join(DATASETS)}, or give --base-url)")
    if timeout <= 0:
        raise InputError(f"--timeout must be positive (got {timeout:g})")
    _refuse_artifact(out)
    base = (base_url or DATASETS[dataset]).rstrip("/") + "/"
    try:
        with _get(base + "SHA256SUMS.txt", timeout=timeout) as response:
            sums, skipped = parse_sums(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"cannot fetch {base}SHA256SUMS.txt: {getattr(exc, 'reason', exc)}") from None
    except UnicodeDecodeError:
        raise DownloadError(f"{base}SHA256SUMS.txt is not text") from None
    if skipped:
        warn(f"SHA256SUMS.txt: skipped {skipped} entries that name no file")
    if records100_only:
        sums = {rel: d for rel, d in sums.items() if not rel.startswith("records500/")}
    if not sums:
        raise DownloadError(f"{base}SHA256SUMS.txt lists no files")
    out.mkdir(parents=True, exist_ok=True)
    with OutLock(out.resolve()):  # one download into a folder at a time: a second one fails at once, in one line
        return _download_all(dataset, out, base, sums, workers, timeout, records100_only)


def _download_all(dataset: str, out: Path, base: str, sums: dict[str, str], workers: int, timeout: float,
                  records100_only: bool) -> Path:
    counts: dict[str, int] = {}
    failures: list[str] = []
    total_bytes = 0
    with progress(f"download {dataset}", len(sums), unit="files") as bar, ThreadPoolExecutor(workers) as pool:
        futures = {rel: pool.submit(_fetch, base, rel, digest, out, timeout) for rel, digest in sorted(sums.items())}
        for rel, future in futures.items():
            status, moved = future.result()
            total_bytes += moved
            key = status.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
            if key == "failed":
                failures.append(f"{rel} ({status[8:]})")
            bar.advance()
    record = {"dataset": dataset, "base_url": base, "files": len(sums), "records100_only": records100_only,
              "counts": counts, "bytes_transferred": total_bytes,
              "sums_sha256": hashlib.sha256("".join(f"{d}  {r}\n" for r, d in sorted(sums.items())).encode()).hexdigest()}
    (out / ".esi-download.json").write_text(json.dumps(record, indent=2))
    log(f"{dataset}: {counts.get('downloaded', 0)} downloaded, {counts.get('present', 0)} already verified, "
        f"{len(failures)} failed ({total_bytes / 1e6:.1f} MB) -> {out}")
    if failures:
        shown = "; ".join(failures[:5]) + (" ..." if len(failures) > 5 else "")
        raise DownloadError(f"{len(failures)} of {len(sums)} files failed: {shown} (rerun to resume)")
    return out
