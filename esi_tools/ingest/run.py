"""`esi ingest`: list a collection's records, read them in parallel, stream them into a dataset artifact."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from itertools import islice
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactWriter
from ..console import log, progress
from ..errors import InputError
from ..signal.leads import STANDARD_LEADS
from .records import ReadOptions, try_load
from .sources import RecordSpec, list_headers, list_mimic, list_ptbxl

KINDS = ("ptbxl", "mimic-iv-ecg", "challenge", "wfdb")
BLOCK = 1024  # records handed to the worker pool at a time


@dataclass(frozen=True)
class IngestConfig:
    kind: str
    fs: float = 100.0  # 100 Hz keeps the whole ECG band that matters for rhythm/morphology and is 5x cheaper to train
    seconds: float = 10.0  # the standard resting 12-lead length
    records: str | None = None  # PTB-XL: records100/records500; None picks by fs
    workers: int = 2
    limit: int | None = None  # first N records only (smoke runs)


def _records_table(rows: list[dict]):
    import polars as pl

    schema = {
        "record_id": pl.String, "patient_id": pl.String, "source": pl.String, "age": pl.Float64,
        "sex": pl.String, "height_cm": pl.Float64, "weight_kg": pl.Float64, "recording_date": pl.String,
        "fs": pl.Float64, "source_fs": pl.Float64, "n_samples": pl.Int64, "source_seconds": pl.Float64,
        "leads": pl.List(pl.String), "lead_mask": pl.List(pl.Boolean), "labels": pl.List(pl.String),
        "label_system": pl.String, "label_likelihoods": pl.String, "report": pl.String, "fold": pl.Int64,
        "split": pl.String, "source_path": pl.String, "quality_flags": pl.List(pl.String), "extra": pl.String,
    }
    return pl.DataFrame([{k: row.get(k) for k in schema} for row in rows], schema=schema, orient="row")


def shrink_npy(path: Path, rows: int) -> None:
    """Cut a .npy file to its first `rows` rows in place (rewrite the shape in the header, truncate the data)."""
    with open(path, "r+b") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        offset = fh.tell()
        new_shape = (rows, *shape[1:])
        text = f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': {fortran}, 'shape': {new_shape}, }}"
        header_start = 8 + (2 if version == (1, 0) else 4)
        room = offset - header_start
        fh.seek(header_start)
        fh.write((text + " " * (room - len(text) - 1) + "\n").encode("latin1"))
        fh.truncate(offset + rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


class RowSink:
    """Metadata rows streamed to Parquet in parts of PART_ROWS, merged into one file on close (flat memory)."""

    PART_ROWS = 2048

    def __init__(self, path: Path, to_frame):
        self.path, self.to_frame, self.count = path, to_frame, 0
        self._buffer: list[dict] = []
        self._parts: list[Path] = []

    def append(self, row: dict) -> None:
        self._buffer.append(row)
        self.count += 1
        if len(self._buffer) >= self.PART_ROWS:
            self._flush()

    def __len__(self) -> int:
        return self.count

    def _flush(self) -> None:
        part = self.path.with_name(f".{self.path.stem}-part{len(self._parts):05d}.parquet")
        self.to_frame(self._buffer).write_parquet(part)
        self._parts.append(part)
        self._buffer = []

    def close(self) -> None:
        import polars as pl

        self._flush()
        pl.concat([pl.scan_parquet(p) for p in self._parts]).sink_parquet(self.path)
        for part in self._parts:
            part.unlink()


class NpyAppender:
    """Write a .npy of up to `capacity` rows by appending rows to the file (no mapping, so memory stays flat);
    on close the header is rewritten with the number of rows actually written."""

    def __init__(self, path: Path, capacity: int, row_shape: tuple[int, ...], dtype):
        self.path, self.rows, self.dtype = path, 0, np.dtype(dtype)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (max(capacity, 1), *row_shape)}
        self._fh = open(path, "wb")
        np.lib.format.write_array_header_2_0(self._fh, header)

    def __enter__(self) -> NpyAppender:
        return self

    def append(self, row: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(row, self.dtype).tobytes())
        self.rows += 1

    def __exit__(self, *exc) -> None:
        self._fh.close()
        shrink_npy(self.path, self.rows)


def ingest(config: IngestConfig, src: Path, out: Path, *, force: bool = False) -> Path:
    if config.kind not in KINDS:
        raise InputError(f"unknown dataset kind '{config.kind}' (choose from {', '.join(KINDS)})")
    if not src.exists():
        raise InputError(f"{src}: no such directory")
    src = src.resolve()
    if config.fs <= 0 or config.seconds <= 0:
        raise InputError("--fs and --seconds must be positive")
    records = config.records or ("records500" if config.fs > 100 else "records100")
    if config.kind == "ptbxl":
        listing = list_ptbxl(src, records)
    elif config.kind == "mimic-iv-ecg":
        listing = list_mimic(src)
    else:
        listing = list_headers(src)
    total, items = listing.total, listing.items
    if config.limit:
        total, items = min(total, config.limit), islice(items, config.limit)
    opts = ReadOptions(config.fs, config.seconds, metadata_from_comments=config.kind in ("challenge", "wfdb"))
    length = int(round(config.fs * config.seconds))
    parameters = {**asdict(config), "source": config.kind, "records": records if config.kind == "ptbxl" else None,
                  "src": str(src.resolve())}
    parameters.pop("kind")
    with ArtifactWriter(out, "dataset", parameters=parameters, force=force) as writer:
        rows, rejects = RowSink(writer.path("records.parquet"), _records_table), []
        with NpyAppender(writer.path("waveforms.npy"), total, (len(STANDARD_LEADS), length), np.int16) as waves:
            with progress(f"ingest {config.kind}", total) as bar:
                for spec, array, meta in _read_all(items, opts, config.workers):
                    if array is None:
                        rejects.append((spec, meta))
                    else:
                        waves.append(array)
                        rows.append({**meta, "record_id": spec.record_id, "source": config.kind, "fs": config.fs,
                                     "source_path": str(spec.header.with_suffix(""))})
                    bar.advance()
        rows.close()
        _write_tables(writer, rejects, config, src)
        credentialed = config.kind == "mimic-iv-ecg"
        writer.summary.update({
            "records": len(rows), "rejects": len(rejects), "leads": list(STANDARD_LEADS), "unit": "uV",
            "storage": "int16", "credentialed": credentialed,
            "patients": _count_patients(writer.path("records.parquet")),
        })
        path = writer.commit()
    log(f"ingested {len(rows)} records ({len(rejects)} rejected) -> {path}")
    return path


def _count_patients(records: Path) -> int:
    import polars as pl

    return pl.scan_parquet(records).select(pl.col("patient_id").drop_nulls().n_unique()).collect().item()


def _read_all(items, opts: ReadOptions, workers: int):
    """(spec or reject path, int16 array or None, metadata or reject reason) in listing order."""
    # spawn, not fork: a forked child can inherit a lock held by one of polars' threads and hang forever
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) if workers > 1 else None
    try:
        while block := list(islice(items, BLOCK)):  # bounded in flight: memory stays flat at any dataset size
            specs = [item for item in block if isinstance(item, RecordSpec)]
            jobs = [(spec, opts) for spec in specs]
            loaded = iter(pool.map(try_load, jobs, chunksize=32) if pool and len(jobs) >= 64 else map(try_load, jobs))
            for item in block:
                yield next(loaded) if isinstance(item, RecordSpec) else (item[0], None, item[1])
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


def _write_tables(writer: ArtifactWriter, rejects, config: IngestConfig, src: Path) -> None:
    import polars as pl

    paths = [str(p.header) if isinstance(p, RecordSpec) else p for p, _ in rejects]
    writer.write_table("rejects.parquet", pl.DataFrame({"path": paths, "reason": [r for _, r in rejects]},
                                                       schema={"path": pl.String, "reason": pl.String}))
    if config.kind == "ptbxl" and (src / "scp_statements.csv").exists():
        statements = pl.read_csv(src / "scp_statements.csv", infer_schema=False).rename({"": "code"}, strict=False)
        writer.write_table("statements.parquet", statements)

