"""`esi verify` (issues 13.12, 17.3), the size check on every open, and corrupt files named (13.17).

Every artifact here is a real 12-record PTB-XL dataset, copied per test and then damaged on purpose.
"""

import json
import shutil

import pytest
from conftest import run_esi

from esi_tools.artifacts import ArtifactWriter, open_artifact
from esi_tools.errors import ArtifactError


@pytest.fixture(scope="module")
def small_dataset(ptbxl12):
    return ptbxl12


@pytest.fixture
def ds(small_dataset, tmp_path):
    shutil.copytree(small_dataset, tmp_path / "ds")
    return tmp_path / "ds"


def _derived(ds, out):
    """A second artifact that records `ds` as its input (a copy of it, through the writer)."""
    src = open_artifact(ds)
    with ArtifactWriter(out, "dataset", parameters=src.parameters, inputs={"source": src}) as writer:
        for name in src.manifest["files"]:
            shutil.copy(ds / name, writer.path(name))
        writer.summary.update(src.summary)
        return writer.commit()


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_passes_intact_artifacts_and_prints_their_paths(ds, tmp_path):
    derived = _derived(ds, tmp_path / "derived")
    result = run_esi("verify", ds, derived)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [str(ds), str(derived)]


def test_verify_names_a_modified_file(ds):
    _flip_byte(ds / "waveforms.npy", 5000)  # same size: only the hash can tell
    result = run_esi("verify", ds)
    assert result.exit_code == 3
    assert "waveforms.npy" in result.stderr and "sha256" in result.stderr
    assert result.stdout == ""


def test_verify_names_a_changed_input(ds, tmp_path):
    derived = _derived(ds, tmp_path / "derived")
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["summary"]["records"] = 11  # the input was rewritten after `derived` was made from it
    (ds / "manifest.json").write_text(json.dumps(manifest))
    result = run_esi("verify", derived)
    assert result.exit_code == 3
    assert "input 'source'" in result.stderr and str(ds) in result.stderr and "changed" in result.stderr


def test_verify_fails_on_a_moved_input_even_quietly(ds, tmp_path):
    """Issue 24: an input that cannot be found cannot be checked, so the artifact is not vouched for (exit 3)."""
    derived = _derived(ds, tmp_path / "derived")
    shutil.rmtree(ds)
    for quiet in ([], ["-q"]):
        result = run_esi(*quiet, "verify", derived)
        assert result.exit_code == 3, result.stderr
        assert "not checked:" in result.stderr and "not found" in result.stderr and result.stdout == ""


def test_verify_names_a_symlink_added_inside(ds, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (ds / "linked").symlink_to(tmp_path / "elsewhere")
    result = run_esi("verify", ds)
    assert result.exit_code == 3 and "linked: a symbolic link" in result.stderr


def test_verify_reports_every_problem_of_every_artifact(ds, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(ds, other)
    (ds / "rejects.parquet").unlink()
    (ds / "extra.txt").write_text("added later")
    with open(other / "records.parquet", "ab") as fh:
        fh.write(b"appended")
    result = run_esi("verify", ds, other, tmp_path / "nothing-here")
    assert result.exit_code == 3
    for expected in ("rejects.parquet", "missing", "extra.txt", "not in the manifest", "records.parquet",
                     "bytes", "nothing-here"):
        assert expected in result.stderr, expected
    assert "3 of 3 artifacts failed" in result.stderr


def test_open_refuses_a_file_whose_size_changed(ds):
    with open(ds / "waveforms.npy", "r+b") as fh:
        fh.truncate(4096)
    with pytest.raises(ArtifactError, match=r"waveforms.npy.*4096 bytes"):
        open_artifact(ds)
    result = run_esi("features", ds, "--out", ds.parent / "f")
    assert result.exit_code == 3
    assert "waveforms.npy" in result.stderr and "esi verify" in result.stderr


def test_corrupt_parquet_of_the_same_size_is_named(ds):
    path = ds / "records.parquet"
    path.write_bytes(b"\0" * path.stat().st_size)
    result = run_esi("features", ds, "--out", ds.parent / "f")
    assert result.exit_code == 3, result.stderr
    assert "records.parquet" in result.stderr and "internal error" not in result.stderr


def test_corrupt_npy_header_of_the_same_size_is_named(ds):
    _flip_byte(ds / "waveforms.npy", 0)  # the magic string
    result = run_esi("features", ds, "--out", ds.parent / "f")
    assert result.exit_code == 3, result.stderr
    assert "waveforms.npy" in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/hostname", "sub/../../x"])
def test_manifest_file_names_must_stay_inside(ds, name):
    (ds.parent / "outside.txt").write_text("secret")
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": "0" * 64, "bytes": 6}
    (ds / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="outside"):
        open_artifact(ds)
