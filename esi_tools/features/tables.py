"""The features and beats tables: fixed columns and types, whatever the records (even when all failed)."""

from __future__ import annotations

import numpy as np

from .measure import MARK_NAMES, empty_record

FIRST = ("record_id", "usable", "quality_reason", "quality_flags", "findings", "n_beats", "n_normal_beats",
         "ectopic_beats", "low_voltage")
BEATS = ("record_id", "beat", "r_sample", *[f"{m}_sample" for m in MARK_NAMES], "p_present", "ectopic")


def features_table(rows: list[dict]):
    """polars DataFrame, one row per record; NaN where not measured, null flat_/saturated_ for absent leads."""
    import polars as pl

    columns = [k for k in empty_record() if k not in FIRST]
    bools = [k for k in columns if k.startswith(("flat_", "saturated_"))]
    numeric = [k for k in columns if k not in bools]
    schema = {"record_id": pl.String, "usable": pl.Boolean, "quality_reason": pl.String,
              "quality_flags": pl.List(pl.String), "findings": pl.List(pl.String), "n_beats": pl.Int32,
              "n_normal_beats": pl.Int32, "ectopic_beats": pl.Int32, "low_voltage": pl.Boolean,
              **{k: pl.Float64 for k in numeric}, **{k: pl.Boolean for k in bools}}
    data = {k: [row.get(k) for row in rows] for k in schema}
    for k in numeric:
        data[k] = [None if v is None or not np.isfinite(v) else float(v) for v in data[k]]
    return pl.DataFrame(data, schema=schema).with_columns(pl.col(numeric).fill_null(float("nan")))


def beats_table(parts: list[dict]):
    """polars DataFrame of every beat: parts are per-record column dicts holding a `record_id` column."""
    import polars as pl

    schema = {"record_id": pl.String, "beat": pl.Int32, "r_sample": pl.Int64,
              **{f"{m}_sample": pl.Float64 for m in MARK_NAMES}, "p_present": pl.Boolean, "ectopic": pl.Boolean}
    parts = [p for p in parts if len(p["beat"])]
    if not parts:
        return pl.DataFrame(schema=schema)
    data = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in BEATS}
    return pl.DataFrame({k: data[k].astype(str) if k == "record_id" else data[k] for k in BEATS}).cast(schema)
