"""Read one WFDB record (.hea + .dat/.mat) into millivolts, checking the header against the data.

Format 16 (PTB-XL, LUDB, MIMIC-IV-ECG, the Challenge's MATLAB v4 `.mat` files, which are format 16 after a
24-byte header) is read directly with numpy, ~20x faster than `wfdb.rdrecord`; every other format falls
back to the wfdb package. Problems raise RecordError with a reason for the rejects table.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RecordError

_FMT = re.compile(r"^(?P<fmt>\d+)(x(?P<spf>\d+))?(:(?P<skew>\d+))?(\+(?P<offset>\d+))?$")
_GAIN = re.compile(r"^(?P<gain>[-+0-9.eE]+)?(\((?P<baseline>[-+0-9]+)\))?(/(?P<units>\S+))?$")
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nu": 1.0, "": 1.0}


@dataclass
class Header:
    record: str
    n_sig: int
    fs: float
    n_samples: int
    files: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    baselines: list[int] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    init_values: list[int | None] = field(default_factory=list)
    checksums: list[int | None] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def read_header(path: Path) -> Header:
    """Parse a WFDB header; RecordError for anything unreadable or inconsistent."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise RecordError(f"missing header file {path.name}") from None
    except OSError as exc:
        raise RecordError(f"unreadable header: {exc}") from None
    lines = [ln.strip() for ln in text.splitlines()]
    comments = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if not body:
        raise RecordError("empty header")
    head = body[0].split()
    try:
        if "/" in head[0]:
            raise RecordError("multi-segment records are not supported")
        n_sig = int(head[1])
        fs = float(head[2].split("/")[0].split("(")[0]) if len(head) > 2 else 250.0
        n_samples = int(head[3]) if len(head) > 3 else -1
    except (IndexError, ValueError):
        raise RecordError(f"unreadable header record line: {body[0]!r}") from None
    if not np.isfinite(fs) or fs <= 0:
        raise RecordError(f"non-positive sampling rate ({head[2]}) in header")
    if n_sig <= 0:
        raise RecordError("header lists no signals")
    if len(body) - 1 < n_sig:
        raise RecordError(f"header announces {n_sig} signals but describes {len(body) - 1}")
    hdr = Header(record=head[0], n_sig=n_sig, fs=fs, n_samples=n_samples, comments=comments)
    for line in body[1 : 1 + n_sig]:
        parts = line.split()
        if len(parts) < 2:
            raise RecordError(f"unreadable signal line: {line!r}")
        hdr.files.append(parts[0])
        hdr.formats.append(parts[1])
        gain, baseline, units = 200.0, None, "mV"
        if len(parts) > 2:
            m = _GAIN.match(parts[2])
            if not m:
                raise RecordError(f"unreadable gain field {parts[2]!r}")
            gain = float(m["gain"]) if m["gain"] else 200.0
            baseline = int(m["baseline"]) if m["baseline"] else None
            units = m["units"] or "mV"
        adc_zero = int(parts[4]) if len(parts) > 4 and _is_int(parts[4]) else 0
        hdr.gains.append(gain if gain != 0 else 200.0)
        hdr.baselines.append(baseline if baseline is not None else adc_zero)
        hdr.units.append(units)
        hdr.init_values.append(int(parts[5]) if len(parts) > 5 and _is_int(parts[5]) else None)
        hdr.checksums.append(int(parts[6]) if len(parts) > 6 and _is_int(parts[6]) else None)
        hdr.names.append(" ".join(parts[8:]) if len(parts) > 8 else f"sig{len(hdr.names)}")
    return hdr


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_signal(header_path: Path, hdr: Header | None = None) -> tuple[Header, np.ndarray]:
    """(header, float32 signal in mV of shape (n_sig, n_samples)); invalid samples are NaN."""
    hdr = hdr or read_header(header_path)
    fmt = _FMT.match(hdr.formats[0])
    single_file = len(set(hdr.files)) == 1 and len(set(hdr.formats)) == 1
    if fmt and fmt["fmt"] == "16" and (fmt["spf"] in (None, "1")) and not fmt["skew"] and single_file:
        digital = _read_format16(header_path.parent / hdr.files[0], hdr, int(fmt["offset"] or 0))
        invalid = digital == -32768
        baselines = np.asarray(hdr.baselines, np.float32)[:, None]
        signal = (digital.astype(np.float32) - baselines) / np.asarray(hdr.gains, np.float32)[:, None]
        signal[invalid] = np.nan
    else:
        signal = _read_with_wfdb(header_path, hdr)
    scale = np.asarray([_UNIT_TO_MV.get(u.lower(), np.nan) for u in hdr.units], np.float32)
    if np.isnan(scale).any():
        raise RecordError(f"unknown signal units {sorted(set(hdr.units))}")
    signal *= scale[:, None]
    return hdr, signal


def _read_format16(path: Path, hdr: Header, offset: int) -> np.ndarray:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise RecordError(f"missing signal file {path.name}") from None
    frame = 2 * hdr.n_sig
    available = (size - offset) // frame
    if hdr.n_samples < 0:
        hdr.n_samples = available
    needed = offset + frame * hdr.n_samples
    if size < needed:
        raise RecordError(
            f"truncated signal file {path.name}: header promises {hdr.n_samples} samples x {hdr.n_sig} "
            f"signals ({needed} bytes), file holds {size} bytes"
        )
    if (size - offset) % frame == 0 and available != hdr.n_samples:
        raise RecordError(
            f"header disagrees with data: header says {hdr.n_samples} samples, {path.name} holds {available}"
        )
    data = np.fromfile(path, dtype="<i2", count=hdr.n_sig * hdr.n_samples, offset=offset)
    digital = data.reshape(hdr.n_samples, hdr.n_sig).T.astype(np.int32)
    _check_header_values(hdr, digital)
    return digital


def _check_header_values(hdr: Header, digital: np.ndarray) -> None:
    """The header's initial value and 16-bit checksum must match the samples (catches mismatched files)."""
    for i in range(hdr.n_sig):
        init = hdr.init_values[i]
        if init is not None and digital.shape[1] and int(digital[i, 0]) != init:
            raise RecordError(
                f"header disagrees with data: lead {hdr.names[i]} first sample is {int(digital[i, 0])}, "
                f"header says {init}"
            )
        checksum = hdr.checksums[i]
        if checksum is not None:
            total = int(digital[i].sum()) & 0xFFFF
            if total != checksum & 0xFFFF:
                raise RecordError(f"header disagrees with data: checksum mismatch on lead {hdr.names[i]}")


def _read_with_wfdb(header_path: Path, hdr: Header) -> np.ndarray:
    """Any other WFDB format through the wfdb package: physical values in the header's units."""
    import wfdb

    for name in set(hdr.files):
        if not (header_path.parent / name).exists():
            raise RecordError(f"missing signal file {name}")
    try:
        record = wfdb.rdrecord(str(header_path.with_suffix("")), physical=True)
    except Exception as exc:  # wfdb raises many types for broken files; each is one record's problem
        raise RecordError(f"unreadable signal ({type(exc).__name__}: {exc})") from None
    signal = record.p_signal.T.astype(np.float32)  # physical units of the header, NaN where invalid
    if hdr.n_samples >= 0 and signal.shape[1] != hdr.n_samples:
        raise RecordError(f"header disagrees with data: header says {hdr.n_samples} samples, read {signal.shape[1]}")
    return signal
