"""Wave delineation of every beat of a chunk at once: (n_beats, 12, W) windows around each R peak.

Multi-lead, on one common time base per beat:
- QRS onset/offset where the spatial velocity (sum over leads of |slope|) falls below a fraction of its
  QRS maximum; this is the classic global-fiducial definition (earliest onset / latest end over leads);
- the isoelectric level per lead is the flattest 20 ms before QRS onset;
- T peak and T offset per lead (largest interior local maximum of |T| after J; tangent at the steepest
  descent meeting the baseline), combined by the median over leads, then pulled to the record's median
  where one beat strays (a T wave barely changes beat to beat); T is searched, and ends, before the next
  beat's P onset (its QRS onset without a P wave): never on the next P wave;
- P peak is the RMS maximum in the PR window; it counts only if large, above the local noise, and at a
  consistent distance from QRS onset across the record (atrial fibrillation scatters it).
Fiducials are fractional sample indices (linear interpolation of threshold crossings), so 100-Hz data keep
better than 10-ms resolution in beat-averaged intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

from . import params as P
from .stats import group_nanmedian, nanmedian0


@dataclass
class Beats:
    """Per-beat fiducials in window coordinates (R at index `pre`); NaN where a wave was not found."""

    record: np.ndarray  # (n,) chunk-local record index
    r: np.ndarray  # (n,) R sample in the record
    pre: int
    marks: dict[str, np.ndarray]  # p_on, p_peak, p_off, qrs_on, qrs_off, t_peak, t_off (window index, float)
    p_present: np.ndarray  # (n,) bool
    p_searchable: np.ndarray  # (n,) bool: the whole P search window lies inside the record
    iso: np.ndarray  # (n, 12) isoelectric level per lead, mV
    windows: np.ndarray  # (n, 12, W) baseline-corrected mV
    step: int = 1  # beat samples are dataset samples / step (decimated analysis above ANALYSIS_FS)
    fs: float = 0.0  # the analysis rate: dataset fs / step
    lead_quality: np.ndarray | None = None  # (n, 12) each lead's detection quality at the beat (0 noisy .. 1 clean)
    rate_agreement: np.ndarray | None = None  # (records,) share of lead weight behind one rate (detect.rate_agreement)


def _smooth(x: np.ndarray, seconds: float, fs: float) -> np.ndarray:
    size = max(1, int(round(seconds * fs)))
    return x if size == 1 else uniform_filter1d(x, size=size, axis=-1, mode="nearest")


def _in_range(n: int, lo, hi) -> np.ndarray:
    """(beats, n) bool: lo <= t <= hi per beat (NaN bounds give an empty range)."""
    t = np.arange(n)
    lo, hi = np.atleast_1d(np.asarray(lo, float))[:, None], np.atleast_1d(np.asarray(hi, float))[:, None]
    return (t >= lo) & (t <= hi)


def last_below(curve: np.ndarray, thr: np.ndarray, lo, hi) -> np.ndarray:
    """Fractional index where `curve` rises through `thr` after its last sub-threshold sample in [lo, hi]."""
    n = curve.shape[1]
    below = (curve < thr[:, None]) & _in_range(n, lo, hi)
    found = below.any(axis=1)
    i = n - 1 - np.argmax(below[:, ::-1], axis=1)
    j = np.minimum(i + 1, n - 1)
    rows = np.arange(len(curve))
    a, b = curve[rows, i], curve[rows, j]
    frac = np.clip(np.where(b > a, (thr - a) / np.where(b > a, b - a, 1), 0.0), 0, 1)
    return np.where(found, i + frac, np.nan)


def first_below(curve: np.ndarray, thr: np.ndarray, lo, hi) -> np.ndarray:
    """Fractional index where `curve` falls through `thr` for the first time in [lo, hi]."""
    n = curve.shape[1]
    below = (curve < thr[:, None]) & _in_range(n, lo, hi)
    found = below.any(axis=1)
    i = np.argmax(below, axis=1)
    h = np.maximum(i - 1, 0)
    rows = np.arange(len(curve))
    a, b = curve[rows, h], curve[rows, i]
    frac = np.clip(np.where(a > b, (a - thr) / np.where(a > b, a - b, 1), 1.0), 0, 1)
    return np.where(found, h + frac, np.nan)


def _argmax_in(curve: np.ndarray, lo, hi) -> np.ndarray:
    """Index of the maximum of `curve` in [lo, hi] per beat, NaN where the range is empty or all NaN."""
    inside = _in_range(curve.shape[1], lo, hi) & np.isfinite(curve)
    masked = np.where(inside, curve, -np.inf)
    i = np.argmax(masked, axis=1).astype(float)
    return np.where(inside.any(axis=1), i, np.nan)


def _take(curve: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """curve[b, round(idx[b])] with NaN for NaN indices."""
    ok = np.isfinite(idx)
    i = np.where(ok, np.round(np.nan_to_num(idx)), 0).astype(np.int64)
    i = np.clip(i, 0, curve.shape[1] - 1)
    return np.where(ok, curve[np.arange(len(curve)), i], np.nan)


def _consensus(record: np.ndarray, mark: np.ndarray, tol: float) -> np.ndarray:
    """Pull a beat's mark that strays more than `tol` from its record's median back to that median.

    T waves barely change shape beat to beat, so a stray T peak/offset is a delineation slip (noise, a
    merged P wave) far more often than physiology; the record median is the better estimate for that beat.
    """
    med, count = group_nanmedian(mark, record, int(record.max()) + 1 if len(record) else 0)
    med, count = med[record], count[record]
    stray = (count >= 3) & (np.abs(mark - med) > tol)
    return np.where(stray, med, mark)


def _t_per_lead(yt: np.ndarray, mask: np.ndarray, lo: np.ndarray, hi: np.ndarray, fs: float):
    """T peak and tangent T offset in every lead, combined by the median over the leads with a clear T.

    A single cardiologist-marked lead is closer to the median lead than to the spatial (RMS) curve, whose
    peak follows whichever leads have the largest T.
    """
    n, leads, w = yt.shape
    t = np.arange(w)
    inside = (t >= lo[:, None, None]) & (t <= hi[:, None, None])
    mag = np.abs(yt)
    peak_like = np.zeros(mag.shape, bool)  # interior local maxima only: a window edge inside ST is no T peak
    peak_like[..., 1:-1] = (mag[..., 1:-1] >= mag[..., :-2]) & (mag[..., 1:-1] > mag[..., 2:])
    amp = np.where(inside & peak_like, mag, -np.inf)
    pk = np.argmax(amp, axis=2)  # (n, 12)
    a = np.take_along_axis(yt, pk[..., None], axis=2)[..., 0]
    z = yt * np.sign(a)[..., None]  # every lead's T made positive
    dz = np.diff(z, axis=2)
    after = (t[:-1] >= pk[..., None]) & (t[:-1] <= hi[:, None, None])
    steep = np.argmin(np.where(after, dz, np.inf), axis=2)
    z_s = np.take_along_axis(z, steep[..., None], axis=2)[..., 0]
    d_s = -np.take_along_axis(dz, steep[..., None], axis=2)[..., 0]
    base = np.min(np.where(after, z[..., :-1], np.inf), axis=2)
    off = np.where(d_s > 0, steep + 0.5 + (z_s - base) / np.where(d_s > 0, d_s, 1), np.nan)
    strong = mask & (np.abs(a) >= P.T_LEAD_FRACTION * np.max(np.abs(a) * mask, axis=1, keepdims=True))
    strong &= np.abs(a) > 0.02
    ok = inside.any(axis=2)[:, 0]
    strong &= np.isfinite(np.max(amp, axis=2))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            t_peak = np.nanmedian(np.where(strong, pk, np.nan), axis=1)
            t_off = np.nanmedian(np.where(strong & np.isfinite(off), off, np.nan), axis=1)
    return np.where(ok, t_peak, np.nan), np.where(ok, t_off, np.nan)


def next_onset(record: np.ndarray, r: np.ndarray, p_on: np.ndarray, qrs_on: np.ndarray) -> np.ndarray:
    """The next beat's P onset (its QRS onset where it has no P wave) in each beat's window; NaN for a record's last beat."""
    out = np.full(len(r), np.nan)
    if len(r) > 1:
        nxt = np.where(np.isfinite(p_on[1:]), p_on[1:], qrs_on[1:]) + np.diff(r)
        out[:-1] = np.where(record[1:] == record[:-1], nxt, np.nan)
    return out


