"""The Python API on real records: the same numbers as the commands, resampling as ingest does, the README example."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import test_import_release as release_tests
from conftest import DATA, LUDB, ROOT, run_esi

import esi_tools
from esi_tools.artifacts import open_artifact
from esi_tools.dataset import Dataset
from esi_tools.errors import InputError

HEAVY = ["torch", "transformers", "litellm", "deepspeed", "polars"]
# fixtures of an imported release model (a release-shaped checkpoint with random weights), shared with its tests
tiny_bert, release_ckpt, imported = release_tests.tiny_bert, release_tests.release_ckpt, release_tests.imported


def test_import_and_attribute_access_load_nothing_heavy():
    code = ("import sys, esi_tools; esi_tools.open_artifact; esi_tools.load_model; esi_tools.measure; esi_tools.Model; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout.strip()}"
    assert set(esi_tools.__all__) <= set(dir(esi_tools))
    with pytest.raises(AttributeError):
        esi_tools.no_such_thing  # noqa: B018


@pytest.fixture(scope="module")
def model(tiny_model):
    return esi_tools.load_model(tiny_model)


def test_embed_ecg_equals_esi_embed(ptbxl_small, tiny_model, model, tmp_path):
    """Arrays in memory (uV ints, mV floats, one or a batch, leads in another order) embed as `esi embed` does."""
    ds = Dataset.open(ptbxl_small)
    cli = {}
    for pooling in ("embedding", "stages"):
        result = run_esi("embed", ptbxl_small, "--checkpoint", tiny_model, "--pooling", pooling, "--out", tmp_path / pooling)
        assert result.exit_code == 0, result.stderr
        cli[pooling] = open_artifact(tmp_path / pooling).array("embeddings.npy")
        api = model.embed_ecg(ds.waveforms[:70], 100, units="uV", pooling=pooling)  # more than one batch of 64
        assert api.shape == (70, cli[pooling].shape[1])
        assert np.abs(api - cli[pooling][:70]).max() < 1e-6  # batches of other sizes differ only in float rounding
    single = model.embed_ecg(ds.millivolts(3), 100.0, units="mV")
    assert single.shape == (256,) and np.allclose(single, cli["embedding"][3], atol=1e-6)
    order = [11, 5, 0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    names = ["v6", "AVF", "I", "lead II", "D3", "aVR", "aVL", "V1", "C2", "V3", "V4", "V5"]
    shuffled = model.embed_ecg(ds.millivolts(3)[order], 100.0, units="mV", leads=names)
    assert np.array_equal(shuffled, single)


def test_embed_ecg_resamples_as_ingest_does(model, tmp_path):
    """LUDB's native 500 Hz arrays, given to a 100 Hz model, embed like LUDB ingested at 100 Hz by `esi ingest`."""
    import wfdb

    from esi_tools.ingest.run import IngestConfig, ingest

    ds100 = Dataset.open(ingest(IngestConfig(kind="wfdb", fs=100, workers=1, limit=6), LUDB / "data", tmp_path / "ds100"))
    result = run_esi("embed", ds100.path, "--checkpoint", model.path, "--pooling", "embedding", "--out", tmp_path / "e")
    assert result.exit_code == 0, result.stderr
    cli = open_artifact(tmp_path / "e").array("embeddings.npy")
    records = [wfdb.rdrecord(p) for p in ds100.records["source_path"].to_list()]
    assert {r.fs for r in records} == {500}
    x = np.stack([r.p_signal.T for r in records])  # (6, 12, 5000) mV in LUDB's lead order
    api = model.embed_ecg(x, 500, units="mV", leads=records[0].sig_name)
    assert np.abs(api - cli).max() < 1e-4  # ingest reads the same samples; only float rounding differs
    assert not np.allclose(api[0], api[1], atol=1e-3)  # and different records differ


