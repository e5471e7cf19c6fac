"""`esi audit`: captions (+ their dataset and features) -> audit artifact: every claim of every caption with
its verdict, per-caption counts, and per-model rates (contradictions, hallucinated diagnoses, omissions,
number errors).

The dataset and features are the ones the captions were made from (read from the captions' manifest)
unless given. Several captions artifacts of one dataset are audited side by side; `--common` keeps only the
records every one of them captioned, so the rates compare like with like.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import ArtifactWriter, open_artifact
from ..console import log, progress
from ..dataset import Dataset
from ..errors import InputError, UsageError
from .claims import extract
from .truth import BACKGROUND, CONTRADICTED, NOT_CHECKABLE, SUPPORTED, Truth, omissions, truth_of, verdict


@dataclass(frozen=True)
class AuditConfig:
    common: bool = False  # only records captioned (status ok) by every captions artifact
    limit: int | None = None


@dataclass
class CaptionAudit:
    """The verdicts on one caption."""

    claims: list[dict]
    counts: dict
    omitted: list[str]

    @property
    def faithful(self) -> bool:
        return self.counts[CONTRADICTED] == 0

    def contradicted(self) -> list[str]:
        return [f"{c['text']} ({c['reason']})" for c in self.claims if c["verdict"] == CONTRADICTED]


def audit_caption(text: str, truth: Truth) -> CaptionAudit:
    rows, counts = [], {SUPPORTED: 0, CONTRADICTED: 0, NOT_CHECKABLE: 0, BACKGROUND: 0, "hallucinated": 0,
                        "numbers": 0, "number_errors": 0}
    claims = extract(text)
    for claim in claims:
        result, reason, hallucinated = verdict(claim, truth)
        counts[result] += 1
        counts["hallucinated"] += hallucinated
        if claim.kind == "number" and not claim.background:
            counts["numbers"] += 1
            counts["number_errors"] += result == CONTRADICTED
        rows.append({"kind": claim.kind, "concept": claim.concept, "text": claim.text, "value": claim.value,
                     "negated": claim.negated, "verdict": result, "reason": reason, "hallucinated": hallucinated})
    return CaptionAudit(rows, counts, omissions([c for c in claims if not c.background], truth))


def truths(dataset: Dataset, features) -> dict[str, Truth]:
    """record_id -> Truth, from the same evidence a caption prompt is built from."""
    from ..caption.evidence import collect

    evidence, _ = collect(dataset, features, None)
    classes = scp_classes(dataset)
    return {item.record_id: truth_of(item.evidence, classes) for item in evidence}


def scp_classes(dataset: Dataset) -> dict[str, str]:
    """PTB-XL statement code -> diagnostic class (MI, STTC, ...), from the dataset's statements table."""
    if not dataset.artifact.has("statements.parquet"):
        return {}
    table = dataset.artifact.table("statements.parquet")
    if "diagnostic_class" not in table.columns:
        return {}
    return {c: k for c, k in zip(table["code"].to_list(), table["diagnostic_class"].to_list(), strict=True) if k}


