"""The caption audit checked against itself on the real PTB-XL subset (all 1,987 records): template captions (made
from the same evidence) should score <= 1 % contradicted; of true template captions corrupted on purpose (the
rate, an interval, the rhythm or a diagnosis swapped for a wrong one, esi_tools/audit/corrupt.py) it should flag
>= 95 % of each kind, and of the uncorrupted ones <= 5 %. Also the audit's speed.

    .venv/bin/python bench/bench_audit.py [--data ../shared/data/ptbxl] [--words 80]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import polars as pl
from _common import DATA, esi, table


def main() -> None:
    from esi_tools.artifacts import open_artifact
    from esi_tools.audit.corrupt import KINDS, corrupt
    from esi_tools.audit.run import audit_caption, truths
    from esi_tools.dataset import Dataset

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(DATA / "ptbxl"))
    parser.add_argument("--words", type=int, default=80, help="budget of the corrupted captions (more intervals to swap)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset = esi("ingest", "ptbxl", args.data, "--out", tmp / "ds")
        features = esi("features", dataset, "--out", tmp / "features")
        index = esi("retrieve", "index", "builtin", "--out", tmp / "index")
        retrieval = esi("retrieve", dataset, "--index", index, "--features", features, "--out", tmp / "retrieval")
        for words in (33, args.words):
            captions = esi("caption", dataset, "-f", features, "-r", retrieval, "--words", words, "--out", tmp / f"c{words}")
            started = time.perf_counter()
            audit = esi("audit", captions, "--out", tmp / f"a{words}")
            took = time.perf_counter() - started
            r = json.loads((audit / "manifest.json").read_text())["summary"]["by_captions"]["template"]
            rows.append({"what": f"template captions, {words} words (all records)", "captions": r["captions"],
                         "claims": r["claims"], "flagged (a contradiction)": f"{r['captions_contradicted_pct']:.1f} %",
                         "claims contradicted": f"{r['contradicted_claims_pct']:.2f} %",
                         "hallucinated / number errors": f"{r['hallucinated']} / {r['number_errors']}",
                         "audit wall s (captions/s)": f"{took:.1f} ({r['captions'] / took:.0f})"})
        known = truths(Dataset.open(dataset), open_artifact(features, "features"))
        rng = random.Random(0)
        counts = {k: [0, 0] for k in KINDS}
        for row in pl.read_parquet(captions / "captions.parquet").iter_rows(named=True):
            truth = known[row["record_id"]]
            if not audit_caption(row["caption"], truth).faithful:
                continue  # a corruption can only be credited on a caption the audit found true
            for kind in KINDS:
                bad = corrupt(row["caption"], truth, kind, rng)
                if bad is not None:
                    counts[kind][1] += 1
                    counts[kind][0] += not audit_caption(bad, truth).faithful
        for kind, (hit, total) in counts.items():
            rows.append({"what": f"corrupted: {kind} swapped ({args.words}-word captions)", "captions": total,
                         "claims": "–", "flagged (a contradiction)": f"{100 * hit / total:.1f} %", "claims contradicted": "–",
                         "hallucinated / number errors": "–", "audit wall s (captions/s)": "–"})
    print(table("Caption audit on its own: template captions and corrupted ones, PTB-XL subset (bench_audit.py; "
                "goals: template <= 1 % contradicted, corruptions flagged >= 95 %, true captions flagged <= 5 %)", rows))


if __name__ == "__main__":
    main()
