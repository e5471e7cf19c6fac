"""`esi features`: a dataset artifact -> a features artifact (features, beats, rejects Parquet tables).

Records are processed in chunks (filters and delineation are vectorised over a whole chunk); chunks run
in worker processes that open the dataset's memory-mapped waveforms themselves, so nothing big is pickled.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactWriter
from ..console import log, progress
from ..dataset import UV_TO_MV
from ..signal.leads import STANDARD_LEADS
from .findings import derive
from .measure import MARK_NAMES, empty_record, measure_record
from .pipeline import analyse
from .quality import assess, lead_quality, pacing_fraction


@dataclass(frozen=True)
class FeaturesConfig:
    workers: int = 2
    chunk: int = 32  # records per vectorised batch: big enough to amortise numpy calls, small for memory
    limit: int | None = None  # first N records only (smoke runs)


def _valid_lengths(records, n: int, fs: float) -> np.ndarray:
    """Samples that hold signal per record (records shorter than the dataset length were zero-padded)."""
    seconds = records["source_seconds"].to_numpy() if "source_seconds" in records.columns else None
    if seconds is None:
        return np.full(len(records), n)
    seconds = np.nan_to_num(seconds.astype(float), nan=n / fs)
    return np.clip(np.round(seconds * fs).astype(int), 0, n)


def analyse_chunk(x: np.ndarray, mask: np.ndarray, fs: float, valid: np.ndarray) -> tuple[list[dict], dict]:
    """Rows (measurements + quality, no ids) and beat arrays for a chunk of records (B, 12, L) in mV."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (no beats, edge windows) are expected
        xc, beats = analyse(x, mask, fs, valid)
        quality = lead_quality(x, xc, mask, fs, valid)
        paced = (pacing_fraction(x, beats.record, (beats.r - beats.pre + beats.marks["qrs_on"]) * beats.step, fs)
                 if beats is not None else np.full(len(x), np.nan))
        rows, beat_cols = [], {k: [] for k in ("record", "beat", "r_sample", *[f"{m}_sample" for m in MARK_NAMES],
                                                 "p_present", "ectopic")}
        for b in range(len(x)):
            sel = np.flatnonzero(beats.record == b) if beats is not None else np.zeros(0, np.int64)
            if len(sel):
                row, ectopic = measure_record(beats, sel, beats.fs, mask[b])
            else:
                row, ectopic = empty_record(), np.zeros(0, bool)
            noise = np.array([row[f"noise_{lead}_mv"] for lead in STANDARD_LEADS], float)
            flags, reason = assess(quality["flat"][b], quality["saturated"][b], quality["wander_mv"][b], noise,
                                   int(row["n_beats"]), int(row["n_normal_beats"]), STANDARD_LEADS, paced[b])
            for i, lead in enumerate(STANDARD_LEADS):
                row[f"wander_{lead}_mv"] = float(quality["wander_mv"][b, i])
                row[f"flat_{lead}"] = bool(quality["flat"][b, i])
                row[f"saturated_{lead}"] = bool(quality["saturated"][b, i])
            if reason is not None:  # never a wrong number presented as valid: measurements go NaN
                keep = {k: v for k, v in row.items() if k.startswith(("wander_", "flat_", "saturated_", "noise_"))}
                row = {**empty_record(), **keep, "n_beats": row["n_beats"], "n_normal_beats": row["n_normal_beats"]}
            row.update(usable=reason is None, quality_reason=reason, quality_flags=flags)
            rows.append(row)
            if len(sel):
                offset = beats.r[sel] - beats.pre
                beat_cols["record"].append(np.full(len(sel), b))
                beat_cols["beat"].append(np.arange(len(sel)))
                beat_cols["r_sample"].append(beats.r[sel] * beats.step)  # back on the dataset's time base
                for m in MARK_NAMES:
                    beat_cols[f"{m}_sample"].append((offset + beats.marks[m][sel]) * beats.step)
                beat_cols["p_present"].append(beats.p_present[sel])
                beat_cols["ectopic"].append(ectopic)
    return rows, {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in beat_cols.items()}


def _job(args) -> tuple[int, list[dict], dict, str | None]:
    """Worker: one chunk read from the memory-mapped waveforms; a failing chunk reports its error instead of raising.

    Workers touch numpy only: polars is not fork-safe, so the parent passes the lead mask and valid lengths.
    """
    waves_path, start, stop, mask, valid, fs = args
    waves = np.load(waves_path, mmap_mode="r", allow_pickle=False)
    try:
        x = waves[start:stop].astype(np.float32) * UV_TO_MV
        rows, beats = analyse_chunk(x, mask, fs, valid)
        return start, rows, beats, None
    except Exception as exc:  # a bug on odd input must cost records, not the run: they go to rejects
        return start, [], {}, f"{type(exc).__name__}: {exc}"


