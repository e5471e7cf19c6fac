"""One record -> a (12, L) int16 microvolt array in standard lead order, or a RecordError with the reason."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecordError
from ..signal.leads import STANDARD_LEADS, standard_lead
from ..signal.resample import resample
from .sources import RecordSpec, parse_comments
from .wfdb_reader import read_header, read_signal

FLAT_UV = 10.0  # a lead whose peak-to-peak is below 10 uV carries no ECG (disconnected or zeroed)
MAX_NAN_FRACTION = 0.05  # up to 5 % missing samples per lead are interpolated; more and the record is rejected
INT16_LIMIT = 32767  # storage is int16 microvolts: +-32.8 mV, beyond any physiological ECG


@dataclass(frozen=True)
class ReadOptions:
    fs: float
    seconds: float
    metadata_from_comments: bool


def load_record(spec: RecordSpec, opts: ReadOptions) -> tuple[np.ndarray, dict]:
    """(int16 uV array (12, fs*seconds), metadata) for one record; raises RecordError."""
    hdr = read_header(spec.header)
    meta = dict(spec.meta)
    if opts.metadata_from_comments:
        for key, value in parse_comments(hdr.comments).items():
            if meta.get(key) in (None, [], ""):
                meta[key] = value
    leads = [standard_lead(n) for n in hdr.names]
    unknown = [n for n, lead in zip(hdr.names, leads) if lead is None]
    if unknown:
        raise RecordError(f"unknown lead name(s) {unknown}")
    if len(set(leads)) != len(leads):
        raise RecordError(f"duplicate leads in header {hdr.names}")
    hdr, signal = read_signal(spec.header, hdr)
    uv = signal * 1000.0
    flags = list(meta.get("quality_flags") or [])
    for i, name in enumerate(hdr.names):
        bad = np.isnan(uv[i])
        if bad.all():
            raise RecordError(f"lead {name} is all NaN")
        if bad.any():
            fraction = bad.mean()
            if fraction > MAX_NAN_FRACTION:
                raise RecordError(f"lead {name} is {fraction:.0%} NaN")
            good = np.flatnonzero(~bad)
            uv[i, bad] = np.interp(np.flatnonzero(bad), good, uv[i, good])
            flags.append(f"nan_filled: {name} {fraction:.1%}")
        if np.ptp(uv[i]) < FLAT_UV:
            raise RecordError(f"lead {name} is flat (peak-to-peak below {FLAT_UV:g} uV)")
    uv = resample(uv, hdr.fs, opts.fs)
    length = int(round(opts.fs * opts.seconds))
    out = np.zeros((len(STANDARD_LEADS), length), np.float32)
    n = min(length, uv.shape[1])
    mask = [False] * len(STANDARD_LEADS)
    for i, lead in enumerate(leads):
        j = STANDARD_LEADS.index(lead)
        out[j, :n], mask[j] = uv[i, :n], True
    if n < length:
        flags.append(f"padded: {n / opts.fs:.2f} s of {opts.seconds:g} s")
    if np.abs(out).max() > INT16_LIMIT:
        flags.append("clipped: values beyond +-32.7 mV")
    meta.update({
        "source_fs": hdr.fs,
        "n_samples": hdr.n_samples,
        "source_seconds": hdr.n_samples / hdr.fs,
        "leads": hdr.names,
        "lead_mask": mask,
        "quality_flags": flags,
    })
    return np.clip(np.rint(out), -INT16_LIMIT, INT16_LIMIT).astype(np.int16), meta


def try_load(args) -> tuple[RecordSpec, np.ndarray | None, dict | str]:
    """Pool worker: (spec, array or None, metadata or reject reason). Never raises for a bad record."""
    spec, opts = args
    try:
        array, meta = load_record(spec, opts)
    except RecordError as exc:
        return spec, None, exc.reason
    except (OSError, ValueError) as exc:
        return spec, None, f"unreadable record ({type(exc).__name__}: {exc})"
    return spec, array, meta
