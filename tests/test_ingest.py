"""esi ingest on the real collections in ../shared/data, including corrupted copies of real records."""

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import wfdb
from conftest import CHALLENGE, LUDB, PTBXL, run_esi
from scipy.io import loadmat

from esi_tools.dataset import Dataset
from esi_tools.signal.leads import STANDARD_LEADS

ESI = str(Path(sys.executable).parent / "esi")


def test_ptbxl_100hz_matches_metadata_and_signal(ptbxl_dataset):
    ds = Dataset.open(ptbxl_dataset)
    assert ds.waveforms.shape == (1987, 12, 1000) and ds.waveforms.dtype == np.int16
    meta = pl.read_csv(PTBXL / "ptbxl_database.csv", infer_schema_length=0)
    rows = ds.records
    assert rows.height == 1987 and ds.artifact.summary["rejects"] == 0
    assert (rows["parent_record_id"] == rows["record_id"]).all() and (rows["start_s"] == 0).all()
    assert not rows["cut"].any() and not rows["padded"].any() and (rows["coverage"] == 1).all()
    assert rows["unknown_leads"].list.len().sum() == 0 and not ds.artifact.summary["credentialed"]
    rng = np.random.default_rng(0)
    for i in rng.choice(len(ds), 8, replace=False):
        row = rows.row(int(i), named=True)
        src = meta.filter(pl.col("ecg_id") == row["record_id"]).row(0, named=True)
        assert row["patient_id"] == str(int(float(src["patient_id"])))
        assert row["fold"] == int(src["strat_fold"])
        assert set(row["labels"]) == set(ast.literal_eval(src["scp_codes"]))
        assert row["report"] == src["report"].strip()
        assert row["sex"] == {"0": "M", "1": "F"}[src["sex"]]
        rec = wfdb.rdrecord(str(PTBXL / src["filename_lr"]))
        order = [STANDARD_LEADS.index({"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}.get(n, n)) for n in rec.sig_name]
        expected = np.zeros((12, 1000))
        expected[order] = rec.p_signal.T
        np.testing.assert_allclose(ds.millivolts(int(i)), expected, atol=0.0006)  # int16 uV storage
    assert {r["split"] for r in rows.filter(pl.col("fold") == 10).iter_rows(named=True)} == {"test"}
    assert "statements.parquet" in ds.artifact.manifest["files"]


def test_ptbxl_500hz_lists_missing_records(tmp_path):
    result = run_esi("-q", "ingest", "ptbxl", PTBXL, "--fs", "500", "--out", tmp_path / "d500")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "d500")
    ds = Dataset.open(tmp_path / "d500")
    assert ds.waveforms.shape == (488, 12, 5000)
    rejects = ds.artifact.table("rejects.parquet")
    assert rejects.height == 1499 and rejects["reason"].str.starts_with("missing record").all()


def test_ludb_lowercase_leads_in_standard_order(ludb_dataset):
    ds = Dataset.open(ludb_dataset)
    assert ds.waveforms.shape == (200, 12, 5000)
    row = ds.records.filter(pl.col("record_id") == "1").row(0, named=True)
    assert row["leads"][3] == "avr" and row["age"] == 51 and row["sex"] == "F"
    index = ds.records["record_id"].to_list().index("1")
    rec = wfdb.rdrecord(str(LUDB / "data" / "1"))
    np.testing.assert_allclose(ds.millivolts(index)[STANDARD_LEADS.index("aVR")], rec.p_signal[:, 3], atol=0.0006)


@pytest.mark.parametrize("name", ["cinc2020", "cinc2021"])
def test_challenge_sets(tmp_path, name):
    result = run_esi("-q", "ingest", "challenge", CHALLENGE / name, "--fs", "500", "--out", tmp_path / name)
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / name)
    files = sorted((CHALLENGE / name).glob("*.hea"))
    assert len(ds) + ds.artifact.summary["rejects"] == len(files)
    row = ds.records.row(0, named=True)
    assert row["label_system"] == "snomed" and row["labels"] and row["labels"][0].isdigit()
    header = (CHALLENGE / name / f"{row['record_id']}.hea").read_text().splitlines()
    names = [line.split()[-1] for line in header[1:13]]
    gains = [float(line.split()[2].split("/")[0].split("(")[0]) for line in header[1:13]]
    val = loadmat(CHALLENGE / name / f"{row['record_id']}.mat")["val"]  # independent reader (MATLAB v4)
    order = [STANDARD_LEADS.index(n) for n in names]
    np.testing.assert_allclose(ds.millivolts(0)[order], val[:, :5000] / np.array(gains)[:, None], atol=0.0006)
    for reason in ds.artifact.table("rejects.parquet")["reason"]:  # real flat leads in Chapman records
        assert "flat" in reason


def _copy_record(src_dir: Path, name: str, dest: Path, new: str) -> Path:
    text = (src_dir / f"{name}.hea").read_text().replace(name, new)
    (dest / f"{new}.hea").write_text(text)
    shutil.copy(src_dir / f"{name}.dat", dest / f"{new}.dat")
    return dest / new


def _rewrite(record: Path, mutate) -> None:
    """Change the samples of a real record and rewrite its header checksums so only the data is wrong."""
    hdr = wfdb.rdheader(str(record))
    data = np.fromfile(f"{record}.dat", "<i2").reshape(-1, hdr.n_sig)
    mutate(data)
    data.tofile(f"{record}.dat")
    lines = Path(f"{record}.hea").read_text().splitlines()
    for i in range(hdr.n_sig):
        parts = lines[1 + i].split()
        parts[5], parts[6] = str(int(data[0, i])), str(((int(data[:, i].astype(np.int64).sum()) + 32768) % 65536) - 32768)
        lines[1 + i] = " ".join(parts)
    Path(f"{record}.hea").write_text("\n".join(lines) + "\n")


def test_corrupted_records_are_rejected_with_reasons(tmp_path):
    src, corpus = PTBXL / "records100" / "00000", tmp_path / "corpus"
    corpus.mkdir()
    for k in range(1, 6):
        _copy_record(src, f"{k:05d}_lr", corpus, f"good{k}")
    _copy_record(src, "00006_lr", corpus, "truncated")
    with open(corpus / "truncated.dat", "r+b") as fh:
        fh.truncate(5000)
    _copy_record(src, "00007_lr", corpus, "wronglength")
    header = corpus / "wronglength.hea"
    header.write_text(header.read_text().replace("12 100 1000", "12 100 900", 1))
    _rewrite(_copy_record(src, "00008_lr", corpus, "nanlead"), lambda d: d.__setitem__((slice(None), 2), -32768))
    _rewrite(_copy_record(src, "00009_lr", corpus, "zerolead"), lambda d: d.__setitem__((slice(None), 7), 0))
    _copy_record(src, "00010_lr", corpus, "bogusfs")
    header = corpus / "bogusfs.hea"
    header.write_text(header.read_text().replace("12 100 1000", "12 0 1000", 1))
    _copy_record(src, "00011_lr", corpus, "nodata")
    (corpus / "nodata.dat").unlink()
    _copy_record(src, "00012_lr", corpus, "badlead")
    header = corpus / "badlead.hea"
    header.write_text(header.read_text().replace(" V3", " X9", 1))

    result = run_esi("-q", "ingest", "wfdb", corpus, "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / "ds")
    assert sorted(ds.records["record_id"]) == ["badlead"] + [f"good{k}" for k in range(1, 6)]
    badlead = ds.records.filter(pl.col("record_id") == "badlead").row(0, named=True)
    assert badlead["unknown_leads"] == ["X9"] and badlead["lead_mask"][STANDARD_LEADS.index("V3")] is False
    assert sum(badlead["lead_mask"]) == 11
    reasons = {Path(p).stem: r for p, _, r in ds.artifact.table("rejects.parquet").iter_rows()}
    assert "truncated" in reasons["truncated"]
    assert "header implies 21600 (900 samples" in reasons["wronglength"]
    assert "NaN" in reasons["nanlead"] and "III" in reasons["nanlead"]
    assert "flat" in reasons["zerolead"] and "V2" in reasons["zerolead"]
    assert "sampling rate" in reasons["bogusfs"]
    assert "signal file missing" in reasons["nodata"] and "nodata.dat" in reasons["nodata"]
    assert ds.artifact.summary == {**ds.artifact.summary, "records": 6, "rejects": 6}


def test_mimic_layout_from_real_records(tmp_path):
    """MIMIC-IV-ECG's layout (record_list.csv, machine_measurements.csv, files/p.../s.../) around real signals."""
    root = tmp_path / "mimic"
    studies = {"40000001": "10000032", "40000002": "10000032", "40000003": "10000117"}
    for k, (study, subject) in enumerate(studies.items(), start=1):
        folder = root / "files" / f"p{subject[:4]}" / f"p{subject}" / f"s{study}"
        folder.mkdir(parents=True)
        _copy_record(PTBXL / "records100" / "00000", f"{k:05d}_lr", folder, study)
    pl.DataFrame({
        "subject_id": list(studies.values()), "study_id": list(studies), "file_name": list(studies),
        "ecg_time": ["2180-07-23 08:44:00"] * 3,
        "path": [f"files/p{s[:4]}/p{s}/s{st}/{st}" for st, s in studies.items()],
    }).write_csv(root / "record_list.csv")
    pl.DataFrame({
        "subject_id": ["10000032", "10000032"], "study_id": ["40000001", "40000002"], "cart_id": ["6848296"] * 2,
        "ecg_time": ["2180-07-23 08:44:00"] * 2, "report_0": ["Sinus rhythm", "Sinus tachycardia"],
        "report_1": ["Left axis deviation", None], "rr_interval": ["659", "500"], "qrs_axis": ["-35", "10"],
    }).write_csv(root / "machine_measurements.csv")
    result = run_esi("-q", "ingest", "mimic-iv-ecg", root, "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / "ds")
    assert ds.artifact.summary["credentialed"] is True and len(ds) == 2
    first = ds.records.row(0, named=True)
    assert first["patient_id"] == "10000032" and first["labels"] == ["Sinus rhythm", "Left axis deviation"]
    assert json.loads(first["extra"])["machine_measurements"]["qrs_axis"] == -35
    assert "machine_measurements" in ds.artifact.table("rejects.parquet")["reason"][0]


def test_killed_ingest_leaves_nothing_and_rerun_succeeds(tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.Popen([ESI, "-q", "ingest", "ptbxl", str(PTBXL), "--fs", "250", "--workers", "1",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".ds.tmp-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "ingest finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    result = run_esi("-q", "ingest", "ptbxl", PTBXL, "--limit", "20", "--out", out)
    assert result.exit_code == 0 and Dataset.open(out).waveforms.shape == (20, 12, 1000)
    assert not list(tmp_path.glob(".ds.tmp-*"))


def test_bad_source_is_one_line_error(tmp_path):
    result = run_esi("ingest", "ptbxl", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "no such directory" in result.stderr and "Traceback" not in result.output
    result = run_esi("ingest", "nonsense", PTBXL, "--out", tmp_path / "x")
    assert result.exit_code == 2 and "unknown dataset kind" in result.stderr


def test_two_lead_record_kept_with_mask(tmp_path):
    """A Holter-style record with only MLII and V1 (cut from a real one) is kept, zero-filled and masked."""
    rec = wfdb.rdrecord(str(PTBXL / "records100/00000/00010_lr"))
    two = rec.p_signal[:, [1, 6]]
    (tmp_path / "src").mkdir()
    wfdb.wrsamp("holter", fs=100, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=two, fmt=["16", "16"],
                write_dir=str(tmp_path / "src"))
    result = run_esi("-q", "ingest", "wfdb", tmp_path / "src", "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / "ds")
    assert ds.lead_mask[0].tolist() == [lead in ("II", "V1") for lead in STANDARD_LEADS]
    np.testing.assert_allclose(ds.millivolts(0)[1], two[:, 0], atol=0.003)
    assert not ds.waveforms[0][~ds.lead_mask[0]].any()
