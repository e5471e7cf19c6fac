"""Measurements with fewer than 12 leads (issue 14.5): real LUDB and PTB-XL records cut down to 1, 2 and 3 leads.

Cut-down records are zero-filled and masked exactly as `esi ingest` stores a record's missing leads
(`measure_arrays` maps the given leads into the 12-lead order and marks the others absent); each is
compared with the same record measured from all 12 leads.
"""

from __future__ import annotations

import numpy as np
import pytest

from esi_tools.dataset import Dataset
from esi_tools.features.records import measure_arrays
from esi_tools.signal.leads import STANDARD_LEADS

SUBSETS = {1: ["II"], 2: ["II", "V5"], 3: ["I", "II", "V1"]}


def _compare(ds: Dataset, n: int):
    x = ds.millivolts(slice(0, n))
    full, _, _ = measure_arrays(x, ds.fs)
    out = {}
    for k, leads in SUBSETS.items():
        idx = [STANDARD_LEADS.index(lead) for lead in leads]
        out[k] = measure_arrays(x[:, idx], ds.fs, leads=leads)
    return full, out


def _check(full, cut: dict, qrs_tol: float):
    both_usable = {}
    for k, (f, _, rejects) in cut.items():
        leads = SUBSETS[k]
        # a 2-lead record is judged on its 2 leads: not "10 flat or missing leads"
        assert f["usable"].mean() >= full["usable"].mean() - 0.03, (k, rejects["reason"].to_list()[:5])
        assert not any("flat" in r for r in rejects["reason"].to_list()), k
        flagged = {flag.split(":")[1] for flag in f["quality_flags"].explode().drop_nulls() if ":" in flag}
        assert flagged <= set(leads), (k, flagged)
        absent = [lead for lead in STANDARD_LEADS if lead not in leads]
        assert f[f"flat_{absent[0]}"].null_count() == f.height and f[f"flat_{leads[0]}"].null_count() == 0
        assert f[f"r_amp_{absent[0]}_mv"].is_nan().all() and f["low_voltage"].null_count() == f.height
        ok = full["usable"].to_numpy() & f["usable"].to_numpy()
        both_usable[k] = ok
        d = {c: np.abs(full[c].to_numpy() - f[c].to_numpy())[ok] for c in ("hr_mean_bpm", "qrs_ms", "qt_ms", "pr_ms")}
        assert np.percentile(d["hr_mean_bpm"], 90) < 1.0, k  # the same beats, from any lead
        assert np.nanmedian(d["qrs_ms"]) <= qrs_tol, k  # fewer leads see a shorter QRS (global onset/offset)
        assert np.nanmedian(d["qt_ms"]) <= 15, k
        assert np.nanmedian(d["pr_ms"]) <= 15, k
        assert np.isfinite(f["pr_ms"].to_numpy()[ok]).mean() >= 0.8 * np.isfinite(full["pr_ms"].to_numpy()[ok]).mean()
    for k in (1, 2):  # one limb lead: no frontal axis
        assert cut[k][0]["qrs_axis_deg"].is_nan().all()
    # I and II give the frontal plane (Einthoven): the axis from 3 leads is the 12-lead axis
    f3, ok = cut[3][0], both_usable[3]
    diff = np.abs((f3["qrs_axis_deg"].to_numpy() - full["qrs_axis_deg"].to_numpy() + 180) % 360 - 180)[ok]
    assert np.nanmedian(diff) <= 20 and np.isfinite(diff).mean() > 0.95


def test_ludb_with_one_two_three_leads(ludb_dataset):
    full, cut = _compare(Dataset.open(ludb_dataset), 200)
    _check(full, cut, qrs_tol=15)


@pytest.mark.parametrize("n", [300])
def test_ptbxl_with_one_two_three_leads(ptbxl_dataset, n):
    full, cut = _compare(Dataset.open(ptbxl_dataset), n)
    _check(full, cut, qrs_tol=18)


def test_missing_limb_leads_still_give_the_axis(ptbxl_dataset):
    """Any two limb leads determine the frontal axis; aVL + aVF (no I, no II) must match the 12-lead value."""
    ds = Dataset.open(ptbxl_dataset)
    x = ds.millivolts(slice(0, 100))
    full, _, _ = measure_arrays(x, ds.fs)
    leads = ["aVL", "aVF", "V2", "V5"]
    f, _, _ = measure_arrays(x[:, [STANDARD_LEADS.index(lead) for lead in leads]], ds.fs, leads=leads)
    ok = full["usable"].to_numpy() & f["usable"].to_numpy()
    diff = np.abs((f["qrs_axis_deg"].to_numpy() - full["qrs_axis_deg"].to_numpy() + 180) % 360 - 180)[ok]
    assert ok.mean() > 0.9 and np.nanmedian(diff) <= 15
