"""ECG arrays held in memory -> the input `esi embed` gives a model, made the way `esi ingest` makes records.

A dataset record is 12 leads in the standard order, gaps (NaN, inf) filled with their lead's mean (the ESI
release's rule), resampled to the dataset's rate by polyphase filtering, rounded to whole microvolts (int16);
`esi embed` reads it back in mV. Arrays keep the filled samples unrounded at the model's own rate (storage must
round them to whole microvolts), so a record with gaps embeds through an imported release model exactly as the
release's own forward computes it.
Arrays given to the Python API take the same steps, so an ECG embeds the same from a file or from memory.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from ..errors import InputError
from ..ingest.wfdb_reader import MAX_FS, MIN_FS
from ..signal.leads import STANDARD_LEADS, standard_lead
from ..signal.resample import ratio, resample
from ..signal.storage import INT16_LIMIT, fill_missing

UNITS = {"uV": 1.0, "µV": 1.0, "mV": 1000.0}  # factor to microvolts


def sampling_rate(fs, what: str = "sampling rate fs") -> float:
    """`fs` as a float in Hz, within the rates `esi ingest` accepts; InputError for anything else (a string,
    None, a bool, NaN, 0, 1e-3 Hz: an ECG at that rate would be resampled into gigabytes)."""
    if isinstance(fs, bool) or not isinstance(fs, Real):
        raise InputError(f"{what} must be a number in Hz, not {fs!r}")
    value = float(fs)
    if not math.isfinite(value) or not MIN_FS <= value <= MAX_FS:
        raise InputError(f"{what} {value:g} Hz is outside {MIN_FS:g}-{MAX_FS:g} Hz")
    return value


def lead_order(leads, n_leads: int) -> list[int]:
    """Standard-lead slot of each of the `n_leads` input rows (`leads`: names in any spelling ingest accepts)."""
    if leads is None:
        if n_leads != len(STANDARD_LEADS):
            raise InputError(f"expected the 12 standard leads ({', '.join(STANDARD_LEADS)}), got {n_leads} rows: "
                             "pass leads=[names] for another set or order")
        return list(range(len(STANDARD_LEADS)))
    names = [str(n) for n in leads]
    if len(names) != n_leads:
        raise InputError(f"{len(names)} lead names for {n_leads} leads")
    std = [standard_lead(n) for n in names]
    if None in std or len(set(std)) != len(std):
        raise InputError(f"lead names must be distinct standard leads ({', '.join(STANDARD_LEADS)}): {names}")
    return [STANDARD_LEADS.index(s) for s in std]


def model_millivolts(x, fs: float, *, target_fs: float, units: str = "mV", leads=None) -> np.ndarray:
    """(12, L) or (N, 12, L) in `units` at `fs` -> (N, 12, L') float32 mV at `target_fs`.

    Leads not given (when `leads` names fewer than 12) are zeros, as `esi ingest` stores absent leads.
    """
    if units not in UNITS:
        raise InputError(f"units must be 'uV' or 'mV', not {units!r}")
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] < 2:
        raise InputError(f"expected an ECG (leads, samples) or a batch (records, leads, samples), got shape {np.shape(x)}")
    fs = sampling_rate(fs)
    order = lead_order(leads, arr.shape[1])
    uv = arr * UNITS[units]
    missing = ~np.isfinite(uv)
    if ratio(fs, float(target_fs)) == (1, 1):
        # whole microvolts as stored; then each gap becomes the mean of its lead's stored samples, unrounded,
        # which is the release's own fill: a record with gaps embeds as the authors' forward computes it
        uv = np.where(missing, 0.0, np.clip(np.rint(uv), -INT16_LIMIT, INT16_LIMIT))
        fill_missing(uv, missing)
    else:
        uv = np.clip(np.rint(resample(fill_missing(uv, missing), fs, float(target_fs))), -INT16_LIMIT, INT16_LIMIT)
    out = np.zeros((uv.shape[0], len(STANDARD_LEADS), uv.shape[-1]), np.float32)
    out[:, order] = uv
    return out * np.float32(1e-3)  # as `Dataset.millivolts` reads stored records
