"""Label tasks: turn a dataset's `labels` column into a multi-label target matrix.

PTB-XL tasks follow the PTB-XL benchmark (Strodthoff et al. 2021, `compute_label_aggregations`): every SCP
statement of a record counts whatever its likelihood; `diagnostic`/`form`/`rhythm` keep the statements
flagged 1 in that column of scp_statements.csv, `subdiagnostic`/`superdiagnostic` map diagnostic statements
to their `diagnostic_subclass`/`diagnostic_class`; records left with no label for the task are dropped.
Challenge data (SNOMED codes) and other label systems offer `all`: every code as its own class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

PTBXL_TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
GENERIC_TASKS = ("all",)


@dataclass
class Task:
    """A multi-label target over a subset of the dataset's records."""

    name: str
    classes: list[str]  # kept classes, sorted
    rows: np.ndarray  # int indices into the dataset's records (records with >= 1 kept label)
    y: np.ndarray  # bool (len(rows), len(classes))
    dropped: dict[str, str]  # class -> why it was dropped


def _flag(value) -> bool:
    """scp_statements.csv marks membership with 1.0 (read as '1.0' or 1.0); blanks are null."""
    if value is None:
        return False
    try:
        return float(value) == 1.0
    except (TypeError, ValueError):
        return False


def ptbxl_mapping(statements, task: str) -> dict[str, str] | None:
    """statement code -> class for `task`; None means identity over every statement (`all`)."""
    if task == "all":
        return None
    rows = statements.to_dicts()
    if task == "diagnostic":
        return {r["code"]: r["code"] for r in rows if _flag(r["diagnostic"])}
    if task in ("subdiagnostic", "superdiagnostic"):
        column = "diagnostic_subclass" if task == "subdiagnostic" else "diagnostic_class"
        return {r["code"]: r[column] for r in rows if _flag(r["diagnostic"]) and r[column]}
    if task in ("form", "rhythm"):
        return {r["code"]: r["code"] for r in rows if _flag(r[task])}
    raise InputError(f"unknown PTB-XL task '{task}' (choose from {', '.join(PTBXL_TASKS)})")


def record_labels(labels: list[list[str] | None], mapping: dict[str, str] | None) -> list[set[str]]:
    """Each record's set of task classes."""
    out = []
    for codes in labels:
        codes = codes or []
        out.append(set(codes) if mapping is None else {mapping[c] for c in codes if c in mapping})
    return out


def available_tasks(label_system: str) -> tuple[str, ...]:
    return PTBXL_TASKS if label_system == "scp" else GENERIC_TASKS


def build_task(records, task: str, *, statements=None, train_mask: np.ndarray, min_positives: int) -> Task:
    """Target matrix for `task`; classes with < min_positives positives in the training split are dropped."""
    systems = [s for s in records["label_system"].unique().to_list() if s]
    if len(systems) != 1:
        raise InputError(f"the dataset mixes label systems {systems}: probe one source at a time")
    system = systems[0]
    if task not in available_tasks(system):
        raise InputError(f"task '{task}' is not defined for {system} labels (choose from {', '.join(available_tasks(system))})")
    mapping = None
    if system == "scp" and task != "all":
        if statements is None:
            raise InputError(f"task '{task}' needs the PTB-XL statements table (statements.parquet) in the dataset")
        mapping = ptbxl_mapping(statements, task)
    per_record = record_labels(records["labels"].to_list(), mapping)
    counts: dict[str, int] = {}
    for labels, is_train in zip(per_record, train_mask, strict=True):
        if is_train:
            for c in labels:
                counts[c] = counts.get(c, 0) + 1
    every = sorted(set().union(*per_record)) if per_record else []
    classes = [c for c in every if counts.get(c, 0) >= min_positives]
    dropped = {c: f"{counts.get(c, 0)} training positives < {min_positives}" for c in every if c not in classes}
    index = {c: i for i, c in enumerate(classes)}
    y_all = np.zeros((len(per_record), len(classes)), dtype=bool)
    for i, labels in enumerate(per_record):
        for c in labels:
            if c in index:
                y_all[i, index[c]] = True
    rows = np.flatnonzero(y_all.any(axis=1))
    if not classes or rows.size == 0:
        raise InputError(f"task '{task}': no class has {min_positives} training positives")
    return Task(task, classes, rows, y_all[rows], dropped)
