"""Per-record evidence for a caption: demographics, measurements, findings, statements, retrieved passages.

Evidence is built from an allow-list of fields only (age, sex, measured values, finding ids, label
statements, passage texts): record and patient ids, dates and paths never enter it, so no prompt can carry
them. The identifiers are kept beside the evidence only so the privacy check can prove they are absent.
Every text that comes from data rather than from this package (statements, statement descriptions, finding
ids, passages of a user's corpus) passes `scrub.scrub`: identifiers and dates replaced, length capped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from ..dataset import unique_ids
from ..errors import InputError
from .scrub import FIELD_CHARS, cut, scrub

# Measurements shown first, in reading order of an ECG report: column -> (label, unit, decimals).
# Other numeric feature columns with a unit suffix follow, labelled from their names.
KNOWN_MEASUREMENTS = {
    "hr_mean_bpm": ("heart rate", "bpm", 0),
    "hr_min_bpm": ("lowest heart rate", "bpm", 0),
    "hr_max_bpm": ("highest heart rate", "bpm", 0),
    "rr_mean_ms": ("mean RR interval", "ms", 0),
    "rr_sdnn_ms": ("RR variability (SDNN)", "ms", 0),
    "pr_ms": ("PR interval", "ms", 0),
    "p_ms": ("P wave duration", "ms", 0),
    "qrs_ms": ("QRS duration", "ms", 0),
    "qt_ms": ("QT interval", "ms", 0),
    "qtc_bazett_ms": ("QTc (Bazett)", "ms", 0),
    "qtc_fridericia_ms": ("QTc (Fridericia)", "ms", 0),
    "p_axis_deg": ("P axis", "°", 0),
    "qrs_axis_deg": ("QRS axis", "°", 0),
    "t_axis_deg": ("T axis", "°", 0),
    "sokolow_lyon_mv": ("Sokolow-Lyon voltage (SV1 + RV5/6)", "mV", 2),
    "cornell_mv": ("Cornell voltage (RaVL + SV3)", "mV", 2),
    "rvh_sokolow_mv": ("right ventricular Sokolow-Lyon voltage (RV1 + SV5/6)", "mV", 2),
    "r_amp_V5_mv": ("R amplitude in V5", "mV", 2),
    "s_amp_V1_mv": ("S amplitude in V1", "mV", 2),
}
# Signal-quality columns (noise, baseline wander) describe the recording, not the heart: never in a prompt.
NOT_MEASUREMENTS = ("noise_", "wander_", "flat_", "saturated_")
UNITS = {"bpm": ("bpm", 0), "ms": ("ms", 0), "deg": ("°", 0), "mv": ("mV", 2), "uv": ("µV", 0),
         "s": ("s", 2), "pct": ("%", 0), "hz": ("Hz", 1)}
LEADS = {"i": "I", "ii": "II", "iii": "III", "avr": "aVR", "avl": "aVL", "avf": "aVF",
         **{f"v{n}": f"V{n}" for n in range(1, 7)}}
OLDEST_AGE = 90  # ages at or above this are shown as "90 or older" (PTB-XL codes them so; HIPAA safe harbour)


@dataclass
class RecordEvidence:
    record_id: str
    evidence: dict
    identifiers: list[str] = field(default_factory=list)
    passage_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EvidenceOptions:
    top_k: int = 3  # passages per record: enough to ground the main findings, short enough for ~1k-token prompts
    passage_chars: int = 600  # each passage is cut at a sentence end near this length (prompt size and cost)
    max_measurements: int = 18  # the report's intervals, axes and voltage indices; 150 per-lead values only add noise
    field_chars: int = FIELD_CHARS  # one statement, title or finding: a 2 MB header comment must not become the prompt
    max_statements: int = 20  # PTB-XL records carry <= 8, MIMIC <= 18 machine statements; more is a malformed header


def measurement_columns(columns: dict) -> list[tuple[str, str, str, int]]:
    """(column, label, unit, decimals) for every numeric column worth showing, known ones first."""
    numeric = [c for c, dtype in columns.items() if dtype.is_numeric() and c != "record_id"]
    chosen = [(c, *KNOWN_MEASUREMENTS[c]) for c in KNOWN_MEASUREMENTS if c in numeric]
    for name in numeric:
        if name in KNOWN_MEASUREMENTS or name.startswith(NOT_MEASUREMENTS):
            continue
        stem, _, suffix = name.rpartition("_")
        if stem and suffix.lower() in UNITS:
            unit, decimals = UNITS[suffix.lower()]
            label = " ".join(LEADS.get(t.lower(), t) for t in stem.split("_"))
            chosen.append((name, label, unit, decimals))
    return chosen


def format_value(value: float, unit: str, decimals: int) -> str:
    number = f"{value:+.0f}" if unit == "°" else f"{value:.{decimals}f}"
    return f"{number}°" if unit == "°" else f"{number} {unit}"


def _finding_titles() -> dict[str, str]:
    """Finding id -> title from the features engineer's FINDINGS table, when that module exists."""
    try:
        from ..features.findings import FINDINGS
    except ImportError:
        return {}
    return {fid: str(spec.get("title", fid)) for fid, spec in FINDINGS.items()}


