"""--out and --force never destroy what is not the command's own (issue 13.1), one writer per --out (13.13).

Every case runs on a real 12-record PTB-XL dataset artifact (copied per test, so a regression that deletes
it cannot spoil the next test) or on real LUDB records copied into tmp_path as a raw source.
"""

import shutil

import pytest
from conftest import LUDB, run_esi

from esi_tools.artifacts import ArtifactWriter, open_artifact
from esi_tools.errors import InputError


@pytest.fixture(scope="module")
def small_dataset(ptbxl12):
    return ptbxl12


@pytest.fixture
def run_dir(small_dataset, tmp_path):
    """A run directory holding a copy of the dataset artifact."""
    shutil.copytree(small_dataset, tmp_path / "run" / "dataset")
    return tmp_path / "run"


@pytest.fixture
def raw_source(tmp_path):
    """Three real LUDB records (header + signal) in a folder of their own, as a user's raw collection."""
    src = tmp_path / "ludb3"
    src.mkdir()
    for n in (1, 2, 3):
        for ext in ("hea", "dat"):
            shutil.copy(LUDB / "data" / f"{n}.{ext}", src / f"{n}.{ext}")
    return src


def _intact(path):
    open_artifact(path).verify()


def _one_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_features_out_equal_to_its_input_is_refused(run_dir):
    ds = run_dir / "dataset"
    result = run_esi("features", ds, "--out", ds, "--force")
    assert result.exit_code == 2
    assert "is the input" in _one_line(result)
    _intact(ds)


def test_report_out_containing_its_inputs_is_refused(run_dir):
    result = run_esi("report", run_dir, "--out", run_dir, "--force")
    assert result.exit_code == 2
    assert "contains the input" in _one_line(result)
    _intact(run_dir / "dataset")


def test_out_inside_an_input_is_refused(run_dir):
    ds = run_dir / "dataset"
    before = sorted(p.name for p in ds.iterdir())
    result = run_esi("features", ds, "--out", ds / "features")
    assert result.exit_code == 2 and "inside the input" in _one_line(result)
    assert sorted(p.name for p in ds.iterdir()) == before  # nothing written into the input, not even a lock


def test_force_never_deletes_a_users_folder_or_file(run_dir, tmp_path):
    mine = tmp_path / "my notes"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    result = run_esi("features", run_dir / "dataset", "--out", mine, "--force")
    assert result.exit_code == 2
    assert "not a features artifact" in _one_line(result)
    assert (mine / "thesis.txt").read_text() == "years of work"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    result = run_esi("features", run_dir / "dataset", "--out", a_file, "--force")
    assert result.exit_code == 2 and "not a features artifact" in _one_line(result)
    assert a_file.read_text() == "keep me"


def test_pretrain_refuses_a_bad_out_before_training(run_dir, tmp_path):
    ds = run_dir / "dataset"
    result = run_esi("pretrain", ds, "--text-source", "statements", "--out", ds, "--force")
    assert result.exit_code == 2 and "is the input" in _one_line(result)
    _intact(ds)
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "table.csv").write_text("keep")
    result = run_esi("pretrain", ds, "--text-source", "statements", "--out", mine, "--force")
    assert result.exit_code == 2 and "not a model artifact" in _one_line(result)
    assert "step" not in result.stderr  # refused before any training step was logged
    assert (mine / "table.csv").read_text() == "keep"


def test_force_never_replaces_an_artifact_of_another_kind(run_dir, small_dataset, tmp_path):
    other = tmp_path / "other_dataset"
    shutil.copytree(small_dataset, other)
    result = run_esi("features", run_dir / "dataset", "--out", other, "--force")
    assert result.exit_code == 2
    assert "is a 'dataset' artifact" in _one_line(result)
    _intact(other)


def test_force_replaces_an_artifact_of_the_same_kind(small_dataset, tmp_path):
    src = open_artifact(small_dataset)
    out = tmp_path / "copy"
    shutil.copytree(small_dataset, out)
    with ArtifactWriter(out, "dataset", parameters=src.parameters, force=True) as writer:
        for name in src.manifest["files"]:
            shutil.copy(small_dataset / name, writer.path(name))
        writer.summary.update(src.summary)
        writer.commit()
    assert open_artifact(out).manifest["created_at"] >= src.manifest["created_at"]
    assert not list(tmp_path.glob(".copy*"))  # no temporary, trash or lock file left behind


def test_ingest_never_writes_over_or_into_its_source(raw_source, tmp_path):
    before = sorted(p.name for p in raw_source.iterdir())
    result = run_esi("ingest", "wfdb", raw_source, "--fs", "500", "--out", raw_source, "--force")
    assert result.exit_code == 2 and "is the source" in _one_line(result)
    result = run_esi("ingest", "wfdb", raw_source, "--fs", "500", "--out", raw_source / "dataset")
    assert result.exit_code == 2 and "inside the source" in _one_line(result)
    assert sorted(p.name for p in raw_source.iterdir()) == before


def test_writer_refuses_out_containing_an_input(small_dataset, tmp_path):
    nested = tmp_path / "project" / "dataset"
    shutil.copytree(small_dataset, nested)
    art = open_artifact(nested)
    with pytest.raises(InputError, match="contains the input"):
        ArtifactWriter(tmp_path / "project", "features", parameters={}, inputs={"dataset": art}, force=True)
    with pytest.raises(InputError, match="contains the source"):
        ArtifactWriter(tmp_path, "dataset", parameters={}, sources=[nested], force=True)
    _intact(nested)


def test_an_empty_directory_at_out_is_used(small_dataset, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_esi("-q", "features", small_dataset, "--out", tmp_path / "empty", "--limit", "2", "-j", "1")
    assert result.exit_code == 0, result.output
    assert open_artifact(tmp_path / "empty").kind == "features"


# ------------------------------------------------------------------ 13.13: one writer per --out


def test_second_writer_to_the_same_out_fails_at_once(small_dataset, tmp_path):
    out = tmp_path / "feats"
    first = ArtifactWriter(out, "features", parameters={})
    try:
        with pytest.raises(InputError, match="being written by another esi process"):
            ArtifactWriter(out, "features", parameters={})
        result = run_esi("features", small_dataset, "--out", out, "--limit", "2", "-j", "1")
        assert result.exit_code == 2
        assert "being written by another esi process" in _one_line(result)
    finally:
        first.abort()
    assert not out.exists() and not list(tmp_path.iterdir())  # lock released and removed with the writer
    result = run_esi("-q", "features", small_dataset, "--out", out, "--limit", "2", "-j", "1")
    assert result.exit_code == 0, result.output


def test_lock_file_left_by_a_killed_writer_does_not_block(small_dataset, tmp_path):
    from esi_tools.artifacts import LOCK_SIGNATURE

    (tmp_path / ".feats.lock").write_bytes(LOCK_SIGNATURE)  # a SIGKILLed writer leaves its signed file, not the lock
    result = run_esi("-q", "features", small_dataset, "--out", tmp_path / "feats", "--limit", "2", "-j", "1")
    assert result.exit_code == 0, result.output
