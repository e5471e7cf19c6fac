"""LUDB reference annotations and the scoring used to validate delineation (tests and bench share it).

LUDB (Kalyakulina et al. 2020) annotates every lead of every record independently: `(` onset, `p`/`N`/`t`
peak, `)` offset. The first and last ~1-2 s of each record are not annotated, so a detection there is
neither a hit nor a false positive: everything is scored only inside the span from the first to the last
annotation of that lead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# LUDB's lead file suffixes in the standard I..V6 order of the dataset artifact.
LUDB_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
MARKS = ("p_on", "p_peak", "p_off", "qrs_on", "r_peak", "qrs_off", "t_peak", "t_off")
MATCH_WINDOW_MS = 150.0  # the matching window: a detection further than this from a reference is a miss


def read_annotations(record_path: str | Path, lead: str = "ii") -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """Reference sample indices per mark for one lead, and the annotated span (first, last sample)."""
    import wfdb

    ann = wfdb.rdann(str(record_path), lead)
    symbols, samples = list(ann.symbol), np.asarray(ann.sample, dtype=np.int64)
    marks: dict[str, list[int]] = {m: [] for m in MARKS}
    names = {"p": "p", "N": "qrs", "t": "t"}
    for i, sym in enumerate(symbols):
        if sym not in names:
            continue
        wave = names[sym]
        marks["r_peak" if wave == "qrs" else f"{wave}_peak"].append(samples[i])
        # pair onset/offset defensively: only a bracket directly around the peak belongs to it
        if i > 0 and symbols[i - 1] == "(" and f"{wave}_on" in marks:
            marks[f"{wave}_on"].append(samples[i - 1])
        if i + 1 < len(symbols) and symbols[i + 1] == ")":
            marks[f"{wave}_off"].append(samples[i + 1])
    span = (int(samples.min()), int(samples.max())) if len(samples) else (0, -1)
    return {m: np.asarray(v, dtype=np.int64) for m, v in marks.items()}, span


def match(reference: np.ndarray, detected: np.ndarray, span: tuple[int, int], window: int) -> dict:
    """Nearest-detection matching inside the annotated span.

    Returns hits (each reference with a detection within `window` samples), errors (detected - reference,
    samples, one per hit), and false positives (detections in the span matched to no reference).
    """
    lo, hi = span
    detected = np.sort(detected[np.isfinite(detected)]).astype(np.int64) if len(detected) else np.zeros(0, np.int64)
    inside = detected[(detected >= lo - window // 2) & (detected <= hi + window // 2)]
    errors, used = [], np.zeros(len(inside), bool)
    for ref in reference:
        if len(inside) == 0:
            break
        j = int(np.argmin(np.abs(inside - ref)))
        if abs(inside[j] - ref) <= window and not used[j]:
            used[j] = True
            errors.append(int(inside[j] - ref))
    strictly_inside = (inside >= lo) & (inside <= hi)
    return {"n_ref": len(reference), "hits": len(errors), "errors": np.asarray(errors, dtype=np.int64),
            "false_positives": int((~used & strictly_inside).sum())}


def summarise(results: list[dict], fs: float) -> dict:
    """Pool per-record match results of one mark: sensitivity, PPV, mean and SD of the error in ms."""
    n_ref = sum(r["n_ref"] for r in results)
    hits = sum(r["hits"] for r in results)
    fp = sum(r["false_positives"] for r in results)
    errors = np.concatenate([r["errors"] for r in results]) * (1000.0 / fs) if results else np.zeros(0)
    return {
        "n_ref": n_ref,
        "sensitivity": hits / n_ref if n_ref else float("nan"),
        "ppv": hits / (hits + fp) if hits + fp else float("nan"),
        "mean_ms": float(errors.mean()) if len(errors) else float("nan"),
        "sd_ms": float(errors.std()) if len(errors) else float("nan"),
    }