LABEL_SYSTEMS = {"scp": "scp", "snomed": "snomed", "mimic-statement": "mimic"}  # label_system -> knowledge system
CODE = re.compile(r"[A-Za-z0-9_./+\-]{1,24}")  # a statement code (SCP RAO/RAE, SNOMED 164889003); else free text


class Knowledge:
    """The knowledge base's code -> passage links (empty when the knowledge module is not installed)."""

    def __init__(self):
        self._memo: dict[tuple[str, str], str | None] = {}
        try:
            from ..knowledge import load_passages, passage_for
        except ImportError:
            self._titles, self._lookup = {}, None
            return
        self._titles = {p["id"]: p["title"] for p in load_passages()}
        self._lookup = passage_for

    def passage(self, system: str, code: str) -> str | None:
        if self._lookup is None or system not in ("scp", "snomed", "finding", "mimic"):
            return None
        key = (system, code)
        if key not in self._memo:  # a dataset repeats a few hundred codes over and over
            self._memo[key] = self._lookup(system, code)
        return self._memo[key]

    def title(self, system: str, code: str) -> str | None:
        pid = self.passage(system, code)
        return self._titles.get(pid) if pid else None

    def linked(self, label_system: str, labels: list[str], findings: list[str]) -> set[str]:
        """Passage ids the knowledge base links to this record's own labels and findings."""
        system = LABEL_SYSTEMS.get(label_system)
        ids = {self.passage(system, code) for code in labels} if system else set()
        ids |= {self.passage("finding", f) for f in findings}
        return ids - {None}


def _statements(row: dict, scp: dict[str, str], knowledge, options: EvidenceOptions) -> list[dict]:
    system = row.get("label_system") or "text"
    try:
        likelihoods = json.loads(row.get("label_likelihoods") or "{}") or {}
    except (TypeError, ValueError):
        likelihoods = {}
    if not isinstance(likelihoods, dict):
        likelihoods = {}
    out = []
    for code in (row.get("labels") or [])[: options.max_statements]:
        coded = system in ("scp", "snomed") and CODE.fullmatch(code) is not None
        if coded and system == "scp":
            text = scp.get(code) or knowledge.title("scp", code) or code
        elif coded:
            text = knowledge.title("snomed", code) or f"SNOMED CT {code}"
        else:  # free text (MIMIC, LUDB, header comments) may quote a date, a name, an MRN, or run to megabytes
            text = code
        item = {"code": code if coded else None, "text": scrub(text, options.field_chars)}
        if isinstance(likelihoods.get(code), (int, float)) and likelihoods[code] > 0:
            item["likelihood"] = float(likelihoods[code])
        out.append(item)
    return out


def _age(value) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value < 0 or value > 150:
        return None
    return int(value)


