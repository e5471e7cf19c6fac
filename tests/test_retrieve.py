"""esi retrieve: tokeniser, index artifact, per-record queries and the CLI, on the real knowledge base and data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import run_esi


@pytest.fixture(scope="session")
def builtin_index(tmp_path_factory) -> Path:
    """The shipped knowledge base indexed once per session."""
    from esi_tools.retrieve.index import IndexConfig, build_index

    return build_index(IndexConfig(), ["builtin"], tmp_path_factory.mktemp("retrieve") / "index")


@pytest.fixture(scope="session")
def ptbxl_retrieval(ptbxl_dataset, builtin_index, tmp_path_factory) -> Path:
    from esi_tools.retrieve.run import RetrieveConfig, retrieve

    return retrieve(RetrieveConfig(top_k=5), ptbxl_dataset, builtin_index, tmp_path_factory.mktemp("ret") / "ptbxl")


# ---------------------------------------------------------------- tokeniser
def test_tokenise_expands_abbreviations_both_ways():
    from esi_tools.retrieve.tokenise import tokenise

    short, long = tokenise("LBBB"), tokenise("left bundle branch block")
    assert set(short) == set(long) == {"lbbb", "left", "bundle", "branch", "block"}
    assert "lvh" in tokenise("Left ventricular hypertrophy") and "hypertrophi" in tokenise("LVH")
    # the longest phrase wins: the incomplete form does not also count as the complete one
    assert "lbbb" not in tokenise("incomplete left bundle branch block") and "ilbbb" in tokenise("incomplete left bundle branch block")


def test_tokenise_adds_canonical_wording_of_variants():
    from esi_tools.retrieve.tokenise import tokenise

    assert {"fascicular", "block"} <= set(tokenise("left anterior hemiblock"))
    assert {"premature", "complex"} <= set(tokenise("ventricular extrasystoles"))
    assert set(tokenise("T wave inversion")) <= set(tokenise("inverted T waves"))
    assert "avb" in tokenise("complete heart block")


def test_tokenise_keeps_numbers_leads_and_folds_variants():
    from esi_tools.retrieve.tokenise import tokenise

    tokens = tokenise("Ischaemic ST depression >= 0.1 mV in V5, aVL; QRS 120 ms")
    assert {"0.1", "120", "v5", "avl", "qrs", "st", "ms"} <= set(tokens)
    assert tokenise("ischaemic") == tokenise("ischemia")  # spelling and adjective/noun meet
    assert tokenise("T waves") == tokenise("T wave")
    assert tokenise("1st degree A-V block")[:4] == ["first", "degree", "av", "block"]
    assert tokenise("the of with and") == []


# ---------------------------------------------------------------- index
def test_index_artifact_holds_every_passage_and_rebuilds_without_pickle(builtin_index):
    from esi_tools.artifacts import open_artifact
    from esi_tools.knowledge import load_passages
    from esi_tools.retrieve.index import load_index

    artifact = open_artifact(builtin_index, "retrieval-index")
    artifact.verify()
    assert sorted(artifact.manifest["files"]) == ["corpus.parquet", "passages.parquet"]
    passages = artifact.table("passages.parquet")
    assert passages["passage_id"].to_list() == [p["id"] for p in load_passages()]
    assert artifact.summary["passages"] == passages.height
    assert passages["source"].unique().to_list() == ["builtin"]
    index = load_index(builtin_index)
    assert len(index) == passages.height and index.weights.shape == (artifact.summary["vocabulary"], len(index))


def test_sparse_scores_equal_rank_bm25(builtin_index):
    """The batched sparse scorer is an optimisation of rank-bm25's get_scores, not a different ranking."""
    from esi_tools.retrieve.index import load_index
    from esi_tools.retrieve.tokenise import tokenise

    index = load_index(builtin_index)
    texts = ["LBBB", "sinus rhythm with 1st degree A-V block", "ST elevation in V1-V3 above 0.2 mV",
             "Atrial fibrillation; Left ventricular hypertrophy; T wave inversion", "zzzz unknown words"]
    fast = (index.query_matrix([tokenise(t) for t in texts]) @ index.weights).toarray()
    for row, text in zip(fast, texts, strict=True):
        np.testing.assert_allclose(row, index.bm25_scores(text), rtol=1e-9, atol=1e-12)
    positions, scores = index.search_tokens([tokenise(t) for t in texts], 3)
    assert positions[-1].tolist() == [-1, -1, -1] and scores[-1].tolist() == [0, 0, 0]
    assert np.all(np.diff(scores[:-1], axis=1) <= 0)


