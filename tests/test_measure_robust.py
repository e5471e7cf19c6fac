"""Measurements that are right, not only present (issue 23): real records a bad lead, a late T wave or
segmenting used to spoil.

Records are real LUDB/PTB-XL records, combined or altered as the issue describes: a lead replaced by a
lead of another heart, the issue's noise bursts added to V1, parts of different gain joined into a long
record. bench/bench_measure.py measures the same cases on all records, before and after.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import LUDB, PTBXL

from esi_tools.features import params as P
from esi_tools.features.ludb import MATCH_WINDOW_MS, match, read_annotations
from esi_tools.features.records import measure_arrays
from esi_tools.signal.leads import STANDARD_LEADS

FS = 500.0


@cache
def ludb(n: int) -> np.ndarray:
    """LUDB record n as (12, 5000) mV in the standard lead order."""
    import wfdb

    rec = wfdb.rdrecord(str(LUDB / "data" / str(n)))
    names = [s.upper() for s in rec.sig_name]
    return rec.p_signal[:, [names.index(lead.upper()) for lead in STANDARD_LEADS]].T.astype(np.float32)


def bursts(n: int, seed: int) -> np.ndarray:
    """The issue's noise: 5-40 Hz, 1 mV rms, in two bursts of 3 s and 1.5 s (the only generated signal here)."""
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(seed)
    band = sosfiltfilt(butter(4, [5, 40], "bandpass", fs=FS, output="sos"), rng.standard_normal(n))
    band /= band.std()
    out = np.zeros(n, np.float32)
    for start, length in ((0.5, 3.0), (5.5, 1.5)):
        a = int((start + rng.uniform(0, 1.5)) * FS)
        out[a:a + int(length * FS)] = band[a:a + int(length * FS)]
    return out


def rates(x: np.ndarray, leads: list[str], fs: float = FS):
    f, b, _ = measure_arrays(x, fs, leads=leads)
    return f["hr_mean_bpm"].to_numpy(), f["usable"].to_numpy(), f, b


def test_noise_bursts_on_v1_do_not_make_beats():
    """The issue's case: LUDB 10-19, lead II and its own V1 with two noise bursts (old: 61 -> 109 bpm ...)."""
    ids = range(10, 20)
    ii, v1 = np.stack([ludb(n)[1] for n in ids]), np.stack([ludb(n)[6] for n in ids])
    noise = np.stack([bursts(ii.shape[-1], n) for n in ids])
    clean, _, _, _ = rates(np.stack([ii, v1], 1), ["II", "V1"])
    both, usable, f, _ = rates(np.stack([ii, v1 + noise], 1), ["II", "V1"])
    assert np.isfinite(clean).all()
    for n, a, b, u, reason in zip(ids, clean, both, usable, f["quality_reason"].to_list()):
        assert u and abs(a - b) <= 2, (n, a, b, reason)


def test_a_lead_of_another_heart_makes_the_record_not_usable_or_loses():
    """Lead II of one LUDB record with lead II of another at a rate 25 % different: never a third rate."""
    first, second = range(1, 21), range(61, 81)
    ii = {n: ludb(n)[1] for n in (*first, *second)}
    alone, _, _, _ = rates(np.stack(list(ii.values()))[:, None], ["II"])
    hr = dict(zip(ii, alone))
    pairs = [(i, j) for i in first for j in second if np.isfinite(hr[i] * hr[j]) and abs(hr[i] / hr[j] - 1) > 0.25][:30]
    assert len(pairs) >= 20
    both, usable, f, _ = rates(np.stack([np.stack([ii[i], ii[j]]) for i, j in pairs]), ["II", "V1"])
    for (i, j), h, u, reason in zip(pairs, both, usable, f["quality_reason"].to_list()):
        assert not u or min(abs(h - hr[i]), abs(h - hr[j])) <= 2, (i, j, h, hr[i], hr[j])
        assert u or "disagree" in reason or "beats" in reason, reason
    assert (~usable).mean() >= 0.5


def _noisy_ptbxl() -> dict[int, list[str]]:
    """PTB-XL records whose burst_noise annotation names some of their leads ('V2', 'I-AVF', 'V2,3')."""
    upper = [lead.upper() for lead in STANDARD_LEADS]
    out = {}
    with open(PTBXL / "ptbxl_database.csv", newline="") as f:
        for row in csv.DictReader(f):
            leads = []
            for part in (row["burst_noise"] or "").upper().replace(" ", "").split(","):
                if "-" in part and all(p in upper for p in part.split("-", 1)):
                    a, b = (upper.index(p) for p in part.split("-", 1))
                    leads += STANDARD_LEADS[a:b + 1]
                elif part in upper:
                    leads.append(STANDARD_LEADS[upper.index(part)])
            if leads and len(set(leads)) < 12:
                out[int(float(row["ecg_id"]))] = sorted(set(leads))
    return out


