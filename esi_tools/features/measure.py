"""Per-record measurements from delineated beats: rhythm, intervals, axis, per-lead amplitudes, beat noise.

Intervals are medians over the record's normal (non-ectopic) beats; amplitudes are read from the median
beat of those beats (baseline-corrected at the PR segment), which averages noise away without smearing the
fiducials, as ECG machines do.
"""

from __future__ import annotations

import numpy as np

from ..signal.leads import STANDARD_LEADS
from . import params as P
from .delineate import Beats
from .findings import LOW_VOLTAGE_LIMB_MV, LOW_VOLTAGE_PRECORDIAL_MV
from .quality import NOISE_MV
from .stats import nanmedian0

MARK_NAMES = ("p_on", "p_peak", "p_off", "qrs_on", "qrs_off", "t_peak", "t_off")
PER_LEAD = ("p_amp", "q_amp", "r_amp", "s_amp", "qrs_ptp", "st_j", "st_j60", "t_amp")
LIMB, PRECORDIAL = STANDARD_LEADS[:6], STANDARD_LEADS[6:]
MIN_P_FRACTION = 0.5  # PR is reported only when at least half the beats show a P wave
MIN_CLEAN_BEATS = 3  # a median beat needs 3 beats


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of a (k, n) with b (n,), NaN-safe (NaN samples dropped from both)."""
    if np.isfinite(a).all() and np.isfinite(b).all():  # the usual case: plain Pearson, no masking
        a0, b0 = a - a.mean(1, keepdims=True), b - b.mean()
        den = np.sqrt((a0**2).sum(1) * (b0**2).sum())
        return np.where(den > 0, a0 @ b0 / np.where(den > 0, den, 1), np.nan)
    ok = np.isfinite(a) & np.isfinite(b)[None, :]
    a0 = np.where(ok, a, 0.0)
    b0 = np.where(ok, b[None, :], 0.0)
    cnt = np.maximum(ok.sum(1), 1)
    a0 = np.where(ok, a0 - a0.sum(1, keepdims=True) / cnt[:, None], 0)
    b0 = np.where(ok, b0 - b0.sum(1, keepdims=True) / cnt[:, None], 0)
    den = np.sqrt((a0**2).sum(1) * (b0**2).sum(1))
    return np.where(den > 0, (a0 * b0).sum(1) / np.where(den > 0, den, 1), np.nan)


def _median_beat(w: np.ndarray) -> np.ndarray:
    """(12, W) median over beats; beats cut by the record edge only fill in where they have samples."""
    whole = np.isfinite(w).all(axis=(1, 2))
    if whole.sum() >= 3:
        s = np.sort(w[whole], axis=0)  # sort beats: 2-3x faster than np.median's partition on this axis
        k = len(s)
        return (s[(k - 1) // 2] + s[k // 2]) / 2
    return nanmedian0(w)


def _quiet(w: np.ndarray, quality: np.ndarray | None, sel: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Beat windows with NaN for a lead at the beats where detection found it noisy.

    Only a lead clean at MIN_CLEAN_BEATS or more beats is masked (else it keeps all its beats, noisy or not:
    its amplitudes are better than none), and a beat keeps all its leads if all are noisy.
    """
    if quality is None:
        return w
    noisy = (quality[sel] < 0.5) & mask
    noisy[:, (~noisy).sum(axis=0) < MIN_CLEAN_BEATS] = False
    noisy[noisy.sum(axis=1) >= mask.sum()] = False
    if not noisy.any():
        return w
    w = w.copy()
    w[noisy] = np.nan
    return w


def empty_record() -> dict:
    """Every measurement and quality column as NaN/None (records without usable beats, failed records)."""
    row = {name: np.nan for name in GLOBAL_COLUMNS}
    for lead in STANDARD_LEADS:
        for name in PER_LEAD:
            row[f"{name}_{lead}_mv"] = np.nan
        row[f"qrs_area_{lead}_mvms"] = np.nan
        row[f"noise_{lead}_mv"] = np.nan
    row["n_beats"] = 0
    row["n_normal_beats"] = 0
    row["ectopic_beats"] = 0
    row["low_voltage"] = None
    for lead in STANDARD_LEADS:  # signal quality: NaN/None until measured (None = lead absent)
        row[f"wander_{lead}_mv"] = np.nan
        row[f"flat_{lead}"] = None
        row[f"saturated_{lead}"] = None
    return row


