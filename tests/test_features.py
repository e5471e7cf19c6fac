"""esi features on real data: LUDB cardiologist annotations, PTB-XL labels, bad input, the CLI contract."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import LUDB, run_esi

from esi_tools.artifacts import open_artifact
from esi_tools.features.findings import FINDINGS, derive
from esi_tools.features.ludb import MATCH_WINDOW_MS, match, read_annotations, summarise

CONTRACT_FINDINGS = (
    "sinus_rhythm sinus_tachycardia sinus_bradycardia irregular_rhythm possible_atrial_fibrillation absent_p_waves "
    "first_degree_av_block short_pr wide_qrs incomplete_conduction_delay prolonged_qtc short_qtc left_axis_deviation "
    "right_axis_deviation extreme_axis_deviation low_voltage lvh_voltage rvh_voltage st_elevation st_depression "
    "t_wave_inversion ectopic_beats poor_signal_quality"
).split()


@pytest.fixture(scope="module")
def ptbxl_features(ptbxl_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "ptbxl"
    result = run_esi("features", ptbxl_dataset, "--out", out, "--workers", 2)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return out


@pytest.fixture(scope="module")
def ludb_features(ludb_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "ludb"
    assert run_esi("features", ludb_dataset, "--out", out, "--workers", 1).exit_code == 0
    return out


# --- LUDB: fiducials against cardiologists (lead II, inside the annotated span, 150 ms window) ----------

def _ludb_scores(features_dir, dataset_dir) -> dict:
    beats = open_artifact(features_dir, "features").table("beats.parquet")
    records = open_artifact(dataset_dir, "dataset").table("records.parquet")
    fs = float(open_artifact(dataset_dir, "dataset").parameters["fs"])
    window = int(MATCH_WINDOW_MS / 1000 * fs)
    marks = {"p_on": "p_on_sample", "p_off": "p_off_sample", "qrs_on": "qrs_on_sample", "r_peak": "r_sample",
             "qrs_off": "qrs_off_sample", "t_peak": "t_peak_sample", "t_off": "t_off_sample"}
    per_mark: dict[str, list] = {m: [] for m in marks}
    by_record = beats.partition_by("record_id", as_dict=True)
    for rid in records["record_id"]:
        ref, span = read_annotations(LUDB / "data" / rid, "ii")
        mine = by_record.get((rid,))
        for mark, column in marks.items():
            detected = mine[column].to_numpy().astype(float) if mine is not None else np.zeros(0)
            per_mark[mark].append(match(ref[mark], np.round(detected), span, window))
    return {m: summarise(v, fs) for m, v in per_mark.items()}


def test_ludb_fiducials_match_cardiologists(ludb_features, ludb_dataset):
    s = _ludb_scores(ludb_features, ludb_dataset)
    # R peaks: a detector that misses or invents beats fails these
    assert s["r_peak"]["sensitivity"] >= 0.995 and s["r_peak"]["ppv"] >= 0.99
    # QRS onset/offset and T offset: better than NeuroKit2's best method (prominence) on lead II,
    # which reaches 4.4 +- 13.1 / -11.1 +- 20.9 / 12.2 +- 26.4 ms
    for mark, max_bias, max_sd in (("qrs_on", 5, 13), ("qrs_off", 6, 16), ("t_off", 8, 26), ("t_peak", 10, 24)):
        assert s[mark]["sensitivity"] >= 0.97, (mark, s[mark])
        assert abs(s[mark]["mean_ms"]) <= max_bias and s[mark]["sd_ms"] <= max_sd, (mark, s[mark])
    for mark in ("p_on", "p_off"):
        assert s[mark]["sensitivity"] >= 0.8 and s[mark]["ppv"] >= 0.88, (mark, s[mark])
        assert abs(s[mark]["mean_ms"]) <= 12 and s[mark]["sd_ms"] <= 22, (mark, s[mark])


def test_ludb_paced_records_are_not_measured_as_native_beats(ludb_features, ludb_dataset):
    f = open_artifact(ludb_features, "features").table("features.parquet")
    labels = open_artifact(ludb_dataset, "dataset").table("records.parquet")["labels"].to_list()
    paced = np.array([any("pacing" in s.lower() or "synchrony" in s.lower() for s in lab) for lab in labels])
    reason = f["quality_reason"].fill_null("").to_numpy()
    flagged = np.array(["paced" in r for r in reason])
    assert paced.sum() >= 8
    assert flagged[paced].sum() >= 3 and (~f["usable"].to_numpy()[paced]).sum() >= 5
    assert flagged[~paced].sum() == 0  # never on a native rhythm
    assert (~f["usable"].to_numpy()[~paced]).mean() < 0.02


def test_ludb_scoring_rejects_a_shifted_detector():
    """The scorer itself: fiducials shifted by 60 ms must show up as a 60 ms bias, misses as lost sensitivity."""
    ref, span = read_annotations(LUDB / "data" / "1", "ii")
    window = int(MATCH_WINDOW_MS / 1000 * 500)
    shifted = match(ref["qrs_on"], ref["qrs_on"] + 30.0, span, window)
    assert shifted["hits"] == len(ref["qrs_on"]) and np.all(shifted["errors"] == 30)
    halved = match(ref["r_peak"], ref["r_peak"][::2].astype(float), span, window)
    assert halved["hits"] == len(ref["r_peak"][::2])


# --- PTB-XL: measurements agree with cardiologists' labels ----------------------------------------------

def _with_labels(features_dir, dataset_dir):
    f = open_artifact(features_dir, "features").table("features.parquet")
    r = open_artifact(dataset_dir, "dataset").table("records.parquet")
    assert f["record_id"].to_list() == r["record_id"].to_list()  # one row per record, same order
    # NaN (not measured) -> null: in polars NaN compares greater than every number
    return f.fill_nan(None).with_columns(r["labels"]).filter(pl.col("usable"))


def _rate(frame, code, expr) -> float:
    sub = frame.filter(pl.col("labels").list.contains(code))
    assert sub.height >= 20, code
    return sub.select(expr.fill_null(False).mean()).item()


def test_ptbxl_labels_agree_with_measurements(ptbxl_features, ptbxl_dataset):
    d = _with_labels(ptbxl_features, ptbxl_dataset)
    assert _rate(d, "CLBBB", pl.col("qrs_ms") >= 120) >= 0.9
    assert _rate(d, "CRBBB", pl.col("qrs_ms") >= 120) >= 0.8
    assert _rate(d, "1AVB", pl.col("pr_ms") > 200) >= 0.7  # misses are mostly P not found (PR NaN), not short PR
    assert _rate(d, "AFIB", pl.col("findings").list.contains("irregular_rhythm")) >= 0.8
    assert _rate(d, "LAFB", pl.col("qrs_axis_deg") < -30) >= 0.85
    assert _rate(d, "SBRAD", pl.col("hr_mean_bpm") < 60) >= 0.95
    assert _rate(d, "STACH", pl.col("hr_mean_bpm") > 100) >= 0.95
    # and the other way round: normal ECGs rarely get these (a detector that always says yes fails here)
    assert _rate(d, "NORM", pl.col("qrs_ms") >= 120) <= 0.02
    assert _rate(d, "NORM", pl.col("pr_ms") > 200) <= 0.10
    assert _rate(d, "NORM", pl.col("findings").list.contains("irregular_rhythm")) <= 0.05
    assert _rate(d, "SR", pl.col("findings").list.contains("possible_atrial_fibrillation")) <= 0.03


def test_features_artifact_contract(ptbxl_features):
    art = open_artifact(ptbxl_features, "features")
    f = art.table("features.parquet")
    for column in ("hr_mean_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms", "qrs_axis_deg",
                   "r_amp_V5_mv", "s_amp_V1_mv", "q_amp_III_mv", "st_j60_V2_mv", "t_amp_V4_mv", "qrs_area_I_mvms",
                   "rr_rmssd_ms", "rr_sdnn_ms", "rr_irregularity", "p_present_fraction", "sokolow_lyon_mv",
                   "cornell_mv", "low_voltage", "ectopic_beats", "noise_V1_mv", "wander_V1_mv", "flat_V1",
                   "saturated_V1", "usable", "quality_reason", "findings"):
        assert column in f.columns, column
    assert f.schema["findings"] == pl.List(pl.String)
    known = set(FINDINGS)
    assert set(f["findings"].explode().drop_nulls()) <= known
    usable = f.filter(pl.col("usable"))
    assert usable.height >= 0.95 * f.height
    assert usable["hr_mean_bpm"].is_nan().sum() == 0 and usable["qrs_ms"].is_between(50, 200).mean() > 0.99
    beats = art.table("beats.parquet")
    assert beats.height == art.summary["beats"] and beats.height > 8 * f.height
    ok = beats.drop_nans().drop_nulls()
    assert (ok["qrs_on_sample"] < ok["r_sample"]).all() and (ok["r_sample"] < ok["qrs_off_sample"]).all()
    assert (ok["qrs_off_sample"] < ok["t_off_sample"]).all() and (ok["p_off_sample"] < ok["qrs_on_sample"]).all()
    rejects = art.table("rejects.parquet")
    assert set(rejects["record_id"]) == set(f.filter(~pl.col("usable"))["record_id"])
    assert rejects["reason"].null_count() == 0


def test_findings_cover_the_contract_ids():
    assert set(CONTRACT_FINDINGS) <= set(FINDINGS)
    for entry in FINDINGS.values():
        assert entry["title"] and entry["rule"]
    row = {"usable": True, "hr_mean_bpm": 110.0, "p_present_fraction": 1.0, "rr_irregularity": 0.02, "pr_ms": 230.0,
           "qrs_ms": 130.0, "qtc_bazett_ms": 455.0, "qrs_axis_deg": -45.0}
    got = derive(row, "M")
    assert {"sinus_tachycardia", "first_degree_av_block", "wide_qrs", "prolonged_qtc", "left_axis_deviation"} <= set(got)
    assert "prolonged_qtc" not in derive(row, "F")  # 455 ms is normal for women (>= 460)
    assert derive({**row, "usable": False}) == ["poor_signal_quality"]


# --- bad input, made from real records --------------------------------------------------------------

def test_bad_records_give_flags_not_exceptions(ptbxl_dataset):
    from esi_tools.dataset import Dataset
    from esi_tools.features.run import analyse_chunk

    ds = Dataset.open(ptbxl_dataset)
    labels = ds.records["labels"].to_list()
    good = next(i for i, lab in enumerate(labels) if "NORM" in lab and "SR" in lab)
    base = ds.millivolts(good)
    rng = np.random.default_rng(0)
    cases = {
        "good": base,
        "flat": np.zeros_like(base),
        "saturated": np.clip(base * 8, -0.3, 0.3),
        "noisy": base + rng.normal(0, 1.5, base.shape).astype(np.float32),
        "few_beats": base,  # only 1.5 s of it is valid (the rest zero-padded)
        "one_flat_lead": base.copy(),
    }
    cases["one_flat_lead"][6] = 0.0
    x = np.stack(list(cases.values()))
    valid = np.full(len(cases), x.shape[-1])
    valid[list(cases).index("few_beats")] = int(1.5 * ds.fs)
    x[list(cases).index("few_beats"), :, valid[list(cases).index("few_beats")]:] = 0
    mask = np.ones((len(cases), 12), bool)
    rows, _, errors = analyse_chunk(x, mask, ds.fs, valid)
    assert errors == [None] * len(cases)
    got = dict(zip(cases, rows))
    assert got["good"]["usable"] and 40 < got["good"]["hr_mean_bpm"] < 120
    for name in ("flat", "saturated", "noisy", "few_beats"):
        row = got[name]
        assert not row["usable"] and row["quality_reason"], name
        assert np.isnan(row["qrs_ms"]) and np.isnan(row["hr_mean_bpm"]), name  # no wrong numbers shown as valid
        assert derive(row) == ["poor_signal_quality"]
    assert "flat" in got["flat"]["quality_reason"] and "saturated" in got["saturated"]["quality_reason"]
    # noise everywhere: no beat at all (issue 23: noise is not counted as beats), or beats unlike each other
    assert any(w in got["noisy"]["quality_reason"] for w in ("noisy", "dominant", "too few beats (0)"))
    assert "beats" in got["few_beats"]["quality_reason"]
    assert got["one_flat_lead"]["usable"] and got["one_flat_lead"]["flat_V1"]
    assert "flat:V1" in got["one_flat_lead"]["quality_flags"]
    assert abs(got["one_flat_lead"]["qrs_ms"] - got["good"]["qrs_ms"]) < 15


# --- CLI -------------------------------------------------------------------------------------------------

def test_cli_reads_stdin_and_limits(ptbxl_dataset, tmp_path):
    out = tmp_path / "f"
    result = run_esi("features", "-", "--out", out, "--limit", 40, "--workers", 1, input=f"{ptbxl_dataset}\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert open_artifact(out, "features").table("features.parquet").height == 40


def test_cli_bad_input_is_one_line(tmp_path):
    result = run_esi("features", tmp_path / "nope", "--out", tmp_path / "f")
    assert result.exit_code == 2
    assert "no such artifact" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