def test_user_markdown_is_chunked_with_source_and_position(tmp_path):
    from esi_tools.retrieve.index import load_index

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "ward.md").write_text(
        "# Ward protocol\n\nPage the on-call electrophysiologist for any QTc above 500 ms after a QT-prolonging drug.\n\n"
        "## Escalation\n\nUnanswered pages go to the cardiology registrar after 15 minutes.\n",
        encoding="utf-8",
    )
    (notes / "ignored.bin").write_bytes(b"\x00\x01")
    result = run_esi("retrieve", "index", "builtin", str(notes), "--out", str(tmp_path / "idx"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    mine = index.passages.filter(pl.col("source") != "builtin")
    assert mine["title"].to_list() == ["Ward protocol", "Escalation"]
    assert mine["position"].to_list() == ["line 3", "line 7"]
    assert mine["source"].to_list() == [str(notes / "ward.md")] * 2
    assert mine["passage_id"].to_list() == ["notes_ward_md-1", "notes_ward_md-2"]
    assert index.search("page the electrophysiologist on call", 1)[0][0] == "notes_ward_md-1"
    assert index.search("registrar escalation", 1)[0][0] == "notes_ward_md-2"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "latin1.md").write_bytes("Ventrikul\u00e4re Extrasystole".encode("latin-1")), "not UTF-8 text"),
        (lambda d: (d / "blank.md").write_text("\n  \n", encoding="utf-8"), "empty corpus"),
        (lambda d: (d / "stop.txt").write_text("the of and, with.", encoding="utf-8"), "empty corpus"),
        (lambda d: (d / "sub").mkdir(), "no text files"),
    ],
    ids=["non-utf8", "blank-file", "only-stopwords", "empty-dir"],
)
def test_bad_corpus_gives_one_clear_line(tmp_path, make, message):
    make(tmp_path)
    target = tmp_path / "sub" if message == "no text files" else next(p for p in tmp_path.iterdir())
    result = run_esi("retrieve", "index", str(target), "--out", str(tmp_path / "idx"))
    assert result.exit_code != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == "" and not (tmp_path / "idx").exists()


def test_missing_corpus_path(tmp_path):
    result = run_esi("retrieve", "index", str(tmp_path / "nope.md"), "--out", str(tmp_path / "idx"))
    assert result.exit_code == 2 and "no such file or directory" in result.stderr


def test_search_prints_ndjson_and_refuses_empty_queries(builtin_index):
    from esi_tools.knowledge import passage_for

    result = run_esi("retrieve", "search", "LBBB", "--index", str(builtin_index), "-k", "3")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3 and lines[0]["passage_id"] == passage_for("scp", "CLBBB")
    for text, message in [("   ", "empty query"), ("the of", "no searchable word")]:
        bad = run_esi("retrieve", "search", text, "--index", str(builtin_index))
        assert bad.exit_code == 2 and message in bad.stderr and bad.stdout == ""