def test_annotated_noisy_leads_do_not_move_the_rate():
    """PTB-XL records with burst noise on named leads: the 12-lead rate is the clean leads' rate."""
    import wfdb

    noisy = _noisy_ptbxl()
    assert len(noisy) >= 30
    errors = []
    for ecg_id, bad in noisy.items():
        path = PTBXL / "records100" / f"{ecg_id // 1000 * 1000:05d}" / f"{ecg_id:05d}_lr"
        if not path.with_suffix(".hea").exists():
            continue
        rec = wfdb.rdrecord(str(path))
        names = [n.upper() for n in rec.sig_name]
        x = np.nan_to_num(rec.p_signal[:, [names.index(lead.upper()) for lead in STANDARD_LEADS]].T)
        good = [lead for lead in STANDARD_LEADS if lead not in bad]
        full, usable, _, _ = rates(x, list(STANDARD_LEADS), 100.0)
        clean, _, _, _ = rates(x[[STANDARD_LEADS.index(g) for g in good]], good, 100.0)
        if usable[0] and np.isfinite(clean[0]):
            errors.append(abs(full[0] - clean[0]))
    errors = np.array(errors)
    assert len(errors) >= 30 and (errors <= 2).mean() >= 0.98 and errors.max() <= 5, np.sort(errors)[-5:]


def test_t_never_ends_after_the_next_p_wave_begins():
    """On every LUDB record, no T end lies after the next beat's P onset (its QRS onset without a P)."""
    x = np.stack([ludb(n) for n in range(1, 201)])
    _, b = measure_arrays(x, FS)[:2]
    rid, t_off = b["record_id"].to_numpy(), b["t_off_sample"].to_numpy()
    p_on, qrs_on = b["p_on_sample"].to_numpy(), b["qrs_on_sample"].to_numpy()
    bound = np.where(np.isfinite(p_on[1:]), p_on[1:], qrs_on[1:])
    late = (rid[1:] == rid[:-1]) & (t_off[:-1] > bound)
    assert late.sum() == 0, sorted(set(rid[:-1][late]))[:10]
    assert np.isfinite(t_off).mean() > 0.9


def test_an_implausible_qt_is_flagged_not_printed(ptbxl_dataset):
    """PTB-XL: no printed QT with Bazett QTc outside 300-650 ms or leaving < 100 ms of the RR; such records say why."""
    from esi_tools.dataset import Dataset

    ds = Dataset.open(ptbxl_dataset)
    f, _, _ = measure_arrays(ds.millivolts(slice(0, len(ds))), ds.fs)
    u = f["usable"].to_numpy()
    qt, qtc, rr = (f[c].to_numpy()[u] for c in ("qt_ms", "qtc_bazett_ms", "rr_mean_ms"))
    shown = np.isfinite(qt)
    assert shown.mean() > 0.97
    assert ((qtc[shown] >= 300) & (qtc[shown] <= 650)).all()
    assert (qt[shown] <= rr[shown] - 100 + 30).all()  # rr_mean vs the median RR the check uses: 30 ms slack
    flagged = [r for r, flags in zip(f.iter_rows(named=True), f["quality_flags"].to_list()) if any(
        fl.startswith("qt_implausible") for fl in flags)]
    assert 3 <= len(flagged) <= 60 and all(np.isnan(r["qt_ms"]) and np.isnan(r["qtc_bazett_ms"]) for r in flagged)


