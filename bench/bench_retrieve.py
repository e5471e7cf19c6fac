"""Benchmark of `esi retrieve`: gold-set recall, raw index speed (ours vs rank-bm25's scorer), end-to-end rate.

    .venv/bin/python bench/bench_retrieve.py [--data ../shared/data/ptbxl] [--records 100000]

1. Recall@1/@3 of the builtin index on tests/retrieval_gold.jsonl, overall and per query kind, for BM25
   alone and with exact-name pinning (what `esi retrieve` uses).
2. Queries/s of the raw index: our batched sparse scorer vs rank-bm25's `get_scores` loop (the reference
   implementation the index is built with; both give the same scores, see tests/test_retrieve.py).
   Tokenisation is timed on its own, then scoring from given tokens, like for like with rank-bm25.
3. Label coverage on the real PTB-XL subset: the share of (record, statement) pairs whose own passage is
   among the record's top-k hits.
4. End-to-end records/s of `esi retrieve` (a subprocess, interpreter start included, and the library call
   alone) on the real PTB-XL subset replicated to --records records. The replica copies records.parquet
   with fresh record ids; its waveforms.npy is (N, 12, 1) zeros because retrieval never reads signals
   (a full-size copy would be 2.4 GB of disk for nothing).
Prints Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def gold_recall(index, exact: bool) -> list[tuple[str, int, float, float]]:
    gold = [json.loads(line) for line in (ROOT / "tests" / "retrieval_gold.jsonl").read_text().splitlines() if line.strip()]
    positions, _ = index.search_texts([g["query"] for g in gold], 3, exact=exact)
    ids = np.asarray(index.ids + [None], dtype=object)
    found = ids[positions]  # -1 -> None
    rows = []
    for kind in ["all", *sorted({g["kind"] for g in gold})]:
        sel = [i for i, g in enumerate(gold) if kind == "all" or g["kind"] == kind]
        at1 = np.mean([found[i, 0] == gold[i]["passage_id"] for i in sel])
        at3 = np.mean([gold[i]["passage_id"] in found[i, :3] for i in sel])
        rows.append((kind, len(sel), float(at1), float(at3)))
    return rows


def raw_speed(index, queries: list[str]) -> list[tuple[str, int, float]]:
    from esi_tools.retrieve.tokenise import tokenise

    start = time.perf_counter()
    tokens = [tokenise(q) for q in queries]
    tok = time.perf_counter() - start
    start = time.perf_counter()
    index.search_tokens(tokens, 5)
    ours = time.perf_counter() - start
    n_ref = min(len(tokens), 500)  # the reference loop is slow; a sample gives its rate
    start = time.perf_counter()
    for t in tokens[:n_ref]:
        np.argsort(index.bm25.get_scores(t))[::-1][:5]
        if index.bm25_names is not None:  # the names field, as in our scores
            index.bm25_names.get_scores(t)
    ref = time.perf_counter() - start
    return [("tokenise (domain tokeniser)", len(queries), len(queries) / tok),
            ("esi sparse batch: score + top-5 (tokens given)", len(queries), len(queries) / ours),
            ("rank-bm25 get_scores, body + names, + argsort (tokens given)", n_ref, n_ref / ref)]


def label_coverage(dataset: Path, index_path: Path, tmp: Path, k: int) -> tuple[float, float]:
    import polars as pl

    from esi_tools.knowledge import passage_for
    from esi_tools.retrieve.run import RetrieveConfig, retrieve

    out = retrieve(RetrieveConfig(top_k=k), dataset, index_path, tmp / f"coverage{k}")
    hits = pl.read_parquet(out / "hits.parquet").group_by("record_id").agg("passage_id")
    own = dict(hits.iter_rows())
    records = pl.read_parquet(dataset / "records.parquet").select("record_id", "labels")
    pairs = [[passage_for("scp", c) in own.get(r, []) for c in labels if passage_for("scp", c)]
             for r, labels in records.iter_rows()]
    return float(np.mean([x for p in pairs for x in p])), float(np.mean([all(p) for p in pairs]))


def replicate(dataset: Path, n: int, out: Path) -> Path:
    import polars as pl

    from esi_tools.artifacts import ArtifactWriter, open_artifact

    source = open_artifact(dataset, "dataset")
    records = source.table("records.parquet")
    reps = -(-n // records.height)
    big = pl.concat([records.with_columns(pl.col("record_id") + f"-r{r}") for r in range(reps)]).head(n)
    with ArtifactWriter(out, "dataset", parameters=source.parameters, force=True) as writer:
        writer.write_table("records.parquet", big)
        writer.write_array("waveforms.npy", np.zeros((big.height, 12, 1), dtype=np.int16))
        writer.write_table("rejects.parquet", source.table("rejects.parquet").head(0))
        if source.has("statements.parquet"):
            writer.write_table("statements.parquet", source.table("statements.parquet"))
        writer.summary.update({**source.summary, "records": big.height, "rejects": 0})
        return writer.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ptbxl")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs; the median is reported")
    args = parser.parse_args()

    import polars as pl

    from esi_tools.console import set_quiet
    from esi_tools.ingest.run import IngestConfig, ingest
    from esi_tools.retrieve.index import IndexConfig, build_index, load_index
    from esi_tools.retrieve.run import RetrieveConfig, retrieve

    set_quiet(True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_retrieve_"))
    start = time.perf_counter()
    index_path = build_index(IndexConfig(), ["builtin"], tmp / "index")
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    index = load_index(index_path)
    load_s = time.perf_counter() - start
    print(f"## esi retrieve benchmark\n\nbuiltin index: {len(index)} passages, {index.weights.shape[0]} terms; "
          f"build {build_s:.2f} s, load (rebuild BM25 from tokens) {load_s:.3f} s\n")

    print("| gold queries | n | BM25 recall@1 | BM25 recall@3 | + exact names recall@1 | + exact names recall@3 |")
    print("|---|---|---|---|---|---|")
    for (kind, n, b1, b3), (_, _, e1, e3) in zip(gold_recall(index, False), gold_recall(index, True), strict=True):
        print(f"| {kind} | {n} | {b1:.3f} | {b3:.3f} | {e1:.3f} | {e3:.3f} |")

    dataset = ingest(IngestConfig(kind="ptbxl", fs=100, workers=2), args.data, tmp / "ptbxl")
    small = retrieve(RetrieveConfig(), dataset, index_path, tmp / "ret_small")
    queries = pl.read_parquet(small / "queries.parquet")["query"].unique().to_list()
    pool = (queries * (-(-5000 // len(queries))))[:5000]  # 5,000 real record queries, scored without dedup
    print("\n| raw index | queries | queries/s |\n|---|---|---|")
    for name, n, rate in raw_speed(index, pool):
        print(f"| {name} | {n} | {rate:,.0f} |")

    print("\n| PTB-XL label coverage (1,987 records) | top-k | statement passages in top-k | records fully covered |")
    print("|---|---|---|---|")
    for k in (3, 5, 10):
        pairs, full = label_coverage(dataset, index_path, tmp, k)
        print(f"| round robin over query parts, own passage pinned | {k} | {pairs:.3f} | {full:.3f} |")

    big = replicate(dataset, args.records, tmp / f"ptbxl_x{args.records}")
    times_cli, times_lib = [], []
    for r in range(args.repeats):
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "esi"), "-q", "retrieve", str(big), "--index", str(index_path),
                        "--out", str(tmp / f"cli{r}")], check=True, stdout=subprocess.DEVNULL)
        times_cli.append(time.perf_counter() - start)
        start = time.perf_counter()
        out = retrieve(RetrieveConfig(), big, index_path, tmp / f"lib{r}")
        times_lib.append(time.perf_counter() - start)
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    print(f"\n| end to end, PTB-XL subset x{args.records / 1987:.1f} ({summary['records']:,} records, "
          f"{summary['unique_queries']} distinct queries, top-5) | median s | records/s |\n|---|---|---|")
    for name, times in [("`esi retrieve` subprocess (Python start and imports included)", times_cli),
                        ("`retrieve()` library call", times_lib)]:
        t = float(np.median(times))
        print(f"| {name} | {t:.2f} | {summary['records'] / t:,.0f} |")


if __name__ == "__main__":
    main()
