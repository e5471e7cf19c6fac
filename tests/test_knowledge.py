"""The knowledge base: every passage valid and unique, every label system we ingest resolves to a passage."""

from __future__ import annotations

import json

import pytest

from esi_tools.errors import InputError
from esi_tools.knowledge import (
    KNOWLEDGE_DIR,
    load_passages,
    normalize_statement,
    passage_for,
    passages_by_id,
    read_passages,
)


def test_every_passage_is_schema_valid_and_ids_are_unique():
    # read_passages validates against schemas/passage.v1.json; re-check the invariants the retriever relies on.
    passages = read_passages(KNOWLEDGE_DIR)
    ids = [p["id"] for p in passages]
    assert len(ids) == len(set(ids))
    for p in passages:
        assert p["text"].strip() and p["reference"].strip(), p["id"]
        assert p["area"] == p["area"].lower()


def test_load_passages_returns_a_fresh_copy():
    first = load_passages()
    first[0]["codes"]["scp"].append("XXX")
    assert "XXX" not in load_passages()[0]["codes"]["scp"]
    assert set(passages_by_id()) == {p["id"] for p in first}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"id": "x"}), "fails passage.v1.json"),
        (json.dumps({"id": "Bad Id", "title": "t"}), "fails passage.v1.json"),
    ],
)
def test_bad_passage_names_file_and_line(tmp_path, line, message):
    good = (KNOWLEDGE_DIR / "conduction.jsonl").read_text().splitlines()[0]
    (tmp_path / "x.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(InputError, match=rf"x\.jsonl:2: .*{message}"):
        read_passages(tmp_path)


def test_duplicate_id_and_double_claimed_code_are_rejected(tmp_path):
    good = json.loads((KNOWLEDGE_DIR / "conduction.jsonl").read_text().splitlines()[0])
    (tmp_path / "a.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(InputError, match="duplicate passage id"):
        read_passages(tmp_path)
    other = dict(good, id="other_passage")
    (tmp_path / "a.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(other) + "\n")
    with pytest.raises(InputError, match="claimed by passages"):
        read_passages(tmp_path)


def test_empty_directory_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no knowledge files"):
        read_passages(tmp_path)


def test_passage_for_lookup_rules():
    assert passage_for("scp", "CLBBB") == passage_for("scp", "clbbb") == passage_for("snomed", "164909002")
    assert passage_for("snomed", "733534002") == passage_for("snomed", "164909002")  # scored as one class
    assert passage_for("mimic", "** SINUS RHYTHM **") == passage_for("scp", "SR") == "sinus_rhythm"
    assert passage_for("scp", "NOT_A_CODE") is None
    assert passage_for("finding", "no_such_finding") is None
    with pytest.raises(InputError, match="unknown code system"):
        passage_for("icd10", "I44.7")
    assert normalize_statement("  Atrial  fibrillation, with RVR! ") == "atrial fibrillation with rvr"