GLOBAL_COLUMNS = (
    "hr_mean_bpm", "hr_min_bpm", "hr_max_bpm", "rr_mean_ms", "rr_sdnn_ms", "rr_rmssd_ms", "rr_irregularity",
    "p_present_fraction", "pr_ms", "p_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms",
    "qrs_axis_deg", "t_axis_deg", "sokolow_lyon_mv", "cornell_mv", "rvh_sokolow_mv",
)


RHYTHM_COLUMNS = ("hr_mean_bpm", "hr_min_bpm", "hr_max_bpm", "rr_mean_ms", "rr_sdnn_ms", "rr_rmssd_ms",
                  "rr_irregularity")


def rhythm(rr: np.ndarray, diffs: np.ndarray | None = None) -> dict:
    """Rate and RR variability from RR intervals (ms); `diffs` (successive RR differences) default to np.diff(rr).

    Long records pass their own diffs so that an RR pair spanning an unusable stretch is not differenced.
    """
    out = dict.fromkeys(RHYTHM_COLUMNS, np.nan)
    if len(rr) == 0:
        return out
    out.update(hr_mean_bpm=60000.0 / rr.mean(), hr_min_bpm=60000.0 / rr.max(), hr_max_bpm=60000.0 / rr.min(),
               rr_mean_ms=float(rr.mean()), rr_sdnn_ms=float(rr.std()))
    d = np.diff(rr) if diffs is None else diffs
    if len(d):
        out["rr_rmssd_ms"] = float(np.sqrt(np.mean(d**2)))
        # median successive difference / mean RR: ~0.02-0.05 in sinus rhythm (even with one ectopic
        # beat, which moves only two differences), 0.1-0.3 in atrial fibrillation
        out["rr_irregularity"] = float(np.median(np.abs(d)) / rr.mean())
    return out


QTC_RANGE_MS = (300.0, 650.0)  # Bazett QTc outside this is a delineation slip (T on the next P, or lost), not a QT
QT_RR_GAP_MS = 100.0  # the next beat's P wave and PR segment need >= 100 ms between T end and its QRS


def qt_implausible(qt: float, qtc: float, rr: float) -> str | None:
    """The quality flag saying why a record's QT (ms) cannot be true, else None.

    `qt_implausible_qtc` when the Bazett QTc is outside QTC_RANGE_MS, `qt_implausible_rr` when the QT leaves
    less than QT_RR_GAP_MS of the median RR (its T wave would run into the next P wave; at fast rates with
    flutter or fibrillation waves, or a T fused with the next P, no T end can be read).
    """
    if not QTC_RANGE_MS[0] <= qtc <= QTC_RANGE_MS[1]:
        return "qt_implausible_qtc"
    if qt > rr - QT_RR_GAP_MS:
        return "qt_implausible_rr"
    return None


