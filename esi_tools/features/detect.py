"""Filtering and multi-lead R-peak detection, vectorised over a chunk of records (B, 12, L) in mV.

One bad lead cannot make beats (issue 23): each lead's QRS envelope (RMS QRS-band slope) is scaled to its
own local beat level; on a 20-ms grid the leads vote, weighted by their quality there (noise keeps an
envelope busy) and by how plausible their own rhythm is (a lead counting its T waves alternates short and
long RRs); a beat needs half the weight, and R is then placed on the full-rate spatial magnitude.
`rate_agreement` says how much of the lead weight tells the rhythm the detected beats give. Levels are
local (+-0.5 s), so detection does not depend on where a segment of a long record starts or on the gain of
its other parts. Works unchanged at 100 and 500 Hz (everything is in seconds).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
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


_LATER = 1e6  # added to a value so that it sorts after every real envelope value (mV/sample, << 1e6)


def _coarse(a: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    """One sample per PERCENTILE_STEP_S of (..., L): levels and quality change slowly, 2-5x less work."""
    k = max(1, int(P.PERCENTILE_STEP_S * fs))
    return a[..., ::k], k


def _fine(a: np.ndarray, k: int, n: int) -> np.ndarray:
    """Coarse (..., Lc) back to (..., n) by repetition."""
    return np.repeat(a, k, axis=-1)[..., :n] if k > 1 else a[..., :n]


def _win(seconds: float, step_s: float) -> int:
    return max(1, int(round(seconds / step_s)) | 1)  # odd: centred


def lead_envelopes(x: np.ndarray, fs: float, mask: np.ndarray, valid: np.ndarray):
    """Per-lead QRS envelopes of a chunk (B, 12, L) mV, each scaled to its own local beat level, and their quality.

    Returns (env, quality, norm, k), all (B, 12, Lc) on the coarse grid (one sample in k, every
    PERCENTILE_STEP_S: beats are found there and R is then placed on the full-rate signal): env in [0, 1],
    ~1 on the lead's QRS complexes; quality in [0, 1] (0 where the lead is noisy or absent); norm, env
    before it is capped at 1 (so that its peaks are not plateaus).

    The envelope is the RMS QRS-band slope over INTEGRATION_S (amplitude units). Its level is the
    largest value within +-LEVEL_WINDOW_S/2 (local: it does not depend on where a segment starts or on
    the gain of other parts of the record), but at least LEVEL_FLOOR of the lead's typical clean beat,
    so that a pause cannot blow noise up to beat size. Where the envelope is busy (above BUSY_LEVEL of
    its level over BUSY_LEVEL_WINDOW_S most of the time: noise, not beats) the lead's quality is 0, and
    BUSY_SPREAD_S around it too.
    """
    band = sosfiltfilt(_sos("qrs", fs), x, axis=-1)
    energy = np.diff(band, axis=-1, prepend=band[..., :1]) ** 2
    env = np.sqrt(uniform_filter1d(energy, size=max(1, int(P.INTEGRATION_S * fs)), axis=-1))
    c, k = _coarse(env, fs)
    step = k / fs
    local = maximum_filter1d(c, _win(P.LEVEL_WINDOW_S, step), axis=-1)
    wide = maximum_filter1d(c, _win(P.BUSY_LEVEL_WINDOW_S, step), axis=-1)
    busy = uniform_filter1d((c > P.BUSY_LEVEL * wide).astype(np.float32), _win(P.BUSY_WINDOW_S, step), axis=-1)
    quality = np.clip((P.BUSY_NOISY - busy) / (P.BUSY_NOISY - P.BUSY_CLEAN), 0, 1)
    quality = minimum_filter1d(quality, _win(P.BUSY_SPREAD_S, step), axis=-1) * mask[..., None]
    inside = np.arange(c.shape[-1])[None, None, :] * k < np.asarray(valid)[:, None, None]
    # typical beat: from levels whose whole window is clean; where too few, clean points next; noise never
    whole = minimum_filter1d(quality, _win(P.LEVEL_WINDOW_S, step), axis=-1) >= 0.5
    key = np.where(whole, local, local + _LATER)
    key = np.where(inside & (quality >= 0.5) & (local > 0), key, np.inf)  # noise and padding sort last
    typical = np.percentile(key, P.LEVEL_PERCENTILE, axis=-1)
    typical = np.where(typical >= _LATER, typical - _LATER, typical)
    typical = np.where(mask & np.isfinite(typical), typical, np.inf)[..., None]
    quality *= np.isfinite(typical)  # a flat lead (or one noisy throughout) has no say
    level = np.maximum(local, P.LEVEL_FLOOR * typical)
    norm = c / level
    return np.minimum(norm, 1.0), quality, norm, k


def lead_rhythms(norm: np.ndarray, quality: np.ndarray, k: int, fs: float, valid: np.ndarray | None = None):
    """(plausibility (B, 12), beats): each lead's own beats on the coarse grid and how plausible their rhythm is.

    beats = (record, lead, coarse index) of the lead's beats in its clean stretches. A lead that also
    counts its T waves as beats has many RR intervals far shorter than its long ones (short-long
    alternation); its plausibility falls to 0 when it has SHORT_RR_EXCESS more of them than the cleanest
    lead of the record (among leads with MIN_LEAD_RRS or more), so a beat cannot hinge on a lead whose own rhythm is implausible. Only RR intervals
    lying wholly in clean stretches count (noise is the quality weight's business), and no peak within
    REFRACTORY_S of either end of the record's valid samples (`valid`, coarse samples x k; default all):
    there a lead's maximum may be a beat cut by the edge or a filter transient, not one of its beats.
    """
    b, leads, n = norm.shape
    peak = (norm >= P.LEAD_BEAT_LEVEL) & (norm == maximum_filter1d(norm, _win(2 * P.REFRACTORY_S, k / fs), axis=-1))
    edge = int(P.REFRACTORY_S * fs / k)
    end = np.full(b, n) if valid is None else -(-np.asarray(valid) // k)
    t = np.arange(n)[None, None, :]
    peak &= (t >= edge) & (t < end[:, None, None] - edge)
    rb, rl, rt = np.nonzero(peak)
    noisy_before = np.cumsum(quality < 0.5, axis=-1)[rb, rl, rt]  # noisy samples up to each peak
    clean = quality[rb, rl, rt] >= 0.5
    group = rb * leads + rl
    h = np.minimum(norm[rb, rl, rt], 1.0)
    same = group[1:] == group[:-1]
    t_wave = same & (np.diff(rt) * (k / fs) < P.T_WAVE_S) & (h[1:] < P.T_WAVE_RATIO * h[:-1])  # as in detect_r_peaks
    keep = np.concatenate([[True], ~t_wave]) if len(rt) else np.zeros(0, bool)
    rb, rl, rt, group, noisy_before, clean = rb[keep], rl[keep], rt[keep], group[keep], noisy_before[keep], clean[keep]
    same = (group[1:] == group[:-1]) & (np.diff(noisy_before) == 0) & clean[:-1]  # RRs within clean stretches
    rr, g = np.diff(rt)[same].astype(float), group[1:][same]
    counts = np.bincount(g, minlength=b * leads)
    table = np.full((max(int(counts.max(initial=0)), 1), b * leads), np.nan)
    table[np.arange(len(rr)) - np.concatenate([[0], np.cumsum(counts)[:-1]])[g], g] = rr  # g is sorted
    s = np.sort(table, axis=0)  # NaN last: the first counts[j] rows of column j are its RRs in order
    long_rr = s[(3 * np.maximum(counts - 1, 0)) // 4, np.arange(b * leads)]
    short = np.where(counts >= P.MIN_LEAD_RRS, (table < P.SHORT_RR_FRACTION * long_rr).sum(axis=0) / np.maximum(counts, 1),
                     np.nan)
    short = short.reshape(b, leads)
    best = np.min(np.where(np.isfinite(short), short, np.inf), axis=1, keepdims=True)
    excess = np.where(np.isfinite(short), short - np.where(np.isfinite(best), best, 0), 0.0)
    return np.clip(1 - excess / P.SHORT_RR_EXCESS, 0, 1), (rb[clean], rl[clean], rt[clean])


def rate_agreement(lead_beats: tuple, fused: list[np.ndarray], quality: np.ndarray, weight: np.ndarray,
                   k: int, fs: float) -> np.ndarray:
    """(B,) share of the lead weight whose own beats are the detected ones, in the lead's clean stretches.

    A lead agrees when at least LEAD_MATCH of its beats are detected beats and LEAD_MATCH of the detected
    beats are its beats (within MATCH_S); a lead with fewer than 3 of either has no vote. 1 when the leads
    tell the rhythm the fused beats give (or none can tell), ~0.5 when two equal leads tell two rhythms.
    """
    b, leads, n = quality.shape
    rb, rl, rt = lead_beats
    fb = np.concatenate([np.full(len(p), i) for i, p in enumerate(fused)]) if fused else np.zeros(0, int)
    ft = np.concatenate(fused) / k if fused else np.zeros(0)
    key = fb * 4.0 * n + ft  # one sorted axis for all records' detected beats
    pos = rb * 4.0 * n + rt
    j = np.clip(np.searchsorted(key, pos), 1, max(len(key) - 1, 1))
    near = np.minimum(np.abs(key[j - 1] - pos), np.abs(key[np.minimum(j, len(key) - 1)] - pos)) if len(key) else np.full(len(pos), np.inf)
    hit = near <= P.MATCH_S * fs / k
    group = rb * leads + rl
    own = np.bincount(group, minlength=b * leads).reshape(b, leads)
    matched = np.bincount(group, weights=hit, minlength=b * leads).reshape(b, leads)
    clean_at = quality[fb, :, np.minimum(ft.astype(int), n - 1)] >= 0.5 if len(ft) else np.zeros((0, leads), bool)
    seen = np.zeros((b, leads))
    np.add.at(seen, fb, clean_at)
    vote = (own >= 3) & (seen >= 3)
    agree = (matched >= P.LEAD_MATCH * own) & (matched >= P.LEAD_MATCH * seen)
    w = weight * vote
    total = w.sum(axis=1)
    return np.where(total > 0, (w * agree).sum(axis=1) / np.where(total > 0, total, 1), 1.0)


def fuse(env: np.ndarray, quality: np.ndarray, plausible: np.ndarray, mask: np.ndarray):
    """(score, threshold, support), all (B, Lc) on the coarse grid: the quality-weighted mean over leads of their scaled envelopes (1 =
    every lead sees a QRS), the score a beat needs there: AGREEMENT where two or more leads hold the
    weight (more than half of it must see the beat), falling to ONE_LEAD_THRESHOLD where one lead holds it
    all, and the share of the weight whose envelope shows anything there (at least TIE_SEE).
    """
    w = quality * (plausible[..., None] + P.IMPLAUSIBLE_WEIGHT) + P.WEIGHT_FLOOR * mask[..., None]
    total = np.maximum(w.sum(axis=1), 1e-9)
    alone = np.clip(2 * w.max(axis=1) / total - 1, 0, 1)  # 0: two equal leads or more, 1: a single lead
    threshold = P.AGREEMENT - (P.AGREEMENT - P.ONE_LEAD_THRESHOLD) * alone
    support = (w * (env >= P.TIE_SEE)).sum(axis=1) / total
    return (w * env).sum(axis=1) / total, threshold, support


def magnitude(xa: np.ndarray, mask: np.ndarray, quality: np.ndarray, k: int, fs: float) -> np.ndarray:
    """(B, L) spatial magnitude R is centred on: every lead counts equally, a noisy stretch of a lead not at all."""
    weight = mask / np.maximum(robust_level(np.abs(xa), 99, fs), 1e-3)
    y = (xa * weight[:, :, None]) ** 2
    if (quality[mask] < 1).any():  # the usual clean chunk skips this
        y *= _fine(quality, k, y.shape[-1]) + P.WEIGHT_FLOOR
    return y.sum(axis=1)


def detect_r_peaks(score: np.ndarray, threshold: np.ndarray, magnitude: np.ndarray, fs: float, valid: int,
                   k: int, support: np.ndarray | None = None) -> np.ndarray:
    """R-peak sample indices of one record: beats on its coarse agreement score and threshold (Lc,), R placed
    on the full-rate spatial magnitude (L,); k full-rate samples per coarse one. With `support` (fuse's,
    (Lc,)), a peak only half the lead weight shows that splits an RR is dropped (_drop_split_ties)."""
    env = score[:-(-valid // k)]
    if valid < 2 or not np.isfinite(env).all() or env.max() <= 0:
        return np.zeros(0, np.int64)
    peaks, _ = find_peaks(env, height=threshold[:len(env)], distance=max(1, int(P.REFRACTORY_S * fs / k)))
    if len(peaks) > 1:  # T-wave discrimination (Pan-Tompkins): close after a beat and much weaker than it
        h = env[peaks]
        t_wave = (np.diff(peaks) * k < P.T_WAVE_S * fs) & (h[1:] < P.T_WAVE_RATIO * h[:-1])
        # the first peak may be the T wave of a beat just before the record: weak against the record's beats
        first = peaks[0] * k < P.T_WAVE_S * fs and h[0] < P.T_EDGE_RATIO * np.median(h)
        peaks = peaks[np.concatenate([[not first], ~t_wave])]
    if support is not None:
        peaks = _drop_split_ties(peaks, support[:len(env)], threshold[:len(env)])
    if len(peaks) == 0:
        return peaks.astype(np.int64)
    peaks = peaks * k
    r = _refine(peaks, magnitude, int(P.R_REFINE_S * fs), valid)
    if len(r) >= 3:  # the same fiducial in every beat: where R and S are alike, the largest may swap beat to beat
        r = _refine(peaks + int(np.median(r - peaks)), magnitude, int(P.R_CONSISTENT_S * fs), valid)
    return np.unique(r).astype(np.int64)


def _drop_split_ties(peaks: np.ndarray, support: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Peaks without the tied ones that split an RR. Tied: where two or more leads hold the weight, the leads
    showing the peak hold at most half of it (one lead of two); split: an RR beside it under SPLIT_RR of the
    median of the LOCAL_RRS RRs around it and the two together at most WHOLE_RR of it, or at either end a
    short RR. Such a peak is one lead's artefact; a beat the leads see, premature or interpolated, stays
    whatever its RRs, and where one lead holds all the weight nothing is dropped.
    """
    tied = (threshold[peaks] > (P.AGREEMENT + P.ONE_LEAD_THRESHOLD) / 2) & (support[peaks] <= 0.5 + 1e-6)
    if len(peaks) < 4 or not tied.any():  # shared weight (not one lead alone), at most half of it showing the peak
        return peaks
    rr = np.diff(peaks).astype(float)
    half = P.LOCAL_RRS // 2  # the median of the LOCAL_RRS RRs around each peak: rates change along a record
    padded = np.concatenate([np.full(half, np.nan), rr, np.full(half, np.nan)])
    m = np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, 2 * half), axis=1)
    before = np.concatenate([[np.inf], rr])  # RR before / after each peak (inf: none)
    after = np.concatenate([rr, [np.inf]])
    split = ((before < P.SPLIT_RR * m) | (after < P.SPLIT_RR * m)) & (before + after <= P.WHOLE_RR * m)
    split[0], split[-1] = after[0] < P.SPLIT_RR * m[0], before[-1] < P.SPLIT_RR * m[-1]  # an end: one short RR
    return peaks[~(split & tied)]


def _refine(centre: np.ndarray, magnitude: np.ndarray, half: int, valid: int) -> np.ndarray:
    """The largest magnitude within +-half samples of each centre."""
    idx = np.clip(centre[:, None] + np.arange(-half, half + 1), 0, valid - 1)
    return idx[np.arange(len(centre)), np.argmax(magnitude[idx], axis=1)]
