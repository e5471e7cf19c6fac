"""esi identify on the real PTB-XL subset (104 patients with >= 2 recordings) and its metric code."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from conftest import run_esi

from esi_tools.artifacts import open_artifact
from esi_tools.identify import metrics
from esi_tools.identify.protocol import build_protocol


def test_features_baseline_far_above_chance(ptbxl_dataset, ptbxl_features_embeddings, tmp_path):
    result = run_esi("identify", ptbxl_dataset, "-e", ptbxl_features_embeddings, "--out", tmp_path / "id", "--bootstrap", "200")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "id")
    art = open_artifact(tmp_path / "id", "identification")
    row = art.table("results.parquet").row(0, named=True)
    assert (row["subjects"], row["gallery"], row["probes"]) == (104, 104, 137)  # issue 8's protocol on this subset
    assert row["rank1"] > 10 * row["chance_rank1"]  # chance is 1/104 = 0.0096; the cheap-features floor is 0.547
    assert row["rank5"] > 0.6 and row["rank1_ci_low"] <= row["rank1"] <= row["rank1_ci_high"]
    assert 0 < row["eer"] < 0.35 and row["verification_auc"] > 0.75
    cmc = art.table("cmc.parquet")["accuracy"].to_numpy()
    assert np.all(np.diff(cmc) >= 0) and cmc[0] == pytest.approx(row["rank1"])
    assert json.loads((art.path / "metrics.json").read_text())["protocol"]["normalise"] == "disjoint"
    protocol = art.table("protocol.parquet")
    assert protocol.filter(pl.col("role") == "gallery")["subject"].n_unique() == 104


def test_distractors_enlarge_the_gallery(ptbxl_dataset, ptbxl_features_embeddings, tmp_path):
    result = run_esi("identify", ptbxl_dataset, "-e", ptbxl_features_embeddings, "--distractors", "--out", tmp_path / "id",
                     "--bootstrap", "50")
    assert result.exit_code == 0, result.stderr
    row = open_artifact(tmp_path / "id", "identification").table("results.parquet").row(0, named=True)
    assert row["gallery"] == 1850 and row["probes"] == 137  # every patient enrolled once


def test_shuffled_patient_ids_are_at_chance(ptbxl_dataset, ptbxl_features_embeddings):
    from esi_tools.dataset import Dataset
    from esi_tools.embed.artifact import Embeddings
    from esi_tools.identify.run import IdentifyConfig, evaluate

    records = Dataset.open(ptbxl_dataset).records
    x = Embeddings.open(ptbxl_features_embeddings).aligned(records["record_id"].to_list())
    shuffled = records.with_columns(pl.Series("patient_id", np.random.default_rng(1).permutation(records["patient_id"].to_numpy())))
    protocol = build_protocol(shuffled, seed=0, distractors=False)
    row, _ = evaluate(x, protocol, IdentifyConfig(bootstrap=20))
    chance = 1 / len(protocol.gallery)
    assert row["rank1"] < 4 * chance and row["rank5"] < 0.15 and abs(row["verification_auc"] - 0.5) < 0.1


def test_ranks_match_brute_force():
    rng = np.random.default_rng(0)
    gallery, probes = rng.normal(size=(30, 8)), rng.normal(size=(50, 8))
    truth = rng.integers(0, 30, 50)
    ranks = metrics.true_match_ranks(probes, gallery, truth)
    for i in range(50):
        sims = [np.dot(probes[i], g) / np.linalg.norm(probes[i]) / np.linalg.norm(g) for g in gallery]
        order = sorted(range(30), key=lambda j: -sims[j])
        assert ranks[i] == order.index(truth[i]) + 1
    top = metrics.top_k(probes, gallery, 5)
    assert np.mean([truth[i] in top[i] for i in range(50)]) == pytest.approx(np.mean(ranks <= 5))
    assert metrics.cmc(ranks, 30)[-1] == 1.0


def test_equal_error_rate_on_a_constructed_example():
    genuine, impostor = np.array([0.9, 0.8, 0.7, 0.4]), np.array([0.5, 0.3, 0.2, 0.1])
    # at threshold 0.5 one genuine (0.4) is rejected and one impostor (0.5) accepted: FRR = FAR = 0.25
    assert metrics.equal_error_rate(genuine, impostor) == pytest.approx(0.25)
    assert metrics.equal_error_rate(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == pytest.approx(0.0)
    assert metrics.equal_error_rate(np.array([0.1, 0.2]), np.array([0.9, 0.8])) == pytest.approx(1.0)


def test_protocol_uses_the_earliest_recording_as_gallery():
    records = pl.DataFrame({
        "record_id": ["a", "b", "c", "d", "e"], "patient_id": ["p1", "p1", "p1", "p2", "p3"],
        "recording_date": ["2001-01-02", "2000-05-01", None, "1999-01-01", "1999-02-01"],
    })
    protocol = build_protocol(records, seed=0, distractors=False)
    assert protocol.gallery.tolist() == [1] and sorted(protocol.probes.tolist()) == [0, 2]
    assert sorted(protocol.singles.tolist()) == [3, 4]
    with_distractors = build_protocol(records, seed=0, distractors=True)
    assert with_distractors.gallery.tolist() == [1, 3, 4]


def test_clear_messages_without_patient_ids_or_repeat_subjects(ludb_dataset, tmp_path):
    with pytest.raises(Exception, match="no patient has two or more recordings"):
        build_protocol(pl.DataFrame({"record_id": ["a", "b"], "patient_id": ["x", "y"], "recording_date": [None, None]}),
                       seed=0, distractors=False)
    result = run_esi("embed", ludb_dataset, "--signal-stats", "--out", tmp_path / "e")
    assert result.exit_code == 0, result.stderr
    result = run_esi("identify", ludb_dataset, "-e", tmp_path / "e", "--out", tmp_path / "id")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "patient" in result.stderr
