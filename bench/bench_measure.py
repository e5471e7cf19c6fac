"""Measurements one bad lead, segmenting or a late T cannot spoil (issue 23): the code before vs after, same records.

Every test record is built from real ones (no synthetic ECG):
- PTB-XL records whose `burst_noise`/`static_noise`/`electrodes_problems` name some of their leads: rate
  from all 12 leads against the rate from the clean leads alone;
- 2-lead records: LUDB (cardiologist R peaks of lead II are the truth) and clean PTB-XL records, lead II
  plus a bad second lead: (a) the noisy lead of an annotated noisy PTB-XL record as it is (another heart
  under the noise), (b) the record's own V1 plus the real noise of such a lead (that lead minus its median
  beat), (c) the record's lead with the largest T wave against its QRS, (d) the issue's case: the own V1
  with two bursts of 5-40 Hz noise, 1 mV rms, 3 s and 1.5 s (the only generated signal here: noise);
- long records: LUDB records joined end to end with a different gain per part, measured in today's
  30-s segments and in one pass.

    python bench/bench_measure.py [--data ../shared/data] [--before [NAME=]/tmp/old23 ...]

`--before` is a checkout of older code (repeatable): each side runs in its own process (`--worker`), on the
same records saved once. Prints Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
NOISE_COLUMNS = ("static_noise", "burst_noise", "electrodes_problems")
GAINS = (1.0, 0.4, 2.5, 0.7, 1.6, 0.25, 3.0)  # per-part gains of the joined long records


# --- building the records -------------------------------------------------------------------------------


def parse_leads(text: str) -> list[str]:
    """PTB-XL noise annotation -> lead names: 'I-AVF', 'V2,3', 'alles' (all), 'Kontaktprobleme aVL ???'."""
    upper = [lead.upper() for lead in LEADS]
    text = text.replace("?", " ").strip(" ,").upper()
    if not text:
        return []
    if "ALLES" in text:
        return list(LEADS)
    out: list[str] = []
    prev = None
    for part in text.replace(" ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            if a in upper and b in upper and upper.index(a) <= upper.index(b):
                out += LEADS[upper.index(a):upper.index(b) + 1]
            continue
        if part.isdigit() and prev is not None and prev.startswith("V"):
            part = f"V{part}"
        if part in upper:
            out.append(LEADS[upper.index(part)])
            prev = part
    return sorted(set(out), key=LEADS.index)


def ptbxl_noise(data: Path) -> dict[int, list[str]]:
    """ecg_id -> leads named noisy by PTB-XL's annotators (static, burst noise, electrode problems)."""
    out = {}
    with open(data / "ptbxl" / "ptbxl_database.csv", newline="") as f:
        for row in csv.DictReader(f):
            leads = sorted({lead for c in NOISE_COLUMNS for lead in parse_leads(row[c] or "")}, key=LEADS.index)
            if leads:
                out[int(float(row["ecg_id"]))] = leads
    return out


def read_ptbxl(data: Path, ecg_id: int) -> np.ndarray:
    """(12, 1000) mV at 100 Hz in the standard lead order."""
    import wfdb

    rec = wfdb.rdrecord(str(data / "ptbxl" / "records100" / f"{ecg_id // 1000 * 1000:05d}" / f"{ecg_id:05d}_lr"))
    names = [n.upper() for n in rec.sig_name]
    return np.nan_to_num(rec.p_signal[:, [names.index(lead.upper()) for lead in LEADS]].T).astype(np.float32)


def read_ludb(data: Path, n: int) -> np.ndarray:
    """(12, 5000) mV at 500 Hz in the standard lead order."""
    import wfdb

    rec = wfdb.rdrecord(str(data / "ludb" / "data" / str(n)))
    names = [s.upper() for s in rec.sig_name]
    return rec.p_signal[:, [names.index(lead.upper()) for lead in LEADS]].T.astype(np.float32)