def windows(xc: np.ndarray, record: np.ndarray, r: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    """(n, 12, W) windows of the cleaned chunk around each R; samples outside the record are NaN."""
    pre, post = int(round(P.PRE_S * fs)), int(round(P.POST_S * fs))
    padded = np.pad(xc, ((0, 0), (0, 0), (pre, post)), constant_values=np.nan)
    t = r[:, None] + np.arange(pre + post + 1)
    return np.transpose(padded[record[:, None], :, t], (0, 2, 1)), pre


def delineate(xc: np.ndarray, mask: np.ndarray, record: np.ndarray, r: np.ndarray,
              rr_prev: np.ndarray, rr_next: np.ndarray, fs: float) -> Beats:
    """Delineate all beats of a chunk; rr_prev/rr_next are in samples (the record median where missing)."""
    win, pre = windows(xc, record, r, fs)
    n, _, w = win.shape
    lead_w = mask[record].astype(np.float32)[:, :, None]  # masked (absent) leads carry no weight
    n_leads = np.maximum(lead_w.sum(axis=1), 1)

    # --- QRS onset/offset from spatial velocity ---------------------------------------------------------
    sv = _smooth((np.abs(np.diff(win, axis=2)) * lead_w).sum(axis=1), P.SMOOTH_S, fs)  # sv[i] ~ time i+0.5
    core = int(round(0.08 * fs))
    peak = np.nanmax(np.where(_in_range(w - 1, pre - core, pre + core), sv, np.nan), axis=1)
    # search outward from the steep part of the complex (slope >= half its maximum), not from R itself:
    # at R the dominant leads turn round and the spatial velocity can dip below the threshold
    strong = (sv >= 0.5 * peak[:, None]) & _in_range(w - 1, pre - core, pre + core)
    first_strong = np.where(strong.any(1), np.argmax(strong, axis=1), pre)
    last_strong = np.where(strong.any(1), w - 2 - np.argmax(strong[:, ::-1], axis=1), pre)
    qrs_on = last_below(sv, P.QRS_ON_FRACTION * peak, pre - int(P.QRS_SEARCH_BEFORE_S * fs), first_strong) + 0.5
    qrs_off = first_below(sv, P.QRS_OFF_FRACTION * peak, last_strong, pre + int(P.QRS_SEARCH_AFTER_S * fs)) + 0.5

    # --- isoelectric level: flattest ISO_WINDOW in the ISO_SEARCH before onset --------------------------
    flat = _smooth(sv, P.ISO_WINDOW_S, fs)
    anchor = np.where(np.isfinite(qrs_on), qrs_on, pre - 0.06 * fs)
    centre = _argmax_in(-flat, anchor - P.ISO_SEARCH_S * fs, anchor - 1)
    centre = np.where(np.isfinite(centre), centre, anchor - 0.03 * fs)
    half = max(1, int(P.ISO_WINDOW_S * fs / 2))
    idx = np.clip(np.round(centre).astype(np.int64)[:, None] + np.arange(-half, half + 1), 0, w - 1)
    iso = np.nanmean(win[np.arange(n)[:, None], :, idx], axis=1)  # (n, 12)
    y = win - iso[:, :, None]

    y0 = np.nan_to_num(y) * lead_w  # edges (outside the record) as 0 for the filters; absent leads as 0
    # --- P wave ----------------------------------------------------------------------------------------
    yp = _smooth(y0, P.P_SMOOTH_S, fs)
    mp = np.sqrt((yp**2).sum(axis=1) / n_leads)
    mp[~np.isfinite(win).all(axis=1)] = np.nan
    p_hi = qrs_on - P.P_GAP_S * fs
    p_lo = np.maximum(qrs_on - P.P_SEARCH_S * fs, pre - P.P_SEARCH_RR_FRACTION * rr_prev)
    local_max = np.zeros(mp.shape, bool)  # a P peak is an interior local maximum, not the slope into QRS
    local_max[:, 1:-1] = (mp[:, 1:-1] >= mp[:, :-2]) & (mp[:, 1:-1] > mp[:, 2:])
    p_peak = _argmax_in(np.where(local_max, mp, np.nan), p_lo, p_hi)
    p_amp = _take(mp, p_peak)
    resid = np.sqrt(((y0 - yp) ** 2).sum(axis=1) / n_leads)
    inside = _in_range(w, p_lo, p_hi)
    noise = nanmedian0(np.where(inside, resid, np.nan).T)
    reach = _in_range(w, p_lo - 0.06 * fs, p_hi)
    p_searchable = np.isfinite(qrs_on) & ~(reach & ~np.isfinite(mp)).any(axis=1)  # window inside the record
    p_ok = (p_amp > P.P_MIN_MV) & (p_amp > P.P_MIN_SNR * noise)
    # thresholds above the local floor on each side: TP and PR levels differ by a few tens of uV
    before = _take(mp, _argmax_in(-mp, p_lo - 0.06 * fs, p_peak))
    after = _take(mp, _argmax_in(-mp, p_peak, qrs_on))
    p_on = last_below(mp, before + P.P_ON_FRACTION * (p_amp - before), p_lo - 0.06 * fs, p_peak)
    p_off = first_below(mp, after + P.P_OFF_FRACTION * (p_amp - after), p_peak, qrs_on)
    p_ok &= np.isfinite(p_on) & np.isfinite(p_off)
    # consistency: a P wave keeps its distance to QRS onset within a record
    dist = qrs_on - p_peak
    med, count = group_nanmedian(np.where(p_ok, dist, np.nan), record, int(record.max()) + 1)
    p_ok &= (count[record] < 2) | (np.abs(dist - med[record]) <= P.P_CONSISTENCY_S * fs)
    for arr in (p_on, p_peak, p_off):
        arr[~p_ok] = np.nan

    # --- T wave: RMS over leads of the smoothed signal, tangent at the steepest descent -----------------
    yt = _smooth(y0, P.T_SMOOTH_S, fs)
    t_lo = np.where(np.isfinite(qrs_off), qrs_off, pre + 0.06 * fs) + P.T_START_AFTER_QRS_S * fs
    t_hi = pre + np.minimum(P.T_END_MAX_S * fs, P.T_END_RR_FRACTION * rr_next)
    bound = next_onset(record, r, p_on, qrs_on)  # T ends before the next P wave (or the next QRS) begins
    t_hi = np.fmin(t_hi, bound - P.T_OFF_LAG_S * fs)
    t_peak, t_off = _t_per_lead(yt, mask[record], t_lo, t_hi, fs)
    t_off = t_off + P.T_OFF_LAG_S * fs
    t_peak, t_off = _consensus(record, t_peak, P.T_CONSENSUS_S * fs), _consensus(record, t_off, P.T_CONSENSUS_S * fs)
    # the record median that _consensus gave a beat may still overrun that beat's next P: clipped to it
    t_peak, t_off = np.fmin(t_peak, bound), np.fmin(t_off, bound)

    marks = {"p_on": p_on, "p_peak": p_peak, "p_off": p_off, "qrs_on": qrs_on, "qrs_off": qrs_off,
             "t_peak": t_peak, "t_off": t_off}
    return Beats(record=record, r=r, pre=pre, marks=marks, p_present=p_ok, p_searchable=p_searchable, iso=iso,
                 windows=y)