def test_index_of_wrong_kind_or_other_tokeniser_is_refused(builtin_index, ptbxl_dataset, tmp_path):
    import shutil

    wrong = run_esi("retrieve", "search", "LBBB", "--index", str(ptbxl_dataset))
    assert wrong.exit_code == 3 and "expected 'retrieval-index'" in wrong.stderr
    old = tmp_path / "old"
    shutil.copytree(builtin_index, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["parameters"]["tokeniser_version"] = 99
    (old / "manifest.json").write_text(json.dumps(manifest))
    result = run_esi("retrieve", "search", "LBBB", "--index", str(old))
    assert result.exit_code == 3 and "rebuild it" in result.stderr


def test_exact_names_are_pinned_and_short_names_are_not(builtin_index):
    from esi_tools.knowledge import passage_for
    from esi_tools.retrieve.index import load_index

    index = load_index(builtin_index)
    norm = passage_for("scp", "NORM")
    # pure BM25 prefers the longer "otherwise normal ECG" passage for "Normal ECG"; the name pins its own passage
    assert index.search("Normal ECG", 3, exact=False)[0][0] != norm
    pinned = index.search("normal ecg!", 3)
    assert pinned[0][0] == norm and pinned[0][1] > 0 and len({p for p, _ in pinned}) == 3
    assert "st" not in index.exact and "pr" not in index.exact  # too short to override BM25


def test_round_robin_gives_every_part_a_slot_before_any_gets_two():
    from esi_tools.retrieve.fuse import round_robin

    positions = np.array([[0, 1, 2], [3, 0, 4], [-1, -1, -1]])
    scores = np.array([[9.0, 8.0, 7.0], [2.0, 1.5, 1.0], [0.0, 0.0, 0.0]])
    assert round_robin([0, 1, 2], positions, scores, 3) == [(0, 9.0, 0), (3, 2.0, 1), (1, 8.0, 0)]
    assert round_robin([1, 0], positions, scores, 10) == [(0, 9.0, 0), (3, 2.0, 1), (1, 8.0, 0), (2, 7.0, 0), (4, 1.0, 1)]
    assert round_robin([2], positions, scores, 3) == []


# ---------------------------------------------------------------- queries
def test_queries_translate_codes_and_never_use_german_reports():
    from esi_tools.knowledge import passage_for, passages_by_id
    from esi_tools.retrieve.query import QueryBuilder

    builder = QueryBuilder({"XYZ": "an old statement the base lacks"})
    lbbb = passages_by_id()[passage_for("scp", "CLBBB")]["title"]
    parts, unknown = builder.parts("scp", ["CLBBB", "XYZ", "NOPE"], "sinusrhythmus linkstyp", [])
    assert parts == [lbbb, "an old statement the base lacks"] and unknown == ["scp:NOPE"]
    parts, unknown = builder.parts("text", ["Sinus bradycardia"], "Sinus bradycardia. Left axis deviation", [])
    assert parts == ["Sinus bradycardia", "Left axis deviation"] and unknown == []
    parts, unknown = builder.parts("scp", [], None, ["sinus_tachycardia", "made_up_finding"])
    assert parts == [passages_by_id()[passage_for("finding", "sinus_tachycardia")]["title"]]
    assert unknown == ["finding:made_up_finding"]


def test_ptbxl_retrieval_artifact(ptbxl_retrieval, ptbxl_dataset):
    from esi_tools.artifacts import open_artifact
    from esi_tools.knowledge import passage_for

    art = open_artifact(ptbxl_retrieval, "retrieval")
    art.verify()
    records = open_artifact(ptbxl_dataset, "dataset").table("records.parquet")
    hits, queries, passages, rejects = (art.table(n) for n in
                                        ("hits.parquet", "queries.parquet", "passages.parquet", "rejects.parquet"))
    summary = art.summary
    assert summary["records"] == records.height == 1987
    # every record is answered or rejected with a reason, never silently dropped
    answered = set(hits["record_id"].to_list())
    assert answered.isdisjoint(rejects["record_id"].to_list())
    assert len(answered) + rejects.height == records.height == summary["records_with_hits"] + summary["rejects"]
    assert rejects.height <= 5, rejects  # every PTB-XL statement has a passage
    per_record = hits.group_by("record_id").agg(pl.col("rank"), pl.col("passage_id").n_unique().alias("distinct"))
    assert all(r == list(range(1, len(r) + 1)) for r in per_record["rank"].to_list())
    assert (per_record["distinct"] == per_record["rank"].list.len()).all()  # no passage twice for a record
    assert hits["rank"].max() == 5 and hits["score"].min() > 0
    # every hit names the query part that retrieved it, and that part is in the record's query
    with_query = hits.join(queries, on="record_id")
    assert all(part in query.split("; ") for part, query in with_query.select("query_part", "query").iter_rows())
    # deduplicated: far fewer distinct queries than records; one query string per distinct label set
    assert summary["unique_queries"] == queries["query"].n_unique() < records.height / 2
    assert set(passages["passage_id"].to_list()) == set(hits["passage_id"].to_list())
    assert {"title", "text", "source"} <= set(passages.columns) and passages["text"].str.len_chars().min() > 50
    # queries carry statement names in English, not the German report text
    first = records.filter(pl.col("report").str.contains("(?i)sinusrhythmus")).row(0, named=True)
    query = queries.filter(pl.col("record_id") == first["record_id"])["query"].item()
    assert "sinusrhythmus" not in query.lower() and "rhythm" in query.lower()
    # the passage of a record's own statement is among its hits for most records
    top = hits.group_by("record_id").agg(pl.col("passage_id"))
    own = dict(zip(top["record_id"], top["passage_id"], strict=True))
    labelled = [(r, [passage_for("scp", c) for c in labels]) for r, labels in
                zip(records["record_id"], records["labels"], strict=True)]
    covered = [p in own.get(r, []) for r, ps in labelled for p in ps if p]
    # measured 97%: parts are retrieved separately and fused round robin, a statement's own passage is pinned
    assert np.mean(covered) > 0.95, f"label passage in top-5 for only {np.mean(covered):.2%} of labels"


def test_cli_default_run_forms_and_stdin(ptbxl_dataset, builtin_index, tmp_path, ptbxl_retrieval):
    """`esi retrieve DATASET`, `esi retrieve --index I DATASET` and `esi retrieve run -` give the same hits."""
    outs = []
    for i, args in enumerate([
        [str(ptbxl_dataset), "--index", str(builtin_index)],
        ["--index", str(builtin_index), str(ptbxl_dataset)],
        ["run", "-", "--index", str(builtin_index)],
    ]):
        out = tmp_path / f"r{i}"
        result = run_esi("retrieve", *args, "--out", str(out), input=f"{ptbxl_dataset}\n")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == str(out)
        outs.append(pl.read_parquet(out / "hits.parquet"))
    reference = pl.read_parquet(ptbxl_retrieval / "hits.parquet")
    for hits in outs:
        assert hits.equals(reference)
    exists = run_esi("retrieve", str(ptbxl_dataset), "--index", str(builtin_index), "--out", str(tmp_path / "r0"))
    assert exists.exit_code == 2 and "already exists" in exists.stderr


def test_unknown_statements_and_empty_labels_go_to_rejects(ptbxl_dataset, builtin_index, tmp_path):
    """Real PTB-XL records with relabelled statements: bad ones are rejected with a reason, the run goes on."""
    from esi_tools.artifacts import ArtifactWriter, open_artifact
    from esi_tools.retrieve.run import RetrieveConfig, retrieve

    source = open_artifact(ptbxl_dataset, "dataset")
    records = source.table("records.parquet").head(6).with_columns(
        pl.Series("labels", [["NOT_A_CODE"], [], ["NOT_A_CODE", "IRBBB"], ["SR"], ["NORM"], ["zzqx blorp"]]),
        pl.Series("label_system", ["scp"] * 5 + ["text"]),
        pl.Series("report", [""] * 5 + ["zzqx blorp"]),
    )
    with ArtifactWriter(tmp_path / "ds", "dataset", parameters=source.parameters) as writer:
        writer.write_table("records.parquet", records)
        writer.write_array("waveforms.npy", np.asarray(source.array("waveforms.npy")[:6]))
        writer.write_table("rejects.parquet", source.table("rejects.parquet").head(0))
        writer.summary.update({**source.summary, "records": 6, "rejects": 0})
        writer.commit()
    out = retrieve(RetrieveConfig(top_k=3), tmp_path / "ds", builtin_index, tmp_path / "ret")
    art = open_artifact(out, "retrieval")
    reasons = dict(art.table("rejects.parquet").iter_rows())
    ids = records["record_id"].to_list()
    assert reasons == {ids[0]: "no query: unknown statements scp:NOT_A_CODE",
                       ids[1]: "no query: no labels, English report text or findings",
                       ids[5]: "no passage shares a word with the query 'zzqx blorp'"}
    assert art.summary["unknown_codes"] == {"scp:NOT_A_CODE": 2}
    assert set(art.table("hits.parquet")["record_id"].to_list()) == set(ids[2:5])


def test_ludb_free_text_queries(ludb_dataset, builtin_index, tmp_path):
    from esi_tools.artifacts import open_artifact

    result = run_esi("retrieve", str(ludb_dataset), "--index", str(builtin_index), "--top-k", "2",
                     "--out", str(tmp_path / "ludb"))
    assert result.exit_code == 0, result.stderr
    art = open_artifact(tmp_path / "ludb", "retrieval")
    queries = art.table("queries.parquet")
    assert queries.height == 200 and queries["query"].str.contains("(?i)rhythm").all()
    hits = art.table("hits.parquet")
    assert hits["rank"].max() == 2 and hits["record_id"].n_unique() == 200


# ---------------------------------------------------------------- features
@pytest.fixture(scope="module")
def ptbxl_features(ptbxl_dataset, tmp_path_factory) -> Path:
    """`esi features` on the first 40 real PTB-XL records (the rest have no features row)."""
    from esi_tools.features.run import FeaturesConfig, features

    return features(FeaturesConfig(workers=1, limit=40), ptbxl_dataset, tmp_path_factory.mktemp("feat") / "features")


def test_features_findings_join_the_queries(ptbxl_dataset, builtin_index, ptbxl_features, ptbxl_retrieval, tmp_path):
    from esi_tools.artifacts import open_artifact
    from esi_tools.knowledge import passage_for, passages_by_id

    result = run_esi("retrieve", str(ptbxl_dataset), "--index", str(builtin_index), "--features", str(ptbxl_features),
                     "--out", str(tmp_path / "ret"))
    assert result.exit_code == 0, result.stderr
    assert "have no row in the features artifact" in result.stderr  # 1,947 records queried without findings
    art = open_artifact(tmp_path / "ret", "retrieval")
    assert art.parameters["features"] is True
    assert [i["role"] for i in art.manifest["inputs"]] == ["dataset", "index", "features"]
    titles = {pid: p["title"] for pid, p in passages_by_id().items()}
    findings = open_artifact(ptbxl_features, "features").table("features.parquet").select("record_id", "findings")
    queries = dict(art.table("queries.parquet").iter_rows())
    plain = dict(pl.read_parquet(ptbxl_retrieval / "queries.parquet").iter_rows())
    added = 0
    for record_id, found in findings.iter_rows():
        parts = {p.lower() for p in queries[record_id].split("; ")}
        for finding in found:
            assert titles[passage_for("finding", finding)].lower() in parts, (record_id, finding, queries[record_id])
        added += queries[record_id] != plain[record_id]
    assert added >= 10, "findings changed almost no query"
    untouched = [r for r in plain if r not in set(findings["record_id"].to_list())]
    assert all(queries[r] == plain[r] for r in untouched)


def test_features_of_another_dataset_are_refused(ptbxl_dataset, builtin_index, ptbxl_features, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(ptbxl_features, other)
    table = pl.read_parquet(other / "features.parquet")
    table.with_columns(pl.col("record_id") + "-elsewhere").write_parquet(other / "features.parquet")
    from esi_tools.artifacts import (
        sha256_file,  # keep the manifest true to the file: only the join may object
    )

    manifest = json.loads((other / "manifest.json").read_text())
    manifest["files"]["features.parquet"].update(bytes=(other / "features.parquet").stat().st_size,
                                                 sha256=sha256_file(other / "features.parquet"))
    (other / "manifest.json").write_text(json.dumps(manifest))
    result = run_esi("retrieve", str(ptbxl_dataset), "--index", str(builtin_index), "--features", str(other),
                     "--out", str(tmp_path / "ret"))
    assert result.exit_code == 2 and "no record_id in common" in result.stderr


def test_mimic_statements_are_used_as_written_with_their_passage_title():
    from esi_tools.knowledge import passage_for, passages_by_id
    from esi_tools.retrieve.query import QueryBuilder

    statements = ["Sinus rhythm", "** ** ACUTE MI / STEMI ** **", "Abnormal ECG"]
    parts, unknown = QueryBuilder().parts("mimic-statement", statements, "; ".join(statements), [])
    stemi = passages_by_id()[passage_for("mimic", "ACUTE MI / STEMI")]["title"]
    assert parts == ["Sinus rhythm", "** ** ACUTE MI / STEMI ** **", stemi, "Abnormal ECG"] and unknown == []


def test_challenge_snomed_codes_resolve(builtin_index, tmp_path):
    """Real PhysioNet Challenge 2021 headers: every SNOMED Dx code becomes words, no record is rejected."""
    from conftest import CHALLENGE

    from esi_tools.artifacts import open_artifact
    from esi_tools.ingest.run import IngestConfig, ingest
    from esi_tools.retrieve.run import RetrieveConfig, retrieve

    dataset = ingest(IngestConfig(kind="challenge", fs=100, workers=1), CHALLENGE / "cinc2021", tmp_path / "ds")
    art = open_artifact(retrieve(RetrieveConfig(top_k=3), dataset, builtin_index, tmp_path / "ret"), "retrieval")
    records = open_artifact(dataset, "dataset").table("records.parquet")
    assert art.summary["unknown_codes"] == {} and art.summary["rejects"] == 0
    queries = art.table("queries.parquet")
    assert queries.height == records.height and not queries["query"].str.contains(r"\d{6,}").any()


def test_same_file_twice_is_indexed_once(tmp_path):
    from esi_tools.retrieve.corpus import collect

    note = tmp_path / "note.md"
    note.write_text("# QT drugs\n\nSotalol and dofetilide prolong the QT interval.\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    passages = collect([str(note), str(tmp_path), "builtin", "builtin"], chunk_words=200)
    mine = [p for p in passages if p["source"] != "builtin"]
    assert [p["passage_id"] for p in mine] == ["note_md-1"]
    assert len(passages) - len(mine) == len({p["passage_id"] for p in passages if p["source"] == "builtin"})