def beat_residual(lead: np.ndarray, r: np.ndarray, fs: float) -> np.ndarray:
    """The lead minus its median beat at every R (edge beats too): its noise, without its own ECG."""
    pre, post = int(0.3 * fs), int(0.6 * fs)
    whole = r[(r >= pre) & (r + post < len(lead))]
    out = lead - np.median(lead)
    if len(whole) < 3:
        return out
    template = np.median(np.stack([lead[i - pre:i + post] for i in whole]), axis=0)
    for i in r:
        a, b = max(0, i - pre), min(len(lead), i + post)
        out[a:b] = lead[a:b] - template[a - (i - pre):b - (i - pre)]
    return out - np.median(out)


def burst_noise(n: int, fs: float, seed: int) -> np.ndarray:
    """The issue's recipe: two bursts of 5-40 Hz noise, 1 mV rms, 3 s and 1.5 s long, in a 10-s record."""
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(seed)
    band = sosfiltfilt(butter(4, [5, min(40, 0.45 * fs)], "bandpass", fs=fs, output="sos"), rng.standard_normal(n + 200))
    band = band[100:-100] / band[100:-100].std()
    out = np.zeros(n)
    for start, length in ((0.5, 3.0), (5.5, 1.5)):  # each somewhere in its half of the record
        a = int((start + rng.uniform(0, 1.5)) * fs)
        out[a:a + int(length * fs)] = band[a:a + int(length * fs)]
    return out.astype(np.float32)