def test_embed_text_and_zero_shot(tiny_model, model, ptbxl_small):
    from esi_tools.model import load_esi

    texts = ["Normal ECG.", "Myocardial infarction.", "Atrial fibrillation."]
    t = model.embed_text(texts)
    assert t.shape == (3, 256) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert np.allclose(t, load_esi(tiny_model).encode_text(texts).numpy(), atol=1e-6)
    assert np.allclose(model.embed_text("Normal ECG."), t[0], atol=1e-6)

    x = Dataset.open(ptbxl_small).waveforms[:5]
    classes = {"normal": "Normal ECG.", "infarction": ["Myocardial infarction.", "Old infarct."], "af": texts[2]}
    p = model.zero_shot(x, 100, classes, units="uV")
    assert p.shape == (5, 3) and np.allclose(p.sum(axis=1), 1, atol=1e-6) and (p > 0).all()
    z = model.embed_ecg(x, 100, units="uV")
    ensemble = model.embed_text(["Myocardial infarction.", "Old infarct."]).mean(axis=0)
    prompts = np.stack([t[0], ensemble / np.linalg.norm(ensemble), t[2]])
    scale = min(float(np.exp(model.esi.log_scale.item())), 100.0)
    logits = scale * z @ prompts.T
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.allclose(p, expected / expected.sum(axis=1, keepdims=True), atol=1e-5)
    assert np.allclose(model.zero_shot(x[0], 100, classes, units="uV"), p[0], atol=1e-6)


def test_measure_equals_esi_features(ptbxl_small, tmp_path):
    from esi_tools.features.run import FeaturesConfig, features

    art = open_artifact(features(FeaturesConfig(workers=1, limit=6), ptbxl_small, tmp_path / "f"))
    cli = art.table("features.parquet")
    ds = Dataset.open(ptbxl_small)
    ids = ds.records["record_id"].head(6).to_list()
    api, beats, rejects = esi_tools.measure(ds.waveforms[:6], ds.fs, units="uV", ids=ids, sex=ds.records["sex"].head(6).to_list())
    assert api.columns == cli.columns and api.height == 6
    assert api.equals(cli), "measure() must give esi features' numbers"
    assert beats.equals(art.table("beats.parquet"))
    assert rejects.height == art.table("rejects.parquet").height


def test_clear_errors(model, tmp_path):
    x = np.zeros((12, 1000), np.float32)
    with pytest.raises(InputError, match="units must be"):
        model.embed_ecg(x, 100, units="V")
    with pytest.raises(InputError, match="12 standard leads"):
        model.embed_ecg(x[:8], 100)
    with pytest.raises(InputError, match="distinct standard leads"):
        model.embed_ecg(x[:2], 100, leads=["II", "ECG2"])
    with pytest.raises(InputError, match="sampling rate fs 0 Hz is outside 25-20000 Hz"):
        model.embed_ecg(x, 0)
    with pytest.raises(InputError, match="pooling must be one of"):
        model.embed_ecg(x, 100, pooling="max")
    with pytest.raises(InputError, match="at least one class"):
        model.zero_shot(x, 100, {})
    with pytest.raises(InputError, match="no such model directory"):
        esi_tools.load_model(tmp_path / "nowhere" / "model")
    with pytest.raises(InputError, match="HF_HUB_OFFLINE=1"):  # a hub id that is not cached, offline: no network
        esi_tools.load_model("esi-tools-tests/not-cached")


def test_readme_python_example_runs_verbatim(tiny_model, tmp_path, monkeypatch, capsys):
    """The README's "Python" block, run as written from a project checkout whose run dir holds a trained model."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    project = tmp_path / "project"
    (project / "runs" / "ptbxl").mkdir(parents=True)
    (project / "runs" / "ptbxl" / "model").symlink_to(tiny_model)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(DATA)
    monkeypatch.chdir(project)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("(256,) [") and "nan" not in out.lower()


def test_release_variant_through_the_same_api(imported, release_ckpt):
    """An `esi import-release` model: load_model dispatches on config.json; embeddings and zero-shot follow the release."""
    import torch

    model = esi_tools.load_model(imported)
    assert model.fs == 500 and model.config["variant"] == "esi-release"
    signals = np.stack([release_tests.reference_input(1), release_tests.reference_input(2)])  # (2, 5000, 12) mV, MIMIC-IV-ECG's lead order
    ref = release_tests.reference_embedding(release_ckpt[1], torch.stack([release_tests.reference_normalise(s) for s in signals])).numpy()
    z = model.embed_ecg(signals.transpose(0, 2, 1), 500, units="mV", leads=release_tests.MIMIC)
    assert np.abs(z - ref).max() < 1e-5 and np.abs(z[0] - z[1]).max() > 1e-2
    classes = {"normal": "Sinus rhythm. Normal ECG.", "af": "Atrial fibrillation."}
    p = model.zero_shot(signals.transpose(0, 2, 1), 500, classes, leads=release_tests.MIMIC)
    logits = np.exp(2.0) * ref @ model.embed_text(list(classes.values())).T  # the release's scale: exp(temperature)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(p, expected, atol=1e-5)
