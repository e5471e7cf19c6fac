"""esi ingest vs a plain wfdb.rdrecord loop on the real PTB-XL subset; peak memory on the subset replicated x10;
a 30-minute recording (180 real LUDB records joined) cut into 10-s windows."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import wfdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, ESI, peak_rss_mb, table  # noqa: E402

PTBXL = DATA / "ptbxl"


def wfdb_loop() -> tuple[int, float]:
    """What users write today: read every record with wfdb and collect the arrays."""
    files = pl.read_csv(PTBXL / "ptbxl_database.csv", columns=["filename_lr"])["filename_lr"]
    start = time.perf_counter()
    arrays = [wfdb.rdrecord(str(PTBXL / f)).p_signal.astype(np.float32) for f in files]
    return len(arrays), time.perf_counter() - start


def replicated(root: Path, factor: int) -> Path:
    """PTB-XL's layout with the metadata repeated `factor` times (new ecg_ids, the same signal files, copied once:
    ingest refuses files that resolve outside the source, symlinks included)."""
    src = root / f"x{factor}"
    src.mkdir()
    shutil.copytree(PTBXL / "records100", src / "records100")
    shutil.copy(PTBXL / "scp_statements.csv", src)
    meta = pl.read_csv(PTBXL / "ptbxl_database.csv", infer_schema=False)
    copies = [meta.with_columns((pl.col("ecg_id").cast(pl.Int64) + 100000 * k).cast(pl.String)) for k in range(factor)]
    pl.concat(copies).write_csv(src / "ptbxl_database.csv")
    return src


def long_recording(root: Path) -> Path:
    """One 30-minute 12-lead 500 Hz WFDB record: LUDB records 1-180 joined end to end."""
    folder = root / "long"
    folder.mkdir()
    joined = np.concatenate([wfdb.rdrecord(str(DATA / "ludb" / "data" / str(k))).p_signal for k in range(1, 181)])
    wfdb.wrsamp("holter30", fs=500, units=["mV"] * 12, sig_name=["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2",
                "V3", "V4", "V5", "V6"], p_signal=joined, fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                write_dir=str(folder))
    return folder


def main() -> str:
    n_loop, t_loop = wfdb_loop()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_ours, rss1 = peak_rss_mb([ESI, "-q", "ingest", "ptbxl", str(PTBXL), "--workers", "2", "--out", str(tmp / "a")])
        t_ours1, _ = peak_rss_mb([ESI, "-q", "ingest", "ptbxl", str(PTBXL), "--workers", "1", "--out", str(tmp / "b")])
        t10, rss10 = peak_rss_mb([ESI, "-q", "ingest", "ptbxl", str(replicated(tmp, 10)), "--workers", "2",
                                  "--out", str(tmp / "c")])
        long = long_recording(tmp)
        t_long, rss_long = peak_rss_mb([ESI, "-q", "ingest", "wfdb", str(long), "--fs", "500", "--window", "10",
                                        "--workers", "1", "--out", str(tmp / "d")])
        t_ludb, _ = peak_rss_mb([ESI, "-q", "ingest", "wfdb", str(DATA / "ludb" / "data"), "--fs", "500",
                                 "--workers", "1", "--out", str(tmp / "e")])
    rows = [
        {"figure": "wfdb.rdrecord loop, records/s", "value": f"{n_loop / t_loop:,.0f}", "baseline": "-", "ratio": "1.0x"},
        {"figure": "esi ingest --workers 1, records/s (whole command, incl. start-up)",
         "value": f"{n_loop / t_ours1:,.0f}", "baseline": f"{n_loop / t_loop:,.0f}", "ratio": f"{t_loop / t_ours1:.1f}x"},
        {"figure": "esi ingest --workers 2, records/s (whole command, incl. start-up)",
         "value": f"{n_loop / t_ours:,.0f}", "baseline": f"{n_loop / t_loop:,.0f}", "ratio": f"{t_loop / t_ours:.1f}x"},
        {"figure": "esi ingest x10 (19,870 records), records/s", "value": f"{10 * n_loop / t10:,.0f}",
         "baseline": f"{n_loop / t_loop:,.0f}", "ratio": f"{t_loop * 10 / t10:.1f}x"},
        {"figure": "peak memory, subset x1 (MB PSS, process tree)", "value": f"{rss1:.0f}", "baseline": "target < 500", "ratio": "-"},
        {"figure": "peak memory, subset x10 (MB PSS, process tree)", "value": f"{rss10:.0f}", "baseline": f"x1: {rss1:.0f}",
         "ratio": f"{rss10 / rss1:.2f}x"},
        {"figure": "30-min recording, --window 10 at 500 Hz, -j 1: lead-seconds/s (180 windows)",
         "value": f"{12 * 1800 / t_long:,.0f}", "baseline": f"LUDB 200 x 10 s: {12 * 2000 / t_ludb:,.0f}",
         "ratio": f"{t_ludb * 1800 / (2000 * t_long):.2f}x"},
        {"figure": "peak memory, 30-min recording windowed (MB PSS)", "value": f"{rss_long:.0f}",
         "baseline": f"x1: {rss1:.0f}", "ratio": f"{rss_long / rss1:.2f}x"},
    ]
    return table("esi ingest (PTB-XL subset, 100 Hz)", rows)


if __name__ == "__main__":
    print(main())
