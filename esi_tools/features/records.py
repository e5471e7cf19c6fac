"""Records of any length and lead set -> one row of measurements and the beats per record.

The one path both `esi features` (records in a dataset's memory-mapped waveforms, chunks in worker
processes) and `measure_arrays` (arrays in memory, this process) take: plan pieces (segments.py), measure
them a chunk at a time (chunk.py), combine each record's pieces, derive findings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..signal.leads import STANDARD_LEADS, standard_lead
from . import params as P
from .chunk import analyse_chunk, failed_row, failure, join_beats
from .segments import Piece, combine, piece_length, plan


@dataclass
class Measured:
    index: int  # the record's position among those measured
    row: dict  # measurements, quality, usable/quality_reason/quality_flags (no id, no findings)
    beats: dict  # beat columns in record samples
    error: str | None  # why the record could not be measured at all (every piece raised), else None


def _job(args) -> list[tuple[dict, dict, str | None]]:
    """Worker: (row, beat columns in piece samples, error) per piece of one chunk; never raises."""
    source, pieces, mask, fs, scale, length = args
    try:
        waves = np.load(source, mmap_mode="r", allow_pickle=False) if isinstance(source, str) else source
        x = np.zeros((len(pieces), len(STANDARD_LEADS), length), np.float32)
        for j, p in enumerate(pieces):
            x[j, :, :p.n] = waves[p.record, :, p.start:p.start + p.n]
        if scale != 1.0:
            x *= np.float32(scale)
        valid = np.array([p.n for p in pieces])
        core = np.array([(p.core[0] - p.start, p.core[1] - p.start) for p in pieces])
        rows, cols, errors = analyse_chunk(x, mask, fs, valid, core)
    except Exception as exc:  # noqa: BLE001 - e.g. an unreadable chunk: its records are rejected, the run goes on
        rows, cols, errors = [failed_row(failure(exc)) for _ in pieces], join_beats(), [failure(exc)] * len(pieces)
    record = cols["record"].astype(int)
    return [(rows[j], {k: v[record == j] for k, v in cols.items() if k != "record"}, errors[j])
            for j in range(len(pieces))]


def _run(jobs: list, workers: int):
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_job, jobs)
        return
    from ..workers import pool  # spawned workers that die with this process (SIGTERM, SIGKILL, closed pipe)

    with pool(workers) as executor:
        yield from executor.map(_job, jobs)


def measure_records(source, mask: np.ndarray, valid: np.ndarray, fs: float, length: int, *, chunk: int = 32,
                    workers: int = 1, scale: float = 1.0) -> Iterator[Measured]:
    """Measure records (N, 12, length) held by `source` (a .npy path, or an array when workers <= 1).

    Values times `scale` are mV; mask (N, 12) marks the leads each record has; valid (N,) its samples.
    Yields one Measured per record, in order, as soon as its last piece is done.
    """
    pieces = plan(valid, length, fs)
    lp = piece_length(length, fs)
    # `chunk` counts 10-s records: a chunk of longer pieces holds as many samples, so memory stays the same
    per_chunk = chunk if lp <= P.CHUNK_UNIT_S * fs else max(1, int(chunk * P.CHUNK_UNIT_S * fs / lp))
    batches = [pieces[s:s + per_chunk] for s in range(0, len(pieces), per_chunk)]
    jobs = [(source, b, mask[[p.record for p in b]], fs, scale, lp) for b in batches]
    done: list[tuple[Piece, dict, dict, str | None]] = []
    for batch, results in zip(batches, _run(jobs, workers)):
        for piece, (row, cols, error) in zip(batch, results):
            if done and done[0][0].record != piece.record:
                yield _finish(done, fs)
                done = []
            done.append((piece, row, _shift(cols, piece.start), error))
    if done:
        yield _finish(done, fs)


def _shift(cols: dict, start: int) -> dict:
    """Beat columns from piece samples to record samples."""
    return {k: (v + start if k.endswith("_sample") else v) for k, v in cols.items()}


def _finish(done: list, fs: float) -> Measured:
    errors = [e for *_, e in done]
    row, cols = combine([r for _, r, _, _ in done], [b for _, _, b, _ in done], fs)
    error = errors[0] if all(e is not None for e in errors) else None
    return Measured(done[0][0].record, row, cols, error)


def measure_arrays(x, fs: float, *, leads=None, valid=None, ids=None, sex=None, chunk: int = 32):
    """Measure ECGs held in memory: (features, beats, rejects) polars DataFrames, as `esi features` writes them.

    x: (n_leads, n_samples) for one record or (n_records, n_leads, n_samples), in mV. leads: the names of
    the n_leads rows (any spelling `esi ingest` accepts: "II", "MLII", "V5" ...; default the 12 standard
    leads in order); measurements use the leads present (axis only when two limb leads are there).
    valid: samples holding signal per record (default all); ids: record ids (default "0", "1", ...);
    sex: per-record "M"/"F"/None for sex-specific thresholds. Records of any length are measured in
    segments (memory bounded by `chunk`); a record that cannot be measured is a rejects row, never an error.
    """
    import polars as pl

    from .findings import derive
    from .tables import beats_table, features_table

    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] == 0:
        raise InputError(f"expected (leads, samples) or (records, leads, samples), got shape {np.shape(x)}")
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(f"sampling rate must be positive, got {fs}")
    names = list(STANDARD_LEADS) if leads is None else [str(n) for n in leads]
    if len(names) != arr.shape[1]:
        raise InputError(f"{len(names)} lead names for {arr.shape[1]} leads")
    std = [standard_lead(n) for n in names]
    if None in std or len(set(std)) != len(std):
        raise InputError(f"lead names must be distinct standard leads (I, II, III, aVR, aVL, aVF, V1-V6): {names}")
    n, _, length = arr.shape
    full = np.zeros((n, len(STANDARD_LEADS), length), np.float32)
    mask = np.zeros((n, len(STANDARD_LEADS)), bool)
    for i, lead in enumerate(std):
        j = STANDARD_LEADS.index(lead)
        full[:, j], mask[:, j] = arr[:, i], True
    valid = np.full(n, length) if valid is None else np.clip(np.asarray(valid, int).reshape(n), 0, length)
    ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in ids]
    sexes = [None] * n if sex is None else ([sex] * n if isinstance(sex, str) else list(sex))
    rows, parts = [], []
    for m in measure_records(full, mask, valid, float(fs), length, chunk=chunk, workers=1):
        m.row.update(record_id=ids[m.index], findings=derive(m.row, sexes[m.index]))
        rows.append(m.row)
        parts.append({**m.beats, "record_id": np.full(len(m.beats["beat"]), ids[m.index], dtype=object)})
    rejects = pl.DataFrame([{"record_id": r["record_id"], "reason": r["quality_reason"]} for r in rows if not r["usable"]],
                           schema={"record_id": pl.String, "reason": pl.String})
    return features_table(rows), beats_table(parts), rejects
