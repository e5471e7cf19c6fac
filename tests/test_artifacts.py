"""The artifact layer: manifests validated, atomic commits, schema versions refused with both versions named."""

import json

import polars as pl
import pytest

from esi_tools.artifacts import ArtifactWriter, open_artifact
from esi_tools.errors import ArtifactError, InputError, SchemaVersionError


def _write_dataset(out, **kw):
    with ArtifactWriter(out, "dataset", parameters={"source": "wfdb", "fs": 100, "seconds": 10}, **kw) as w:
        w.write_table("records.parquet", pl.DataFrame({c: [] for c in (
            "record_id", "patient_id", "source", "age", "sex", "fs", "source_fs", "n_samples", "leads",
            "lead_mask", "labels", "label_system", "report", "fold", "split", "source_path")}))
        w.write_table("rejects.parquet", pl.DataFrame({"path": [], "reason": []}))
        w.write_array("waveforms.npy", __import__("numpy").zeros((0, 12, 1000), "int16"))
        w.summary.update(records=0, rejects=0, leads=["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3",
                                                     "V4", "V5", "V6"], unit="uV", credentialed=False)
        return w.commit()


def test_manifest_records_files_and_inputs(tmp_path):
    first = open_artifact(_write_dataset(tmp_path / "a"), "dataset")
    second = open_artifact(_write_dataset(tmp_path / "b", inputs={"source": first}), "dataset")
    info = second.manifest["files"]["waveforms.npy"]
    assert info["shape"] == [0, 12, 1000] and len(info["sha256"]) == 64
    assert second.manifest["inputs"][0]["manifest_sha256"] == first.digest
    second.verify()


def test_refuses_overwrite_without_force(tmp_path):
    _write_dataset(tmp_path / "a")
    with pytest.raises(InputError, match="--force"):
        _write_dataset(tmp_path / "a")
    _write_dataset(tmp_path / "a", force=True)


def test_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ArtifactWriter(tmp_path / "x", "dataset", parameters={}) as w:
            w.write_json("partial.json", {})
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_invalid_manifest_is_refused_on_write(tmp_path):
    with pytest.raises(ArtifactError, match="fails"):
        with ArtifactWriter(tmp_path / "x", "dataset", parameters={"source": "nope", "fs": 100, "seconds": 10}) as w:
            w.commit()
    assert not (tmp_path / "x").exists()


def test_unknown_schema_version_names_both(tmp_path):
    path = _write_dataset(tmp_path / "a")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["schema_version"] = 7
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaVersionError, match=r"schema version 7.*dataset schema version 1"):
        open_artifact(path, "dataset")


def test_wrong_kind_and_tampering(tmp_path):
    path = _write_dataset(tmp_path / "a")
    with pytest.raises(ArtifactError, match="expected 'features'"):
        open_artifact(path, "features")
    data = bytearray((path / "rejects.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash tells
    (path / "rejects.parquet").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        open_artifact(path).verify()
    (path / "rejects.parquet").write_bytes(b"tampered")  # another size: refused on open already
    with pytest.raises(ArtifactError, match="8 bytes, but its manifest records"):
        open_artifact(path)
