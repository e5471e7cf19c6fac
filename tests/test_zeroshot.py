"""Zero-shot class prompts on the real PTB-XL statement table: grouped classes name the members that matter."""

from __future__ import annotations

import numpy as np
from conftest import run_esi

from esi_tools.knowledge import passage_for
from esi_tools.probe.zeroshot import class_prompts, member_prevalence

SUPER = ["CD", "HYP", "MI", "NORM", "STTC"]


def _inputs(ptbxl_dataset):
    from esi_tools.dataset import Dataset

    d = Dataset.open(ptbxl_dataset)
    folds = np.asarray(d.records["fold"].to_list())
    train = np.flatnonzero(folds <= 8)
    return d.artifact.table("statements.parquet"), member_prevalence(d.records["labels"].to_list(), train), d, folds


def _ids(codes):
    return {passage_for("scp", c) for c in codes}


def test_grouped_prompts_follow_training_prevalence(ptbxl_dataset):
    statements, prevalence, _, _ = _inputs(ptbxl_dataset)
    # the subset's training folds: NDT 139, ISC_ 82, NST_ 62 of STTC; LAFB 123, IRBBB 88, IVCD 51 of CD
    assert prevalence["NDT"] == 139 and prevalence["LAFB"] == 123 and prevalence["ANEUR"] == 7
    prompts = class_prompts(SUPER, system="scp", task="superdiagnostic", statements=statements, prevalence=prevalence)
    sttc, cd = set(prompts["STTC"].origin.split("+")), set(prompts["CD"].origin.split("+"))
    assert _ids(["NDT", "NST_", "ISC_"]) <= sttc and _ids(["LAFB", "IRBBB", "IVCD"]) <= cd
    assert prompts["STTC"].origin.startswith(passage_for("scp", "NDT"))  # the most frequent member first
    assert passage_for("scp", "ANEUR") not in sttc  # rare: the alphabetical prompt named it, the frequent ones not
    assert "Non-specific ST changes" in prompts["STTC"].texts[0] and len(prompts["STTC"].texts) == 1
    assert prompts["NORM"].texts[0].startswith("Normal ECG.") and prompts["NORM"].origin == "normal_ecg"


def test_ensemble_prompts_cover_every_member(ptbxl_dataset):
    statements, prevalence, _, _ = _inputs(ptbxl_dataset)
    prompts = class_prompts(SUPER, system="scp", task="superdiagnostic", statements=statements, prevalence=prevalence,
                            strategy="ensemble")
    for cls in ("STTC", "CD"):
        members = [r["code"] for r in statements.to_dicts() if r["diagnostic_class"] == cls]
        expected = {p for p in _ids(members) if p}
        got = set(prompts[cls].origin.removeprefix("ensemble:").split("+"))
        assert got == expected and len(prompts[cls].texts) == len(expected) > 6
    assert _ids(["NDT", "NST_", "ISC_"]) <= set(prompts["STTC"].origin.removeprefix("ensemble:").split("+"))
    assert prompts["NORM"].texts == class_prompts(["NORM"], system="scp", task="superdiagnostic", statements=statements)["NORM"].texts


def test_prevalence_counts_training_rows_only(ptbxl_dataset):
    statements, prevalence, d, folds = _inputs(ptbxl_dataset)
    test_only = member_prevalence(d.records["labels"].to_list(), np.flatnonzero(folds == 10))
    assert sum(test_only.values()) > 0 and test_only["NDT"] != prevalence["NDT"]
    assert prevalence["NDT"] + test_only["NDT"] + member_prevalence(d.records["labels"].to_list(), np.flatnonzero(folds == 9))["NDT"] == \
        sum("NDT" in (labels or []) for labels in d.records["labels"].to_list())


def test_unknown_prompt_strategy_is_one_clear_line(ptbxl_dataset, tmp_path):
    result = run_esi("probe", ptbxl_dataset, "--zero-shot", tmp_path / "no-model", "--zero-shot-prompts", "alphabetical",
                     "--out", tmp_path / "p")
    assert result.exit_code == 2 and "--zero-shot-prompts must be one of auto, prevalence, ensemble" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "p").exists()
