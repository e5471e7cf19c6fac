"""esi audit on real PTB-XL records: claims read with the lexicon, checked against each record's measurements and
recorded statements. The audit must be right about itself: template captions (written from the same evidence)
score <= 1 % contradicted, and of true captions corrupted on purpose it flags >= 95 % and of the uncorrupted
<= 5 %."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import polars as pl
import pytest
from conftest import PTBXL, run_esi

from esi_tools.artifacts import open_artifact
from esi_tools.audit.claims import extract
from esi_tools.audit.corrupt import KINDS, corrupt
from esi_tools.audit.run import audit_caption, truths
from esi_tools.audit.truth import CONTRADICTED, SUPPORTED, truth_of, verdict
from esi_tools.dataset import Dataset


@pytest.mark.parametrize("text, expected", [
    ("Sinus rhythm at 63 bpm with left bundle branch block.",
     {("sinus_rhythm", False), ("left_bundle_branch_block", False)}),
    ("There is no evidence of ST elevation, ST depression, or T wave inversion.",
     {("st_elevation", True), ("st_depression", True), ("t_wave_abnormality", True)}),
    ("Findings include no discernible P waves, right axis deviation and ST-segment elevation.",
     {("right_axis_deviation", False), ("st_elevation", False)}),
    ("No LBBB but ST depression.", {("left_bundle_branch_block", True), ("st_depression", False)}),
    ("Incomplete right bundle branch block.", {("conduction_delay", False)}),
    ("Sinus tachycardia.", {("sinus_rhythm", False), ("tachycardia", False)}),
    ("Background: Left bundle branch block widens the QRS [lbbb].", set()),
])
def test_concepts_and_negation_are_read(text, expected):
    got = {(c.concept, c.negated) for c in extract(text) if c.kind != "number" and not c.background}
    assert got == expected


def test_numbers_are_read_with_units_and_ranges():
    claims = extract("Sinus rhythm at 63 bpm, PR interval is 0.16 s, QRS duration 94 ms, QTc (Bazett) 420 ms. "
                     "The frontal QRS axis is +45°. Rate 60-100 beats per minute.")
    numbers = {(c.concept, c.value, c.high) for c in claims if c.kind == "number"}
    assert numbers == {("rate", 63, None), ("PR", 160, None), ("QRS", 94, None), ("QTc", 420, None),
                       ("QRS axis", 45, None), ("rate", 60, 100)}
    said = extract("The heart rate was 64 bpm, the lowest heart rate recorded was 61 bpm, and the highest was 90 bpm.")
    assert [(c.concept, c.value) for c in said] == [("rate", 64), ("lowest rate", 61), ("highest rate", 90)]


def test_numbers_and_rate_words_are_checked_with_stated_tolerances():
    truth = truth_of({"statements": [{"code": "SR", "text": "sinus rhythm"}],
                      "measurements": [{"name": "hr_mean_bpm", "value": 80.0}, {"name": "pr_ms", "value": 160.0},
                                       {"name": "qrs_axis_deg", "value": -45.0}], "findings": []})

    def judge(text):
        return [verdict(c, truth)[0] for c in extract(text)]

    assert judge("Rate 87 bpm.") == [SUPPORTED]  # within 10 %
    assert judge("Rate 90 bpm.") == [CONTRADICTED]
    assert judge("PR 179 ms.") == [SUPPORTED] and judge("PR 190 ms.") == [CONTRADICTED]  # +-20 ms
    assert judge("Tachycardia.") == [CONTRADICTED] and judge("No bradycardia.") == [SUPPORTED]
    assert judge("Left axis deviation.") == [SUPPORTED] and judge("Right axis deviation.") == [CONTRADICTED]
    assert judge("Atrial fibrillation.") == [CONTRADICTED]  # excluded by the recorded sinus rhythm


def test_every_ptbxl_statement_is_supported_by_its_own_code():
    """The lexicon reads each official SCP description; a caption repeating a statement must be supported by it."""
    with open(PTBXL / "scp_statements.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    classes = {r[""]: r["diagnostic_class"] for r in rows if r["diagnostic_class"]}
    for row in rows:
        statement = {"code": row[""], "text": row["description"]}
        truth = truth_of({"statements": [statement]}, classes)
        judged = [(c.text, verdict(c, truth)) for c in extract(f"It was labelled {row['description']}.")]
        assert all(v[0] == SUPPORTED for _, v in judged), (row[""], judged)


@pytest.fixture(scope="module")
def chain(ptbxl_dataset, ptbxl_features, tmp_path_factory):
    """Retrieval and template captions (default and an 80-word budget) of the whole real PTB-XL subset."""
    tmp = tmp_path_factory.mktemp("audit")
    index = run_esi("-q", "retrieve", "index", "builtin", "--out", tmp / "index").stdout.strip()
    retrieval = run_esi("-q", "retrieve", ptbxl_dataset, "--index", index, "--features", ptbxl_features,
                        "--out", tmp / "retrieval").stdout.strip()
    caps = {}
    for words in (33, 80):
        result = run_esi("-q", "caption", ptbxl_dataset, "-f", ptbxl_features, "-r", retrieval, "--words", words,
                         "--out", tmp / f"captions{words}")
        assert result.exit_code == 0, result.stderr
        caps[words] = Path(result.stdout.strip())
    return tmp, caps


def test_template_captions_score_at_most_one_percent_contradicted(chain):
    tmp, caps = chain
    result = run_esi("audit", caps[33], caps[80], "--name", "template", "--name", "template-80", "--out", tmp / "audit")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp / "audit")  # stdout: the artifact path only
    manifest = json.loads((tmp / "audit" / "manifest.json").read_text())
    for name in ("template", "template-80"):
        rates = manifest["summary"]["by_captions"][name]
        assert rates["captions"] == 1987 and rates["claims"] > 4 * 1987
        assert rates["contradicted_claims_pct"] <= 1.0 and rates["captions_contradicted_pct"] <= 1.0, rates
        assert rates["number_errors"] == 0 and rates["hallucinated"] == 0
    claims = pl.read_parquet(tmp / "audit" / "claims.parquet")
    assert set(claims["verdict"].unique()) <= {"supported", "contradicted", "not checkable", "background"}
    assert "| template |" in (tmp / "audit" / "audit.md").read_text()


def test_audit_flags_corrupted_captions_and_spares_true_ones(chain, ptbxl_dataset, ptbxl_features):
    """Real template captions with the rate, an interval, the rhythm or a diagnosis swapped for a wrong one."""
    _, caps = chain
    known = truths(Dataset.open(ptbxl_dataset), open_artifact(ptbxl_features, "features"))
    table = pl.read_parquet(caps[80] / "captions.parquet")
    rng = random.Random(0)
    flagged = {k: [0, 0] for k in KINDS}
    clean_flagged = 0
    for row in table.iter_rows(named=True):
        truth = known[row["record_id"]]
        if not audit_caption(row["caption"], truth).faithful:
            clean_flagged += 1
            continue
        for kind in KINDS:
            bad = corrupt(row["caption"], truth, kind, rng)
            if bad is not None:
                flagged[kind][1] += 1
                flagged[kind][0] += not audit_caption(bad, truth).faithful
    assert clean_flagged / table.height <= 0.05
    for kind, (hit, total) in flagged.items():
        assert total >= 150, (kind, total)
        assert hit / total >= 0.95, (kind, hit, total)


def test_audit_refuses_captions_made_without_features(ptbxl12, tmp_path):
    made = run_esi("-q", "caption", ptbxl12, "--out", tmp_path / "c")
    assert made.exit_code == 0, made.stderr
    result = run_esi("audit", tmp_path / "c", "--out", tmp_path / "a")
    assert result.exit_code == 2 and "--features" in result.stderr and not (tmp_path / "a").exists()
