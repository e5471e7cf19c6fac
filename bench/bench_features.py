"""Side by side on the same real records: our 12-lead `esi features` vs NeuroKit2.

Speed: records/s on one core, ours = all 12 leads (detection, delineation, measurements, quality,
findings) vs NeuroKit2 `ecg_process` on ONE lead (lead II), at 100 Hz (PTB-XL) and 500 Hz (LUDB).
Accuracy: LUDB lead II cardiologist marks, inside each record's annotated span, 150 ms matching window:
sensitivity, PPV and mean +- SD of the error (ms) for ours (multi-lead fiducials, 500 Hz and the same
records resampled to 100 Hz) and NeuroKit2 `ecg_delineate` dwt and prominence on lead II (500 Hz).
Our delineation constants were tuned on LUDB records 1-100; records 101-200 are shown apart as held out.

Long records: 180 LUDB records as 10-s records and joined into one 30-minute record (12 leads 500 Hz, and
2 leads 360 Hz), through the `esi` CLI: lead-seconds/s and peak memory (PSS of the process tree).

    python bench/bench_features.py [--data ../shared/data] [--nk-records 100] [--long-only]

Prints Markdown tables (stdout); temporary dataset artifacts go to a temp dir.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # per-core figures: no hidden BLAS threads
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from esi_tools.dataset import UV_TO_MV, Dataset  # noqa: E402
from esi_tools.features.findings import derive  # noqa: E402
from esi_tools.features.ludb import MARKS, MATCH_WINDOW_MS, match, read_annotations, summarise  # noqa: E402
from esi_tools.features.records import measure_records  # noqa: E402

NK_KEYS = {"p_on": "ECG_P_Onsets", "p_peak": "ECG_P_Peaks", "p_off": "ECG_P_Offsets", "qrs_on": "ECG_R_Onsets",
           "qrs_off": "ECG_R_Offsets", "t_peak": "ECG_T_Peaks", "t_off": "ECG_T_Offsets"}
CSE_2SD = {"p_on": 10.2, "p_off": 12.7, "qrs_on": 6.5, "qrs_off": 11.6, "t_off": 30.6}  # CSE tolerances (2 SD, ms)
CHUNK = 32  # same batch size as `esi features`


def ours(ds: Dataset, n: int | None = None):
    """Run our pipeline (the path `esi features` takes, one process) over the first n records: (rows, beats, seconds)."""
    n = len(ds) if n is None else min(n, len(ds))
    rows, beats = [None] * n, [None] * n
    length = ds.waveforms.shape[-1]
    start = time.perf_counter()
    for m in measure_records(ds.waveforms, ds.lead_mask[:n], np.full(n, length), ds.fs, length, chunk=CHUNK,
                             scale=UV_TO_MV):
        m.row["findings"] = derive(m.row)
        rows[m.index], beats[m.index] = m.row, m.beats
    return rows, beats, time.perf_counter() - start


def nk_process_rate(ds: Dataset, n: int) -> tuple[float, int]:
    import neurokit2 as nk

    lead = ds.leads.index("II")
    failures = 0
    start = time.perf_counter()
    for i in range(min(n, len(ds))):
        try:
            nk.ecg_process(ds.millivolts(i)[lead], sampling_rate=int(ds.fs))
        except Exception:  # counted and shown in the table: NeuroKit2 fails on some records
            failures += 1
    return min(n, len(ds)) / (time.perf_counter() - start), failures


def nk_delineate(ds: Dataset, method: str) -> tuple[list[dict], int]:
    import neurokit2 as nk

    lead = ds.leads.index("II")
    out, failures = [], 0
    for i in range(len(ds)):
        sig = ds.millivolts(i)[lead]
        try:
            clean = nk.ecg_clean(sig, sampling_rate=int(ds.fs))
            _, rp = nk.ecg_peaks(clean, sampling_rate=int(ds.fs))
            _, waves = nk.ecg_delineate(clean, rp, sampling_rate=int(ds.fs), method=method)
            marks = {m: np.asarray(waves[k], float) for m, k in NK_KEYS.items()}
            marks["r_peak"] = np.asarray(rp["ECG_R_Peaks"], float)
        except Exception:  # a crash costs that record's marks (all missed), as a user would see it
            failures += 1
            marks = {m: np.zeros(0) for m in MARKS}
        out.append(marks)
    return out, failures


def ours_marks(beats: list[dict]) -> list[dict]:
    names = {m: f"{m}_sample" for m in NK_KEYS} | {"r_peak": "r_sample"}
    return [{m: np.asarray(b.get(col, np.zeros(0)), float) for m, col in names.items()} for b in beats]


def score(ds: Dataset, marks: list[dict], ludb: Path, keep=lambda rid: True) -> dict:
    fs = ds.fs
    scale = fs / 500.0  # annotations are at LUDB's native 500 Hz
    per = {m: [] for m in MARKS}
    for rid, mk in zip(ds.records["record_id"].to_list(), marks):
        if not keep(rid):
            continue
        ref, span = read_annotations(ludb / "data" / rid, "ii")
        span = (int(span[0] * scale), int(span[1] * scale))
        for m in MARKS:
            per[m].append(match(np.round(ref[m] * scale).astype(np.int64), np.round(mk[m]), span,
                                int(MATCH_WINDOW_MS / 1000 * fs)))
    return {m: summarise(v, fs) for m, v in per.items()}


def accuracy_table(results: dict[str, dict]) -> str:
    lines = ["| mark | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for m in MARKS:
        cells = []
        for s in results.values():
            x = s[m]
            cells.append(f"Se {x['sensitivity']:.3f} PPV {x['ppv']:.3f} {x['mean_ms']:+.1f} ± {x['sd_ms']:.1f}")
        tol = f" (CSE 2SD {CSE_2SD[m]})" if m in CSE_2SD else ""
        lines.append(f"| {m}{tol} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def long_records(data: Path, tmp: Path, workers: int = 1) -> str:
    """Markdown: `esi features` on 10-s records vs the same signal as one 30-minute record (LUDB records joined).

    12 leads at 500 Hz and 2 leads (II, V5 named MLII, V5 as Holter databases do) at 360 Hz; the 30-minute
    records are ingested with the ordinary `esi ingest wfdb --seconds 1800`. Lead-seconds per second of wall
    time and of CPU time (the CPU figure holds on a shared machine), and the peak PSS of the process tree.
    """
    import resource
    import subprocess

    import wfdb
    from _common import ESI, peak_rss_mb

    names = sorted((data / "ludb" / "data").glob("*.hea"), key=lambda p: int(p.stem))[:180]  # 180 x 10 s = 30 min
    signals = [wfdb.rdrecord(str(p.with_suffix(""))) for p in names]
    fs, leads = signals[0].fs, list(signals[0].sig_name)
    two = [leads.index("ii"), leads.index("v5")]
    sets = {}
    for label, cols, sig_names, out_fs in (("12 leads, 500 Hz", slice(None), leads, 500), ("2 leads, 360 Hz", two, ["MLII", "V5"], 360)):
        short, long = tmp / f"short{len(sig_names)}", tmp / f"long{len(sig_names)}"
        short.mkdir(), long.mkdir()
        for i, rec in enumerate(signals):
            wfdb.wrsamp(f"r{i}", fs=fs, units=["mV"] * len(sig_names), sig_name=sig_names, p_signal=rec.p_signal[:, cols],
                        fmt=["16"] * len(sig_names), write_dir=str(short))
        joined = np.concatenate([rec.p_signal[:, cols] for rec in signals])
        wfdb.wrsamp("joined", fs=fs, units=["mV"] * len(sig_names), sig_name=sig_names, p_signal=joined,
                    fmt=["16"] * len(sig_names), write_dir=str(long))
        for kind, src, seconds in (("180 records x 10 s", short, 10), ("1 record x 30 min", long, 1800)):
            ds = tmp / f"ds-{src.name}"
            subprocess.run([ESI, "--quiet", "ingest", "wfdb", str(src), "--fs", str(out_fs), "--seconds", str(seconds),
                            "--out", str(ds)], check=True, stdout=subprocess.DEVNULL)
            sets[(label, kind)] = (ds, len(sig_names))
    lines = ["| signal | records | wall s | lead-s/s (wall) | lead-s/CPU-s | peak PSS MB | usable | beats |",
             "|---|---|---|---|---|---|---|---|"]
    for (label, kind), (ds, n_leads) in sets.items():
        out = tmp / f"f-{ds.name}"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, mb = peak_rss_mb([ESI, "--quiet", "features", str(ds), "--out", str(out), "--workers", str(workers)])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        summary = __import__("json").loads((out / "manifest.json").read_text())["summary"]
        lead_s = n_leads * 1800
        lines.append(f"| {label} | {kind} | {wall:.1f} | {lead_s / wall:.0f} | {lead_s / cpu:.0f} | {mb:.0f} | "
                     f"{summary['usable']}/{summary['records']} | {summary['beats']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    ap.add_argument("--nk-records", type=int, default=100, help="records timed for NeuroKit2 ecg_process")
    ap.add_argument("--long-only", action="store_true", help="only the 10-s vs 30-minute records comparison")
    args = ap.parse_args()
    if args.long_only:
        with tempfile.TemporaryDirectory() as tmp:
            print("## Long records: 10-s records vs one 30-minute record (same signal), `esi features --workers 1`\n")
            print(long_records(args.data, Path(tmp)))
        return
    warnings.simplefilter("ignore")
    from esi_tools.ingest.run import IngestConfig, ingest

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ptb = Dataset.open(ingest(IngestConfig(kind="ptbxl", fs=100, workers=2), args.data / "ptbxl", tmp / "ptb"))
        l500 = Dataset.open(ingest(IngestConfig(kind="wfdb", fs=500, workers=2), args.data / "ludb" / "data", tmp / "l500"))
        l100 = Dataset.open(ingest(IngestConfig(kind="wfdb", fs=100, workers=2), args.data / "ludb" / "data", tmp / "l100"))

        # --- speed --------------------------------------------------------------------------------------
        rows_ptb, _, t_ptb = ours(ptb)
        _, beats500, t_500 = ours(l500)
        _, beats100, _ = ours(l100)
        nk100, f100 = nk_process_rate(ptb, args.nk_records)
        nk500, f500 = nk_process_rate(l500, args.nk_records // 2)
        ours100, ours500 = len(ptb) / t_ptb, len(l500) / t_500
        print("## esi features vs NeuroKit2: speed (records/s on one core)\n")
        print("| data | ours: 12 leads, full features | NeuroKit2 ecg_process: 1 lead | ratio | NK failures |")
        print("|---|---|---|---|---|")
        print(f"| PTB-XL 100 Hz ({len(ptb)} / {args.nk_records} rec) | {ours100:.0f} | {nk100:.1f} | {ours100 / nk100:.0f}x | {f100} |")
        print(f"| LUDB 500 Hz ({len(l500)} / {args.nk_records // 2} rec) | {ours500:.0f} | {nk500:.1f} | {ours500 / nk500:.0f}x | {f500} |")
        print(f"\nlead-seconds/s, ours at 100 Hz: {ours100 * 12 * 10:.0f} (12 leads x 10 s per record)\n")

        # --- accuracy -----------------------------------------------------------------------------------
        nk_dwt, fail_dwt = nk_delineate(l500, "dwt")
        nk_prom, fail_prom = nk_delineate(l500, "prominence")
        held_out = lambda rid: int(rid) > 100  # noqa: E731
        results = {
            "ours 500 Hz (all 200)": score(l500, ours_marks(beats500), args.data / "ludb"),
            "ours 500 Hz (held-out 101-200)": score(l500, ours_marks(beats500), args.data / "ludb", held_out),
            "ours 100 Hz (all 200)": score(l100, ours_marks(beats100), args.data / "ludb"),
            f"NK dwt lead II ({fail_dwt} crashed)": score(l500, nk_dwt, args.data / "ludb"),
            f"NK prominence lead II ({fail_prom} crashed)": score(l500, nk_prom, args.data / "ludb"),
        }
        print("## LUDB lead II: sensitivity, PPV, error mean ± SD (ms)\n")
        print(accuracy_table(results))

        # --- PTB-XL label agreement ---------------------------------------------------------------------
        labels = ptb.records["labels"].to_list()

        def rate(code, test):
            vals = [test(r) for r, lab in zip(rows_ptb, labels) if code in lab and r["usable"]]
            return f"{np.mean(vals):.3f} (n={len(vals)})"

        def num(v):
            return v if v is not None and np.isfinite(v) else np.nan

        print("\n## PTB-XL 100 Hz: measurements vs labels (usable records)\n")
        print("| label | check | rate |\n|---|---|---|")
        for code, text, test in (
            ("CLBBB", "QRS >= 120 ms", lambda r: num(r["qrs_ms"]) >= 120),
            ("CRBBB", "QRS >= 120 ms", lambda r: num(r["qrs_ms"]) >= 120),
            ("1AVB", "PR > 200 ms", lambda r: num(r["pr_ms"]) > 200),
            ("AFIB", "irregular_rhythm", lambda r: "irregular_rhythm" in r["findings"]),
            ("AFIB", "possible_atrial_fibrillation", lambda r: "possible_atrial_fibrillation" in r["findings"]),
            ("LAFB", "axis < -30°", lambda r: num(r["qrs_axis_deg"]) < -30),
            ("SBRAD", "HR < 60", lambda r: num(r["hr_mean_bpm"]) < 60),
            ("STACH", "HR > 100", lambda r: num(r["hr_mean_bpm"]) > 100),
            ("NORM", "QRS >= 120 ms (false alarm)", lambda r: num(r["qrs_ms"]) >= 120),
            ("NORM", "PR > 200 ms (false alarm)", lambda r: num(r["pr_ms"]) > 200),
            ("SR", "irregular_rhythm (false alarm)", lambda r: "irregular_rhythm" in r["findings"]),
        ):
            print(f"| {code} | {text} | {rate(code, test)} |")
        usable = np.mean([r["usable"] for r in rows_ptb])
        print(f"\nusable: {usable:.3f} of {len(rows_ptb)} PTB-XL records")

        print("\n## Long records: 10-s records vs one 30-minute record (same signal), `esi features --workers 1`\n")
        print(long_records(args.data, tmp))


if __name__ == "__main__":
    main()
