"""`esi download`: fetch an open PhysioNet dataset, resumably, verified file by file against SHA256SUMS.txt."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from .artifacts import sha256_file
from .console import log, progress
from .errors import EsiError, InputError

# Open-access datasets and their PhysioNet roots (the layout `esi ingest` expects).
DATASETS = {
    "ptb-xl": "https://physionet.org/files/ptb-xl/1.0.3/",
    "ludb": "https://physionet.org/files/ludb/1.0.1/",
}
CHUNK = 1 << 20
ATTEMPTS = 4  # per file: transient network errors and hash mismatches are retried with backoff


class DownloadError(EsiError):
    exit_code = 4


def parse_sums(text: str) -> dict[str, str]:
    """relative path -> sha256 from a `sha256sum` listing; rejects paths that would escape the target."""
    sums = {}
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            continue
        digest, name = parts[0].lower(), parts[1].lstrip("*").strip()
        rel = PurePosixPath(name[2:] if name.startswith("./") else name)
        if rel.is_absolute() or ".." in rel.parts or len(digest) != 64:
            raise DownloadError(f"SHA256SUMS.txt has an unsafe or malformed entry: {line!r}")
        sums[rel.as_posix()] = digest
    return sums


def _get(url: str, headers: dict | None = None, timeout: float = 60):
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout)


def _fetch(base_url: str, rel: str, digest: str, root: Path) -> tuple[str, int]:
    """Download one file into place (resuming a .part); returns (status, bytes transferred)."""
    dest = root / rel
    if dest.exists() and sha256_file(dest) == digest:
        return "present", 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    moved, last_error = 0, ""
    for attempt in range(ATTEMPTS):
        offset = part.stat().st_size if part.exists() else 0
        try:
            with _get(base_url + rel, {"Range": f"bytes={offset}-"} if offset else None) as response:
                if offset and response.status != 206:  # server ignored Range: start over
                    offset = 0
                with open(part, "ab" if offset else "wb") as fh:
                    while block := response.read(CHUNK):
                        fh.write(block)
                        moved += len(block)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # already complete
                pass
            else:
                last_error = f"HTTP {exc.code}"
                if exc.code in (404, 403, 401):
                    break
                time.sleep(0.5 * 2**attempt)
                continue
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            last_error = str(getattr(exc, "reason", exc))
            time.sleep(0.5 * 2**attempt)
            continue
        if sha256_file(part) == digest:
            part.replace(dest)
            return "downloaded", moved
        last_error = "sha256 mismatch"
        part.unlink()
    return f"failed: {last_error}", moved


def download(dataset: str, out: Path, *, base_url: str | None = None, records100_only: bool = False,
             workers: int = 8) -> Path:
    if dataset not in DATASETS and not base_url:
        raise InputError(f"unknown dataset '{dataset}' (choose from {', '.join(DATASETS)}, or give --base-url)")
    base = (base_url or DATASETS[dataset]).rstrip("/") + "/"
    try:
        with _get(base + "SHA256SUMS.txt") as response:
            sums = parse_sums(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"cannot fetch {base}SHA256SUMS.txt: {getattr(exc, 'reason', exc)}") from None
    if records100_only:
        sums = {rel: d for rel, d in sums.items() if not rel.startswith("records500/")}
    if not sums:
        raise DownloadError(f"{base}SHA256SUMS.txt lists no files")
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    failures: list[str] = []
    total_bytes = 0
    with progress(f"download {dataset}", len(sums), unit="files") as bar, ThreadPoolExecutor(workers) as pool:
        futures = {rel: pool.submit(_fetch, base, rel, digest, out) for rel, digest in sorted(sums.items())}
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
