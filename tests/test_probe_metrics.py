"""Probe building blocks on fixed inputs and on the real PTB-XL subset: metrics, tasks, splits, fractions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from esi_tools.probe import metrics
from esi_tools.probe.splits import check_disjoint, kfold_splits, strat_fold_split, stratified_fraction
from esi_tools.probe.tasks import build_task


@pytest.fixture(scope="module")
def fixed():
    rng = np.random.default_rng(7)
    y = rng.random((300, 6)) < np.array([0.5, 0.2, 0.1, 0.05, 0.3, 0.02])
    y[:, 5] = False  # a class with no positive: not evaluable
    scores = y * rng.normal(1.0, 1.0, y.shape) + rng.normal(0, 1.0, y.shape)
    scores[:40, 0] = np.round(scores[:40, 0])  # ties
    return y, scores


def test_auroc_equals_sklearn(fixed):
    y, scores = fixed
    ours = metrics.per_class_auroc(y, scores)
    for c in range(5):
        assert ours[c] == pytest.approx(roc_auc_score(y[:, c], scores[:, c]), abs=1e-12)
    assert np.isnan(ours[5])
    assert metrics.macro_auroc(y, scores) == pytest.approx(np.mean([roc_auc_score(y[:, c], scores[:, c]) for c in range(5)]))


def test_macro_f1_equals_sklearn_and_thresholds_maximise_validation_f1(fixed):
    y, scores = fixed
    thresholds = metrics.tune_thresholds(y, scores)
    pred = scores >= thresholds
    assert metrics.macro_f1(y, pred) == pytest.approx(f1_score(y[:, :5], pred[:, :5], average="macro", zero_division=0))
    for c in range(5):  # no other cut of the validation scores gives a higher F1
        best = max(f1_score(y[:, c], scores[:, c] >= t, zero_division=0) for t in np.unique(scores[:, c]))
        assert f1_score(y[:, c], pred[:, c]) == pytest.approx(best)


def test_bootstrap_ci_contains_point_estimate_and_is_seeded(fixed):
    y, scores = fixed
    point = metrics.macro_auroc(y, scores)
    lo, hi = metrics.macro_auroc_ci(y, scores, resamples=1000, seed=1)
    assert lo < point < hi and hi - lo < 0.2
    assert (lo, hi) == metrics.macro_auroc_ci(y, scores, resamples=1000, seed=1)
    f1_lo, f1_hi = metrics.macro_f1_ci(y, scores >= 0.5, resamples=200, seed=1)
    assert f1_lo <= metrics.macro_f1(y, scores >= 0.5) <= f1_hi


def test_group_bootstrap_resamples_whole_groups():
    groups = np.repeat(np.arange(10), 3)
    sizes = []
    metrics.bootstrap_ci(lambda i: sizes.append(len(i)) or 0.0, 30, resamples=50, groups=groups)
    assert set(sizes) == {30}  # every group contributes all 3 of its items


@pytest.fixture(scope="module")
def ptbxl(ptbxl_dataset):
    from esi_tools.dataset import Dataset

    d = Dataset.open(ptbxl_dataset)
    return d.records, d.artifact.table("statements.parquet")


def _task(ptbxl, name, min_positives=1):
    records, statements = ptbxl
    return build_task(records, name, statements=statements, train_mask=np.ones(records.height, bool), min_positives=min_positives)


def _labels_of(task, records, record_id):
    i = records["record_id"].to_list().index(record_id)
    pos = np.flatnonzero(task.rows == i)
    return set() if not pos.size else {c for c, v in zip(task.classes, task.y[pos[0]], strict=True) if v}


def test_ptbxl_aggregation_matches_the_benchmark_definitions(ptbxl):
    records, _ = ptbxl
    # ecg_id 1: {'NORM': 100, 'LVOLT': 0, 'SR': 0}; ecg_id 8: {'IMI': 35, 'ABQRS': 0, 'SR': 0}
    assert _labels_of(_task(ptbxl, "superdiagnostic"), records, "1") == {"NORM"}
    assert _labels_of(_task(ptbxl, "subdiagnostic"), records, "1") == {"NORM"}
    assert _labels_of(_task(ptbxl, "form"), records, "1") == {"LVOLT"}  # likelihood 0 still counts (benchmark rule)
    assert _labels_of(_task(ptbxl, "rhythm"), records, "1") == {"SR"}
    assert _labels_of(_task(ptbxl, "all"), records, "1") == {"NORM", "LVOLT", "SR"}
    assert _labels_of(_task(ptbxl, "superdiagnostic"), records, "8") == {"MI"}
    assert _labels_of(_task(ptbxl, "subdiagnostic"), records, "8") == {"IMI"}
    assert _labels_of(_task(ptbxl, "diagnostic"), records, "8") == {"IMI"}
    assert _labels_of(_task(ptbxl, "form"), records, "8") == {"ABQRS"}
    sup = _task(ptbxl, "superdiagnostic")
    assert sup.classes == ["CD", "HYP", "MI", "NORM", "STTC"]
    counts = dict(zip(sup.classes, sup.y.sum(axis=0).tolist(), strict=True))
    assert counts == {"NORM": 1051, "STTC": 467, "CD": 410, "MI": 370, "HYP": 215}  # the data README's counts
    assert sup.rows.size < records.height  # records without any diagnostic statement are dropped


def test_rare_classes_are_dropped_and_listed(ptbxl):
    task = _task(ptbxl, "all", min_positives=20)
    assert task.dropped and all("< 20" in why for why in task.dropped.values())
    assert task.y.sum(axis=0).min() >= 20


def test_splits_are_patient_disjoint(ptbxl):
    records, _ = ptbxl
    split = strat_fold_split(records["fold"].to_list())
    check_disjoint(split, records["patient_id"].to_list())
    assert (split.train.size, split.val.size, split.test.size) == (1490, 242, 255)
    folds = kfold_splits(records["patient_id"].to_list(), 5, seed=0)
    tested = np.concatenate([f.test for f in folds])
    assert np.array_equal(np.sort(tested), np.arange(records.height))  # every record tested exactly once
    for f in folds:
        check_disjoint(f, records["patient_id"].to_list())
    pids = records["patient_id"].to_list()
    leaky = type(split)("leaky", split.train, split.val, np.r_[split.test, split.train[:5]])
    with pytest.raises(Exception, match="patients appear in more than one"):
        check_disjoint(leaky, pids)


def test_fractions_are_stratified_and_seeded(ptbxl):
    task = _task(ptbxl, "superdiagnostic")
    a = stratified_fraction(task.y, 0.1, seed=3)
    assert np.array_equal(a, stratified_fraction(task.y, 0.1, seed=3))
    assert not np.array_equal(a, stratified_fraction(task.y, 0.1, seed=4))
    assert abs(a.size - 0.1 * len(task.y)) <= 1
    full, sub = task.y.mean(axis=0), task.y[a].mean(axis=0)
    assert np.abs(full - sub).max() < 0.03  # prevalences follow the full training set
    assert np.array_equal(stratified_fraction(task.y, 1.0, seed=0), np.arange(len(task.y)))
