"""Long recordings, lead aliases and header metadata at ingest (issue 14 items 3, 4, 7; issue 13 item 11).

Long recordings are real records joined end to end (LUDB, 500 Hz, 12 leads) and written with wfdb.wrsamp."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import pytest
import wfdb
from conftest import CHALLENGE, LUDB, PTBXL, run_esi
from scipy.signal import resample_poly

from esi_tools.dataset import Dataset
from esi_tools.signal.leads import STANDARD_LEADS, assign_leads, parse_lead_map

ESI = str(Path(sys.executable).parent / "esi")
LUDB_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _joined_ludb(count: int) -> np.ndarray:
    """(samples, 12) mV: LUDB records 1..count joined end to end, 10 s each at 500 Hz."""
    return np.concatenate([wfdb.rdrecord(str(LUDB / "data" / str(k))).p_signal for k in range(1, count + 1)])


@pytest.fixture(scope="module")
def long_record(tmp_path_factory) -> Path:
    """A 30-minute 12-lead 500 Hz recording made of 180 real LUDB records, as one WFDB record."""
    folder = tmp_path_factory.mktemp("long")
    signal_ = _joined_ludb(180)
    wfdb.wrsamp("holter30", fs=500, units=["mV"] * 12, sig_name=LUDB_LEADS, p_signal=signal_, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))
    return folder


def test_thirty_minutes_become_180_windows(long_record, tmp_path):
    result = run_esi("-q", "ingest", "wfdb", long_record, "--window", "10", "--stride", "10", "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / "ds")
    rows = ds.records
    assert len(ds) == 180 and ds.waveforms.shape == (180, 12, 1000)
    assert rows["record_id"].to_list() == [f"holter30_w{k:04d}" for k in range(180)]
    assert set(rows["parent_record_id"]) == {"holter30"} and ds.artifact.summary["recordings"] == 1
    assert rows["start_s"].to_list() == [10.0 * k for k in range(180)]
    assert rows["cut"].all() and not rows["padded"].any() and (rows["coverage"] == 1.0).all()
    # every window equals the whole recording resampled at once (apart from int16 storage)
    whole = resample_poly(wfdb.rdrecord(str(long_record / "holter30")).p_signal.T, 1, 5, axis=1, padtype="line")
    for k in (0, 1, 57, 179):
        np.testing.assert_allclose(ds.millivolts(k), whole[:, k * 1000 : (k + 1) * 1000], atol=0.0015)


def test_windows_at_native_rate_are_the_source_samples(long_record, tmp_path):
    result = run_esi("-q", "ingest", "wfdb", long_record, "--fs", "500", "--window", "10", "--stride", "5",
                     "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / "ds")
    assert len(ds) == 359 and ds.records["start_s"][:3].to_list() == [0.0, 5.0, 10.0]
    for k in (1, 100, 358):
        source = wfdb.rdrecord(str(long_record / "holter30"), sampfrom=2500 * k, sampto=2500 * k + 5000).p_signal.T
        np.testing.assert_allclose(ds.millivolts(k), source, atol=0.0006)


def test_without_window_the_cut_is_recorded(long_record, tmp_path):
    result = run_esi("-q", "ingest", "wfdb", long_record, "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    row = Dataset.open(tmp_path / "ds").records.row(0, named=True)
    assert row["cut"] and not row["padded"] and row["coverage"] == 1.0 and row["start_s"] == 0.0
    assert row["parent_record_id"] == row["record_id"] == "holter30" and row["source_seconds"] == 1800.0


def test_short_record_padded_and_marked(tmp_path):
    result = run_esi("-q", "ingest", "ptbxl", PTBXL, "--limit", "3", "--seconds", "15", "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / "ds")
    rows = ds.records
    assert rows["padded"].all() and not rows["cut"].any()
    assert np.allclose(rows["coverage"].to_numpy(), 10 / 15)
    assert not ds.waveforms[:, :, 1000:].any() and ds.waveforms[:, :, :1000].any()


def test_window_options_checked(tmp_path):
    result = run_esi("ingest", "wfdb", LUDB / "data", "--stride", "5", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "--stride needs --window" in result.stderr
    result = run_esi("ingest", "wfdb", LUDB / "data", "--window", "-3", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "--window must be a positive" in result.stderr
    result = run_esi("ingest", "wfdb", LUDB / "data", "--lead-map", "ECG1=Q7", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "ECG1=Q7" in result.stderr


def _two_lead_holter(folder: Path, names: list[str], minutes: int = 3) -> Path:
    """A 2-lead 360 Hz Holter-style record: LUDB leads II and V5 joined, resampled 500 -> 360 Hz."""
    folder.mkdir(parents=True, exist_ok=True)
    two = resample_poly(_joined_ludb(6 * minutes)[:, [1, 10]], 18, 25, axis=0)
    wfdb.wrsamp("holter", fs=360, units=["mV", "mV"], sig_name=names, p_signal=two, fmt=["16", "16"],
                write_dir=str(folder))
    return folder


def test_holter_lead_names_mapped_through_aliases(tmp_path):
    src = _two_lead_holter(tmp_path / "mlii", ["MLII", "CM5"])
    result = run_esi("-q", "ingest", "wfdb", src, "--window", "10", "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / "ds")
    assert len(ds) == 18 and ds.records["unknown_leads"].to_list() == [[]] * 18
    assert ds.lead_mask[0].tolist() == [lead in ("II", "V5") for lead in STANDARD_LEADS]
    assert "approximate lead: CM5 stored as V5" in ds.records["quality_flags"][0].to_list()


def test_lead_map_and_unknown_leads_kept(tmp_path):
    src = _two_lead_holter(tmp_path / "ecg", ["ECG1", "ECG2"], minutes=1)
    refused = run_esi("-q", "ingest", "wfdb", src, "--out", tmp_path / "refused")  # keeps nothing: fails, saying why
    assert refused.exit_code == 2 and "no record kept" in refused.stderr, refused.output
    assert "no known lead names" in refused.stderr and "--lead-map" in refused.stderr
    mapped = run_esi("-q", "ingest", "wfdb", src, "--lead-map", "ECG1=II,ECG2=V5", "--out", tmp_path / "mapped")
    assert mapped.exit_code == 0, mapped.output
    ds = Dataset.open(tmp_path / "mapped")
    assert ds.lead_mask[0].tolist() == [lead in ("II", "V5") for lead in STANDARD_LEADS]
    partial = _two_lead_holter(tmp_path / "partial", ["MLII", "ECG2"], minutes=1)
    result = run_esi("-q", "ingest", "wfdb", partial, "--out", tmp_path / "partial_ds")
    assert result.exit_code == 0, result.output
    row = Dataset.open(tmp_path / "partial_ds").records.row(0, named=True)
    assert row["unknown_leads"] == ["ECG2"] and row["lead_mask"] == [lead == "II" for lead in STANDARD_LEADS]


def test_alias_table():
    names = ["D1", "D2", "D3", "-aVR", "aVL", "AVF", "C1", "lead V2", "v3", "CM4", "V5", "ML5", "CC5", "V6", "ECG1"]
    got = assign_leads(names)
    stored = {names[i]: STANDARD_LEADS[s] for i, s in enumerate(got.slots) if s is not None}
    assert stored == {"D1": "I", "D2": "II", "D3": "III", "aVL": "aVL", "AVF": "aVF", "C1": "V1", "lead V2": "V2",
                      "v3": "V3", "CM4": "V4", "V5": "V5", "V6": "V6"}
    assert got.unknown == ["-aVR", "ML5", "CC5", "ECG1"]  # ML5 and CC5: V5 is already stored from a real V5
    assert parse_lead_map("ecg1=ii, ECG2=v5") == {"ecg1": "II", "ecg2": "V5"}
    with pytest.raises(ValueError, match="Z9"):
        parse_lead_map("ECG1=Z9")


def test_challenge_2024_comments_become_columns_free_text_stays_comments(tmp_path):
    src = tmp_path / "c2024"
    src.mkdir()
    original = CHALLENGE / "cinc2021" / "E07500"
    lines = [ln for ln in (original.with_suffix(".hea")).read_text().splitlines() if not ln.startswith("#")]
    comments = ["# Age: 56", "# Sex: Female", "# Height: 171", "# Weight: 63.5", "# Labels: NORM, STTC",
                "# 69 M 1085 1629 x1", "# Medications: aspirin, metoprolol"]
    (src / "E07500.hea").write_text("\n".join(lines + comments) + "\n")
    (src / "E07500.mat").write_bytes(original.with_suffix(".mat").read_bytes())
    (src / "free.hea").write_text("\n".join(ln.replace("E07500", "free") for ln in lines) + "\n# 69 M 1085 1629 x1\n")
    (src / "free.mat").write_bytes(original.with_suffix(".mat").read_bytes())
    result = run_esi("-q", "ingest", "challenge", src, "--fs", "500", "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    rows = {r["record_id"]: r for r in Dataset.open(tmp_path / "ds").records.iter_rows(named=True)}
    row = rows["E07500"]
    assert (row["age"], row["sex"], row["height_cm"], row["weight_kg"]) == (56, "F", 171, 63.5)
    assert row["labels"] == ["NORM", "STTC"] and row["label_system"] == "challenge-2024"
    assert row["comments"] == "69 M 1085 1629 x1\nMedications: aspirin, metoprolol"
    assert rows["free"]["labels"] == [] and rows["free"]["comments"] == "69 M 1085 1629 x1"


def test_ludb_diagnoses_stay_labels(ludb_dataset):
    row = Dataset.open(ludb_dataset).records.filter(pl.col("record_id") == "1").row(0, named=True)
    assert row["labels"][:2] == ["Rhythm: Sinus bradycardia", "Electric axis of the heart: left axis deviation"]
    assert row["label_system"] == "text" and row["comments"] is None


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_their_parent(tmp_path, how):
    """`esi ingest -j 2 | esi features -` must end when ingest is killed: its workers hold the pipe."""
    proc = subprocess.Popen([ESI, "-q", "ingest", "ptbxl", str(PTBXL), "--fs", "250", "-j", "2",
                             "--out", str(tmp_path / "ds")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    parent, deadline = psutil.Process(proc.pid), time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # until records flow back from working workers
        waves = list(tmp_path.glob(".ds.tmp-*/waveforms.npy"))
        if waves and waves[0].stat().st_size > 10 * 12 * 2500 * 2:
            break
        time.sleep(0.05)
    workers = [p for p in parent.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    assert proc.poll() is None and len(workers) == 2, "ingest ended before its workers could be observed"
    os.kill(proc.pid, how)
    proc.wait(timeout=30)
    gone_by = time.time() + 5
    alive = workers
    while alive and time.time() < gone_by:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    assert not alive, f"workers still alive 5 s after the parent died: {[p.pid for p in alive]}"
    assert proc.stdout.read() == b""  # end of file: nothing holds the pipe any more
