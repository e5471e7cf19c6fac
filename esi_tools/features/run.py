"""`esi features`: a dataset artifact -> a features artifact (features, beats, rejects Parquet tables).

Records are measured by records.py in chunks of pieces (whole records, or segments of long ones) in worker
processes that open the dataset's memory-mapped waveforms themselves, so nothing big is pickled and memory
is bounded by the chunk. A record that cannot be measured is a rejects row; only when every record fails
does the command fail, naming the first cause.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactWriter
from ..console import log, progress
from ..dataset import UV_TO_MV
from ..errors import EsiError
from . import params as P
from .chunk import analyse_chunk
from .findings import derive
from .records import measure_records
from .tables import beats_table, features_table


@dataclass(frozen=True)
class FeaturesConfig:
    workers: int = 2
    chunk: int = 32  # records per vectorised batch (long ones: chunk x 10 s of segments): amortises numpy calls, bounds memory
    limit: int | None = None  # first N records only (smoke runs)


def _valid_lengths(records, n: int, fs: float) -> np.ndarray:
    """Samples that hold signal per record (records shorter than the dataset length were zero-padded).

    `coverage` (the share of the record that is signal) is right for windows of a long recording too;
    older datasets only have `source_seconds`, right for records that start at the recording's start.
    """
    if "coverage" in records.columns:
        coverage = np.nan_to_num(records["coverage"].to_numpy().astype(float), nan=1.0)
        return np.clip(np.round(coverage * n).astype(int), 0, n)
    seconds = records["source_seconds"].to_numpy() if "source_seconds" in records.columns else None
    if seconds is None:
        return np.full(len(records), n)
    seconds = np.nan_to_num(seconds.astype(float), nan=n / fs)
    return np.clip(np.round(seconds * fs).astype(int), 0, n)


def features(config: FeaturesConfig, dataset_path: Path, out: Path, *, force: bool = False) -> Path:
    import polars as pl

    from ..dataset import Dataset

    ds = Dataset.open(dataset_path)
    n = len(ds) if config.limit is None else min(config.limit, len(ds))
    records = ds.records.head(n)
    length = ds.waveforms.shape[-1]
    valid = _valid_lengths(records, length, ds.fs)
    ids = records["record_id"].to_list()
    sexes = records["sex"].to_list() if "sex" in records.columns else [None] * n
    rows: list[dict | None] = [None] * n
    beat_parts, errors = [], []
    parameters = {**asdict(config), "fs": ds.fs, "segment_s": P.SEGMENT_S, "segment_margin_s": P.SEGMENT_MARGIN_S}
    with ArtifactWriter(out, "features", parameters=parameters, inputs={"dataset": ds.artifact}, force=force) as writer:
        with progress("features", n) as bar:
            waves = str(ds.artifact.file("waveforms.npy"))
            for m in measure_records(waves, ds.lead_mask[:n], valid, ds.fs, length, chunk=config.chunk,
                                     workers=config.workers, scale=UV_TO_MV):
                rid = ids[m.index]
                m.row.update(record_id=rid, findings=derive(m.row, sexes[m.index]))
                rows[m.index] = m.row
                if m.error is not None:
                    errors.append((rid, m.error))
                if len(m.beats["beat"]):
                    beat_parts.append({**m.beats, "record_id": np.full(len(m.beats["beat"]), rid, dtype=object)})
                bar.advance(1)
        if n and len(errors) == n:  # nothing measured: a command-level failure with its real cause
            rid, error = errors[0]
            raise EsiError(f"features failed on every record ({n}); first, record {rid}: {error}")
        table = features_table(rows)
        beats = beats_table(beat_parts)
        rejects = table.filter(~pl.col("usable")).select("record_id", reason=pl.col("quality_reason"))
        writer.write_table("features.parquet", table)
        writer.write_table("beats.parquet", beats)
        writer.write_table("rejects.parquet", rejects)
        usable = int(table["usable"].sum())
        counts = table.select(pl.col("findings").explode()).drop_nulls().group_by("findings").len()
        writer.summary.update({
            "records": n, "usable": usable, "unusable": n - usable, "failed": len(errors), "beats": beats.height,
            "fs": ds.fs, "findings": {r["findings"]: int(r["len"]) for r in counts.iter_rows(named=True)},
        })
        path = writer.commit()
    failed = f", {len(errors)} failed in measurement" if errors else ""
    log(f"features for {n} records ({n - usable} not usable{failed}) -> {path}")
    return path


__all__ = ["FeaturesConfig", "analyse_chunk", "features"]
