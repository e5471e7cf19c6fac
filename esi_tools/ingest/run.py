"""`esi ingest`: list a collection's records, read them in parallel, stream them into a dataset artifact."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactWriter
from ..console import log, progress, warn
from ..errors import InputError, RecordError, UsageError
from ..signal.leads import STANDARD_LEADS, parse_lead_map, unmatched_entries
from .paths import inside
from .records import Loaded, ReadOptions, Task, window_count
from .sources import RecordSpec, list_headers, list_mimic, list_ptbxl
from .wfdb_reader import MAX_FS, MIN_FS, Signal, read_header
from .workers import load_batch, pool

KINDS = ("ptbxl", "mimic-iv-ecg", "challenge", "wfdb")
BATCH_RECORDS = 32  # recordings per pool job (one round trip) when each gives one record
BATCH_VALUES = 1 << 22  # samples x signals per pool job when windowing: a job's result stays a few MB
IN_FLIGHT = 4  # pool jobs queued per worker: enough to keep workers busy, few enough that memory stays flat
MAX_RECORD_SAMPLES = 1 << 22  # samples per stored lead (--fs x --seconds): 11.6 h at 100 Hz


@dataclass(frozen=True)
class IngestConfig:
    kind: str
    fs: float = 100.0  # 100 Hz keeps the whole ECG band that matters for rhythm/morphology and is 5x cheaper to train
    seconds: float = 10.0  # the standard resting 12-lead length; with `window`, the window's length
    window: float | None = None  # None: one record per recording (its first `seconds`); else windows of this length
    stride: float | None = None  # seconds between window starts (default: the window, i.e. no overlap)
    lead_map: str | None = None  # 'ECG1=II,ECG2=V5': header names mapped to standard leads before the alias table
    records: str | None = None  # PTB-XL: records100/records500; None picks by fs
    workers: int = 2
    limit: int | None = None  # first N recordings only (smoke runs)


def _records_table(rows: list[dict]):
    import polars as pl

    schema = {
        "record_id": pl.String, "patient_id": pl.String, "source": pl.String, "age": pl.Float64,
        "sex": pl.String, "height_cm": pl.Float64, "weight_kg": pl.Float64, "recording_date": pl.String,
        "fs": pl.Float64, "source_fs": pl.Float64, "n_samples": pl.Int64, "source_seconds": pl.Float64,
        "leads": pl.List(pl.String), "lead_mask": pl.List(pl.Boolean), "labels": pl.List(pl.String),
        "label_system": pl.String, "label_likelihoods": pl.String, "report": pl.String, "fold": pl.Int64,
        "split": pl.String, "source_path": pl.String, "quality_flags": pl.List(pl.String), "extra": pl.String,
        "parent_record_id": pl.String, "start_s": pl.Float64, "cut": pl.Boolean, "padded": pl.Boolean,
        "coverage": pl.Float64, "unknown_leads": pl.List(pl.String), "comments": pl.String, "credentialed": pl.Boolean,
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
        pl.concat([pl.scan_parquet(p, glob=False) for p in self._parts]).sink_parquet(self.path)
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


def _check(config: IngestConfig) -> IngestConfig:
    """Validate the options (UsageError) and fold --window into the record length."""
    if config.kind not in KINDS:
        raise InputError(f"unknown dataset kind '{config.kind}' (choose from {', '.join(KINDS)})")
    if not MIN_FS <= config.fs <= MAX_FS:
        raise UsageError(f"--fs {config.fs:g} is outside {MIN_FS:g}-{MAX_FS:g} Hz")
    if config.stride is not None and config.window is None:
        raise UsageError("--stride needs --window")
    for name in ("seconds", "window", "stride"):
        value = getattr(config, name)
        if value is not None and not (value > 0 and np.isfinite(value)):
            raise UsageError(f"--{name} must be a positive number of seconds")
        if value is not None and value * config.fs < 1:
            raise UsageError(f"--{name} {value:g} is shorter than one sample at --fs {config.fs:g} Hz")
    seconds = config.window or config.seconds
    if config.fs * seconds > MAX_RECORD_SAMPLES:
        raise UsageError(f"--fs x {'--window' if config.window else '--seconds'} = {config.fs * seconds:,.0f} samples "
                         f"per lead; at most {MAX_RECORD_SAMPLES:,} (use --window to cut long recordings)")
    try:
        parse_lead_map(config.lead_map)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if config.window is None:
        return config
    return IngestConfig(**{**asdict(config), "seconds": seconds, "stride": config.stride or config.window})


def mimic_layout(src: Path) -> str | None:
    """Evidence that src is (inside) a MIMIC-IV-ECG tree: its record_list.csv and machine_measurements.csv."""
    for folder in (src, *src.parents):
        if (folder / "record_list.csv").is_file() and (folder / "machine_measurements.csv").is_file():
            return f"MIMIC-IV-ECG layout (record_list.csv and machine_measurements.csv in {folder})"
    return None


def ingest(config: IngestConfig, src: Path, out: Path, *, force: bool = False) -> Path:
    config = _check(config)
    if not src.exists():
        raise InputError(f"{src}: no such directory")
    src = src.resolve()
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
    layout = mimic_layout(src)
    opts = ReadOptions(config.fs, config.seconds, src, stride=config.stride,
                       metadata_from_comments=config.kind in ("challenge", "wfdb"),
                       lead_map=tuple(parse_lead_map(config.lead_map).items()), credentialed=layout)
    workers = config.workers if total >= 64 or opts.stride is not None else 1  # spawning costs more than it saves
    parameters = {**asdict(config), "source": config.kind, "records": records if config.kind == "ptbxl" else None,
                  "src": str(src)}
    parameters.pop("kind")
    with ArtifactWriter(out, "dataset", parameters=parameters, sources=[src], force=force) as writer:
        sink = _Sink(writer, config)
        with NpyAppender(writer.path("waveforms.npy"), 10**12, (len(STANDARD_LEADS), opts.length), np.int16) as waves:
            with progress(f"ingest {config.kind}", total) as bar:
                for item in _read_all(_tasks(items, opts), workers, opts.stride is not None):
                    if not isinstance(item, Loaded):  # a recording done (its Task) or rejected by the listing
                        bar.advance()
                    if not isinstance(item, Task) and sink.add(item):
                        waves.append(item.array)
        if not len(sink.rows):  # an empty dataset is never what was asked for: say why every record went
            raise InputError(f"no record kept: {_why_none(sink.rejects)}")
        sink.close()
        evidence = layout or sink.evidence
        writer.summary.update({
            "records": len(sink.rows), "rejects": len(sink.rejects), "recordings": sink.recordings,
            "leads": list(STANDARD_LEADS), "unit": "uV", "storage": "int16",
            "credentialed": evidence is not None, "credentialed_evidence": evidence,
            "patients": _count_patients(writer.path("records.parquet")),
        })
        _write_tables(writer, sink.rejects, config, src)
        path = writer.commit()
    unmatched = unmatched_entries(parse_lead_map(config.lead_map), sink.channels)
    if unmatched:
        warn(f"--lead-map entries matching no channel of any record: {', '.join(unmatched)}")
    log(f"ingested {len(sink.rows)} records ({len(sink.rejects)} rejected) -> {path}")
    return path


def _why_none(rejects: list[dict]) -> str:
    """'all N rejected, commonest reason: ...' for a run that kept nothing."""
    from collections import Counter

    if not rejects:
        return "the source lists no records"
    reasons = Counter(re.sub(r"\d+(\.\d+)?", "N", r["reason"]) for r in rejects)
    pattern, count = reasons.most_common(1)[0]
    example = next(r["reason"] for r in rejects if re.sub(r"\d+(\.\d+)?", "N", r["reason"]) == pattern)
    return f"all {len(rejects):,} rejected; commonest reason ({count:,}x): {example}"


class _Sink:
    """Stored rows and rejects; a record id seen before is rejected, so every id in the dataset is unique."""

    def __init__(self, writer: ArtifactWriter, config: IngestConfig):
        self.config, self.rows, self.rejects = config, RowSink(writer.path("records.parquet"), _records_table), []
        self.seen: set[str] = set()
        self.parents: set[str] = set()
        self.evidence: str | None = None
        self.channels: set[str] = set()  # header channel names of the stored records (for --lead-map's check)

    @property
    def recordings(self) -> int:
        return len(self.parents)

    def add(self, item: Loaded | tuple[str, str]) -> bool:
        """True if the item is a record to store (its waveform goes next into waveforms.npy)."""
        if isinstance(item, tuple):
            self.rejects.append({"path": item[0], "record_id": None, "reason": item[1]})
            return False
        if item.array is None:
            self.rejects.append({"path": str(item.header), "record_id": item.record_id, "reason": item.reason})
            return False
        if item.record_id in self.seen:
            self.rejects.append({"path": str(item.header), "record_id": item.record_id,
                                 "reason": f"duplicate record id {item.record_id} (an earlier record has it)"})
            return False
        self.seen.add(item.record_id)
        meta = dict(item.meta)
        self.channels.update(meta.get("leads") or [])
        self.evidence = self.evidence or meta.pop("credentialed_evidence", None)
        self.parents.add(meta["parent_record_id"])
        self.rows.append({**meta, "record_id": item.record_id, "source": self.config.kind, "fs": self.config.fs,
                          "source_path": str(item.header.with_suffix(""))})
        return True

    def close(self) -> None:
        self.rows.close()


def _count_patients(records: Path) -> int:
    import polars as pl

    return pl.scan_parquet(records, glob=False).select(pl.col("patient_id").drop_nulls().n_unique()).collect().item()


def _tasks(items, opts: ReadOptions) -> Iterator[Task | tuple[str, str]]:
    """One task per recording; when windowing, a long recording is split into tasks of about BATCH_VALUES."""
    for item in items:
        if not isinstance(item, RecordSpec):
            yield item
        elif opts.stride is None:
            yield Task(item, opts)
        else:
            try:
                header = inside(opts.root, item.header, what="header file")
                hdr = read_header(header)
                checked = Signal(header, hdr, opts.root).verify()  # once per recording, not once per task
                count = window_count(hdr, opts)
            except RecordError as exc:
                yield str(item.header), exc.reason
                continue
            except Exception as exc:  # noqa: BLE001 - as in the workers: one recording's failure, named
                yield str(item.header), f"unreadable record {item.header.name} ({type(exc).__name__}: {exc})"
                continue
            per_window = hdr.n_sig * max(opts.seconds, opts.stride) * hdr.fs + len(STANDARD_LEADS) * opts.length
            step = max(1, int(BATCH_VALUES // per_window))
            for first in range(0, count, step):
                yield Task(item, opts, first, step, checked)


def _batches(tasks, size: int):
    """Tasks grouped into pool jobs of `size`; listing rejects pass through on their own, in order."""
    batch: list[Task] = []
    for item in tasks:
        if not isinstance(item, Task):
            if batch:
                yield batch
                batch = []
            yield item
            continue
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _read_all(tasks, workers: int, windowed: bool):
    """Listing rejects, Loaded records and (after each recording's first task) the Task itself, in listing order.

    Jobs go to the pool ahead of the one being consumed, at most IN_FLIGHT per worker, so memory stays flat.
    """
    jobs = _batches(tasks, 1 if windowed else BATCH_RECORDS)
    if workers <= 1:
        for job in jobs:
            yield from _unpack(job, load_batch(job) if isinstance(job, list) else None)
        return
    executor = pool(workers)
    try:
        queue: deque = deque()
        for job in jobs:
            queue.append((job, executor.submit(load_batch, job) if isinstance(job, list) else None))
            while len(queue) > IN_FLIGHT * workers:
                yield from _pop(queue)
        while queue:
            yield from _pop(queue)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _pop(queue: deque):
    job, future = queue.popleft()
    yield from _unpack(job, future.result() if future is not None else None)


def _unpack(job, results):
    if results is None:
        yield job
        return
    for task, loaded in zip(job, results, strict=True):
        yield from loaded
        if task.first == 0:
            yield task


def _write_tables(writer: ArtifactWriter, rejects: list[dict], config: IngestConfig, src: Path) -> None:
    import polars as pl

    writer.write_table("rejects.parquet", pl.DataFrame(
        rejects, schema={"path": pl.String, "record_id": pl.String, "reason": pl.String}, orient="row"))
    if config.kind == "ptbxl" and (src / "scp_statements.csv").is_file():
        statements = pl.read_csv(src / "scp_statements.csv", infer_schema=False, glob=False).rename({"": "code"}, strict=False)
        writer.write_table("statements.parquet", statements)
