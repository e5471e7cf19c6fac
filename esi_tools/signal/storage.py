"""How a record is stored: int16 microvolts, NaN runs filled per lead (ingest and in-memory arrays alike)."""

from __future__ import annotations

import numpy as np

INT16_LIMIT = 32767  # storage is int16 microvolts: +-32.8 mV, beyond any physiological ECG


def fill_missing(uv: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """In place, per lead (last axis = time): missing samples linearly interpolated from the others; a lead
    with nothing left becomes 0 (absent). Works on (leads, samples) and (records, leads, samples)."""
    t = np.arange(uv.shape[-1])
    for idx in zip(*np.nonzero(missing.any(axis=-1)), strict=True):
        good = np.flatnonzero(~missing[idx])
        uv[idx] = np.interp(t, good, uv[idx][good]) if good.size else 0.0
    return uv
