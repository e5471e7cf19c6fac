"""bench/mimic_layout.py: a MIMIC-IV-ECG-shaped tree from the real records, read back by `esi ingest mimic-iv-ecg`."""

import ast
import json
import os
import sys
from pathlib import Path

import polars as pl
from conftest import PTBXL, run_esi

from esi_tools.dataset import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import mimic_layout  # noqa: E402


def test_generated_tree_ingests_as_mimic(tmp_path):
    root = tmp_path / "mimic"
    summary = mimic_layout.generate(root, 60, seed=0)
    assert summary["records"] == 60 and summary["linked"] + summary["copied"] == 60
    records = pl.read_csv(root / "record_list.csv", infer_schema=False)
    assert records.columns == mimic_layout.RECORD_LIST
    assert pl.read_csv(root / "machine_measurements.csv", infer_schema=False).columns == mimic_layout.MACHINE
    first = records.row(0, named=True)
    subject, study = first["subject_id"], first["study_id"]
    assert first["path"] == f"files/p{subject[:4]}/p{subject}/s{study}/{study}"
    header = (root / f"{first['path']}.hea").read_text().splitlines()
    assert header[0].split()[0] == study and all(line.startswith(f"{study}.dat ") for line in header[1:13])
    if summary["linked"]:  # the signal file is the real one, hardlinked
        assert os.stat(root / f"{first['path']}.dat").st_nlink > 1

    result = run_esi("-q", "ingest", "mimic-iv-ecg", root, "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / "ds")
    summary_ds = ds.artifact.summary
    assert summary_ds["credentialed"] is True and "MIMIC-IV-ECG layout" in summary_ds["credentialed_evidence"]
    assert len(ds) + summary_ds["rejects"] == 60 and len(ds) >= 55
    assert summary_ds["patients"] == summary["patients"] < 60
    per_patient = ds.records.group_by("patient_id").len()
    assert per_patient.filter(pl.col("len") >= 2).height >= 10  # PTB-XL's real multi-study patients come first

    # statements: the English descriptions of the source record's own PTB-XL scp_codes
    sources = pl.read_csv(root / "esi_sources.csv", infer_schema=False)
    ptbxl = sources.filter(pl.col("source").str.starts_with("ptbxl:")).row(0, named=True)
    ecg_id = int(ptbxl["source"].split(":")[1].split("_")[0])
    meta = pl.read_csv(PTBXL / "ptbxl_database.csv", infer_schema=False).filter(pl.col("ecg_id") == str(ecg_id))
    described = dict(pl.read_csv(PTBXL / "scp_statements.csv", infer_schema=False).select("", "description").iter_rows())
    expected = [described[c][:1].upper() + described[c][1:] for c in ast.literal_eval(meta["scp_codes"][0])]
    row = ds.records.filter(pl.col("record_id") == ptbxl["study_id"]).row(0, named=True)
    assert row["labels"] == expected and row["label_system"] == "mimic-statement"
    assert row["patient_id"] == ptbxl["subject_id"]
    assert json.loads((root / "esi_layout.json").read_text())["records"] == 60


def test_copies_stay_with_one_patient_unless_asked():
    rows, units = mimic_layout.plan(mimic_layout.DATA, 2 * 760, 0, 0)
    owners: dict[str, set[int]] = {}
    for source, subject, _, _ in rows:
        owners.setdefault(source.key, set()).add(subject)
    assert all(len(s) == 1 for s in owners.values())  # one signal never under two patients
    assert len({r[1] for r in rows}) == units
    rows, _ = mimic_layout.plan(mimic_layout.DATA, 2 * 760, 0, 1)  # one copy per patient: patients grow with N
    assert len({r[1] for r in rows}) > units
