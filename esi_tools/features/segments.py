"""Long records in overlapping segments: memory bounded by the chunk, not by the record length.

A record up to SEGMENT_S + 2 margins long is one piece, read whole (10-s ECGs are unchanged). A longer one
is cut into equal stretches of at most SEGMENT_S; each piece reads its stretch plus at least
SEGMENT_MARGIN_S on both sides (inside the record), and keeps only the beats whose R lies in its own stretch, so every beat is measured once, with
its whole window. `combine` turns the pieces' rows into the record's row: rhythm from every RR between
beats of usable segments, other measurements as the median over usable segments.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..signal.leads import STANDARD_LEADS
from . import params as P
from .measure import RHYTHM_COLUMNS, empty_record, rhythm


@dataclass(frozen=True)
class Piece:
    record: int  # index of the record among those being measured
    start: int  # first sample read
    n: int  # samples read (the rest of the piece array is zero padding)
    core: tuple[int, int]  # beats with R in [core[0], core[1]) (record samples) belong to this piece


def piece_length(length: int, fs: float) -> int:
    """Samples per piece array: the record length, or one segment with its margins if that is shorter."""
    return min(int(length), int(round(P.SEGMENT_S * fs)) + 2 * int(round(P.SEGMENT_MARGIN_S * fs)))


def plan(valid: np.ndarray, length: int, fs: float) -> list[Piece]:
    """Pieces covering every record's valid samples, in record order then time order."""
    lp = piece_length(length, fs)
    seg, margin = int(round(P.SEGMENT_S * fs)), int(round(P.SEGMENT_MARGIN_S * fs))
    pieces = []
    for i, v in enumerate(int(v) for v in valid):
        if v <= lp:
            pieces.append(Piece(i, 0, v, (0, v)))
            continue
        bounds = np.round(np.linspace(0, v, -(-v // seg) + 1)).astype(int)  # equal stretches <= seg
        for a, b in zip(bounds[:-1], bounds[1:]):
            start = min(max(0, a - margin), v - lp)  # every piece full length: no padding, the fast paths
            pieces.append(Piece(i, int(start), lp, (int(a), int(b))))
    return pieces


def _majority(values: list) -> bool | None:
    known = [v for v in values if v is not None]
    return None if not known else sum(bool(v) for v in known) * 2 > len(known)


def combine(rows: list[dict], beats: list[dict], fs: float) -> tuple[dict, dict]:
    """One record's row and beats from its pieces' (rows, beats in record samples), in time order."""
    if len(rows) == 1:
        return rows[0], beats[0]
    usable = np.array([r["usable"] for r in rows])
    good = [r for r, u in zip(rows, usable) if u]
    row = empty_record()
    numeric = [k for k, v in row.items() if isinstance(v, float) and not k.startswith("wander_")]
    for k in numeric:  # median over usable segments: one noisy stretch cannot move a record's measurement
        vals = np.array([r[k] for r in good], float)
        row[k] = float(np.median(vals[np.isfinite(vals)])) if np.isfinite(vals).any() else np.nan
    for lead in STANDARD_LEADS:  # quality describes the whole recording: typical segment
        vals = np.array([r[f"wander_{lead}_mv"] for r in rows], float)
        row[f"wander_{lead}_mv"] = float(np.median(vals[np.isfinite(vals)])) if np.isfinite(vals).any() else np.nan
        row[f"flat_{lead}"] = _majority([r[f"flat_{lead}"] for r in rows])
        row[f"saturated_{lead}"] = _majority([r[f"saturated_{lead}"] for r in rows])
    row["low_voltage"] = _majority([r["low_voltage"] for r in good])
    # p_present_fraction: weighted by each segment's beats, not a median of fractions
    pf = np.array([r["p_present_fraction"] for r in good], float)
    nb = np.array([r["n_beats"] for r in good], float)
    ok = np.isfinite(pf) & (nb > 0)
    row["p_present_fraction"] = float(np.average(pf[ok], weights=nb[ok])) if ok.any() else np.nan

    merged = {k: np.concatenate([b[k] for b in beats]) for k in beats[0]}
    from_good = np.concatenate([np.full(len(b["beat"]), u) for b, u in zip(beats, usable)])
    keep = np.ones(len(merged["r_sample"]), bool)  # a beat seen by two neighbouring pieces counts once
    keep[1:] = np.diff(merged["r_sample"]) >= P.REFRACTORY_S * fs
    merged = {k: v[keep] for k, v in merged.items()}
    from_good = from_good[keep]
    merged["beat"] = np.arange(len(merged["r_sample"]))
    # rhythm over the whole recording: every RR whose two beats lie in usable segments
    rr_ok = from_good[1:] & from_good[:-1]
    rr = np.diff(merged["r_sample"]).astype(float) * 1000.0 / fs
    pair = rr_ok[1:] & rr_ok[:-1]  # successive differences only between two kept RRs in a row
    row.update(rhythm(rr[rr_ok], np.diff(rr)[pair]) if rr_ok.any() else dict.fromkeys(RHYTHM_COLUMNS, np.nan))
    row["n_beats"] = int(len(merged["r_sample"]))
    row["n_normal_beats"] = int(sum(r["n_normal_beats"] for r in good))
    row["ectopic_beats"] = int(sum(r["ectopic_beats"] for r in good))

    counts = Counter(f for r in rows for f in r["quality_flags"])
    flags = [f for f, c in counts.items() if c * 2 > len(rows)]  # a flag of most segments is the record's
    if not usable.all():
        flags.append(f"unusable_segments:{int((~usable).sum())}/{len(rows)}")
    reason = None
    if not usable.any():
        common = Counter(r["quality_reason"] for r in rows).most_common(1)[0][0]
        reason = f"no usable segment of {len(rows)} (most: {common})"
    row.update(usable=reason is None, quality_reason=reason, quality_flags=flags)
    return row, merged
