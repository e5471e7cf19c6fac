"""esi embed on real records: baselines (signal statistics, random-init encoder, features) and a trained checkpoint,
plus fine-tuning and zero-shot through esi probe with a tiny model trained for one step (conftest)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_esi

from esi_tools.artifacts import open_artifact


@pytest.fixture(scope="module")
def small_dataset(ptbxl_small):
    """The first 160 real PTB-XL records at 100 Hz (conftest); `tiny_model` is trained on them."""
    return ptbxl_small


def test_signal_stats_embedding(small_dataset, tmp_path):
    result = run_esi("embed", small_dataset, "--signal-stats", "--out", tmp_path / "e")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "e")
    art = open_artifact(tmp_path / "e", "embeddings")
    x = art.array("embeddings.npy")
    assert x.shape == (160, 148) and x.dtype == np.float32 and np.isfinite(x).all()
    assert art.table("ids.parquet")["record_id"].to_list()[:3] == ["1", "2", "3"]
    names = json.loads((art.path / "columns.json").read_text())
    assert names[-4:] == ["hr_bpm", "rr_sd_ms", "age_years", "sex_female"]
    hr = x[:, names.index("hr_bpm")]
    assert hr.std() > 0.5  # standardised with training-split statistics: varies across records


def test_random_init_is_seeded_and_mean_pools_every_stage(small_dataset, tmp_path):
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        result = run_esi("embed", small_dataset, "--random-init", "atto", "--seed", seed, "--out", tmp_path / name,
                         "--batch-size", "80")
        assert result.exit_code == 0, result.stderr
    a, b, c = (open_artifact(tmp_path / n, "embeddings") for n in "abc")
    assert a.summary == {"source": "random-init", "dim": 40 + 80 + 160 + 320, "records": 160}
    assert np.array_equal(a.array("embeddings.npy"), b.array("embeddings.npy"))
    assert not np.allclose(a.array("embeddings.npy"), c.array("embeddings.npy"))
    assert a.parameters["size"] == "atto" and a.parameters["seed"] == 0


def test_features_artifact_with_missing_rows(small_dataset, tmp_path):
    from esi_tools.features.run import FeaturesConfig, features

    feats = features(FeaturesConfig(workers=1, limit=100), small_dataset, tmp_path / "f")
    result = run_esi("embed", feats, "--out", tmp_path / "e")
    assert result.exit_code == 0, result.stderr
    assert "60 records have no features row" in result.stderr
    art = open_artifact(tmp_path / "e", "embeddings")
    names = json.loads((art.path / "columns.json").read_text())
    x = art.array("embeddings.npy")
    assert x.shape[0] == 160 and np.isfinite(x).all() and "qrs_ms_missing" in names and "age_years" in names
    assert x[100:, names.index("qrs_ms_missing")].min() == 1.0
    assert [i["role"] for i in art.manifest["inputs"]] == ["features", "dataset"]
    bad = run_esi("embed", feats, "--random-init", "atto", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "embedded as is" in bad.stderr


def test_embed_needs_a_representation(small_dataset, tmp_path):
    result = run_esi("embed", small_dataset, "--out", tmp_path / "e")
    assert result.exit_code == 2 and "--checkpoint MODEL_DIR, --random-init SIZE or --signal-stats" in result.stderr
    result = run_esi("embed", small_dataset, "--random-init", "gigantic", "--out", tmp_path / "e")
    assert result.exit_code == 2 and "unknown ECG encoder size" in result.stderr


def test_checkpoint_embedding_finetune_and_zero_shot(small_dataset, tiny_model, tmp_path):
    from esi_tools.model import load_esi, preprocess

    for pooling in ("stages", "embedding"):
        result = run_esi("embed", small_dataset, "--checkpoint", tiny_model, "--pooling", pooling, "--out", tmp_path / pooling)
        assert result.exit_code == 0, result.stderr
    emb = open_artifact(tmp_path / "embedding", "embeddings")
    assert emb.summary == {"source": "esi", "dim": 256, "records": 160}
    from esi_tools.dataset import Dataset

    expected = load_esi(tiny_model).encode_ecg(preprocess(Dataset.open(small_dataset).millivolts(slice(0, 4)))).numpy()
    assert np.allclose(emb.array("embeddings.npy")[:4], expected, atol=1e-5)

    result = run_esi("probe", small_dataset, "-e", tmp_path / "stages", "--finetune", tiny_model, "--finetune-epochs", "1",
                     "--finetune-scratch", tiny_model, "--zero-shot", tiny_model, "--task", "superdiagnostic", "--min-positives", "3", "--bootstrap", "50",
                     "--out", tmp_path / "p")
    assert result.exit_code == 0, result.stderr
    art = open_artifact(tmp_path / "p", "probe")
    results = art.table("results.parquet")
    assert sorted(results["method"].to_list()) == ["finetune", "finetune", "linear", "zero-shot"]
    name = Path(tiny_model).name
    pred = art.table("predictions.parquet").filter(method="finetune")
    pretrained, scratch = (pred.filter(embedding=e).sort("record_id", "class")["score"].to_numpy() for e in (f"esi:{name}", f"scratch:{name}"))
    assert pretrained.shape == scratch.shape and pretrained.size and not np.allclose(pretrained, scratch)  # random weights, not the checkpoint's
    assert results["macro_auroc"].is_between(0, 1).all()
    prompts = dict(art.table("prompts.parquet").iter_rows())
    assert prompts["NORM"].startswith("Normal ECG.") and "[normal_ecg]" in prompts["NORM"]
    assert "myocardial infarction" in prompts["MI"]


def test_checkpoint_at_another_sampling_rate_is_refused(ludb_dataset, tiny_model, tmp_path):
    result = run_esi("embed", ludb_dataset, "--checkpoint", tiny_model, "--out", tmp_path / "e")
    assert result.exit_code == 2 and "trained at 100 Hz" in result.stderr and "500 Hz" in result.stderr
    result = run_esi("probe", ludb_dataset, "--zero-shot", tiny_model, "--out", tmp_path / "p")
    assert result.exit_code == 2 and "trained at 100 Hz" in result.stderr