def audit(config: AuditConfig, captions_paths: list[Path], out: Path, *, dataset_path: Path | None = None,
          features_path: Path | None = None, names: list[str] | None = None, force: bool = False) -> Path:
    import polars as pl

    started = time.perf_counter()
    arts = [open_artifact(p, "captions") for p in captions_paths]
    dataset_path = dataset_path or arts[0].input_path("dataset")
    features_path = features_path or arts[0].input_path("features")
    if features_path is None:
        raise UsageError("the captions were made without --features: give --features so numbers can be checked")
    dataset, features = Dataset.open(dataset_path), open_artifact(features_path, "features")
    for art in arts:
        made_from = art.input_path("dataset")
        if made_from is not None and made_from.resolve() != Path(dataset_path).resolve():
            log(f"note: {art.path} was captioned from {made_from}; auditing against {dataset_path}")
    names = names or _names(arts)
    if len(names) != len(arts):
        raise UsageError(f"{len(names)} --name for {len(arts)} captions artifacts")
    known = truths(dataset, features)
    tables = []
    for art, name in zip(arts, names, strict=True):
        t = art.table("captions.parquet", columns=["record_id", "caption", "status"])
        tables.append(t.filter(pl.col("status") == "ok").with_columns(pl.lit(name).alias("captions")))
    if config.common:
        shared = set.intersection(*(set(t["record_id"].to_list()) for t in tables))
        tables = [t.filter(pl.col("record_id").is_in(sorted(shared))) for t in tables]
    claim_rows, caption_rows = [], []
    tables = [t.head(config.limit) if config.limit is not None else t for t in tables]
    with progress("audit", sum(t.height for t in tables), unit="captions") as bar:
        for row in (row for table in tables for row in table.iter_rows(named=True)):
            bar.advance()
            truth = known.get(str(row["record_id"]))
            if truth is None:
                raise InputError(f"record {row['record_id']} of the captions is not in {dataset_path} / {features_path}")
            result = audit_caption(row["caption"] or "", truth)
            key = {"captions": row["captions"], "record_id": str(row["record_id"])}
            claim_rows.extend({**key, "n": i, **c} for i, c in enumerate(result.claims))
            caption_rows.append({**key, "caption": row["caption"], "claims": len(result.claims), **result.counts,
                                 "omissions": result.omitted, "faithful": result.faithful})
    if not caption_rows:
        raise InputError("no caption with status ok to audit")
    schema = {"captions": pl.String, "record_id": pl.String, "n": pl.Int64, "kind": pl.String, "concept": pl.String,
              "text": pl.String, "value": pl.Float64, "negated": pl.Boolean, "verdict": pl.String,
              "reason": pl.String, "hallucinated": pl.Boolean}
    claims = pl.DataFrame(claim_rows, schema=schema, orient="row")
    per_caption = pl.DataFrame(caption_rows).rename({NOT_CHECKABLE: "not_checkable"})
    rates = {name: summarise(per_caption.filter(pl.col("captions") == name), known) for name in names}
    inputs = {"dataset": dataset.artifact, "features": features,
              **{f"captions_{i}" if i else "captions": a for i, a in enumerate(arts)}}
    with ArtifactWriter(out, "audit", parameters={"common": config.common, "limit": config.limit, "names": names},
                        inputs=inputs, force=force) as writer:
        writer.write_table("claims.parquet", claims)
        writer.write_table("captions.parquet", per_caption)
        writer.path("audit.md").write_text(markdown(rates), encoding="utf-8")
        writer.summary.update({"captions": per_caption.height, "claims": claims.height, "by_captions": rates,
                               "wall_s": round(time.perf_counter() - started, 2)})
        path = writer.commit()
    for name, r in rates.items():
        log(f"{name}: {r['captions']} captions, {r['contradicted_claims_pct']}% of checkable claims contradicted, "
            f"{r['captions_contradicted_pct']}% of captions with a contradiction, "
            f"{r['hallucinated_pct']}% with a hallucinated diagnosis, {r['omission_pct']}% of key findings omitted")
    return path


def _names(arts) -> list[str]:
    names = []
    for art in arts:
        base = art.parameters.get("model") or art.path.name
        names.append(base if base not in names else f"{base} ({art.path.name})")
    return names


def _pct(part: float, whole: float) -> float | None:
    return round(100 * part / whole, 2) if whole else None


def summarise(table, known: dict[str, Truth]) -> dict:
    """The per-model rates: shares of claims and of captions."""
    from .lexicon import KEY_FINDINGS

    total = {k: int(table[k].sum()) for k in ("supported", "contradicted", "not_checkable", "background",
                                              "hallucinated", "numbers", "number_errors")}
    checkable = total["supported"] + total["contradicted"]
    held = sum(len(omissions([], known[r])) for r in table["record_id"].to_list())  # no claims: all held omitted
    omitted = int(table["omissions"].list.len().sum())
    return {"captions": table.height, "claims": int(table["claims"].sum()), **total,
            "claims_per_caption": round(int(table["claims"].sum()) / table.height, 2) if table.height else None,
            "contradicted_claims_pct": _pct(total["contradicted"], checkable),
            "not_checkable_pct": _pct(total["not_checkable"], checkable + total["not_checkable"]),
            "captions_contradicted_pct": _pct(int((table["contradicted"] > 0).sum()), table.height),
            "captions_without_claims_pct": _pct(int((table["claims"] == 0).sum()), table.height),
            "hallucinated_pct": _pct(int((table["hallucinated"] > 0).sum()), table.height),
            "number_error_pct": _pct(total["number_errors"], total["numbers"]),
            "key_findings_held": held, "omitted": omitted, "omission_pct": _pct(omitted, held),
            "key_findings": list(KEY_FINDINGS)}


def _shown(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def markdown(rates: dict[str, dict]) -> str:
    head = ["captions of", "captions", "claims / caption", "captions without a claim", "claims contradicted",
            "captions with a contradiction", "captions with a hallucinated diagnosis", "number errors",
            "key findings omitted", "not checkable"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rates.items():
        lines.append(f"| {name} | {r['captions']} | {r['claims_per_caption']} | {_shown(r['captions_without_claims_pct'])} "
                     f"| {_shown(r['contradicted_claims_pct'])} "
                     f"| {_shown(r['captions_contradicted_pct'])} | {_shown(r['hallucinated_pct'])} "
                     f"| {r['number_errors']} of {r['numbers']} ({_shown(r['number_error_pct'])}) "
                     f"| {r['omitted']} of {r['key_findings_held']} ({_shown(r['omission_pct'])}) | {_shown(r['not_checkable_pct'])} |")
    return "\n".join(lines) + "\n"
