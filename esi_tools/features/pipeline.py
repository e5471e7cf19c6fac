"""One chunk of records, signal to fiducials: clean, detect R peaks, delineate every beat at once."""

from __future__ import annotations

import numpy as np

from . import detect
from . import params as P
from .delineate import Beats, delineate
from .stats import group_nanmedian


def rr_context(record: np.ndarray, r: np.ndarray, n_records: int) -> tuple[np.ndarray, np.ndarray]:
    """Previous and next RR (samples) per beat; the record's median RR fills the ends."""
    rr_prev = np.full(len(r), np.nan)
    rr_next = np.full(len(r), np.nan)
    same = record[1:] == record[:-1]
    d = np.diff(r).astype(float)
    rr_prev[1:] = np.where(same, d, np.nan)
    rr_next[:-1] = np.where(same, d, np.nan)
    med = group_nanmedian(rr_prev, record, n_records)[0][record]
    return np.where(np.isfinite(rr_prev), rr_prev, med), np.where(np.isfinite(rr_next), rr_next, med)


def analyse(x: np.ndarray, mask: np.ndarray, fs: float, valid: np.ndarray):
    """x: (B, 12, L) mV float32, mask: (B, 12) bool, valid: (B,) usable samples per record.

    Returns (xc, beats): the cleaned chunk at fs (NaN past each record's valid length) and every beat's
    fiducials. Above ANALYSIS_FS the cleaned (40-Hz low-passed, so alias-free) signal is decimated before
    detection and delineation; `beats.step` maps its samples back to the dataset's (beats.fs = fs / step).
    """
    x = np.where(mask[:, :, None], x, 0.0).astype(np.float32, copy=False)
    xc = detect.clean(x, fs)
    step = max(1, int(fs // P.ANALYSIS_FS))
    xa = np.ascontiguousarray(xc[..., ::step]) if step > 1 else xc.copy()
    fa, va = fs / step, -(-np.asarray(valid) // step)
    env, quality, norm, k = detect.lead_envelopes(x if step == 1 else xa, fa, mask, va)
    plausible, lead_beats = detect.lead_rhythms(norm, quality, k, fa, va)
    score, threshold, support = detect.fuse(env, quality, plausible, mask)
    magnitude = detect.magnitude(xa, mask, quality, k, fa)
    peaks = [detect.detect_r_peaks(score[b], threshold[b], magnitude[b], fa, int(va[b]), k, support[b])
             for b in range(len(x))]
    inside = np.arange(quality.shape[-1])[None, None, :] * k < va[:, None, None]
    weight = plausible * np.where(inside, quality, 0).mean(axis=-1)
    agreement = detect.rate_agreement(lead_beats, peaks, quality, weight, k, fa)
    for b in range(len(x)):
        xc[b, :, int(valid[b]):] = np.nan
        xa[b, :, int(va[b]):] = np.nan
    record = np.concatenate([np.full(len(p), b, np.int64) for b, p in enumerate(peaks)]) if peaks else np.zeros(0, np.int64)
    r = np.concatenate(peaks) if peaks else np.zeros(0, np.int64)
    rr_prev, rr_next = rr_context(record, r, len(x))
    if len(r) == 0:
        return xc, None
    beats = delineate(xa, mask, record, r, rr_prev, rr_next, fa)
    beats.step, beats.fs, beats.rate_agreement = step, fa, agreement
    beats.lead_quality = quality[record, :, np.minimum(r // k, quality.shape[-1] - 1)]  # (n, 12)
    return xc, beats


__all__ = ["Beats", "analyse", "rr_context"]
