"""Who is enrolled and who is searched: subjects, gallery, probes, distractors, normalisation set.

Subjects are patients with >= 2 recordings. Each subject's earliest recording (by recording date; a seeded
choice where dates are missing or tied) is enrolled in the gallery, the later ones are probes. Patients with
one recording never probe: they are the distractors (`--distractors` enrols them too, so a probe must beat
more candidates) and the disjoint population whose statistics standardise the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass
class Protocol:
    gallery: np.ndarray  # record indices enrolled
    gallery_subject: np.ndarray  # subject label of each gallery entry (distractors: their own patient id)
    probes: np.ndarray  # record indices searched
    probe_subject: np.ndarray
    singles: np.ndarray  # record indices of single-recording patients
    subject_records: dict[str, np.ndarray]  # subject -> all of its record indices (verification pairs)


def build_protocol(records, *, seed: int, distractors: bool) -> Protocol:
    if "patient_id" not in records.columns or records["patient_id"].drop_nulls().len() == 0:
        raise InputError("the dataset has no patient ids: identification needs to know whose recording is whose")
    pids = np.asarray([p if p not in (None, "") else None for p in records["patient_id"].cast(str).to_list()], dtype=object)
    dates = records["recording_date"].cast(str).to_list() if "recording_date" in records.columns else [None] * len(pids)
    known = np.flatnonzero(pids != None)  # noqa: E711 (object array comparison)
    by_patient: dict[str, list[int]] = {}
    for i in known:
        by_patient.setdefault(pids[i], []).append(int(i))
    subjects = sorted(p for p, rows in by_patient.items() if len(rows) >= 2)
    if not subjects:
        raise InputError("no patient has two or more recordings: nothing to identify")
    rng = np.random.default_rng(seed)
    gallery, gallery_subject, probes, probe_subject, subject_records = [], [], [], [], {}
    for s in subjects:
        rows = np.asarray(by_patient[s])
        tiebreak = rng.permutation(len(rows))  # seeded choice among undated or same-date recordings
        order = sorted(range(len(rows)), key=lambda j: (dates[rows[j]] is None, dates[rows[j]] or "", tiebreak[j]))
        rows = rows[order]
        gallery.append(rows[0])
        gallery_subject.append(s)
        probes.extend(rows[1:])
        probe_subject.extend([s] * (len(rows) - 1))
        subject_records[s] = rows
    singles = np.asarray(sorted(rows[0] for rows in by_patient.values() if len(rows) == 1), dtype=np.int64)
    if distractors:
        gallery.extend(singles)
        gallery_subject.extend(pids[singles])
    return Protocol(
        np.asarray(gallery, dtype=np.int64), np.asarray(gallery_subject, dtype=object),
        np.asarray(probes, dtype=np.int64), np.asarray(probe_subject, dtype=object), singles, subject_records,
    )
