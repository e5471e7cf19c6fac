"""The knowledge base: every passage valid and unique, every label system we ingest resolves to a passage."""

from __future__ import annotations

import ast
import csv
import json
import re

import pytest
from conftest import CHALLENGE, PTBXL

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


# --- coverage: every label system we ingest must resolve -------------------------------------------------

# PhysioNet/CinC Challenge 2021 scored classes (dx_mapping_scored.csv); pairs the Challenge scores as one class
# must resolve to one passage.
CHALLENGE_2021_SCORED = [
    "164889003", "164890007", "6374002", "426627000", "733534002", "713427006", "270492004", "713426002",
    "39732003", "445118002", "164909002", "251146004", "698252002", "426783006", "284470004", "10370003",
    "365413008", "427172004", "164947007", "111975006", "164917005", "47665007", "59118001", "427393009",
    "426177001", "427084000", "63593006", "164934002", "59931005", "17338001",
]  # fmt: skip
# ... and its unscored classes (dx_mapping_unscored.csv): the base covers every one of them too.
CHALLENGE_2021_UNSCORED = """
233892002 164951009 251187003 61277005 426664006 251139008 57054005 413444003 426434006 54329005 251173003
195080001 195126007 251268003 106068003 713422000 233917008 50799005 29320008 251166008 233897008 251170000
418818005 74615001 426749004 251199005 61721007 698247007 27885002 204384007 53741008 413844008 251198002
82226007 428417006 13640000 164942001 84114007 368009 251259000 251200008 195042002 426183003 425419005
251120003 704997005 49260003 426995002 251164006 426648003 253352002 67741000119109 446813000 425623009
445211001 164873001 55827005 370365005 164865005 164861001 54016002 428750005 164867002 282825002 251205003
67198005 425856008 164912004 253339007 164921003 446358003 67751000119106 314208002 89792004 17366009
65778007 5609005 60423000 49578007 77867006 55930002 429622005 164931005 164930006 251168009 426761007
266257000 251223006 164937009 11157007 164884008 75532003 81898007 164896001 111288001 266249003 195060002
251266004 251182009 164895002 251180001 195101003 74390002
""".split()
CHALLENGE_EQUIVALENT = [("733534002", "164909002"), ("713427006", "59118001"), ("284470004", "63593006"),
                        ("427172004", "17338001")]  # fmt: skip

# Finding ids of the artifact contract for `esi features` (the features engineer may add ids, never rename these).
CONTRACT_FINDINGS = [
    "sinus_rhythm", "sinus_tachycardia", "sinus_bradycardia", "irregular_rhythm", "possible_atrial_fibrillation",
    "absent_p_waves", "first_degree_av_block", "short_pr", "wide_qrs", "incomplete_conduction_delay", "prolonged_qtc",
    "short_qtc", "left_axis_deviation", "right_axis_deviation", "extreme_axis_deviation", "low_voltage", "lvh_voltage",
    "rvh_voltage", "st_elevation", "st_depression", "t_wave_inversion", "ectopic_beats", "poor_signal_quality",
]  # fmt: skip

# Machine-statement phrasings as printed in MIMIC-IV-ECG reports.
MIMIC_STATEMENTS = [
    "Sinus rhythm", "Sinus bradycardia", "Sinus tachycardia", "Atrial fibrillation", "Left axis deviation",
    "Borderline ECG", "Abnormal ECG", "Normal ECG", "Otherwise normal ECG", "Possible anterior infarct - age undetermined",
    "Inferior infarct - age undetermined", "Septal infarct - age undetermined", "Right bundle branch block",
    "Left bundle branch block", "1st degree A-V block", "Left ventricular hypertrophy", "Low QRS voltages in limb leads",
    "Prolonged QT interval", "Nonspecific T wave abnormality", "Poor R wave progression - probable normal variant",
    "Ventricular premature complex", "Atrial premature complex", "Left anterior fascicular block",
    "Incomplete right bundle branch block", "Nonspecific intraventricular conduction delay", "Paced rhythm",
    "--- Age not entered, assumed to be 50 years old for purpose of ECG interpretation ---",
    "** ** ACUTE MI / STEMI ** **", "Warning: data quality may affect interpretation",
]  # fmt: skip


