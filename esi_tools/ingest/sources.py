"""Per-collection listing of records: where each record's header is and the metadata that goes with it.

Each `list_<kind>` returns a Listing: the number of entries and a lazy iterator yielding a RecordSpec for every
record to read, or a (path, reason) reject for rows that cannot be used (a bad value, a missing file, a path
leaving the source). Lazy so that memory stays flat at MIMIC scale (800k records). A table that lacks a
column it needs is a command-level InputError naming the column.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, RecordError
from .paths import named_inside

MAX_SCP_TEXT = 10_000  # characters of a scp_codes cell: the real ones are < 200; bounds literal_eval's work


@dataclass
class RecordSpec:
    record_id: str
    header: Path
    meta: dict = field(default_factory=dict)


@dataclass
class Listing:
    total: int
    items: Iterator[RecordSpec | tuple[str, str]]


def _num(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None  # NaN, inf -> None


def _int(row: dict, column: str, *, low: int | None = None, high: int | None = None, required: bool = True):
    """An integer cell ('12' or '12.0') within [low, high]; None if empty and not required; else RecordError."""
    text = (row[column] or "").strip()
    if not text and not required:
        return None
    value = _num(text)
    if value is None or not value.is_integer() or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" in {low}-{high}" if high is not None else f" >= {low}" if low is not None else ""
        raise RecordError(f"bad {column} {text[:40]!r} (an integer{bounds} expected)")
    return int(value)


def _table(path: Path, what: str, columns: list[str]):
    """A CSV table as strings; InputError if missing, not a regular file, or lacking a needed column."""
    import polars as pl

    if not path.is_file():
        raise InputError(f"{path}: {what} not found (or not a regular file)")
    try:
        table = pl.read_csv(path, infer_schema=False, glob=False)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{path}: unreadable {what} ({str(exc).splitlines()[0][:200]})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{path}: lacks column(s) {', '.join(missing)}")
    return table


# ---------------------------------------------------------------- PTB-XL
PTBXL_QUALITY = ["baseline_drift", "static_noise", "burst_noise", "electrodes_problems", "extra_beats", "pacemaker"]


def split_of_fold(fold: int | None) -> str | None:
    """PTB-XL's recommended split: folds 1-8 train, 9 validation, 10 test (patient-disjoint)."""
    if fold is None:
        return None
    return "test" if fold == 10 else "val" if fold == 9 else "train"


def list_ptbxl(src: Path, records: str) -> Listing:
    column = "filename_lr" if records == "records100" else "filename_hr"
    table = _table(src / "ptbxl_database.csv", "ptbxl_database.csv",
                   ["ecg_id", "patient_id", "scp_codes", "strat_fold", column])
    return Listing(table.height, _ptbxl_items(table, src, records, column))


def _ptbxl_items(table, src: Path, records: str, column: str):
    for number, row in enumerate(table.iter_rows(named=True), start=2):  # line 1 is the CSV header
        try:
            yield _ptbxl_spec(row, src, records, column)
        except RecordError as exc:
            where = f"ptbxl_database.csv line {number}" + (f" (ecg_id {row['ecg_id'][:20]})" if row["ecg_id"] else "")
            yield where, exc.reason


def _scp_codes(text: str | None) -> dict[str, float]:
    """The scp_codes cell: a dict literal of statement -> likelihood; RecordError for anything else."""
    text = (text or "").strip() or "{}"
    if len(text) > MAX_SCP_TEXT:
        raise RecordError(f"bad scp_codes: {len(text):,} characters (at most {MAX_SCP_TEXT:,})")
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise RecordError(f"bad scp_codes {text[:80]!r} (not a dict literal)") from None
    if not isinstance(codes, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for k, v in codes.items()
    ):
        raise RecordError(f"bad scp_codes {text[:80]!r} (statement -> likelihood expected)")
    return {k: float(v) for k, v in codes.items()}


def _ptbxl_spec(row: dict, src: Path, records: str, column: str) -> RecordSpec:
    ecg_id = _int(row, "ecg_id", low=1)
    patient = _int(row, "patient_id", low=0, required=False)
    fold = _int(row, "strat_fold", low=1, high=10, required=False)
    codes = _scp_codes(row["scp_codes"])
    header = named_inside(src, src, f"{(row[column] or '').strip()}.hea", what=f"{column} of ecg_id {ecg_id}")
    if not header.exists():
        raise RecordError(f"missing record: {records} file for ecg_id {ecg_id} not found")
    age = _num(row.get("age"))
    quality = [f"{q}: {row[q].strip()}" for q in PTBXL_QUALITY if row.get(q) and row[q].strip()]
    extra = {k: row[k] for k in ("heart_axis", "infarction_stadium1", "infarction_stadium2", "validated_by_human",
                                 "second_opinion", "initial_autogenerated_report", "device", "site") if row.get(k)}
    return RecordSpec(str(ecg_id), header, {
        "patient_id": None if patient is None else str(patient),
        "age": 90.0 if age == 300 else age,  # PTB-XL codes ages over 89 as 300
        "sex": {"0": "M", "1": "F"}.get(row.get("sex")),
        "height_cm": _num(row.get("height")),
        "weight_kg": _num(row.get("weight")),
        "recording_date": row.get("recording_date"),
        "labels": list(codes),
        "label_system": "scp",
        "label_likelihoods": json.dumps(codes),
        "report": (row.get("report") or "").strip(),
        "fold": fold,
        "split": split_of_fold(fold),
        "quality_flags": quality,
        "extra": json.dumps(extra),
    })


