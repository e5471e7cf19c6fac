"""Cheap handcrafted signal statistics (148-d): the floor any learned ECG representation must beat.

Per lead (12 x 12): mean, std, min, max, 5/25/50/75/95th percentiles, and the power in three bands
(0.5-5, 5-15, 15-40 Hz: baseline/P-T, QRS body, QRS edges and noise); globally: heart rate and RR spread
from a simple multi-lead QRS detector, age and sex. No learning, no labels: computed record by record.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks, welch

PERCENTILES = (5, 25, 50, 75, 95)
BANDS_HZ = ((0.5, 5.0), (5.0, 15.0), (15.0, 40.0))
MIN_RR_S = 0.25  # refractory period: no two QRS closer than 250 ms (240 bpm)


def lead_stats(x: np.ndarray, fs: float) -> np.ndarray:
    """(12 * 12,) statistics of one record x (12, L) in mV."""
    pct = np.percentile(x, PERCENTILES, axis=1).T  # (12, 5)
    freqs, psd = welch(x, fs=fs, nperseg=min(x.shape[1], int(2 * fs)), axis=1)
    bands = []
    for lo, hi in BANDS_HZ:
        sel = (freqs >= lo) & (freqs < min(hi, fs / 2))
        bands.append(np.log1p(psd[:, sel].sum(axis=1) * 1e3) if sel.any() else np.zeros(x.shape[0]))
    cols = [x.mean(1), x.std(1), x.min(1), x.max(1), *pct.T, *bands]
    return np.stack(cols, axis=1).reshape(-1)


def rhythm_stats(x: np.ndarray, fs: float) -> tuple[float, float]:
    """(heart rate bpm, RR standard deviation ms) from peaks of the summed absolute slope over leads."""
    energy = np.abs(np.diff(x, axis=1)).sum(axis=0)
    if not np.any(energy > 0):
        return 0.0, 0.0
    peaks, _ = find_peaks(energy, distance=max(1, int(MIN_RR_S * fs)), height=0.4 * np.percentile(energy, 99))
    if len(peaks) < 2:
        return 0.0, 0.0
    rr = np.diff(peaks) / fs
    return float(60.0 / np.median(rr)), float(np.std(rr) * 1e3)


def signal_stats(millivolts: np.ndarray, fs: float, age, sex) -> np.ndarray:
    """(148,) float32 for one record; unknown age -> NaN (imputed downstream), sex F=1, M=0, else 0.5."""
    hr, rr_sd = rhythm_stats(millivolts, fs)
    age = np.nan if age is None else float(age)
    sex_value = {"F": 1.0, "M": 0.0}.get(sex, 0.5)
    return np.concatenate([lead_stats(millivolts, fs), [hr, rr_sd, age, sex_value]]).astype(np.float32)
