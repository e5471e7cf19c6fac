"""Filtering and multi-lead R-peak detection, vectorised over a chunk of records (B, 12, L) in mV.

All leads vote: each lead's QRS-band slope energy is scaled to its own 99th percentile and clipped, so a
big lead cannot drown the others and one noisy lead cannot invent beats; the mean over leads is integrated
and peak-picked with a refractory period. Works unchanged at 100 and 500 Hz (everything is in seconds).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import butter, find_peaks, sosfiltfilt

from . import params as P


@cache
def _sos(kind: str, fs: float):
    """Butterworth sections, cached per (kind, fs): designing them costs more than filtering one record."""
    nyq = fs / 2
    if kind == "clean":  # diagnostic band for measurements: drop wander, keep QRS/T shape
        return butter(2, [P.HIGHPASS_HZ / nyq, min(P.LOWPASS_HZ, 0.8 * nyq) / nyq], "bandpass", output="sos")
    if kind == "qrs":  # where QRS slope energy lives and P/T energy does not (Pan-Tompkins band)
        return butter(2, [P.QRS_BAND_HZ[0] / nyq, min(P.QRS_BAND_HZ[1], 0.8 * nyq) / nyq], "bandpass", output="sos")
    raise ValueError(kind)


def robust_level(x: np.ndarray, q: float, fs: float) -> np.ndarray:
    """q-th percentile along the last axis from one sample per PERCENTILE_STEP_S (the full sort costs 4x more)."""
    return np.percentile(x[..., :: max(1, int(P.PERCENTILE_STEP_S * fs))], q, axis=-1)


def clean(x: np.ndarray, fs: float) -> np.ndarray:
    """Zero-phase band-pass (HIGHPASS_HZ..LOWPASS_HZ) along the last axis, float32."""
    return sosfiltfilt(_sos("clean", fs), x, axis=-1).astype(np.float32, copy=False)


def qrs_envelope(x: np.ndarray, fs: float, mask: np.ndarray) -> np.ndarray:
    """(B, L) multi-lead QRS detection envelope from raw (B, 12, L) mV; masked-out leads do not vote."""
    band = sosfiltfilt(_sos("qrs", fs), x, axis=-1)
    energy = np.diff(band, axis=-1, prepend=band[..., :1]) ** 2
    scale = robust_level(energy, 99, fs)[..., None]
    scale[scale <= 0] = np.inf  # a flat lead contributes nothing instead of dividing by zero
    energy = np.minimum(energy / scale, P.ENERGY_CLIP) * mask[..., None]
    votes = np.maximum(mask.sum(axis=1), 1)[:, None]
    return uniform_filter1d(energy.sum(axis=1) / votes, size=max(1, int(P.INTEGRATION_S * fs)), axis=-1)


def detect_r_peaks(envelope: np.ndarray, magnitude: np.ndarray, fs: float, valid: int, ref: float) -> np.ndarray:
    """R-peak sample indices of one record from its envelope (L,), refined on the spatial magnitude (L,).

    `ref` is the envelope's ENVELOPE_REF_QUANTILE over the valid part (computed for a whole chunk at once).
    """
    env = envelope[:valid]
    if valid < 2 or not np.isfinite(env).all() or env.max() <= 0:
        return np.zeros(0, np.int64)
    peaks, _ = find_peaks(env, height=P.DETECT_THRESHOLD * ref, distance=max(1, int(P.REFRACTORY_S * fs)))
    if len(peaks) == 0:
        return peaks.astype(np.int64)
    half = int(P.R_REFINE_S * fs)
    offsets = np.arange(-half, half + 1)
    idx = np.clip(peaks[:, None] + offsets, 0, valid - 1)
    r = idx[np.arange(len(peaks)), np.argmax(magnitude[idx], axis=1)]
    return np.unique(r).astype(np.int64)