# ---------------------------------------------------------------- MIMIC-IV-ECG
MIMIC_MEASUREMENTS = ["rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis"]


def list_mimic(src: Path) -> Listing:
    import polars as pl

    records = _table(src / "record_list.csv", "record_list.csv", ["subject_id", "study_id", "path"])
    measures = _table(src / "machine_measurements.csv", "machine_measurements.csv", ["study_id"])
    measures = measures.drop("subject_id", "ecg_time", strict=False).with_columns(_measured=pl.lit(True))
    joined = records.join(measures, on="study_id", how="left")
    return Listing(joined.height, _mimic_items(joined, src))


def _mimic_items(joined, src: Path):
    report_columns = [c for c in joined.columns if c.startswith("report_")]
    for m in joined.iter_rows(named=True):
        try:
            header = named_inside(src, src, f"{(m['path'] or '').strip()}.hea", what=f"path of study {m['study_id']}")
        except RecordError as exc:
            yield f"record_list.csv study {m['study_id']}", exc.reason
            continue
        if not m["_measured"]:
            yield str(header), f"missing metadata row: study {m['study_id']} not in machine_measurements.csv"
            continue
        statements = [m[c].strip() for c in report_columns if m.get(c) and m[c].strip()]
        extra = {k: _num(m.get(k)) for k in MIMIC_MEASUREMENTS}
        yield RecordSpec(m["study_id"], header, {
            "patient_id": m["subject_id"],
            "recording_date": m.get("ecg_time"),
            "labels": statements,
            "label_system": "mimic-statement",
            "report": "; ".join(statements),
            "extra": json.dumps({"machine_measurements": extra, "cart_id": m.get("cart_id")}),
        })


# ---------------------------------------------------------------- Challenge and generic WFDB
_COMMENT = re.compile(r"^<?(?P<key>[A-Za-z ]+)>?\s*:\s*(?P<value>.*)$")
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F"}


def parse_comments(comments: list[str]) -> dict:
    """Metadata from WFDB header comments (Challenge 2020/2021/2024 and LUDB styles).

    `Age`, `Sex`, `Height`, `Weight` become columns; `Dx` (SNOMED codes) and `Labels` (Challenge 2024) become
    labels, as do the lines under LUDB's `<diagnoses>:` heading. Everything else is kept verbatim in
    `comments` and never becomes a label (free text such as `69 M 1085 1629 x1` or a list of drugs).
    """
    meta: dict = {"labels": [], "label_system": None}
    free, diagnoses, in_diagnoses = [], [], False
    for line in comments:
        m = _COMMENT.match(line)
        key, value = (m["key"].strip().lower(), m["value"].strip()) if m else ("", line.strip())
        if key == "diagnoses":
            in_diagnoses = True
        elif in_diagnoses and line.strip():
            diagnoses.append(line.strip().rstrip(". "))
        elif key == "age":
            meta["age"] = _num(value)
        elif key in ("sex", "gender"):
            meta["sex"] = _SEX.get(value.lower())
        elif key == "height":
            meta["height_cm"] = _num(value)
        elif key == "weight":
            meta["weight_kg"] = _num(value)
        elif key == "dx":
            meta["labels"], meta["label_system"] = [c.strip() for c in value.split(",") if c.strip()], "snomed"
        elif key == "labels":
            meta["labels"], meta["label_system"] = [c.strip() for c in value.split(",") if c.strip()], "challenge-2024"
        elif key in ("rx", "hx", "sx") and value.lower() in ("unknown", ""):
            continue
        elif line.strip():
            free.append(line.strip())
    if diagnoses and not meta["labels"]:
        meta["labels"], meta["label_system"] = diagnoses, "text"
    meta["report"] = ". ".join(diagnoses)
    meta["comments"] = "\n".join(free) or None
    return meta


def list_headers(src: Path) -> Listing:
    """Every `.hea` under src (record id = path relative to src, without suffix); metadata from comments."""
    if not src.is_dir():
        raise InputError(f"{src}: not a directory")
    headers = sorted(src.rglob("*.hea"))
    if not headers:
        raise InputError(f"{src}: no WFDB headers (*.hea) found")
    specs = (RecordSpec(h.relative_to(src).with_suffix("").as_posix(), h, {"label_system": None}) for h in headers)
    return Listing(len(headers), specs)
