"""`esi retrieve`: a dataset (+ optional features) and an index -> the top-k passages per record.

Writes a `retrieval` artifact: hits.parquet (record_id, rank, passage_id, score, query_part; rank 1 = best,
score = BM25 score of the passage for the query part that retrieved it), queries.parquet (record_id, query),
passages.parquet (every passage that appears in hits, with its text, so captioning needs no index) and
rejects.parquet (record_id, reason: records that yield no query or no hit).

Cost grows with distinct queries, not records: each distinct query part (a statement, a finding) is tokenised
and scored once, each distinct query is fused once from its parts (fuse.py), and records are joined back to
their query's hits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactWriter, open_artifact
from ..console import log, warn
from ..dataset import unique_ids
from ..errors import ArtifactError, InputError
from .fuse import round_robin
from .index import load_index

KIND = "retrieval"


@dataclass(frozen=True)
class RetrieveConfig:
    top_k: int = 5  # a record has 1-4 labels in PTB-XL; 5 leaves room for one related passage per label


def _findings(features_path: Path, records):
    """features.parquet's findings aligned to the dataset's records by record_id (missing -> none)."""
    import polars as pl

    features = open_artifact(features_path, "features")
    table = unique_ids(features.table("features.parquet"), f"{features_path}/features.parquet")
    if "findings" not in table.columns or "record_id" not in table.columns:
        raise ArtifactError(f"{features_path}: features.parquet lacks record_id/findings columns")
    table = table.select(pl.col("record_id").cast(pl.String), pl.col("findings").cast(pl.List(pl.String)))
    joined = records.join(table, on="record_id", how="left", maintain_order="left")
    known = set(table["record_id"].to_list())
    missing = sum(1 for r in records["record_id"].to_list() if r not in known)
    if missing == records.height:
        raise InputError(f"{features_path}: no record_id in common with the dataset (features of another dataset?)")
    if missing:
        warn(f"{missing} of {records.height} records have no row in the features artifact: queried without findings")
    return features, joined


def retrieve(config: RetrieveConfig, dataset_path: Path, index_path: Path, out: Path, *,
             features_path: Path | None = None, force: bool = False) -> Path:
    import polars as pl

    from ..dataset import Dataset
    from .query import QueryBuilder, record_queries, statement_descriptions

    if config.top_k < 1:
        raise InputError(f"--top-k must be at least 1 (got {config.top_k})")
    dataset = Dataset.open(dataset_path)
    index = load_index(index_path)
    records = dataset.records.select(
        pl.col("record_id").cast(pl.String), "label_system", pl.col("labels").cast(pl.List(pl.String)), "report"
    )
    inputs = {"dataset": dataset.artifact, "index": index.artifact}
    if features_path is not None:
        inputs["features"], records = _findings(features_path, records)
    else:
        records = records.with_columns(pl.lit(None, dtype=pl.List(pl.String)).alias("findings"))

    queries = record_queries(records, QueryBuilder(statement_descriptions(dataset)))
    unique = queries.filter(pl.col("query") != "").unique("query", keep="first", maintain_order=True)
    unique = unique.select("query", "parts").with_row_index("qid")
    part_texts = list(dict.fromkeys(p for ps in unique["parts"].to_list() for p in ps))
    part_row = {p: i for i, p in enumerate(part_texts)}
    log(f"{records.height} records -> {unique.height} distinct queries, {len(part_texts)} distinct parts")
    positions, scores = index.search_texts(part_texts, config.top_k)

    columns: dict[str, list] = {"qid": [], "rank": [], "passage": [], "score": [], "part": []}
    for qid, parts in unique.select("qid", "parts").iter_rows():
        for rank, (passage, score, part) in enumerate(round_robin([part_row[p] for p in parts], positions, scores,
                                                                  config.top_k), start=1):
            columns["qid"].append(qid)
            columns["rank"].append(rank)
            columns["passage"].append(passage)
            columns["score"].append(score)
            columns["part"].append(part)
    ids = np.asarray(index.ids, dtype=object)
    texts = np.asarray(part_texts, dtype=object)
    per_query = pl.DataFrame({
        "qid": pl.Series(columns["qid"], dtype=pl.UInt32),
        "rank": pl.Series(columns["rank"], dtype=pl.Int32),
        "passage_id": pl.Series(ids[columns["passage"]].tolist(), dtype=pl.String),
        "score": pl.Series(columns["score"], dtype=pl.Float64),
        "query_part": pl.Series(texts[columns["part"]].tolist(), dtype=pl.String),
    })
    record_qid = queries.join(unique.select("query", "qid"), on="query", how="left", maintain_order="left")
    hits = (
        record_qid.select("record_id", "qid").filter(pl.col("qid").is_not_null())
        .join(per_query, on="qid", how="inner", maintain_order="left_right")
        .select("record_id", "rank", "passage_id", "score", "query_part")
    )

    matched = set(per_query["qid"].unique().to_list())
    rejects = _rejects(record_qid, matched)
    unknown = Counter(c for codes in queries["unknown"].to_list() for c in set(codes or ()))
    if unknown:
        top = ", ".join(f"{c} ({n})" for c, n in unknown.most_common(5))
        warn(f"{len(unknown)} codes have no passage or description and were left out of queries: {top}")
    hit_ids = set(hits["passage_id"].unique().to_list())
    passages = index.passages.filter(pl.col("passage_id").is_in(hit_ids))

    parameters = {**asdict(config), "features": features_path is not None}
    with ArtifactWriter(out, KIND, parameters=parameters, inputs=inputs, force=force) as writer:
        writer.write_table("hits.parquet", hits)
        writer.write_table("queries.parquet", queries.filter(pl.col("query") != "").select("record_id", "query"))
        writer.write_table("passages.parquet", passages)
        writer.write_table("rejects.parquet", rejects)
        writer.summary.update({
            "records": records.height,
            "unique_queries": unique.height,
            "unique_query_parts": len(part_texts),
            "records_with_hits": records.height - rejects.height,
            "hits": hits.height,
            "rejects": rejects.height,
            "unknown_codes": dict(unknown.most_common()),
        })
        path = writer.commit()
    log(f"{hits.height} hits for {records.height - rejects.height} records; {rejects.height} rejected")
    return path


def _rejects(record_qid, matched: set[int]):
    """Records with no query (nothing to say, or only untranslatable codes) or whose query matched nothing."""
    import polars as pl

    no_query = pl.col("query").fill_null("") == ""
    reason = (
        pl.when(no_query & (pl.col("unknown").list.len() > 0))
        .then(pl.lit("no query: unknown statements ") + pl.col("unknown").list.join(", "))
        .when(no_query)
        .then(pl.lit("no query: no labels, English report text or findings"))
        .otherwise(pl.lit("no passage shares a word with the query '") + pl.col("query") + pl.lit("'"))
    )
    bad = no_query | ~pl.col("qid").is_in(list(matched))
    return record_qid.filter(bad).select(pl.col("record_id"), reason.alias("reason"))
