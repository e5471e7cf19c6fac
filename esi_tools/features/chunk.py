"""One chunk of records (B, 12, L) in mV -> a row of measurements and quality per record, and its beats.

The signal stage (filters, detection, delineation, quality) is vectorised over the chunk; measurement is
per record. A failure stays with its record: if the vectorised stage raises, each record is analysed
alone, and a record whose analysis raises gets a failed row (reason "measurement failed: ...") while
every other record of the chunk keeps its beats and measurements.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..signal.leads import STANDARD_LEADS
from .measure import MARK_NAMES, empty_record, measure_record
from .pipeline import analyse
from .quality import assess, lead_quality, pacing_fraction

BEAT_COLUMNS = ("record", "beat", "r_sample", *[f"{m}_sample" for m in MARK_NAMES], "p_present", "ectopic")


def failure(exc: BaseException) -> str:
    """One line naming the exception: the reason stored for a record that could not be measured."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def failed_row(error: str) -> dict:
    return {**empty_record(), "usable": False, "quality_reason": f"measurement failed: {error}", "quality_flags": []}


def _signal_stage(x: np.ndarray, mask: np.ndarray, fs: float, valid: np.ndarray):
    """Beats, per-lead quality and pacing of a chunk; leads no record of the chunk has are not computed.

    Absent leads are zero-filled and carry no weight anywhere, so dropping them changes no result and
    makes a 2-lead recording 6x cheaper than treating it as 12 leads.
    """
    keep = mask.any(axis=0)
    if not keep.all():
        beats, quality, paced = _signal_stage(x[:, keep], mask[:, keep], fs, valid)
        quality = {"flat": _expand(quality["flat"], keep, False), "saturated": _expand(quality["saturated"], keep, False),
                   "wander_mv": _expand(quality["wander_mv"], keep, np.nan)}
        if beats is not None:  # measurements index leads in the standard order: absent ones back as zeros
            beats.windows, beats.iso = _expand(beats.windows, keep, 0.0), _expand(beats.iso, keep, 0.0)
            beats.lead_quality = _expand(beats.lead_quality, keep, 0.0)
        return beats, quality, paced
    xc, beats = analyse(x, mask, fs, valid)
    quality = lead_quality(x, xc, mask, fs, valid)
    paced = (pacing_fraction(x, beats.record, (beats.r - beats.pre + beats.marks["qrs_on"]) * beats.step, fs)
             if beats is not None else np.full(len(x), np.nan))
    return beats, quality, paced


def _expand(a: np.ndarray, keep: np.ndarray, fill) -> np.ndarray:
    """(n, k, ...) over the kept leads -> (n, 12, ...) with `fill` for the others."""
    out = np.full((a.shape[0], len(keep), *a.shape[2:]), fill, dtype=a.dtype)
    out[:, keep] = a
    return out


def _record(b: int, beats, quality: dict, paced: np.ndarray, mask: np.ndarray, core: tuple[int, int]):
    """Row and beat columns of record b; only beats whose R lies in `core` (dataset samples) count."""
    if beats is not None:
        r = beats.r * beats.step
        sel = np.flatnonzero((beats.record == b) & (r >= core[0]) & (r < core[1]))
    else:
        sel = np.zeros(0, np.int64)
    if len(sel):
        row, ectopic = measure_record(beats, sel, beats.fs, mask)
    else:
        row, ectopic = empty_record(), np.zeros(0, bool)
    noise = np.array([row[f"noise_{lead}_mv"] for lead in STANDARD_LEADS], float)
    flags, reason = assess(quality["flat"][b], quality["saturated"][b], quality["wander_mv"][b], noise,
                           int(row["n_beats"]), int(row["n_normal_beats"]), STANDARD_LEADS, paced[b], mask,
                           1.0 if beats is None or beats.rate_agreement is None else float(beats.rate_agreement[b]))
    for i, lead in enumerate(STANDARD_LEADS):  # absent leads: None, neither flat nor fine
        row[f"wander_{lead}_mv"] = float(quality["wander_mv"][b, i])
        row[f"flat_{lead}"] = bool(quality["flat"][b, i]) if mask[i] else None
        row[f"saturated_{lead}"] = bool(quality["saturated"][b, i]) if mask[i] else None
    flags = row.pop("quality_flags", []) + flags  # measure_record's own (an implausible QT)
    if reason is not None:  # never a wrong number presented as valid: measurements go NaN
        keep = {k: v for k, v in row.items() if k.startswith(("wander_", "flat_", "saturated_", "noise_"))}
        row = {**empty_record(), **keep, "n_beats": row["n_beats"], "n_normal_beats": row["n_normal_beats"]}
    row.update(usable=reason is None, quality_reason=reason, quality_flags=flags)
    cols = {"beat": np.arange(len(sel)), "p_present": np.zeros(0, bool), "ectopic": ectopic}
    if len(sel):
        offset = beats.r[sel] - beats.pre
        cols["r_sample"] = beats.r[sel] * beats.step  # back on the dataset's time base
        for m in MARK_NAMES:
            cols[f"{m}_sample"] = (offset + beats.marks[m][sel]) * beats.step
        cols["p_present"] = beats.p_present[sel]
    return row, cols


def analyse_chunk(x: np.ndarray, mask: np.ndarray, fs: float, valid: np.ndarray, core: np.ndarray | None = None):
    """(rows, beat columns, errors) for a chunk (B, 12, L) mV; errors[b] is None or why record b failed.

    core: (B, 2) sample range per record whose beats are kept (default: all of [0, valid)); long records
    measured in overlapping segments keep only the beats of each segment's own stretch.
    """
    valid = np.asarray(valid)
    core = np.stack([np.zeros(len(x), np.int64), valid], axis=1) if core is None else np.asarray(core)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (no beats, edge windows) are expected
        try:
            beats, quality, paced = _signal_stage(x, mask, fs, valid)
        except Exception as exc:  # noqa: BLE001 - one bad record must not cost its chunk
            if len(x) == 1:
                return [failed_row(failure(exc))], join_beats(), [failure(exc)]
            alone = [analyse_chunk(x[b:b + 1], mask[b:b + 1], fs, valid[b:b + 1], core[b:b + 1]) for b in range(len(x))]
            parts = [{**cols, "record": np.full(len(cols["beat"]), b)} for b, (_, cols, _) in enumerate(alone)]
            return [a[0][0] for a in alone], join_beats(parts), [a[2][0] for a in alone]
        rows, parts, errors = [], [], []
        for b in range(len(x)):
            try:
                row, cols = _record(b, beats, quality, paced, mask[b], (int(core[b, 0]), int(core[b, 1])))
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - the failure stays with this record: a reject row
                row, cols = failed_row(failure(exc)), None
                errors.append(failure(exc))
            rows.append(row)
            if cols is not None and len(cols["beat"]):
                parts.append({**cols, "record": np.full(len(cols["beat"]), b)})
    return rows, join_beats(parts), errors


def join_beats(parts: list[dict] = ()) -> dict:
    """Beat columns of the given parts concatenated (all columns present, empty without parts)."""
    return {k: (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0)) for k in BEAT_COLUMNS}
