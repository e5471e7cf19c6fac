"""One recording -> one or more stored records: (12, L) int16 microvolt arrays in standard lead order.

Without windowing a recording gives one record, its first `seconds` (cut or zero-padded, and the columns
`cut`, `padded`, `coverage` say so). With a stride, every window of `seconds` starting at 0, stride,
2*stride, ... is a record of its own (`parent_record_id`, `start_s`); the samples after the last full window
make a last, padded record, or a reject naming its length when they are under half a window. Only the samples a window needs (plus a
resampling margin) are read. Problems with the recording raise RecordError (one reject); problems of one
window (a NaN or flat lead) reject that window only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import RecordError
from ..signal.leads import STANDARD_LEADS, assign_leads
from ..signal.resample import margin, ratio, resample
from ..signal.storage import INT16_LIMIT, fill_missing
from .paths import inside
from .sources import RecordSpec, parse_comments
from .wfdb_reader import Header, Signal, read_header

FLAT_UV = 10.0  # a lead whose peak-to-peak is below 10 uV carries no ECG (disconnected or zeroed)
MAX_NAN_FRACTION = 0.05  # up to 5 % missing samples per lead become the lead mean; more and the record is rejected
MAX_READ_VALUES = 1 << 25  # samples x signals read at once (128 MiB as float32): bounds a worker's memory
MIN_PARTIAL = 0.5  # a recording's last partial window becomes a padded record when it holds half a window, else a reject
MAX_WINDOWS = 100_000  # windows per recording: 11.5 days at a 10 s stride; more is not one ECG recording
MIMIC_PATH = re.compile(r"/p\d{4}/p\d{8}/s\d{8}/\d{8}\.hea$")  # MIMIC-IV-ECG: files/pNNNN/pNNNNNNNN/sNNNNNNNN/<study>
SHIFTED_YEAR = 2100  # MIMIC shifts dates into 2100-2200: a header dated after this is de-identified clinical data


@dataclass(frozen=True)
class ReadOptions:
    fs: float
    seconds: float  # length of every stored record
    root: Path  # the resolved source root: nothing outside it is read
    stride: float | None = None  # None: the recording's first `seconds` only; else a window every `stride` s
    metadata_from_comments: bool = False
    lead_map: tuple[tuple[str, str], ...] = ()
    credentialed: str | None = None  # why the whole source is credentialed (MIMIC-IV-ECG layout), if it is

    @property
    def length(self) -> int:
        return int(round(self.fs * self.seconds))


@dataclass
class Task:
    """Windows [first, first + count) of one recording (count None: all of them)."""

    spec: RecordSpec
    opts: ReadOptions
    first: int = 0
    count: int | None = None
    checked: list[str] | None = None  # the header-vs-data check's flags when the planner already ran it


@dataclass
class Loaded:
    """One stored record (array and metadata) or one reject (array None, reason)."""

    record_id: str
    header: Path
    array: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    reason: str | None = None


def window_count(hdr: Header, opts: ReadOptions) -> int:
    """How many windows a recording gives: 1 without windowing, else every full window (at least one) and,
    when samples are left after the last full one, one last partial window (see `partial_window`)."""
    if opts.stride is None:
        return 1
    duration = hdr.n_samples / hdr.fs
    count = 1 + max(0, math.floor((duration - opts.seconds) / opts.stride + 1e-9))
    if duration - ((count - 1) * opts.stride + opts.seconds) >= 1 / opts.fs:  # a tail no full window covers
        count += 1
    if count > MAX_WINDOWS:
        raise RecordError(f"recording of {duration:,.0f} s in {hdr.record} gives {count:,} windows "
                          f"(at most {MAX_WINDOWS:,} per recording)")
    return count


def partial_window(k: int, hdr: Header, opts: ReadOptions) -> str | None:
    """Why window `k` is not stored: a last partial window under MIN_PARTIAL of `--window` is a reject (with its
    length), a longer one a padded record (flag `padded`); nothing of a recording disappears silently."""
    if opts.stride is None or k == 0:
        return None
    start = k * opts.stride
    real = hdr.n_samples / hdr.fs - start
    if real >= MIN_PARTIAL * opts.seconds:
        return None
    return (f"last partial window at {start:g} s: {real:.2f} s of {opts.seconds:g} s, under {MIN_PARTIAL:.0%} of "
            f"a window (not stored; --stride smaller than --window covers it)")


def credentialed_evidence(spec: RecordSpec, hdr: Header, opts: ReadOptions) -> str | None:
    """Why this record is credentialed data (MIMIC-IV-ECG layout, its path pattern, a date-shifted header)."""
    if opts.credentialed:
        return opts.credentialed
    if MIMIC_PATH.search(spec.header.as_posix()):
        return "MIMIC-IV-ECG path layout (files/pNNNN/pNNNNNNNN/sNNNNNNNN)"
    if hdr.base_year is not None and hdr.base_year >= SHIFTED_YEAR:
        return f"date-shifted header (year {hdr.base_year}), as in MIMIC de-identified data"
    return None


def load_task(task: Task) -> list[Loaded]:
    """Pool worker: the stored records and rejects of one task. Never raises for a bad record."""
    try:
        return _load(task)
    except RecordError as exc:
        reason = exc.reason
    except Exception as exc:  # noqa: BLE001 - any failure is this record's, named, and the run goes on
        reason = f"unreadable record {task.spec.header.name} ({type(exc).__name__}: {str(exc)[:300]})"
    return [Loaded(task.spec.record_id, task.spec.header, reason=reason)]


def _load(task: Task) -> list[Loaded]:
    spec, opts = task.spec, task.opts
    inside(opts.root, spec.header, what="header file")
    hdr = read_header(spec.header)
    signal = Signal(spec.header, hdr, opts.root)
    if hdr.n_samples == 0:
        raise RecordError(f"empty record: {hdr.files[0]} holds no samples")
    leads = assign_leads(hdr.names, dict(opts.lead_map))
    if all(slot is None for slot in leads.slots):
        raise RecordError(f"no known lead names among {hdr.names} (see the lead alias table, or --lead-map NAME=LEAD)")
    total = window_count(hdr, opts)
    first, stop = task.first, total if task.count is None else min(total, task.first + task.count)
    starts = [round(k * (opts.stride or 0) * opts.fs) for k in range(first, stop)]  # window starts, output samples
    up, down = ratio(hdr.fs, opts.fs)
    m = margin(hdr.fs, opts.fs)
    begin = max(0, (math.floor(starts[0] * down / up) - m) // down * down)  # a multiple of down: on an output sample
    end = min(hdr.n_samples, math.ceil((starts[-1] + opts.length) * down / up) + m)
    if hdr.n_sig * (end - begin) > MAX_READ_VALUES:
        raise RecordError(f"{hdr.n_sig} signals x {end - begin:,} samples to read at once from {hdr.files[0]} "
                          f"(limit {MAX_READ_VALUES:,} values; use shorter --seconds or --window)")
    flags = signal.verify() if task.checked is None else task.checked
    meta = _record_meta(spec, hdr, opts, leads, flags)
    uv = signal.read(begin, end) * 1000.0
    missing = ~np.isfinite(uv)
    same_rate = (up, down) == (1, 1)
    # gaps -> lead mean (the release's rule): over each stored window at the same rate, as the release fills a
    # record; before resampling, over the piece read, when the rate changes
    resampled = None if same_rate else resample(fill_missing(uv.copy(), missing), hdr.fs, opts.fs)
    offset0 = begin * up // down
    out = []
    for k, start in zip(range(first, stop), starts):
        record_id = spec.record_id if opts.stride is None else f"{spec.record_id}_w{k:04d}"
        core = slice(math.ceil(start * down / up) - begin, min(end, math.ceil((start + opts.length) * down / up)) - begin)
        window = fill_missing(uv[:, core].copy(), missing[:, core])
        try:
            short = partial_window(k, hdr, opts)
            if short:
                raise RecordError(short)
            window_flags = _check_leads(window, missing[:, core], hdr.names, leads.slots)
        except RecordError as exc:
            reason = exc.reason if opts.stride is None or short else f"window at {start / opts.fs:g} s: {exc.reason}"
            out.append(Loaded(record_id, spec.header, reason=reason))
            continue
        piece, at = (window, 0) if same_rate else (resampled, start - offset0)
        array, real, place_flags = _place(piece, at, opts, leads.slots)
        source_end = hdr.n_samples * up / down
        out.append(Loaded(record_id, spec.header, array, {
            **meta,
            "parent_record_id": spec.record_id,
            "start_s": start / opts.fs,
            "coverage": real / opts.length,
            "padded": real < opts.length,
            "cut": start > 0 or source_end > start + opts.length + 0.5,
            "quality_flags": meta["quality_flags"] + window_flags + place_flags,
        }))
    return out


def _record_meta(spec: RecordSpec, hdr: Header, opts: ReadOptions, leads, flags: list[str]) -> dict:
    meta = dict(spec.meta)
    comments = parse_comments(hdr.comments)
    if opts.metadata_from_comments:
        for key, value in comments.items():
            if meta.get(key) in (None, [], ""):
                meta[key] = value
    meta["comments"] = meta.get("comments") or comments["comments"]
    evidence = credentialed_evidence(spec, hdr, opts)
    mask = [False] * len(STANDARD_LEADS)
    for slot in leads.slots:
        if slot is not None:
            mask[slot] = True
    meta.update({
        "source_fs": hdr.fs,
        "n_samples": hdr.n_samples,
        "source_seconds": hdr.n_samples / hdr.fs,
        "leads": hdr.names,
        "lead_mask": mask,
        "unknown_leads": leads.unknown,
        "quality_flags": list(meta.get("quality_flags") or []) + leads.flags + flags,
        "credentialed": evidence is not None,
        "credentialed_evidence": evidence,
    })
    return meta


def _check_leads(uv: np.ndarray, missing: np.ndarray, names: list[str], slots: list[int | None]) -> list[str]:
    """Quality of the stored leads over one window: RecordError for an all-NaN, mostly-NaN or flat lead."""
    stored = [i for i, slot in enumerate(slots) if slot is not None]
    if uv.shape[1] == 0:
        return []
    fractions = missing[stored].mean(axis=1)
    ptp = uv[stored].max(axis=1) - uv[stored].min(axis=1)
    flags = []
    for i, fraction, span in zip(stored, fractions, ptp):
        if fraction == 1:
            raise RecordError(f"lead {names[i]} is all NaN")
        if fraction > MAX_NAN_FRACTION:
            raise RecordError(f"lead {names[i]} is {fraction:.0%} NaN")
        if fraction:
            flags.append(f"nan_filled: {names[i]} {fraction:.1%}")
        if span < FLAT_UV:
            raise RecordError(f"lead {names[i]} is flat (peak-to-peak below {FLAT_UV:g} uV)")
    return flags


def _place(resampled: np.ndarray, offset: int, opts: ReadOptions, slots: list[int | None]):
    """(the (12, L) int16 record starting at `offset` of the resampled piece, real samples in it, quality flags)."""
    length = opts.length
    real = max(0, min(length, resampled.shape[1] - offset))
    out = np.zeros((len(STANDARD_LEADS), length), np.float32)
    for i, slot in enumerate(slots):
        if slot is not None:
            out[slot, :real] = resampled[i, offset : offset + real]
    flags = [f"padded: {real / opts.fs:.2f} s of {opts.seconds:g} s"] if real < length else []
    if np.abs(out).max(initial=0) > INT16_LIMIT:
        flags.append("clipped: values beyond +-32.7 mV")
    return np.clip(np.rint(out), -INT16_LIMIT, INT16_LIMIT).astype(np.int16), real, flags
