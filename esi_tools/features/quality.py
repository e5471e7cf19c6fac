"""Per-lead signal quality from the raw chunk: flat, saturated, baseline wander (beat noise comes later).

Thresholds are here, in one place, with the reason for each; findings thresholds live in findings.py.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from .detect import robust_level
from .params import MIN_RATE_AGREEMENT

FLAT_MV = 0.02  # a lead whose filtered signal has a 99th-1st percentile range under 20 uV carries no ECG
SATURATION_MIN = 6  # samples pinned at the lead's own extreme value: real peaks hit their max once or twice
SATURATION_FRACTION = 0.01  # ... so 1 % of the record (min SATURATION_MIN) at the rail means clipping
WANDER_HZ = 0.7  # below the slowest heart rate (42 bpm): everything under it is baseline movement
WANDER_MV = 1.0  # baseline swinging more than 1 mV peak-to-peak hides ST/T (flag, not fatal)
NOISE_MV = 0.10  # beat-to-beat residual RMS above 100 uV: noisy lead (6+ of them: 0.2 % of clean PTB-XL NORM)
EDGE_S = 0.5  # filter transients at the record ends are ignored when sizing wander


def lead_quality(x: np.ndarray, xc: np.ndarray, mask: np.ndarray, fs: float, valid: np.ndarray) -> dict:
    """(B, 12) arrays: flat, saturated (bool, False for absent leads) and wander_mv (NaN for absent leads)."""
    b, leads, n = x.shape
    t = np.arange(n)
    if (valid >= n).all():  # the usual case: no padding, plain (fast) reductions
        lo, hi = robust_level(xc, [1, 99], fs)
        top, bottom = x.max(axis=-1, keepdims=True), x.min(axis=-1, keepdims=True)
        pinned = np.maximum((x == top).sum(-1), (x == bottom).sum(-1))
    else:
        inside = t[None, :] < valid[:, None]  # (B, L)
        span = np.where(inside[:, None, :], xc, np.nan)
        lo, hi = np.nanpercentile(span, [1, 99], axis=-1)
        raw = np.where(inside[:, None, :], x, np.nan)
        top, bottom = np.nanmax(raw, axis=-1, keepdims=True), np.nanmin(raw, axis=-1, keepdims=True)
        pinned = np.maximum((raw == top).sum(-1), (raw == bottom).sum(-1))
    flat = ~((hi - lo) >= FLAT_MV) & mask  # only leads the record has: an absent lead is not a flat one
    saturated = (pinned >= np.maximum(SATURATION_MIN, SATURATION_FRACTION * valid[:, None])) & mask & ~flat
    # baseline = moving average over one period of WANDER_HZ (as good as a low-pass here, 3x cheaper)
    low = uniform_filter1d(x, size=max(1, int(round(fs / WANDER_HZ))), axis=-1, mode="nearest")
    edge = int(EDGE_S * fs)
    core = (t[None, :] >= edge) & (t[None, :] < valid[:, None] - edge)
    low = np.where(core[:, None, :], low, np.nan)
    with np.errstate(all="ignore"):
        wander = np.nanmax(low, axis=-1) - np.nanmin(low, axis=-1)
    wander = np.where(mask & np.isfinite(wander), wander, np.nan)
    return {"flat": flat, "saturated": saturated, "wander_mv": wander}

MIN_BEATS = 3  # fewer than 3 beats in a record: no rhythm, no median beat -> measurements are not trusted
MAX_FLAT_LEADS = 5  # 6+ flat leads among those recorded: the recording failed (absent leads do not count)
MAX_SATURATED_LEADS = 3  # 4+ clipped leads: amplitudes and the median beat are wrong
MAX_NOISY_LEADS = 5  # 6+ noisy leads: fiducials cannot be trusted


def assess(flat, saturated, wander, noise, n_beats: int, n_normal: int, leads: tuple[str, ...],
           paced: float = float("nan"), present=None, agreement: float = 1.0) -> tuple[list[str], str | None]:
    """Per-lead flags (`flat:V3`, `noisy:II` ...) and the reason the record is unusable (None if usable).

    `present` (bool per lead, default all) names the leads the record has: only those are flagged or counted,
    so a 2-lead recording is judged on its 2 leads, not as 10 missing ones. `agreement`: the share of the
    lead weight whose own beats are the detected ones (detect.rate_agreement); under MIN_RATE_AGREEMENT the
    leads tell different rhythms and no rate is trusted.
    """
    present = np.ones(len(leads), bool) if present is None else np.asarray(present, bool)
    flat, saturated = np.asarray(flat, bool) & present, np.asarray(saturated, bool) & present
    flags = []
    for i, lead in enumerate(leads):
        if not present[i]:
            continue
        if flat[i]:
            flags.append(f"flat:{lead}")
        if saturated[i]:
            flags.append(f"saturated:{lead}")
        if np.isfinite(wander[i]) and wander[i] > WANDER_MV:
            flags.append(f"baseline_wander:{lead}")
        if np.isfinite(noise[i]) and noise[i] > NOISE_MV:
            flags.append(f"noisy:{lead}")
    n_flat, n_sat = int(np.sum(flat)), int(np.sum(saturated))
    n_noisy = int(np.sum(np.isfinite(noise) & (noise > NOISE_MV) & present))
    live = int(present.sum()) - n_flat  # recorded leads that carry signal
    # each limit holds for 12 leads; with fewer leads a record fails when every lead it has fails
    if n_flat > MAX_FLAT_LEADS or live <= 0:
        return flags, f"no signal ({n_flat} flat leads)" if live <= 0 else f"{n_flat} flat leads"
    if n_sat > MAX_SATURATED_LEADS or n_sat >= live:
        return flags, f"{n_sat} saturated leads"
    if n_beats < MIN_BEATS:
        return flags, f"too few beats ({n_beats})"
    if agreement < MIN_RATE_AGREEMENT:
        return flags + ["leads_disagree_on_rate"], (f"leads disagree on the rate ({agreement:.0%} of the lead weight"
                                                    " agrees with the detected beats)")
    if n_normal < MIN_BEATS:
        return flags, f"no dominant beat shape ({n_normal} of {n_beats} beats alike)"
    if n_noisy > MAX_NOISY_LEADS or n_noisy >= live:
        return flags, f"{n_noisy} noisy leads"
    if np.isfinite(paced) and paced >= PACED_FRACTION:
        return flags + ["paced"], f"paced rhythm (pacemaker spikes before {paced:.0%} of beats)"
    return flags, None


PACING_MIN_FS = 250.0  # pacemaker spikes last < 2 ms: below 250 Hz they are filtered away before we see them
SPIKE_RATIO = 4.0  # a spike: |2nd difference| summed over leads above 4x its own 99th percentile ...
SPIKE_WINDOW_S = (0.08, 0.02)  # ... within 80 ms before to 20 ms after QRS onset (ventricular pacing)
PACED_FRACTION = 0.6  # spikes before >= 60 % of beats: a paced record (measurements describe the pacemaker)


def pacing_fraction(x: np.ndarray, record: np.ndarray, qrs_on: np.ndarray, fs: float) -> np.ndarray:
    """(B,) fraction of beats with a pacemaker-like spike just before QRS onset; NaN when fs is too low.

    qrs_on: absolute (fractional) sample of each beat's QRS onset, record: the beat's chunk-local record.
    On LUDB (500 Hz) this flags 4 of the 10 paced records (2 more fail as "no dominant beat shape"; bipolar
    spikes are often too small) and none of the 190 others: right when raised, not a complete detector.
    """
    out = np.full(len(x), np.nan)
    if fs < PACING_MIN_FS or len(record) == 0:
        return out
    d2 = np.abs(np.diff(x, 2, axis=-1)).sum(axis=1)  # (B, L-2)
    thr = SPIKE_RATIO * np.percentile(d2, 99, axis=-1)
    before, after = int(SPIKE_WINDOW_S[0] * fs), int(SPIKE_WINDOW_S[1] * fs)
    ok = np.isfinite(qrs_on)
    on = np.where(ok, np.nan_to_num(qrs_on), 0).astype(np.int64)
    ok &= (on - before >= 0) & (on + after < d2.shape[1])
    idx = np.clip(on[:, None] + np.arange(-before, after + 1), 0, d2.shape[1] - 1)
    spike = d2[record[:, None], idx].max(axis=1) > thr[record]
    for rec in range(len(x)):
        sel = ok & (record == rec)
        if sel.any():
            out[rec] = spike[sel].mean()
    return out