def collect(dataset, features=None, retrieval=None, options: EvidenceOptions = EvidenceOptions()):
    """Evidence for every record of `dataset` (a Dataset), in dataset order, plus (record_id, reason) rejects.

    `features` and `retrieval` are opened artifacts (or None: that part of the evidence is left out).
    """
    records = dataset.records
    scp = {}
    if dataset.artifact.has("statements.parquet"):
        table = dataset.artifact.table("statements.parquet")
        if "description" in table.columns:
            scp = dict(zip(table["code"].to_list(), table["description"].to_list(), strict=True))
    knowledge = Knowledge()
    feats = _feature_rows(features, records, options)
    hits = _passages_by_record(retrieval, options)
    titles = _finding_titles()
    out, rejects = [], []
    used = ["record_id", "patient_id", "recording_date", "source_path", "age", "sex", "labels", "label_system",
            "label_likelihoods"]
    for row in records.select([c for c in used if c in records.columns]).iter_rows(named=True):
        rid = str(row["record_id"])
        evidence = {"age": _age(row.get("age")), "age_cap": OLDEST_AGE,
                    "sex": row.get("sex") if row.get("sex") in ("M", "F") else None,
                    "statements": _statements(row, scp, knowledge, options)}
        if feats is not None:
            frow = feats.get(rid)
            if frow is None:
                rejects.append((rid, "no row in the features artifact"))
                continue
            evidence.update(_feature_evidence(frow, feats.columns, titles, options))
        passages = hits.get(rid, []) if hits is not None else []
        linked = knowledge.linked(row.get("label_system") or "", row.get("labels") or [],
                                  [f["id"] for f in evidence.get("findings") or []])
        evidence["passages"] = [{**p, "linked": p["id"] in linked} for p in passages]
        identifiers = [str(row.get(k)) for k in ("record_id", "patient_id", "recording_date", "source_path")
                       if row.get(k) is not None]
        out.append(RecordEvidence(rid, evidence, identifiers, [p["id"] for p in passages]))
    return out, rejects


class _FeatureRows(dict):
    columns: list[tuple[str, str, str, int]]


def _feature_rows(features, records, options: EvidenceOptions) -> _FeatureRows | None:
    if features is None:
        return None
    table = features.table("features.parquet")
    if "record_id" not in table.columns:
        raise InputError(f"{features.path}: features.parquet has no record_id column")
    unique_ids(table, f"{features.path}/features.parquet")
    columns = measurement_columns(dict(table.schema))[: options.max_measurements]  # the same set for every record
    wanted = ["record_id", *(c for c in ("findings", "usable", "quality_reason") if c in table.columns),
              *(c[0] for c in columns)]
    rows = _FeatureRows((str(r["record_id"]), r) for r in table.select(wanted).iter_rows(named=True))
    rows.columns = columns
    ids = set(records["record_id"].cast(str).to_list())
    if ids and not ids & rows.keys():
        raise InputError(f"{features.path}: no record of the dataset is in this features artifact "
                         "(made from another dataset?)")
    return rows


def _feature_evidence(row: dict, columns, titles: dict[str, str], options: EvidenceOptions) -> dict:
    measurements = []
    for name, label, unit, decimals in columns:
        value = row.get(name)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        measurements.append({"name": name, "label": label, "value": float(value), "unit": unit,
                             "text": format_value(float(value), unit, decimals)})
        if len(measurements) >= options.max_measurements:
            break
    findings = [{"id": f, "title": titles.get(f) or scrub(f.replace("_", " "), options.field_chars)}
                for f in (row.get("findings") or [])[: options.max_statements]]
    usable, reason = row.get("usable"), row.get("quality_reason")
    return {"measurements": measurements, "findings": findings,
            "usable": True if usable is None else bool(usable),
            "quality_reason": scrub(reason, options.field_chars) if reason else reason}


def _passages_by_record(retrieval, options: EvidenceOptions) -> dict[str, list[dict]] | None:
    if retrieval is None:
        return None
    import polars as pl

    hits = retrieval.table("hits.parquet").sort(["record_id", "rank"])
    hits = hits.with_columns(pl.col("record_id").cast(pl.String))  # rank order; 0- or 1-based alike
    passages = {}
    for row in retrieval.table("passages.parquet").iter_rows(named=True):
        pid = row["passage_id"]  # a user's corpus is free text too: its titles and texts are scrubbed and capped
        passages[pid] = {"id": cut(pid, 64), "title": scrub(row.get("title") or pid, options.field_chars),
                         "text": scrub(row.get("text") or "", options.passage_chars)}
    out: dict[str, list[dict]] = {}
    for rid, pid in zip(hits["record_id"].to_list(), hits["passage_id"].to_list(), strict=True):
        chosen = out.setdefault(rid, [])
        if pid in passages and len(chosen) < options.top_k:
            chosen.append(passages[pid])
    return out

