"""Zero-shot classification: cosine similarity between each ECG and a text prompt per class.

A class's prompt comes from our knowledge base: the passage for its code (`passage_for`) gives its title
and first sentence. Aggregated PTB-XL classes (sub/superdiagnostic, e.g. MI) have no code of their own; their
prompt lists the titles of the passages of their member statements (from scp_statements.csv). Classes with
no passage at all fall back to the statement description or the class name, and say so in prompts.parquet.
"""

from __future__ import annotations

import re

import numpy as np

MAX_MEMBERS = 6  # member titles listed for an aggregated class: the text tower truncates long prompts anyway
BATCH = 64  # ECGs per inference batch


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[a-z0-9)])\.\s", text.strip(), maxsplit=1)[0].rstrip(".") + "."


def _passage_prompt(passage: dict) -> str:
    return f"{passage['title']}. {_first_sentence(passage['text'])}"


def class_prompts(classes: list[str], *, system: str, task: str, statements=None) -> dict[str, tuple[str, str]]:
    """class -> (prompt, origin) where origin names the passage(s) used or the fallback taken."""
    from ..knowledge import load_passages, passage_for

    passages = {p["id"]: p for p in load_passages()}
    rows = statements.to_dicts() if statements is not None else []
    column = {"subdiagnostic": "diagnostic_subclass", "superdiagnostic": "diagnostic_class"}.get(task)
    out = {}
    for c in classes:
        kb_system = "snomed" if system == "snomed" else "scp"
        pid = passage_for(kb_system, c) if system in ("scp", "snomed") else None
        if pid:
            out[c] = (_passage_prompt(passages[pid]), pid)
            continue
        members = sorted(r["code"] for r in rows if column and r.get(column) == c)
        ids = list(dict.fromkeys(p for p in (passage_for("scp", m) for m in members) if p))[:MAX_MEMBERS]
        if ids:
            out[c] = ("; ".join(passages[i]["title"] for i in ids) + ".", "+".join(ids))
            continue
        description = next((r.get("description") for r in rows if r["code"] == c and r.get("description")), None)
        out[c] = (f"{description or c}.", "statement description" if description else "class name")
    return out


def zero_shot_scores(model_dir, dataset, task, positions: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    """(len(positions), C) cosine similarities for task rows `positions`; and class -> prompt."""
    import torch

    from ..console import progress
    from ..model import load_esi, preprocess

    model = load_esi(model_dir)
    statements = dataset.artifact.table("statements.parquet") if dataset.artifact.has("statements.parquet") else None
    system = dataset.records["label_system"].drop_nulls()[0]
    prompts = class_prompts(task.classes, system=system, task=task.name, statements=statements)
    text = model.encode_text([prompts[c][0] for c in task.classes])
    indices = task.rows[positions]
    scores = np.zeros((len(indices), len(task.classes)), dtype=np.float32)
    with torch.inference_mode(), progress("zero-shot", len(indices)) as bar:
        for start in range(0, len(indices), BATCH):
            idx = indices[start : start + BATCH]
            ecg = model.encode_ecg(preprocess(dataset.millivolts(idx)))
            scores[start : start + len(idx)] = (ecg @ text.T).numpy()
            bar.advance(len(idx))
    return scores, {c: f"{p} [{origin}]" for c, (p, origin) in prompts.items()}