@pytest.mark.parametrize("leads", [["II", "V5"]])
def test_segmenting_a_record_with_gain_changes_costs_no_beat(monkeypatch, leads):
    """20 LUDB records joined with gains 0.25-3 between parts (200 s): segmented F1 >= 99.5 % and >= one pass."""
    ids = list(range(101, 121))
    gains = [(1.0, 0.4, 2.5, 0.7, 1.6, 0.25, 3.0)[j % 7] for j in range(len(ids))]
    idx = [STANDARD_LEADS.index(lead) for lead in leads]
    x = np.concatenate([ludb(n)[idx] * g for n, g in zip(ids, gains)], axis=1)

    def f1(beats) -> float:
        r = beats["r_sample"].to_numpy()
        tp = fp = fn = 0
        for j, n in enumerate(ids):
            ref, span = read_annotations(LUDB / "data" / str(n), "ii")
            m = match(ref["r_peak"] + j * 5000, r.astype(float), (span[0] + j * 5000, span[1] + j * 5000),
                      int(MATCH_WINDOW_MS / 1000 * FS))
            tp, fp, fn = tp + m["hits"], fp + m["false_positives"], fn + m["n_ref"] - m["hits"]
        return 2 * tp / (2 * tp + fp + fn)

    segmented = f1(measure_arrays(x, FS, leads=leads)[1])
    monkeypatch.setattr(P, "SEGMENT_S", 1e6)
    whole = f1(measure_arrays(x, FS, leads=leads)[1])
    assert segmented >= 0.995 and segmented >= whole - 0.001, (segmented, whole)


@cache
def _ii_v1_real_noise():
    """bench_measure's "II + V1 + real noise" on LUDB 1-200, 9 paced records left out (their headers say
    pacing: lead II alone misses it, two leads flag it): (ids, rate and usable for II alone and for II + V1
    plus the real noise of an annotated noisy PTB-XL lead, reasons, beats of II + V1)."""
    import sys

    from scipy.signal import resample_poly

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from bench_measure import LEADS, beat_residual, ptbxl_noise, read_ptbxl

    noisy = ptbxl_noise(PTBXL.parent)
    have = {int(p.stem[:5]) for p in (PTBXL / "records100").rglob("*_lr.hea")}
    noise = []
    for i in sorted(k for k in noisy if k in have):  # the bench's noise sources, in its order
        x, bad = read_ptbxl(PTBXL.parent, i), noisy[i]
        good = [lead for lead in LEADS if lead not in bad] or list(LEADS)
        r = measure_arrays(x[[LEADS.index(g) for g in good]], 100.0, leads=good)[1]["r_sample"].to_numpy().astype(int)
        noise += [beat_residual(x[LEADS.index(lead)], r, 100.0) for lead in bad
                  if not (lead in ("aVR", "aVL", "aVF", "III") and len(bad) > 3)]
    ids = [n for n in range(1, 201) if "pacing" not in (LUDB / "data" / f"{n}.hea").read_text().lower()]
    ii = np.stack([ludb(n)[1] for n in ids])
    v1 = np.stack([ludb(n)[6] + resample_poly(noise[(n - 1) % len(noise)], 5, 1)[:5000] for n in ids])
    alone, ok, _, _ = rates(ii[:, None], ["II"])
    both, usable, f, b = rates(np.stack([ii, v1], 1), ["II", "V1"])
    return ids, alone, ok, both, usable, f["quality_reason"].to_list(), b


def test_real_noise_on_v1_keeps_the_annotated_rate():
    """II + V1 + real noise (LUDB, not paced): over the annotated span, the rate of the beats found is within
    2 bpm of the cardiologists' on >= 97 % and wrong on <= 1 % (before: 94.8 % and 1.6 %; lead II alone:
    96.9 % and 1.6 %). A noise peak of V1 that lead II does not see used to make a beat (a tie of two leads)."""
    ids, _, _, _, usable, _, b = _ii_v1_real_noise()
    rid, r = b["record_id"].to_numpy(), b["r_sample"].to_numpy()
    ok = wrong = 0
    for j, n in enumerate(ids):
        ref, span = read_annotations(LUDB / "data" / str(n), "ii")
        found = r[(rid == str(j)) & (r >= span[0] - 40) & (r <= span[1] + 40)]
        if not usable[j] or len(found) < 2:
            continue
        rate, true = 60000 / (np.diff(found).mean() * 2), 60000 / (np.diff(ref["r_peak"]).mean() * 2)
        ok, wrong = ok + (abs(rate - true) <= 2), wrong + (abs(rate - true) > 2)
    assert ok / len(ids) >= 0.97 and wrong / len(ids) <= 0.01, (ok, wrong, len(ids))


def test_real_noise_on_v1_does_not_make_the_leads_disagree():
    """The same records: "leads disagree on the rate" (two hearts) on <= 2 % (before: 3.1 %: V1's own peaks
    at the record's first and last samples, a cut beat or the filter's edge, were counted as its beats)."""
    ids, _, _, _, _, reasons, _ = _ii_v1_real_noise()
    disagree = [n for n, why in zip(ids, reasons) if why and "disagree" in why]
    assert len(disagree) <= 0.02 * len(ids), disagree