def _chunks(ds, n: int, valid: np.ndarray, size: int, workers: int):
    waves, mask = str(ds.artifact.file("waveforms.npy")), ds.lead_mask
    jobs = [(waves, s, min(s + size, n), mask[s:s + size], valid[s:s + size], ds.fs) for s in range(0, n, size)]
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_job, jobs)
        return
    # spawn, not fork: a forked child can inherit a lock held by one of polars' threads and hang forever
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        yield from pool.map(_job, jobs)


def features(config: FeaturesConfig, dataset_path: Path, out: Path, *, force: bool = False) -> Path:
    import polars as pl

    from ..dataset import Dataset

    ds = Dataset.open(dataset_path)
    n = len(ds) if config.limit is None else min(config.limit, len(ds))
    records = ds.records.head(n)
    valid = _valid_lengths(records, ds.waveforms.shape[-1], ds.fs)
    ids = records["record_id"].to_list()
    sexes = records["sex"].to_list() if "sex" in records.columns else [None] * n
    rows: list[dict | None] = [None] * n
    beat_parts, rejects = [], []
    with ArtifactWriter(out, "features", parameters={**asdict(config), "fs": ds.fs},
                        inputs={"dataset": ds.artifact}, force=force) as writer:
        with progress("features", n) as bar:
            for start, chunk_rows, beats, error in _chunks(ds, n, valid, config.chunk, config.workers):
                stop = min(start + config.chunk, n)
                if error is not None:
                    chunk_rows = [{**empty_record(), "usable": False, "quality_reason": f"internal error: {error}",
                                   "quality_flags": []} for _ in range(start, stop)]
                for k, row in enumerate(chunk_rows):
                    rows[start + k] = row
                if len(beats.get("record", [])):
                    beats = dict(beats)
                    beats["record_id"] = np.asarray(ids, dtype=object)[start + beats.pop("record").astype(int)]
                    beat_parts.append(pl.DataFrame(beats))
                bar.advance(stop - start)
        for i, row in enumerate(rows):
            row["record_id"] = ids[i]
            row["findings"] = derive(row, sexes[i])
            if not row["usable"]:
                rejects.append({"record_id": ids[i], "reason": row["quality_reason"]})
        table = _features_table(rows)
        writer.write_table("features.parquet", table)
        writer.write_table("beats.parquet", _beats_table(beat_parts))
        writer.write_table("rejects.parquet", pl.DataFrame(rejects, schema={"record_id": pl.String, "reason": pl.String}))
        usable = int(table["usable"].sum())
        counts = table.select(pl.col("findings").explode()).drop_nulls().group_by("findings").len()
        writer.summary.update({
            "records": n, "usable": usable, "unusable": n - usable, "beats": int(sum(p.height for p in beat_parts)),
            "fs": ds.fs, "findings": {r["findings"]: int(r["len"]) for r in counts.iter_rows(named=True)},
        })
        path = writer.commit()
    log(f"features for {n} records ({n - usable} not usable) -> {path}")
    return path


def _features_table(rows: list[dict]):
    import polars as pl

    first = ["record_id", "usable", "quality_reason", "quality_flags", "findings", "n_beats", "n_normal_beats",
             "ectopic_beats", "low_voltage"]
    numeric = [k for k in rows[0] if k not in first and not k.startswith(("flat_", "saturated_"))]
    bools = [k for k in rows[0] if k.startswith(("flat_", "saturated_"))]
    schema = {"record_id": pl.String, "usable": pl.Boolean, "quality_reason": pl.String,
              "quality_flags": pl.List(pl.String), "findings": pl.List(pl.String), "n_beats": pl.Int32, "n_normal_beats": pl.Int32,
              "ectopic_beats": pl.Int32, "low_voltage": pl.Boolean,
              **{k: pl.Float64 for k in numeric}, **{k: pl.Boolean for k in bools}}
    data = {k: [row.get(k) for row in rows] for k in schema}
    for k in numeric:
        data[k] = [None if v is None or not np.isfinite(v) else float(v) for v in data[k]]
    return pl.DataFrame(data, schema=schema).with_columns(pl.col(numeric).fill_null(float("nan")))


def _beats_table(parts):
    import polars as pl

    cols = ["record_id", "beat", "r_sample", *[f"{m}_sample" for m in MARK_NAMES], "p_present", "ectopic"]
    schema = {"record_id": pl.String, "beat": pl.Int32, "r_sample": pl.Int64,
              **{f"{m}_sample": pl.Float64 for m in MARK_NAMES}, "p_present": pl.Boolean, "ectopic": pl.Boolean}
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).select(cols).cast(schema)
