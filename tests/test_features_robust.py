"""esi features never loses a record to another's failure, and says the real cause when all fail (issue 14.1/14.2)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import LUDB, run_esi

from esi_tools.artifacts import open_artifact
from esi_tools.features import chunk as chunk_mod
from esi_tools.features.measure import measure_record
from esi_tools.features.pipeline import analyse
from esi_tools.features.stats import group_nanmedian, nanmedian0

N = 40  # two chunks of the default 32: the failing record shares its chunk with 31 good ones
BAD = 4


@pytest.fixture(scope="module")
def clean_run(ptbxl_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("robust") / "clean"
    assert run_esi("features", ptbxl_dataset, "--out", out, "--limit", N, "--workers", 1).exit_code == 0
    art = open_artifact(out, "features")
    return art.table("features.parquet"), art.table("beats.parquet")


def _same_except(run_dir, clean, bad_id):
    """Every record but bad_id has exactly the clean run's beats and (to float noise) measurements."""
    art = open_artifact(run_dir, "features")
    f, b = art.table("features.parquet"), art.table("beats.parquet")
    cf, cb = clean
    assert f["record_id"].to_list() == cf["record_id"].to_list()
    keep_f, keep_b = pl.col("record_id") != bad_id, pl.col("record_id") != bad_id
    assert b.filter(keep_b)["r_sample"].to_list() == cb.filter(keep_b)["r_sample"].to_list()
    got, want = f.filter(keep_f), cf.filter(keep_f)
    assert got["usable"].to_list() == want["usable"].to_list()
    for col in ("hr_mean_bpm", "pr_ms", "qrs_ms", "qt_ms", "qrs_axis_deg", "r_amp_V5_mv"):
        np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-4, atol=1e-3, err_msg=col)
    assert b.filter(~keep_b).height == 0
    rejects = art.table("rejects.parquet")
    return rejects.filter(pl.col("record_id") == bad_id)["reason"].to_list()


def test_a_record_failing_in_measurement_costs_only_itself(ptbxl_dataset, clean_run, tmp_path, monkeypatch):
    ids = open_artifact(ptbxl_dataset, "dataset").table("records.parquet")["record_id"].to_list()
    calls = {"n": 0}
    real = chunk_mod.measure_record

    def fails_once(*args, **kwargs):  # the 5th record measured (record BAD of the first chunk) raises
        calls["n"] += 1
        if calls["n"] == BAD + 1:
            raise IndexError("index 0 is out of bounds for axis 0 with size 0")
        return real(*args, **kwargs)

    monkeypatch.setattr(chunk_mod, "measure_record", fails_once)
    out = tmp_path / "f"
    result = run_esi("features", ptbxl_dataset, "--out", out, "--limit", N, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    reasons = _same_except(out, clean_run, ids[BAD])
    assert reasons == ["measurement failed: IndexError: index 0 is out of bounds for axis 0 with size 0"]
    assert open_artifact(out, "features").summary["failed"] == 1
    assert "1 failed in measurement" in result.stderr


def test_a_record_breaking_the_vectorised_stage_costs_only_itself(ptbxl_dataset, clean_run, tmp_path, monkeypatch):
    """When the chunk-wide signal stage raises (e.g. MemoryError), each record is analysed alone."""
    from esi_tools.dataset import Dataset

    ds = Dataset.open(ptbxl_dataset)
    poison = ds.millivolts(BAD)
    real = chunk_mod.analyse

    def breaks_on_poison(x, *args, **kwargs):
        if any(np.array_equal(row, poison) for row in x):
            raise MemoryError("Unable to allocate 1.86 GiB for an array")
        return real(x, *args, **kwargs)

    monkeypatch.setattr(chunk_mod, "analyse", breaks_on_poison)
    out = tmp_path / "f"
    assert run_esi("features", ptbxl_dataset, "--out", out, "--limit", N, "--workers", 1).exit_code == 0
    reasons = _same_except(out, clean_run, ds.records["record_id"][BAD])
    assert reasons == ["measurement failed: MemoryError: Unable to allocate 1.86 GiB for an array"]


def test_every_record_failing_names_the_real_cause(ptbxl_dataset, tmp_path, monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.86 GiB for an array with shape (32, 12, 648000)")

    monkeypatch.setattr(chunk_mod, "analyse", no_memory)
    result = run_esi("features", ptbxl_dataset, "--out", tmp_path / "f", "--limit", 5, "--workers", 1)
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and "lacks columns" not in line
    assert "every record (5)" in line and "MemoryError: Unable to allocate 1.86 GiB" in line
    assert not (tmp_path / "f").exists() and result.stdout == ""


# --- the IndexError itself (features/stats.py via measure.py) ----------------------------------------------

def test_nanmedian_of_nothing_is_nan():
    assert np.isnan(nanmedian0(np.zeros((0, 2)))).all() and nanmedian0(np.zeros((0, 2))).shape == (2,)
    med, count = group_nanmedian(np.array([1.0, np.nan, 3.0]), np.array([0, 0, 1]), 3)
    assert med[0] == 1.0 and med[1] == 3.0 and np.isnan(med[2]) and count.tolist() == [1, 1, 0]


def test_p_waves_only_on_abnormal_beats_is_measured_not_raised(ludb_dataset):
    """A real LUDB record whose P waves all sit on beats that are not normal: PR is NaN, the rest measured."""
    from esi_tools.dataset import Dataset

    ds = Dataset.open(ludb_dataset)
    i = ds.records["record_id"].to_list().index("117")
    x, mask = ds.millivolts(slice(i, i + 1)), ds.lead_mask[i:i + 1]
    _, beats = analyse(x, mask, ds.fs, np.array([x.shape[-1]]))
    sel = np.arange(len(beats.r))
    beats.p_present[:] = True  # P before most beats (enough to report PR) ...
    beats.p_present[-2:] = False
    beats.marks["qrs_off"][:-2] = np.nan  # ... but only the last two (without P) are normal beats
    row, _ = measure_record(beats, sel, beats.fs, mask[0])
    assert row["p_present_fraction"] >= 0.5 and np.isnan(row["pr_ms"])
    assert 60 < row["qrs_ms"] < 120 and np.isfinite(row["hr_mean_bpm"])
    assert (LUDB / "data" / "117.hea").exists()
