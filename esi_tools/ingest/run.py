"""`esi ingest`: list a collection's records, read them in parallel, stream them into a dataset artifact."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactWriter
from ..console import log, progress
from ..errors import InputError
from ..signal.leads import STANDARD_LEADS
from .records import ReadOptions, try_load
from .sources import list_headers, list_mimic, list_ptbxl

KINDS = ("ptbxl", "mimic-iv-ecg", "challenge", "wfdb")


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
        specs, rejects = list_ptbxl(src, records)
    elif config.kind == "mimic-iv-ecg":
        specs, rejects = list_mimic(src)
    else:
        specs, rejects = list_headers(src, config.kind)
    if config.limit:
        specs = specs[: config.limit]
    opts = ReadOptions(config.fs, config.seconds, metadata_from_comments=config.kind in ("challenge", "wfdb"))
    length = int(round(config.fs * config.seconds))
    parameters = {**asdict(config), "source": config.kind, "records": records if config.kind == "ptbxl" else None,
                  "src": str(src.resolve())}
    parameters.pop("kind")
    with ArtifactWriter(out, "dataset", parameters=parameters, force=force) as writer:
        waves = writer.create_array("waveforms.npy", (max(len(specs), 1), len(STANDARD_LEADS), length), np.int16)
        rows: list[dict] = []
        with progress(f"ingest {config.kind}", len(specs)) as bar:
            for index, array, meta in _read_all(specs, opts, config.workers):
                spec = specs[index]
                if array is None:
                    rejects.append((str(spec.header), meta))
                else:
                    waves[len(rows)] = array
                    rows.append({**meta, "record_id": spec.record_id, "source": config.kind, "fs": config.fs,
                                 "source_path": str(spec.header.with_suffix(""))})
                bar.advance()
        waves.flush()
        del waves
        shrink_npy(writer.path("waveforms.npy"), len(rows))
        _write_tables(writer, rows, rejects, config, src)
        credentialed = config.kind == "mimic-iv-ecg"
        writer.summary.update({
            "records": len(rows), "rejects": len(rejects), "leads": list(STANDARD_LEADS), "unit": "uV",
            "storage": "int16", "credentialed": credentialed,
            "patients": len({r["patient_id"] for r in rows if r.get("patient_id")}),
        })
        path = writer.commit()
    log(f"ingested {len(rows)} records ({len(rejects)} rejected) -> {path}")
    return path


def _read_all(specs, opts: ReadOptions, workers: int):
    jobs = ((i, spec, opts) for i, spec in enumerate(specs))
    if workers <= 1 or len(specs) < 64:
        yield from map(try_load, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(try_load, jobs, chunksize=32)


def _write_tables(writer: ArtifactWriter, rows, rejects, config: IngestConfig, src: Path) -> None:
    import polars as pl

    writer.write_table("records.parquet", _records_table(rows))
    writer.write_table("rejects.parquet", pl.DataFrame({"path": [p for p, _ in rejects], "reason": [r for _, r in rejects]},
                                                       schema={"path": pl.String, "reason": pl.String}))
    if config.kind == "ptbxl" and (src / "scp_statements.csv").exists():
        statements = pl.read_csv(src / "scp_statements.csv", infer_schema=False).rename({"": "code"}, strict=False)
        writer.write_table("statements.parquet", statements)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))