def build(data: Path, out: Path) -> dict:
    """All test records into out/*.npy, with their truth; returns the description (JSON-able)."""
    from scipy.signal import resample_poly

    sys.path.insert(0, str(ROOT))
    from esi_tools.features.ludb import read_annotations
    from esi_tools.features.records import measure_arrays

    noisy = ptbxl_noise(data)
    have = {int(p.stem[:5]) for p in (data / "ptbxl" / "records100").rglob("*_lr.hea")}
    noisy = {k: v for k, v in noisy.items() if k in have}
    clean_ids = sorted(have - set(noisy))[:300]
    desc: dict = {"noisy": {}, "cases": {}}

    # 1. PTB-XL annotated noisy records: all 12 leads vs the clean ones
    part = {k: v for k, v in noisy.items() if len(v) < 12}
    ids = sorted(part)
    np.save(out / "ptb_noisy.npy", np.stack([read_ptbxl(data, i) for i in ids]))
    desc["noisy"] = {"ids": ids, "bad": [part[i] for i in ids]}

    # real noise: the annotated noisy leads minus their beats (R peaks from the record's clean leads or all)
    noise100 = []
    for i in sorted(noisy):
        x = read_ptbxl(data, i)
        bad = noisy[i]
        good = [lead for lead in LEADS if lead not in bad] or list(LEADS)
        _, beats, _ = measure_arrays(x[[LEADS.index(g) for g in good]], 100.0, leads=good)
        r = beats["r_sample"].to_numpy().astype(int)
        for lead in bad:
            if lead in ("aVR", "aVL", "aVF", "III") and len(bad) > 3:
                continue  # derived limb leads repeat I/II's noise
            noise100.append((i, lead, x[LEADS.index(lead)], beat_residual(x[LEADS.index(lead)], r, 100.0)))
    desc["noise_sources"] = len(noise100)

    # 2. LUDB 2-lead records (500 Hz) and PTB-XL 2-lead records (100 Hz)
    ludb = np.stack([read_ludb(data, n) for n in range(1, 201)])
    ref = [read_annotations(data / "ludb" / "data" / str(n), "ii") for n in range(1, 201)]
    desc["ludb_ref"] = [{"r": a["r_peak"].tolist(), "span": list(s)} for a, s in ref]
    full, _, _ = measure_arrays(ludb, 500.0)
    ptb = np.stack([read_ptbxl(data, i) for i in clean_ids])
    full_ptb, _, _ = measure_arrays(ptb, 100.0)
    for name, x, fs, feats in (("ludb", ludb, 500, full), ("ptbxl", ptb, 100, full_ptb)):
        ii, v1 = x[:, 1], x[:, 6]
        n = x.shape[-1]
        foreign = np.stack([resample_poly(noise100[k % len(noise100)][2], fs // 100, 1)[:n] for k in range(len(x))])
        real = np.stack([resample_poly(noise100[k % len(noise100)][3], fs // 100, 1)[:n] for k in range(len(x))])
        ratio = np.stack([np.abs(feats[f"t_amp_{lead}_mv"].to_numpy()) / feats[f"qrs_ptp_{lead}_mv"].to_numpy()
                          for lead in LEADS])
        ratio[1] = -1  # not lead II itself
        big_t = np.nanargmax(np.nan_to_num(ratio, nan=-1), axis=0)
        cases = {"12 leads": x, "II": ii[:, None],
                 "II + V1": np.stack([ii, v1], 1),
                 "II + noisy lead of another record": np.stack([ii, foreign], 1),
                 "II + V1 + real noise": np.stack([ii, v1 + real], 1),
                 "II + largest-T lead": np.stack([ii, x[np.arange(len(x)), big_t]], 1),
                 "II + V1 + noise bursts": np.stack([ii, v1 + np.stack([burst_noise(n, fs, k) for k in range(len(x))])], 1)}
        for case, arr in cases.items():
            key = f"{name}:{case}"
            np.save(out / f"{key.replace(' ', '_').replace(':', '__')}.npy", arr.astype(np.float32))
            desc["cases"][key] = {"fs": fs, "file": f"{key.replace(' ', '_').replace(':', '__')}.npy",
                                  "big_t_ratio_gt1": int((np.nanmax(np.nan_to_num(ratio, nan=-1), 0) > 1).sum())}

    # 3. long records: 10 x (20 LUDB records joined, 200 s), a different gain per part; 12 and 2 leads
    order = np.random.default_rng(23).permutation(200)
    long_ = []
    for k in range(10):
        parts = order[k * 20:(k + 1) * 20]
        long_.append({"parts": parts.tolist(), "gains": [GAINS[(k + j) % len(GAINS)] for j in range(len(parts))]})
    np.save(out / "long.npy", np.stack([np.concatenate([ludb[p] * g for p, g in zip(d["parts"], d["gains"])], axis=1)
                                        for d in long_]))
    desc["long"] = long_
    return desc


# --- measuring (one side: old or new code) -----------------------------------------------------------------


def worker(code: Path, cases: Path) -> dict:
    """Measure every saved record with the code at `code`; per record: rate, usable, reason, R samples."""
    sys.path.insert(0, str(code))
    from esi_tools.features import params as P
    from esi_tools.features.records import measure_arrays

    desc = json.loads((cases / "cases.json").read_text())

    def run(x, fs, leads):
        start = time.perf_counter()
        f, b, _ = measure_arrays(x, fs, leads=leads)
        ids = b["record_id"].to_numpy()
        r = b["r_sample"].to_numpy()
        return {"hr": f["hr_mean_bpm"].fill_nan(None).to_list(), "usable": f["usable"].to_list(),
                "reason": f["quality_reason"].to_list(), "qt": f["qt_ms"].fill_nan(None).to_list(),
                "r": [r[ids == str(i)].tolist() for i in range(len(x))], "s": time.perf_counter() - start}

    out: dict = {"cases": {}}
    x = np.load(cases / "ptb_noisy.npy")
    out["noisy_all"] = run(x, 100.0, list(LEADS))
    out["noisy_clean"] = []
    for i, bad in enumerate(desc["noisy"]["bad"]):
        good = [lead for lead in LEADS if lead not in bad]
        res = run(x[i:i + 1, [LEADS.index(g) for g in good]], 100.0, good)
        out["noisy_clean"].append(res["hr"][0])
    from esi_tools.features.measure import rhythm

    for key, c in desc["cases"].items():
        arr = np.load(cases / c["file"])
        out["cases"][key] = res = run(arr, float(c["fs"]), list(LEADS) if arr.shape[1] == 12 else ["II", "V1"][:arr.shape[1]])
        if key.startswith("ludb:"):  # the side's own rate from its beats inside the annotated span (+-80 ms)
            span = [(rf["span"][0] - 40, rf["span"][1] + 40) for rf in desc["ludb_ref"]]
            rr = [np.diff([v for v in r if a <= v <= b]) * 2.0 for r, (a, b) in zip(res["r"], span)]
            res["span_hr"] = [float(rhythm(x)["hr_mean_bpm"]) if len(x) else None for x in rr]
    long_ = np.load(cases / "long.npy")
    for leads in (list(LEADS), ["II", "V5"]):
        sel = long_[:, [LEADS.index(lead) for lead in leads]]
        out[f"long{len(leads)}:segments"] = run(sel, 500.0, leads)
        seg = P.SEGMENT_S
        P.SEGMENT_S = 1e6  # one pass: the whole record as one piece
        out[f"long{len(leads)}:one pass"] = run(sel, 500.0, leads)
        P.SEGMENT_S = seg
    return out


# --- scoring ---------------------------------------------------------------------------------------------


def f1(ref: list[dict], found: list[list[int]], fs: float, scale: float = 1.0) -> tuple[float, int, int]:
    """Pooled beat F1 inside each record's annotated span (150 ms window); (F1, false positives, misses)."""
    sys.path.insert(0, str(ROOT))
    from esi_tools.features.ludb import MATCH_WINDOW_MS, match

    tp = fp = fn = 0
    for rf, r in zip(ref, found):
        span = (int(rf["span"][0] * scale), int(rf["span"][1] * scale))
        m = match(np.round(np.asarray(rf["r"]) * scale).astype(np.int64), np.asarray(r, float), span,
                  int(MATCH_WINDOW_MS / 1000 * fs))
        tp, fp, fn = tp + m["hits"], fp + m["false_positives"], fn + m["n_ref"] - m["hits"]
    return 2 * tp / max(2 * tp + fp + fn, 1), fp, fn


def rate_row(hr: list, usable: list, base: list) -> str:
    """Of the records whose reference rate exists: within 2 bpm, unusable (said so), wrong (usable, > 2 off)."""
    ok = wrong = unusable = n = 0
    for h, u, b in zip(hr, usable, base):
        if b is None:
            continue
        n += 1
        if not u or h is None:
            unusable += 1
        elif abs(h - b) <= 2:
            ok += 1
        else:
            wrong += 1
    return f"{ok / n:.1%} / {unusable / n:.1%} / {wrong / n:.1%}"


def tables(desc: dict, res: dict[str, dict]) -> str:
    sides = list(res)
    lines = ["## Rate from all 12 leads vs from the clean leads: PTB-XL records with annotated noisy leads\n",
             f"{len(desc['noisy']['ids'])} records (100 Hz) whose noise annotations name some but not all leads; "
             "cells: within 2 bpm / not usable / usable but > 2 bpm off (of records with a clean-lead rate).\n",
             "| code | within 2 / unusable / wrong | median abs error bpm | max abs error bpm |", "|---|---|---|---|"]
    for s in sides:
        a, b = res[s]["noisy_all"], res[s]["noisy_clean"]
        err = [abs(h - c) for h, c, u in zip(a["hr"], b, a["usable"]) if h is not None and c is not None and u]
        lines.append(f"| {s} | {rate_row(a['hr'], a['usable'], b)} | {np.median(err):.2f} | {np.max(err):.1f} |")

    lines += ["\n## One bad lead: 2-lead records (lead II + a bad lead) against lead II alone\n",
              "LUDB: 200 records at 500 Hz, beat F1 against the cardiologists' lead-II R peaks (inside the annotated span); "
              "PTB-XL: 300 clean records at 100 Hz. Rate cells: within 2 bpm of the reference / not usable / usable but "
              "> 2 bpm off; references: lead II alone (the issue's), the record's 12 clean leads, and (LUDB) the "
              "mean rate of the cardiologists' R peaks, over their annotated span (~8 of the 10 s) against the rate "
              "of the beats found there.\n",
              "| records | leads | " + " | ".join(f"{s}: beat F1 (FP, FN)" for s in sides) + " | "
              + " | ".join(f"{s}: rate vs II alone" for s in sides) + " | "
              + " | ".join(f"{s}: rate vs 12 leads" for s in sides) + " | "
              + " | ".join(f"{s}: rate vs annotated R peaks" for s in sides) + " |",
              "|---|---|" + "---|" * (4 * len(sides))]
    truth = [60000.0 / (np.diff(rf["r"]).mean() * 2.0) if len(rf["r"]) > 1 else None for rf in desc["ludb_ref"]]
    # the annotated span is ~8 of the 10 s: the rate is compared over it (the side's rate from its beats there)
    for key in desc["cases"]:
        name, case = key.split(":", 1)
        cells, rates, full, annotated = [], [], [], []
        for s in sides:
            c = res[s]["cases"][key]
            if name == "ludb":
                f, fp, fn = f1(desc["ludb_ref"], c["r"], 500.0)
                cells.append(f"{f:.2%} ({fp}, {fn})")
            else:
                cells.append("-")
            rates.append(rate_row(c["hr"], c["usable"], res[s]["cases"][f"{name}:II"]["hr"]) if case != "II" else "-")
            full.append(rate_row(c["hr"], c["usable"], res[s]["cases"][f"{name}:12 leads"]["hr"]))
            annotated.append(rate_row(c["span_hr"], c["usable"], truth) if name == "ludb" else "-")
        if case == "12 leads":
            rates = full = ["-"] * len(sides)
        lines.append(f"| {name} | {case} | " + " | ".join(cells + rates + full + annotated) + " |")

    lines += ["\n## Long records: 10 x 200 s (20 LUDB records joined, gains 0.25-3 between parts), 500 Hz\n",
              "Beat F1 against the cardiologists' lead-II R peaks of every part (inside each part's annotated span).\n",
              "| leads | detection | " + " | ".join(f"{s}: beat F1 (FP, FN)" for s in sides) + " |",
              "|---|---|" + "---|" * len(sides)]
    ref_long = []
    for d in desc["long"]:
        r, lo, hi = [], [], []
        for j, p in enumerate(d["parts"]):
            rf = desc["ludb_ref"][p]
            r += [v + j * 5000 for v in rf["r"]]
            lo.append(rf["span"][0] + j * 5000)
            hi.append(rf["span"][1] + j * 5000)
        ref_long.append((np.asarray(r), lo, hi))
    for leads in ("12", "2"):
        for mode in ("segments", "one pass"):
            cells = []
            for s in sides:
                found = res[s][f"long{leads}:{mode}"]["r"]
                per_part_ref, per_part_found = [], []
                for (r, lo, hi), f in zip(ref_long, found):  # score part by part: between spans is not annotated
                    f = np.asarray(f)
                    for a, b in zip(lo, hi):
                        per_part_ref.append({"r": r[(r >= a) & (r <= b)].tolist(), "span": [a, b]})
                        per_part_found.append(f[(f >= a - 200) & (f <= b + 200)].tolist())
                f1v, fp, fn = f1(per_part_ref, per_part_found, 500.0)
                cells.append(f"{f1v:.2%} ({fp}, {fn})")
            lines.append(f"| {'12' if leads == '12' else 'II + V5'} | {mode} | " + " | ".join(cells) + " |")

    lines += ["\n## Time for the records above (s, one process)\n", "| code | " + " | ".join(
        ["PTB-XL noisy 12-lead"] + [k for k in desc["cases"] if "II + V1 + noise" in k] + ["long 12-lead segments"]) + " |",
        "|---|---|---|---|---|"]
    for s in sides:
        r = res[s]
        cells = [r["noisy_all"]["s"]] + [r["cases"][k]["s"] for k in desc["cases"] if "II + V1 + noise" in k]
        cells.append(r["long12:segments"]["s"])
        lines.append(f"| {s} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--before", action="append", default=[], metavar="[NAME=]DIR",
                    help="a checkout of older code, measured side by side (repeatable; NAME labels its columns)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cases", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    if args.worker:
        print(json.dumps(worker(args.worker, args.cases)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        desc = build(args.data, tmp)
        (tmp / "cases.json").write_text(json.dumps(desc))
        sides = {}
        for b in args.before:
            name, _, path = b.rpartition("=")
            sides[name or ("before" if len(args.before) == 1 else Path(path).name)] = Path(path)
        sides["after"] = ROOT
        res = {}
        for name, code in sides.items():
            proc = subprocess.run([sys.executable, __file__, "--worker", str(code), "--cases", str(tmp)],
                                  check=True, capture_output=True, text=True)
            res[name] = json.loads(proc.stdout)
        print(tables(desc, res))


if __name__ == "__main__":
    main()
