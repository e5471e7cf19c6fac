"""How a record is stored: int16 microvolts, gaps (NaN, inf) filled per lead (ingest and in-memory arrays alike).

The gap rule is the ESI authors' loader's: a missing sample becomes the mean of its lead's other samples, so a
record with gaps embeds through an imported release model exactly as the release's own forward computes it.
"""

from __future__ import annotations

import numpy as np

INT16_LIMIT = 32767  # storage is int16 microvolts: +-32.8 mV, beyond any physiological ECG


def fill_missing(uv: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """In place, per lead (last axis = time): missing samples become the mean of the lead's other samples (the
    release's "NaN -> lead mean"); a lead with nothing left becomes 0 (absent). Works on (leads, samples) and
    (records, leads, samples)."""
    for idx in zip(*np.nonzero(missing.any(axis=-1)), strict=True):
        gap = missing[idx]
        good = uv[idx][~gap]
        uv[idx] = np.where(gap, good.mean(dtype=np.float64) if good.size else 0.0, uv[idx] if good.size else 0.0)
    return uv
