"""One retrieval query per record, from its labels, its English report text and its feature findings.

Codes are translated to words through the knowledge base: an SCP or SNOMED code becomes the title of the
passage that explains it (PTB-XL codes the base lacks fall back to scp_statements.csv's description, which
PTB-XL datasets carry as statements.parquet). German PTB-XL report text is not used: the statement codes say
the same thing in a form we can read. MIMIC statements, LUDB/WFDB free text and Challenge comments are English
and are used as written. Feature findings add the titles of their passages.

Records that share labels, report and findings share one query, and the query is built once per distinct
combination, so the cost grows with distinct label sets rather than with records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..knowledge import passage_for, passages_by_id

SEPARATOR = "; "  # between the parts of one query; tokenisation ignores it, a reader sees the parts
_SENTENCE = re.compile(r"(?:[;\n]|\.(?=\s|$))+\s*")  # ". " ends a sentence, "0.1 mV" does not
_UNIT_SEP = "\x1f"  # joins list items into a dedup key: a control character no label contains
_FIELD_SEP = "\x1e"


@dataclass
class QueryBuilder:
    """Translates one record's labels/report/findings into query text, noting codes it cannot translate."""

    statements: dict[str, str] = field(default_factory=dict)  # PTB-XL scp code -> description (fallback)

    def __post_init__(self):
        self.titles = {pid: p["title"] for pid, p in passages_by_id().items()}
        self._finding_titles = _finding_titles()

    def _code(self, system: str, code: str) -> str | None:
        pid = passage_for(system, code)
        if pid is not None:
            return self.titles[pid]
        if system == "scp":
            return self.statements.get(code.strip().upper())
        return None

    def parts(self, label_system: str | None, labels: list[str], report: str | None,
              findings: list[str]) -> tuple[list[str], list[str]]:
        """(query parts in order without repeats, untranslatable codes as `system:code`)."""
        parts: list[str] = []
        unknown: list[str] = []
        seen: set[str] = set()

        def add(text: str | None) -> None:
            text = (text or "").strip()
            if text and text.lower() not in seen:
                seen.add(text.lower())
                parts.append(text)

        for label in labels:
            if label_system in ("scp", "snomed"):
                text = self._code(label_system, label)
                if text is None:
                    unknown.append(f"{label_system}:{label}")
                add(text)
            else:  # English statements or free text, used as written
                add(label)
                if label_system == "mimic-statement":
                    pid = passage_for("mimic", label)
                    add(self.titles[pid] if pid else None)
        if report and label_system != "scp":  # PTB-XL reports are mostly German: never used
            for sentence in _SENTENCE.split(report):
                add(sentence)
        for finding in findings:
            title = self._code("finding", finding) or self._finding_titles.get(finding)
            if title is None:
                unknown.append(f"finding:{finding}")
            add(title)
        return parts, unknown


def _finding_titles() -> dict[str, str]:
    """Finding id -> title from `esi features`' catalogue, when that module is installed (fallback only)."""
    try:
        from ..features.findings import FINDINGS
    except ImportError:
        return {}
    return {k: v.get("title", k.replace("_", " ")) for k, v in FINDINGS.items() if isinstance(v, dict)}


def statement_descriptions(dataset) -> dict[str, str]:
    """PTB-XL statements.parquet (code -> description) of a dataset artifact, or {} when it has none."""
    if not dataset.artifact.has("statements.parquet"):
        return {}
    table = dataset.artifact.table("statements.parquet")
    if "code" not in table.columns or "description" not in table.columns:
        return {}
    return {str(c).strip().upper(): str(d) for c, d in zip(table["code"], table["description"], strict=True) if c and d}


def record_queries(frame, builder: QueryBuilder):
    """records (record_id, label_system, labels, report, findings) -> (record_id, parts, query, unknown).

    Distinct (label system, sorted labels, report, findings) combinations are found with polars and each is
    translated once; `unknown` lists the codes that could not be translated for that record.
    """
    import polars as pl

    keyed = frame.with_columns(
        pl.col("labels").fill_null([]).list.unique().list.sort(),
        pl.col("findings").fill_null([]).list.unique().list.sort(),
        pl.when(pl.col("label_system") == "scp").then(None).otherwise(pl.col("report")).alias("report"),
    ).with_columns(
        pl.concat_str(
            [
                pl.col("label_system").fill_null(""),
                pl.col("labels").list.join(_UNIT_SEP),
                pl.col("report").fill_null(""),
                pl.col("findings").list.join(_UNIT_SEP),
            ],
            separator=_FIELD_SEP,
        ).alias("_key")
    )
    combos = keyed.unique("_key", keep="first", maintain_order=True)
    parts, queries, unknowns = [], [], []
    for system, labels, report, findings in combos.select("label_system", "labels", "report", "findings").iter_rows():
        these, unknown = builder.parts(system, labels, report, findings)
        parts.append(these)
        queries.append(SEPARATOR.join(these))
        unknowns.append(unknown)
    translated = pl.DataFrame(
        {"_key": combos["_key"], "parts": parts, "query": queries, "unknown": unknowns},
        schema={"_key": pl.String, "parts": pl.List(pl.String), "query": pl.String, "unknown": pl.List(pl.String)},
    )
    return keyed.select("record_id", "_key").join(translated, on="_key", how="left", maintain_order="left").drop("_key")
