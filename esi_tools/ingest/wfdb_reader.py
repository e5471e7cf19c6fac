"""Read WFDB records (.hea + .dat/.mat) into millivolts, checking the header against the files before reading.

Every limit is checked before anything is allocated: the sampling rate, the number of signals, the gains and
units, the files' sizes against what the header promises. Reads are by sample range, so a long (or sparse,
9 GB) file costs only the samples asked for. Format 16 (PTB-XL, LUDB, MIMIC-IV-ECG, the Challenge's MATLAB
v4 `.mat` files: format 16 after a 24-byte header) is read directly with numpy, ~20x faster than
`wfdb.rdrecord`; other formats go through the wfdb package. Problems raise RecordError with a reason that
names the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RecordError
from .paths import named_inside, open_regular, read_text, regular_size

MIN_FS, MAX_FS = 25.0, 20_000.0  # Hz: below 25 Hz nothing of an ECG survives; above 20 kHz is not an ECG recorder
MAX_SIGNALS = 64  # channels per record: 12-lead plus extras; more is not an ECG header
MAX_HEADER_BYTES = 16 << 20  # a real header is a few KB; this bound only stops a huge file being read as one
GAIN_PER_MV = (0.1, 1e7)  # ADC units per mV: beyond these a record's values are noise or garbage (e.g. gain 1e-300)
CHECKSUM_BYTES = 64 << 20  # header checksums are verified by streaming files up to this size; beyond, flagged
WHOLE_BYTES = 8 << 20  # files up to this size are read once, whole, for checksums and all windows
_STREAM_FRAMES = 1 << 18  # frames per block when streaming a file for its checksums

_FMT = re.compile(r"^(?P<fmt>\d+)(x(?P<spf>\d+))?(:(?P<skew>\d+))?(\+(?P<offset>\d+))?$")
_GAIN = re.compile(r"^(?P<gain>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)?(\((?P<baseline>[-+]?\d+)\))?(/(?P<units>\S+))?$")
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nu": 1.0, "": 1.0}
_BYTES = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5, "310": 4 / 3, "311": 4 / 3}
_COMPRESSED = {"508", "516", "524"}  # FLAC: sizes cannot be checked in advance
_DATE = re.compile(r"^\d{1,2}/\d{1,2}/(?P<year>\d{4})$")


@dataclass
class Header:
    record: str
    n_sig: int
    fs: float
    n_samples: int | None
    files: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    baselines: list[int] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    init_values: list[int | None] = field(default_factory=list)
    checksums: list[int | None] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    base_year: int | None = None


def read_header(path: Path) -> Header:
    """Parse a WFDB header; RecordError (naming the file) for anything unreadable or out of bounds."""
    text = read_text(path, limit=MAX_HEADER_BYTES, what="header file")
    lines = [ln.strip() for ln in text.splitlines()]
    comments = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if not body:
        raise RecordError(f"empty header {path.name}")
    head = body[0].split()
    try:
        if "/" in head[0]:
            raise RecordError(f"multi-segment records are not supported ({path.name})")
        n_sig = int(head[1])
        fs = float(head[2].split("/")[0].split("(")[0]) if len(head) > 2 else 250.0
        n_samples = int(head[3]) if len(head) > 3 else None
    except (IndexError, ValueError):
        raise RecordError(f"unreadable record line in {path.name}: {body[0][:200]!r}") from None
    if not math.isfinite(fs) or not MIN_FS <= fs <= MAX_FS:
        raise RecordError(f"sampling rate {head[2]} Hz in {path.name} is outside {MIN_FS:g}-{MAX_FS:g} Hz")
    if not 0 < n_sig <= MAX_SIGNALS:
        raise RecordError(f"header {path.name} lists {n_sig} signals (1-{MAX_SIGNALS} expected)")
    if n_samples is not None and n_samples < 0:
        raise RecordError(f"negative sample count {n_samples} in {path.name}")
    if len(body) - 1 < n_sig:
        raise RecordError(f"header {path.name} announces {n_sig} signals but describes {len(body) - 1}")
    date = next((_DATE.match(tok) for tok in head[4:6] if _DATE.match(tok)), None)
    hdr = Header(record=head[0], n_sig=n_sig, fs=fs, n_samples=n_samples, comments=comments,
                 base_year=int(date["year"]) if date else None)
    for line in body[1 : 1 + n_sig]:
        _signal_line(hdr, line, path)
    return hdr


def _signal_line(hdr: Header, line: str, path: Path) -> None:
    parts = line.split()
    if len(parts) < 2:
        raise RecordError(f"unreadable signal line in {path.name}: {line[:200]!r}")
    fmt = _FMT.match(parts[1])
    if not fmt:
        raise RecordError(f"unreadable format {parts[1]!r} in {path.name}")
    gain, baseline, units = 200.0, None, "mV"
    if len(parts) > 2:
        m = _GAIN.match(parts[2])
        if not m:
            raise RecordError(f"unreadable gain field {parts[2][:100]!r} in {path.name}")
        gain = float(m["gain"]) if m["gain"] else 200.0
        baseline = int(m["baseline"]) if m["baseline"] else None
        units = m["units"] or "mV"
    name = " ".join(parts[8:]) if len(parts) > 8 else f"sig{len(hdr.names)}"
    scale = _UNIT_TO_MV.get(units.lower())
    if scale is None:
        raise RecordError(f"unknown signal units {units!r} for {name} in {path.name}")
    gain = gain if gain != 0 else 200.0  # WFDB: gain 0 means the default 200
    per_mv = abs(gain) / scale
    if not math.isfinite(per_mv) or not GAIN_PER_MV[0] <= per_mv <= GAIN_PER_MV[1]:
        raise RecordError(f"absurd gain {parts[2][:40]} for {name} in {path.name} "
                          f"({per_mv:.3g} ADC units per mV; {GAIN_PER_MV[0]:g}-{GAIN_PER_MV[1]:g} accepted)")
    hdr.files.append(parts[0])
    hdr.formats.append(parts[1])
    hdr.gains.append(gain)
    hdr.baselines.append(baseline if baseline is not None else (int(parts[4]) if len(parts) > 4 and _is_int(parts[4]) else 0))
    hdr.units.append(units)
    hdr.init_values.append(int(parts[5]) if len(parts) > 5 and _is_int(parts[5]) else None)
    hdr.checksums.append(int(parts[6]) if len(parts) > 6 and _is_int(parts[6]) else None)
    hdr.names.append(name)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


class Signal:
    """The signal files of one record, checked against its header (location, type, size) before any read."""

    def __init__(self, header_path: Path, hdr: Header, root: Path):
        self.header_path, self.hdr = header_path, hdr
        self.paths = {name: named_inside(root, header_path.parent, name, what="signal file") for name in set(hdr.files)}
        sizes = {name: regular_size(path, what="signal file") for name, path in self.paths.items()}
        for name in self.paths:
            formats = {hdr.formats[i] for i, f in enumerate(hdr.files) if f == name}
            if len({_FMT.match(f)["fmt"] for f in formats}) > 1:
                raise RecordError(f"mixed signal formats {sorted(formats)} in one file {name}")
        fmt = _FMT.match(hdr.formats[0])
        self.fast = (len(self.paths) == 1 and len(set(hdr.formats)) == 1 and fmt["fmt"] == "16"
                     and fmt["spf"] in (None, "1") and not fmt["skew"])
        self.offset = int(fmt["offset"] or 0) if self.fast else 0
        self.scale = np.asarray([_UNIT_TO_MV[u.lower()] / g for u, g in zip(hdr.units, hdr.gains)], np.float32)[:, None]
        self.baselines = np.asarray(hdr.baselines, np.float32)[:, None]
        for name, size in sizes.items():
            self._check_size(name, size)
        self._whole: np.ndarray | None = None  # a small format-16 file is read once, whole (checksums need it all)

    def _check_size(self, name: str, size: int) -> None:
        """The file must hold exactly what the header promises; a missing sample count is taken from the file."""
        hdr = self.hdr
        channels = [i for i, f in enumerate(hdr.files) if f == name]
        fmts = [_FMT.match(hdr.formats[i]) for i in channels]
        if fmts[0]["fmt"] in _COMPRESSED:
            if hdr.n_samples is None:
                raise RecordError(f"header {self.header_path.name} gives no sample count for compressed {name}")
            return
        offset = int(fmts[0]["offset"] or 0)
        frame = sum(_BYTES.get(m["fmt"], 0) * int(m["spf"] or 1) for m in fmts)
        if frame == 0:
            raise RecordError(f"unsupported signal format {hdr.formats[channels[0]]} in {name}")
        if hdr.n_samples is None:
            hdr.n_samples = int(max(size - offset, 0) // frame)
        needed = offset + int(np.ceil(frame * hdr.n_samples))
        if size < needed:
            raise RecordError(f"truncated signal file {name}: header promises {hdr.n_samples} samples x "
                              f"{len(channels)} signals ({needed} bytes), file holds {size} bytes")
        if size > needed + (0 if self.fast else 3):  # packed formats may end on a partial byte group
            raise RecordError(f"header disagrees with data: {name} holds {size} bytes, header implies {needed} "
                              f"({hdr.n_samples} samples; {size - needed} bytes too many)")

    def _digital(self, start: int, stop: int) -> np.ndarray:
        """Format 16 only: the raw int16 samples (n_sig, stop - start)."""
        if self._whole is not None:
            return self._whole[:, start:stop]
        path, n_sig = self.paths[self.hdr.files[0]], self.hdr.n_sig
        with open_regular(path, what="signal file") as fh:
            fh.seek(self.offset + 2 * n_sig * start)
            data = np.fromfile(fh, dtype="<i2", count=n_sig * (stop - start))
        if data.size != n_sig * (stop - start):
            raise RecordError(f"truncated signal file {path.name} (changed while reading)")
        return data.reshape(-1, n_sig).T

    def read(self, start: int, stop: int) -> np.ndarray:
        """float32 mV (n_sig, stop - start) for samples [start, stop); invalid samples are NaN."""
        if not self.fast:
            return self._read_with_wfdb(start, stop)
        digital = self._digital(start, stop)
        signal = (digital.astype(np.float32) - self.baselines) * self.scale
        signal[digital == -32768] = np.nan
        return signal

    def _read_with_wfdb(self, start: int, stop: int) -> np.ndarray:
        import wfdb

        try:
            record = wfdb.rdrecord(str(self.header_path.with_suffix("")), sampfrom=start, sampto=stop, physical=True)
        except Exception as exc:  # wfdb raises many types for broken files; each is one record's problem
            raise RecordError(f"unreadable signal of {self.header_path.name} ({type(exc).__name__}: {exc})") from None
        signal = np.asarray(record.p_signal, np.float32).T
        if signal.shape != (self.hdr.n_sig, stop - start):
            raise RecordError(f"header disagrees with data: {self.header_path.name} read as {signal.shape[1]} samples "
                              f"x {signal.shape[0]} signals, header says {stop - start} x {self.hdr.n_sig}")
        return signal * np.asarray([_UNIT_TO_MV[u.lower()] for u in self.hdr.units], np.float32)[:, None]

    def verify(self) -> list[str]:
        """Check the header's initial values and checksums against the data; quality flags for what was not checked."""
        hdr = self.hdr
        if not self.fast or hdr.n_samples == 0:
            return []
        path = self.paths[hdr.files[0]]
        if 2 * hdr.n_sig * hdr.n_samples <= WHOLE_BYTES:
            self._whole = self._digital(0, hdr.n_samples)
        first = self._digital(0, 1)[:, 0]
        for i, init in enumerate(hdr.init_values):
            if init is not None and int(first[i]) != init:
                raise RecordError(f"header disagrees with data: lead {hdr.names[i]} first sample in {path.name} is "
                                  f"{int(first[i])}, header says {init}")
        if all(c is None for c in hdr.checksums):
            return []
        if 2 * hdr.n_sig * hdr.n_samples > CHECKSUM_BYTES:
            return [f"checksums not verified: {path.name} is larger than {CHECKSUM_BYTES >> 20} MiB"]
        if self._whole is not None:
            totals = self._whole.sum(axis=1, dtype=np.int64)
        else:
            totals = self._stream_totals(path)
        for i, checksum in enumerate(hdr.checksums):
            if checksum is not None and (int(totals[i]) & 0xFFFF) != (checksum & 0xFFFF):
                raise RecordError(f"header disagrees with data: checksum mismatch on lead {hdr.names[i]} in {path.name}")
        return []

    def _stream_totals(self, path: Path) -> np.ndarray:
        hdr = self.hdr
        totals = np.zeros(hdr.n_sig, np.int64)
        with open_regular(path, what="signal file") as fh:
            fh.seek(self.offset)
            for begin in range(0, hdr.n_samples, _STREAM_FRAMES):
                count = min(_STREAM_FRAMES, hdr.n_samples - begin)
                block = np.fromfile(fh, dtype="<i2", count=hdr.n_sig * count)
                if block.size != hdr.n_sig * count:
                    raise RecordError(f"truncated signal file {path.name} (changed while reading)")
                totals += block.reshape(-1, hdr.n_sig).sum(axis=0, dtype=np.int64)
        return totals


def read_signal(header_path: Path, root: Path | None = None) -> tuple[Header, np.ndarray]:
    """(header, float32 mV of shape (n_sig, n_samples)) of a whole record, checked; for tests and small tools."""
    hdr = read_header(header_path)
    signal = Signal(header_path, hdr, root or header_path.parent.resolve())
    signal.verify()
    return hdr, signal.read(0, hdr.n_samples)