def _challenge_dx_codes() -> set[str]:
    codes = set()
    for header in sorted(CHALLENGE.glob("*/*.hea")):
        for line in header.read_text().splitlines():
            key, _, value = line.lstrip("#").partition(":")
            if key.strip().lower() == "dx":
                codes.update(c.strip() for c in value.split(",") if c.strip())
    return codes


def test_at_least_150_passages():
    assert len(load_passages()) >= 150


def test_every_ptbxl_statement_resolves():
    with open(PTBXL / "scp_statements.csv", newline="") as f:
        codes = [row[""] for row in csv.DictReader(f)]
    assert len(codes) == 71
    missing = [c for c in codes if passage_for("scp", c) is None]
    assert not missing, f"PTB-XL statements without a passage: {missing}"


def test_every_statement_used_in_ptbxl_records_resolves():
    with open(PTBXL / "ptbxl_database.csv", newline="") as f:
        used = {code for row in csv.DictReader(f) for code in ast.literal_eval(row["scp_codes"])}
    assert used and not [c for c in used if passage_for("scp", c) is None]


def test_every_challenge_dx_code_in_the_shared_data_resolves():
    codes = _challenge_dx_codes()
    assert len(codes) > 30  # the headers parsed: these 78 records carry 46 distinct codes
    missing = sorted(c for c in codes if passage_for("snomed", c) is None)
    assert not missing, f"Challenge Dx codes without a passage: {missing}"


def test_challenge_2021_classes_resolve_and_scored_equivalents_share_a_passage():
    assert not [c for c in CHALLENGE_2021_SCORED if passage_for("snomed", c) is None]
    assert len(CHALLENGE_2021_UNSCORED) == 103
    assert not [c for c in CHALLENGE_2021_UNSCORED if passage_for("snomed", c) is None]
    for a, b in CHALLENGE_EQUIVALENT:
        assert passage_for("snomed", a) == passage_for("snomed", b)


def test_every_contract_finding_resolves():
    assert not [f for f in CONTRACT_FINDINGS if passage_for("finding", f) is None]


def test_every_finding_the_features_module_defines_resolves():
    findings = pytest.importorskip("esi_tools.features.findings")
    missing = sorted(f for f in findings.FINDINGS if passage_for("finding", f) is None)
    assert not missing, f"esi features findings without a passage: {missing}"


def test_mimic_machine_statements_resolve():
    assert not [s for s in MIMIC_STATEMENTS if passage_for("mimic", s) is None]


def test_non_clinical_statements_map_to_honest_passages_not_diagnoses():
    by_id = passages_by_id()
    for statement in (
        "Interpretation made without knowing patient's gender/age",
        "Unconfirmed",
        "Trace only requested",
    ):
        passage = by_id[passage_for("mimic", statement)]
        assert "non-clinical" in passage["title"]
        assert not passage["codes"]["scp"] and not passage["codes"]["snomed"] and not passage["criteria"]
        assert "not a diagnosis" in " ".join(passage["differential"])


def test_clinical_passages_carry_criteria_with_numbers_leads_and_differential():
    passages = [p for p in load_passages() if "non-clinical" not in p["title"]]
    assert all(p["criteria"] and p["differential"] for p in passages)
    with_numbers = [p for p in passages if any(re.search(r"\d", c) for c in p["criteria"])]
    assert len(with_numbers) >= 0.75 * len(passages)
    assert sum(bool(p["leads"]) for p in passages) >= 0.85 * len(passages)
    texts = [p["text"] for p in passages]
    assert len(set(texts)) == len(texts)
