"""esi ingest vs a plain wfdb.rdrecord loop on the real PTB-XL subset; peak memory on the subset replicated x10."""

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
    """PTB-XL's layout with the metadata repeated `factor` times (new ecg_ids, same signal files via symlinks)."""
    src = root / f"x{factor}"
    src.mkdir()
    (src / "records100").symlink_to(PTBXL / "records100")
    shutil.copy(PTBXL / "scp_statements.csv", src)
    meta = pl.read_csv(PTBXL / "ptbxl_database.csv", infer_schema=False)
    copies = [meta.with_columns((pl.col("ecg_id").cast(pl.Int64) + 100000 * k).cast(pl.String)) for k in range(factor)]
    pl.concat(copies).write_csv(src / "ptbxl_database.csv")
    return src


def main() -> str:
    n_loop, t_loop = wfdb_loop()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_ours, rss1 = peak_rss_mb([ESI, "-q", "ingest", "ptbxl", str(PTBXL), "--workers", "2", "--out", str(tmp / "a")])
        t_ours1, _ = peak_rss_mb([ESI, "-q", "ingest", "ptbxl", str(PTBXL), "--workers", "1", "--out", str(tmp / "b")])
        t10, rss10 = peak_rss_mb([ESI, "-q", "ingest", "ptbxl", str(replicated(tmp, 10)), "--workers", "2",
                                  "--out", str(tmp / "c")])
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
    ]
    return table("esi ingest (PTB-XL subset, 100 Hz)", rows)


if __name__ == "__main__":
    print(main())
