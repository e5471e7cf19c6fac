"""Long recordings through esi features: whole, in segments, with memory bounded by the chunk (issue 14.3).

Long records are built by joining a real LUDB record (record 117: sinus rhythm, stable
beat shape, 500 Hz) with itself and
ingested with the ordinary `esi ingest wfdb --seconds N`; its leads II and V5 also make a 2-lead record
named as Holter databases name them (MLII, V5).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import LUDB, run_esi

from esi_tools.artifacts import open_artifact
from esi_tools.features import params as P
from esi_tools.features.records import measure_arrays, measure_records
from esi_tools.features.segments import piece_length, plan

REPEATS = 12  # 2 minutes: long enough for 4 segments, short enough for a test


def _joined(repeats: int) -> tuple[np.ndarray, list[str], float]:
    import wfdb

    rec = wfdb.rdrecord(str(LUDB / "data" / "117"))
    return np.tile(rec.p_signal, (repeats, 1)), list(rec.sig_name), float(rec.fs)


@pytest.fixture(scope="module")
def long_features(tmp_path_factory):
    import wfdb

    root = tmp_path_factory.mktemp("long")
    raw = root / "raw"
    raw.mkdir()
    sig, names, fs = _joined(REPEATS)
    two = sig[:, [names.index("ii"), names.index("v5")]]
    for name, signal, leads in (("long117", sig, names), ("holter117", two, ["MLII", "V5"]),
                                ("short117", sig[: int(10 * fs)], names)):
        wfdb.wrsamp(name, fs=fs, units=["mV"] * len(leads), sig_name=leads, p_signal=signal,
                    fmt=["16"] * len(leads), write_dir=str(raw))
    dataset = root / "dataset"
    result = run_esi("ingest", "wfdb", raw, "--fs", 500, "--seconds", REPEATS * 10, "--out", dataset, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    out = root / "features"
    result = run_esi("features", dataset, "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    art = open_artifact(out, "features")
    rows = {r["record_id"]: r for r in art.table("features.parquet").iter_rows(named=True)}
    return rows, art.table("beats.parquet"), fs


def test_a_long_record_is_measured_whole(long_features):
    rows, beats, fs = long_features
    short, long = rows["short117"], rows["long117"]
    assert short["usable"] and long["usable"], (short["quality_reason"], long["quality_reason"])
    # every beat of the 2 minutes, not the first 10 s (a join may cut or merge one beat)
    assert abs(long["n_beats"] - REPEATS * short["n_beats"]) <= REPEATS
    padded = beats.filter(beats["record_id"] == "short117")["r_sample"].to_numpy()
    assert len(padded) == short["n_beats"] and padded.max() < 10 * fs  # its zero padding holds no beats
    r = beats.filter(beats["record_id"] == "long117")["r_sample"].to_numpy()
    assert r.max() > (REPEATS * 10 - 2) * fs and np.all(np.diff(r) > P.REFRACTORY_S * fs)
    # the same heart, 12 times: the same measurements
    assert abs(long["hr_mean_bpm"] - short["hr_mean_bpm"]) < 5
    for col, tol in (("qrs_ms", 10), ("pr_ms", 15), ("qt_ms", 15)):
        assert abs(long[col] - short[col]) <= tol, (col, long[col], short[col])
    assert abs(long["qrs_axis_deg"] - short["qrs_axis_deg"]) < 10


def test_a_long_two_lead_recording_is_measured_from_its_leads(long_features):
    rows, beats, _ = long_features
    holter, long = rows["holter117"], rows["long117"]
    assert holter["usable"], holter["quality_reason"]
    assert abs(holter["n_beats"] - long["n_beats"]) <= 2
    for col in ("hr_mean_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms"):
        assert np.isfinite(holter[col]), col
    assert np.isnan(holter["qrs_axis_deg"])  # one limb lead: no frontal axis
    assert holter["flat_II"] is False and holter["flat_I"] is None and np.isnan(holter["r_amp_V1_mv"])
    assert all(f.split(":")[-1] in ("II", "V5") for f in holter["quality_flags"] if ":" in f)


def test_segments_agree_with_analysing_the_record_whole(monkeypatch):
    sig, names, fs = _joined(6)
    x = sig.T.astype(np.float32)
    _, seg_beats, _ = measure_arrays(x, fs, leads=names)
    monkeypatch.setattr(P, "SEGMENT_S", 1e6)  # one piece: the whole minute at once
    _, whole_beats, _ = measure_arrays(x, fs, leads=names)
    a, b = seg_beats["r_sample"].to_numpy(), whole_beats["r_sample"].to_numpy()
    assert abs(len(a) - len(b)) <= 1
    nearest = np.abs(a[:, None] - b[None, :]).min(axis=1)
    assert (nearest <= 2).mean() >= 0.98  # per-segment detection levels move R by at most a sample or two


def test_pieces_tile_every_record():
    fs, length = 360.0, int(1800 * 360)
    valid = np.array([length, int(10 * fs), int(34 * fs) + 1, int(61.3 * fs)])
    pieces = plan(valid, length, fs)
    lp = piece_length(length, fs)
    for i, v in enumerate(valid):
        mine = [p for p in pieces if p.record == i]
        assert mine[0].core[0] == 0 and mine[-1].core[1] == v
        assert all(a.core[1] == b.core[0] for a, b in zip(mine, mine[1:]))  # no gap, no overlap
        assert all(p.n <= lp and 0 <= p.start and p.start + p.n <= v for p in mine)
        assert all(p.core[0] >= p.start and p.core[1] <= p.start + p.n for p in mine)
    assert len([p for p in pieces if p.record == 0]) == 60  # 30 minutes in 30-s segments


def test_memory_is_bounded_by_the_chunk_not_the_record(tmp_path):
    """Peak numpy memory measuring a 10-minute record is that of a 3-minute one (unbounded: 3.3x)."""
    sig, names, fs = _joined(60)
    order = [names.index(n) for n in ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")]
    path = tmp_path / "waves.npy"
    waves = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=(1, 12, len(sig)))
    waves[0] = np.round(sig[:, order].T * 1000).astype(np.int16)
    waves.flush()
    del waves
    peaks = {}
    for minutes in (3, 10):  # 6 and 20 segments, one per chunk (3 x 10 s of signal) in both
        n = int(minutes * 60 * fs)
        tracemalloc.start()
        got = list(measure_records(str(path), np.ones((1, 12), bool), np.array([n]), fs, n, chunk=3, scale=1e-3))
        peaks[minutes] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert got[0].row["usable"] and got[0].row["n_beats"] > minutes * 50
    assert peaks[10] < 1.2 * peaks[3], peaks
