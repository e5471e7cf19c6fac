"""A MIMIC-IV-ECG-shaped tree of N records built from the real 500 Hz records in ../shared/data.

usage: .venv/bin/python bench/mimic_layout.py OUT --n N [--seed 0] [--copies-per-patient K] [--copy]

The layout is MIMIC-IV-ECG's own (v1.0): `files/pNNNN/pNNNNNNNN/sNNNNNNNN/NNNNNNNN.{hea,dat}`, `record_list.csv`
(subject_id, study_id, file_name, ecg_time, path) and `machine_measurements.csv` (subject_id, study_id, cart_id,
ecg_time, report_0..report_17, bandwidth, filtering, rr_interval, p_onset, p_end, qrs_onset, qrs_end, t_end,
p_axis, qrs_axis, t_axis). Ingesting it with `esi ingest mimic-iv-ecg` marks the dataset credentialed, as it
would for real MIMIC data: that is what the layout means, and correct.

Sources (754 real 12-lead 10-s 500 Hz recordings in 725 source units):
- PTB-XL ecg_id 1-500 (`ptbxl/records500/00000`, 488 records, 459 patients): statements are the English
  descriptions (scp_statements.csv `description`) of the record's own scp_codes. Its 20 patients with several
  500 Hz ECGs stay together: they are real multi-study patients.
- LUDB (200 records): statements are the record's own diagnoses (the header's `<diagnoses>` lines).
- Challenge 2020/2021 (`.mat` + `.hea`, format 16 after a 24-byte MATLAB header): the `.mat` file is hardlinked
  as the `.dat` and the header says `16x1+24` (a WFDB byte offset), so no sample is rewritten. Statements are
  the knowledge base's titles of its SNOMED `Dx` codes (codes without a passage are left out). Its `HR*` records
  are PTB-XL records again and are skipped (66 records remain).
No measurement is invented: machine_measurements.csv's numeric columns (rr_interval ... t_axis), cart_id,
bandwidth and filtering are empty (the ingest reads them as missing). `esi_sources.csv` (not part of MIMIC)
says which real record each study is a copy of.

Copies and patients: a "source unit" is one PTB-XL patient (its records in date order) or one LUDB/Challenge
record. Units are taken in a seeded order (PTB-XL multi-study patients first, so even a small tree has real
multi-study patients) and copied round-robin until N records: copy 0 of every unit, then copy 1, ...
Signal files are hardlinked (os.link; copied with --copy or when linking fails, and counted), headers rewritten
with the new record name and a date-shifted date (year 2180+, as in MIMIC).
- `--copies-per-patient 0` (the default): every copy of a unit belongs to that unit's one patient, so one signal
  never sits under two patients. Patients = units used (at most 725), studies per patient grow with N, and
  subject identification is trivially easy (a probe is an exact copy of its own gallery entry): scores on such
  a tree mean nothing, only the cost does.
- `--copies-per-patient K`: copies c of a unit go to patient (unit, c // K), giving MIMIC's ratio of ~5 studies
  per patient at K = 5 (800k ECGs of 160k patients), so the gallery grows with N as it would on real data. The
  same signal then sits under several patients (exact copies across patients): identification accuracy is
  meaningless (ties), but its cost is realistic. `bench/bench_scale.py` uses K = 5 for that reason.

Disk: a hardlinked record costs its header (one 4 KiB block), its study folder (4 KiB) and inodes; about 8 KiB a
record (~0.8 GB at 100,000), plus ~40 MB of CSV. With --copy add 120 KiB a record (PTB-XL/LUDB .dat: 12 x 5000
x 2 bytes), ~12 GB at 100,000. The summary printed at the end measures it (blocks of the files this run made).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"

RECORD_LIST = ["subject_id", "study_id", "file_name", "ecg_time", "path"]
REPORTS = [f"report_{i}" for i in range(18)]
MEASURES = ["bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end",
            "p_axis", "qrs_axis", "t_axis"]
MACHINE = ["subject_id", "study_id", "cart_id", "ecg_time", *REPORTS, *MEASURES]
FIRST_SUBJECT, FIRST_STUDY = 10_000_000, 40_000_000  # MIMIC's ids are 8 digits (subjects 1xxxxxxx, studies 4xxxxxxx)
EPOCH = datetime(2180, 1, 1, 8, 0)  # MIMIC dates are shifted into 2100-2200


@dataclass
class Source:
    key: str  # e.g. ptbxl:00001_hr
    header: Path
    statements: list[str]
    sig_lines: list[str] = field(default_factory=list)  # signal lines with the file name replaced by {name}
    head: str = ""  # "n_sig fs n_samples" of the record line
    signal: Path | None = None  # the one signal file


def _parse_header(source: Source, offset: str | None = None) -> Source:
    """Keep the record line's numbers and the signal lines; comments (LUDB's diagnoses, Challenge's Dx) are dropped:
    MIMIC headers carry none, its statements live in machine_measurements.csv."""
    lines = [ln.strip() for ln in source.header.read_text().splitlines()]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    head = body[0].split()
    source.head = " ".join(head[1:4])
    n_sig = int(head[1])
    files = set()
    for line in body[1:1 + n_sig]:
        parts = line.split()
        files.add(parts[0])
        fmt = parts[1]
        if offset and "+" not in fmt:
            fmt = f"{fmt}+{offset}"
        source.sig_lines.append(" ".join(["{name}.dat", fmt, *parts[2:]]))
    if len(files) != 1:
        raise ValueError(f"{source.header}: {len(files)} signal files (one expected)")
    source.signal = source.header.parent / files.pop()
    return source


def _sentence(text: str) -> str:
    text = text.strip().rstrip(". ")
    return text[:1].upper() + text[1:]


def ptbxl_units(data: Path) -> list[list[Source]]:
    root = data / "ptbxl"
    with open(root / "scp_statements.csv", newline="") as fh:
        described = {row[""]: row["description"] for row in csv.DictReader(fh)}
    by_patient: dict[str, list[tuple[str, Source]]] = {}
    with open(root / "ptbxl_database.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            header = root / f"{row['filename_hr']}.hea"
            if not header.is_file():
                continue
            codes = ast.literal_eval(row["scp_codes"] or "{}")
            statements = [_sentence(described[c]) for c in codes if described.get(c)]
            source = _parse_header(Source(f"ptbxl:{header.stem}", header, statements))
            by_patient.setdefault(row["patient_id"], []).append((row["recording_date"], source))
    return [[s for _, s in sorted(records, key=lambda r: r[0])] for records in by_patient.values()]


def ludb_units(data: Path) -> list[list[Source]]:
    units = []
    for header in sorted((data / "ludb" / "data").glob("*.hea"), key=lambda p: int(p.stem)):
        statements, inside = [], False
        for line in header.read_text().splitlines():
            text = line.lstrip("#").strip()
            if text.lower().startswith("<diagnoses>"):
                inside = True
            elif inside and text:
                # "Rhythm: Sinus bradycardia." -> "Sinus bradycardia"; "Electric axis of the heart: left axis
                # deviation" -> "Left axis deviation"; other lines are statements as they are
                for prefix in ("Rhythm:", "Electric axis of the heart:"):
                    if text.startswith(prefix):
                        text = text[len(prefix):]
                statements.append(_sentence(text))
        units.append([_parse_header(Source(f"ludb:{header.stem}", header, statements))])
    return units


def challenge_units(data: Path) -> list[list[Source]]:
    sys.path.insert(0, str(HERE.parent))
    from esi_tools.knowledge import passage_for, passages_by_id

    titles = passages_by_id()
    units = []
    for header in sorted((data / "challenge").glob("*/*.hea")):
        if header.stem.startswith("HR"):  # PTB-XL records again
            continue
        dx = next((ln.split(":", 1)[1] for ln in header.read_text().splitlines() if ln.lstrip("# ").startswith("Dx:")), "")
        statements = []
        for code in (c.strip() for c in dx.split(",") if c.strip()):
            pid = passage_for("snomed", code)
            if pid and titles[pid]["title"] not in statements:
                statements.append(titles[pid]["title"])
        source = _parse_header(Source(f"challenge:{header.parent.name}/{header.stem}", header, statements), offset="24")
        if source.signal.suffix == ".mat":
            units.append([source])
    return units


def plan(data: Path, n: int, seed: int, copies_per_patient: int, challenge: bool = True):
    """(source, subject index, copy index) for every record, in subject order then time."""
    units = ptbxl_units(data) + ludb_units(data) + (challenge_units(data) if challenge else [])
    rng = random.Random(seed)
    multi = [u for u in units if len(u) > 1]
    single = [u for u in units if len(u) == 1]
    rng.shuffle(multi)
    rng.shuffle(single)
    units = multi + single
    rows = []  # (subject key, order, source, copy)
    copy = 0
    while len(rows) < n:
        for u, unit in enumerate(units):
            subject = (u, copy // copies_per_patient) if copies_per_patient else (u, 0)
            for k, source in enumerate(unit):
                if len(rows) == n:
                    break
                rows.append((subject, (copy, k), source, copy))
            if len(rows) == n:
                break
        copy += 1
    rows.sort(key=lambda r: (r[0], r[1]))
    subjects = {key: i for i, key in enumerate(dict.fromkeys(r[0] for r in rows))}
    return [(source, subjects[subject], order, copy) for subject, order, source, copy in rows], len(units)


def generate(out: Path, n: int, *, seed: int = 0, copies_per_patient: int = 0, copy_files: bool = False,
             data: Path = DATA, challenge: bool = True) -> dict:
    """Write the tree; returns a summary (records, patients, links, copies, bytes written, seconds)."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=False)
    rows, n_units = plan(data, n, seed, copies_per_patient, challenge)
    rng = random.Random(seed + 1)
    linked = copied = 0
    made_dirs: set[str] = set()
    with open(out / "record_list.csv", "w", newline="") as rl, open(out / "machine_measurements.csv", "w", newline="") as mm, \
            open(out / "esi_sources.csv", "w", newline="") as src:
        rl_w, mm_w, src_w = (csv.writer(fh, lineterminator="\n") for fh in (rl, mm, src))
        rl_w.writerow(RECORD_LIST)
        mm_w.writerow(MACHINE)
        src_w.writerow(["study_id", "subject_id", "source", "copy"])
        first_day = {}
        for number, (source, subject_index, (copy, k), _) in enumerate(rows):
            subject, study = str(FIRST_SUBJECT + subject_index), str(FIRST_STUDY + number)
            if subject_index not in first_day:
                first_day[subject_index] = EPOCH + timedelta(days=rng.randrange(3650), minutes=rng.randrange(600))
            when = first_day[subject_index] + timedelta(days=30 * copy + k, minutes=7 * k)
            ecg_time = when.strftime("%Y-%m-%d %H:%M:%S")
            rel = f"files/p{subject[:4]}/p{subject}/s{study}"
            folder = out / rel
            parent = f"files/p{subject[:4]}/p{subject}"
            if parent not in made_dirs:
                (out / parent).mkdir(parents=True, exist_ok=True)
                made_dirs.add(parent)
            folder.mkdir()
            dat = folder / f"{study}.dat"
            if not copy_files:
                try:
                    os.link(source.signal, dat)
                    linked += 1
                except OSError:
                    copy_files = True  # another file system or no permission: copy from now on
            if copy_files:
                shutil.copyfile(source.signal, dat)
                copied += 1
            lines = [f"{study} {source.head} {when:%H:%M:%S} {when:%d/%m/%Y}"]
            lines += [line.replace("{name}", study) for line in source.sig_lines]
            (folder / f"{study}.hea").write_text("\n".join(lines) + "\n")
            rl_w.writerow([subject, study, study, ecg_time, f"{rel}/{study}"])
            reports = (source.statements + [""] * len(REPORTS))[:len(REPORTS)]
            mm_w.writerow([subject, study, "", ecg_time, *reports, *[""] * len(MEASURES)])
            src_w.writerow([study, subject, source.key, copy])
    written = disk_written(out)
    summary = {"records": len(rows), "patients": len({r[1] for r in rows}), "source_units": n_units,
               "sources_used": len({r[0].key for r in rows}), "linked": linked, "copied": copied,
               "bytes_written": written, "seconds": round(time.perf_counter() - start, 2)}
    (out / "esi_layout.json").write_text(json.dumps({**summary, "seed": seed, "copies_per_patient": copies_per_patient}))
    return summary


def disk_written(root: Path) -> int:
    """Bytes of disk blocks this tree added: its directories and its own files. A hardlinked signal file (more
    than one link: the real record in ../shared/data is one) costs no new block and is not counted."""
    total, stack = 0, [root]
    while stack:
        folder = stack.pop()
        total += os.lstat(folder).st_blocks * 512
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                st = entry.stat(follow_symlinks=False)
                if st.st_nlink == 1:
                    total += st.st_blocks * 512
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="new directory to create")
    parser.add_argument("--n", type=int, required=True, help="number of records (studies)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copies-per-patient", type=int, default=0,
                        help="0: every copy of a source stays with one patient; K: K copies per patient (5: MIMIC's ratio)")
    parser.add_argument("--copy", action="store_true", help="copy signal files instead of hardlinking them")
    parser.add_argument("--no-challenge", action="store_true", help="PTB-XL and LUDB sources only")
    parser.add_argument("--data", type=Path, default=DATA, help="the real data (default ../shared/data)")
    args = parser.parse_args(argv)
    summary = generate(args.out, args.n, seed=args.seed, copies_per_patient=args.copies_per_patient,
                       copy_files=args.copy, data=args.data, challenge=not args.no_challenge)
    print(json.dumps(summary), file=sys.stderr)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