def measure_record(beats: Beats, sel: np.ndarray, fs: float, mask: np.ndarray) -> tuple[dict, np.ndarray]:
    """Measurements of one record (its beats are beats[sel]); returns (row, ectopic flag per beat).

    row["quality_flags"], when present, lists what measure_record itself found (an implausible QT).
    """
    row = empty_record()
    r = beats.r[sel]
    w = beats.windows[sel]
    marks = {m: beats.marks[m][sel] for m in MARK_NAMES}
    n = len(r)
    row["n_beats"] = n
    ms = 1000.0 / fs
    ectopic = np.zeros(n, bool)
    if n < 2:
        return row, ectopic
    rr = np.diff(r) * ms
    # --- ectopic beats: QRS shape unlike the median beat, or premature with a longer RR after ---------
    pre = beats.pre
    q0, q1 = pre - int(0.05 * fs), pre + int(0.08 * fs)
    shape_w = _quiet(w, beats.lead_quality, sel, mask)  # a lead noisy at a beat does not judge or shape templates
    template = _median_beat(shape_w)
    ref = template[mask, q0:q1].ravel()
    lag = max(1, int(round(P.ECTOPIC_LAG_S * fs)))
    step = max(1, lag // 5)  # ~11 lags whatever fs: a 1-sample R jitter at 100 Hz must not look ectopic
    seg = shape_w[:, :, q0 - lag:q1 + lag] if mask.all() else shape_w[:, mask, q0 - lag:q1 + lag]
    views = np.lib.stride_tricks.sliding_window_view(seg, q1 - q0, axis=2)[:, :, ::step]  # (n, m, lags, len)
    stacked = np.moveaxis(views, 2, 0).reshape(views.shape[2] * n, -1)  # all lags in one pass
    corr = _corr(stacked, ref).reshape(views.shape[2], n).max(axis=0)
    med_rr = np.median(rr)
    rr_prev = np.concatenate([[np.nan], rr])
    rr_next = np.concatenate([rr, [np.nan]])
    premature = (rr_prev < P.PREMATURE_RATIO * med_rr) & (rr_next > rr_prev * 1.1)
    ectopic = (corr < P.ECTOPIC_CORR) | premature
    row["ectopic_beats"] = int(ectopic.sum())
    row.update(rhythm(rr))
    # --- intervals on normal beats --------------------------------------------------------------------
    normal = ~ectopic & np.isfinite(marks["qrs_on"]) & np.isfinite(marks["qrs_off"])
    row["n_normal_beats"] = int(normal.sum())
    if normal.sum() < 2:  # no dominant beat shape (noise, or all beats different): nothing to average
        return row, ectopic
    rel = dict(zip(marks, nanmedian0(np.stack([v[normal] for v in marks.values()], axis=1))))
    has_p = beats.p_present[sel]
    searchable = beats.p_searchable[sel]
    if searchable.any():  # a beat too close to the record start for a P window neither counts for nor against
        row["p_present_fraction"] = float(has_p[searchable].mean())
    if np.isfinite(row["p_present_fraction"]) and row["p_present_fraction"] >= MIN_P_FRACTION:
        with_p = normal & has_p
        pr, pw = nanmedian0(np.stack([(marks["qrs_on"] - marks["p_on"])[with_p], (marks["p_off"] - marks["p_on"])[with_p]], 1))
        row["pr_ms"], row["p_ms"] = float(pr * ms), float(pw * ms)
    row["qrs_ms"] = float(np.median((marks["qrs_off"] - marks["qrs_on"])[normal]) * ms)
    qt = (marks["t_off"] - marks["qrs_on"])[normal]
    if np.isfinite(qt).any():
        row["qt_ms"] = float(nanmedian0(qt) * ms)
        rr_s = med_rr / 1000.0
        row["qtc_bazett_ms"] = row["qt_ms"] / np.sqrt(rr_s)
        row["qtc_fridericia_ms"] = row["qt_ms"] / np.cbrt(rr_s)
        why = qt_implausible(row["qt_ms"], row["qtc_bazett_ms"], med_rr)
        if why:  # a wrong QT is worse than none: not printed, and the record says why
            row.update(qt_ms=np.nan, qtc_bazett_ms=np.nan, qtc_fridericia_ms=np.nan, quality_flags=[why])
    # --- amplitudes on the median normal beat ---------------------------------------------------------
    tmpl = template if normal.all() else _median_beat(shape_w[normal])
    _amplitudes(row, tmpl, rel, fs, has_p.mean() >= MIN_P_FRACTION, mask)
    # beat-to-beat residual inside this beat only: at fast rates a fixed window would reach the next
    # (possibly premature) beat and call a clean record noisy
    rr_samples = med_rr * fs / 1000.0
    a, b = pre - int(min(0.25 * fs, 0.35 * rr_samples)), pre + int(min(0.45 * fs, 0.6 * rr_samples))
    resid = w[normal][:, :, a:b] - tmpl[None, :, a:b]
    noise = np.sqrt(nanmedian0(np.nanmean(resid**2, axis=2)))
    for i, lead in enumerate(STANDARD_LEADS):
        row[f"noise_{lead}_mv"] = float(noise[i]) if mask[i] else np.nan
    return row, ectopic


# Limb leads as combinations of (I, II) (Einthoven, Goldberger): any two of them give the frontal plane.
_LIMB_FROM_I_II = {"I": (1.0, 0.0), "II": (0.0, 1.0), "III": (-1.0, 1.0), "aVR": (-0.5, -0.5),
                   "aVL": (1.0, -0.5), "aVF": (-0.5, 1.0)}


def frontal_axis(values: np.ndarray, mask: np.ndarray) -> float:
    """Frontal-plane axis (degrees) from a per-lead quantity (QRS area, T amplitude): atan2(aVF, I).

    With I or aVF missing, both are solved from any two limb leads present; with fewer than two, NaN.
    """
    idx = {name: i for i, name in enumerate(STANDARD_LEADS)}
    i, f = idx["I"], idx["aVF"]
    if mask[i] and mask[f]:
        return float(np.degrees(np.arctan2(values[f], values[i])))
    have = [n for n in LIMB if mask[idx[n]] and np.isfinite(values[idx[n]])]
    if len(have) < 2:
        return float("nan")
    coef = np.array([_LIMB_FROM_I_II[n] for n in have])
    lead_i, lead_ii = np.linalg.lstsq(coef, np.array([values[idx[n]] for n in have]), rcond=None)[0]
    return float(np.degrees(np.arctan2(lead_ii - lead_i / 2, lead_i)))


def _amplitudes(row: dict, tmpl: np.ndarray, rel: dict, fs: float, p_present: bool, mask: np.ndarray) -> None:
    w = tmpl.shape[1]

    def at(v):
        return min(max(int(round(float(v))), 0), w - 1)

    on, off = at(rel["qrs_on"]), at(rel["qrs_off"])
    seg = tmpl[:, on:off + 1]
    if seg.shape[1] < 2 or not np.isfinite(seg[mask]).all():
        return
    ir = seg.argmax(axis=1)
    t = np.arange(seg.shape[1])
    r_amp = np.maximum(seg.max(axis=1), 0)
    q_amp = np.minimum(np.where(t[None, :] < ir[:, None], seg, np.inf).min(axis=1), 0)
    s_amp = np.minimum(np.where(t[None, :] > ir[:, None], seg, np.inf).min(axis=1), 0)
    ptp = seg.max(axis=1) - seg.min(axis=1)
    area = seg.sum(axis=1) * 1000.0 / fs
    st_j = tmpl[:, at(rel["qrs_off"])]
    st_j60 = tmpl[:, at(rel["qrs_off"] + 0.06 * fs)]
    t_amp = np.full(12, np.nan)
    if np.isfinite(rel["t_off"]):
        tseg = tmpl[:, at(rel["qrs_off"] + 0.06 * fs): at(rel["t_off"]) + 1]
        if tseg.shape[1]:
            t_amp = tseg[np.arange(12), np.abs(tseg).argmax(axis=1)]
    p_amp = np.full(12, np.nan)
    if p_present and np.isfinite(rel["p_on"]) and np.isfinite(rel["p_off"]):
        pseg = tmpl[:, at(rel["p_on"]): at(rel["p_off"]) + 1]
        if pseg.shape[1]:
            p_amp = pseg[np.arange(12), np.abs(pseg).argmax(axis=1)]
    values = {"p_amp": p_amp, "q_amp": q_amp, "r_amp": r_amp, "s_amp": s_amp, "qrs_ptp": ptp, "st_j": st_j,
              "st_j60": st_j60, "t_amp": t_amp, "qrs_area": area}
    for arr in values.values():  # an absent (zero-filled) lead has no amplitudes, not zero ones
        arr[~mask] = np.nan
    for i, lead in enumerate(STANDARD_LEADS):
        for name, arr in values.items():
            row[f"{name}_{lead}_mvms" if name == "qrs_area" else f"{name}_{lead}_mv"] = float(arr[i])
    row["qrs_axis_deg"] = frontal_axis(area, mask)
    row["t_axis_deg"] = frontal_axis(t_amp, mask)
    lead = {name: i for i, name in enumerate(STANDARD_LEADS)}
    # voltage indices need their leads (NaN propagates); "V5 or V6" takes whichever is there
    r56 = np.nanmax(r_amp[[lead["V5"], lead["V6"]]]) if mask[[lead["V5"], lead["V6"]]].any() else np.nan
    s56 = np.nanmin(s_amp[[lead["V5"], lead["V6"]]]) if mask[[lead["V5"], lead["V6"]]].any() else np.nan
    row["sokolow_lyon_mv"] = float(-s_amp[lead["V1"]] + r56)
    row["cornell_mv"] = float(r_amp[lead["aVL"]] - s_amp[lead["V3"]])
    row["rvh_sokolow_mv"] = float(r_amp[lead["V1"]] - s56)
    limb = ptp[[lead[x] for x in LIMB]]
    prec = ptp[[lead[x] for x in PRECORDIAL]]
    # low voltage is "every limb lead" or "every precordial lead": decided only on a complete group
    low = [bool((g < thr).all()) for g, thr in ((limb, LOW_VOLTAGE_LIMB_MV), (prec, LOW_VOLTAGE_PRECORDIAL_MV))
           if np.isfinite(g).all()]
    row["low_voltage"] = any(low) if low else None


__all__ = ["GLOBAL_COLUMNS", "MARK_NAMES", "NOISE_MV", "PER_LEAD", "RHYTHM_COLUMNS", "empty_record", "frontal_axis",
           "measure_record", "rhythm"]
