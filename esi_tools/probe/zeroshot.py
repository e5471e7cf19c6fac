"""Zero-shot classification: cosine similarity between each ECG and a text embedding per class.

A class's prompt comes from our knowledge base: the passage for its code (`passage_for`) gives its title
and first sentence. Aggregated PTB-XL classes (sub/superdiagnostic, e.g. STTC) have no code of their own and
are built from their member statements (scp_statements.csv) in one of two ways:

- `prevalence`: one prompt listing the titles of the members most frequent in the training records
  (STTC is mostly NDT, ISC_ and NST_; listing members alphabetically named rare ones such as ANEUR instead);
- `ensemble`: the mean of the normalised text embeddings of every member's own prompt (title + first
  sentence), so no member is left out and none needs to fit in one prompt.

`auto` scores both on the validation rows and keeps the better one by macro AUROC; the test rows are scored
once, with the strategy chosen. Classes with no passage at all fall back to the statement description or the
class name, and say so in prompts.parquet.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from . import metrics

MAX_MEMBERS = 6  # member titles in a `prevalence` prompt: the text tower truncates long prompts anyway
BATCH = 64  # ECGs per inference batch
STRATEGIES = ("prevalence", "ensemble")
CHOICES = ("auto", *STRATEGIES)


@dataclass
class ClassPrompt:
    """The text(s) whose normalised embeddings are averaged into one class embedding, and where they came from."""

    texts: list[str]
    origin: str

    def describe(self) -> str:
        return f"{' | '.join(self.texts)} [{self.origin}]"


@dataclass
class ZeroShotResult:
    scores_val: np.ndarray
    scores_test: np.ndarray
    strategy: str  # the strategy used for the test rows
    val_auroc: dict[str, float]  # strategy -> validation macro AUROC (only those scored)
    prompts: dict[str, ClassPrompt]  # class -> prompt of the chosen strategy
    candidates: dict[str, dict[str, str]] = field(default_factory=dict)  # strategy -> class -> described prompt


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[a-z0-9)])\.\s", text.strip(), maxsplit=1)[0].rstrip(".") + "."


def _passage_prompt(passage: dict) -> str:
    return f"{passage['title']}. {_first_sentence(passage['text'])}"


def member_prevalence(labels, rows) -> Counter:
    """code -> number of training records (dataset indices `rows`) carrying that statement."""
    counts: Counter = Counter()
    for i in rows:
        counts.update(set(labels[i] or []))
    return counts


def class_prompts(classes: list[str], *, system: str, task: str, statements=None, prevalence: Counter | None = None,
                  strategy: str = "prevalence") -> dict[str, ClassPrompt]:
    """class -> ClassPrompt for `strategy` (see the module docstring); prevalence counts member statements in training."""
    from ..knowledge import load_passages, passage_for

    if strategy not in STRATEGIES:
        raise UsageError(f"zero-shot prompt strategy must be one of {', '.join(STRATEGIES)}, not '{strategy}'")
    prevalence = prevalence or Counter()
    passages = {p["id"]: p for p in load_passages()}
    rows = statements.to_dicts() if statements is not None else []
    column = {"subdiagnostic": "diagnostic_subclass", "superdiagnostic": "diagnostic_class"}.get(task)
    out = {}
    for c in classes:
        kb_system = "snomed" if system == "snomed" else "scp"
        pid = passage_for(kb_system, c) if system in ("scp", "snomed") else None
        if pid:
            out[c] = ClassPrompt([_passage_prompt(passages[pid])], pid)
            continue
        members = [r["code"] for r in rows if column and r.get(column) == c]
        # most frequent in training first; ties (and members never seen in training) alphabetically
        members.sort(key=lambda m: (-prevalence.get(m, 0), m))
        ids = list(dict.fromkeys(p for p in (passage_for("scp", m) for m in members) if p))
        if ids and strategy == "ensemble":
            out[c] = ClassPrompt([_passage_prompt(passages[i]) for i in ids], "ensemble:" + "+".join(ids))
            continue
        if ids:
            seen = [p for p in dict.fromkeys(passage_for("scp", m) for m in members if prevalence.get(m, 0) > 0) if p]
            ids = (seen or ids)[:MAX_MEMBERS]
            out[c] = ClassPrompt(["; ".join(passages[i]["title"] for i in ids) + "."], "+".join(ids))
            continue
        description = next((r.get("description") for r in rows if r["code"] == c and r.get("description")), None)
        out[c] = ClassPrompt([f"{description or c}."], "statement description" if description else "class name")
    return out


def text_embeddings(model, prompts: dict[str, ClassPrompt], classes: list[str]):
    """(C, D) class embeddings: each class's member embeddings averaged, then renormalised."""
    import torch

    texts = [t for c in classes for t in prompts[c].texts]
    encoded = model.encode_text(texts)
    out, start = [], 0
    for c in classes:
        n = len(prompts[c].texts)
        out.append(encoded[start : start + n].mean(dim=0))
        start += n
    return torch.nn.functional.normalize(torch.stack(out), dim=-1)


def zero_shot(model_dir, dataset, task, *, train: np.ndarray, val: np.ndarray, test: np.ndarray,
              strategy: str = "auto") -> ZeroShotResult:
    """Score val and test task rows (positions into task.rows); prompts built from training-row prevalence only."""
    import torch

    from ..console import log, progress
    from ..model import load_esi, preprocess

    if strategy not in CHOICES:
        raise UsageError(f"--zero-shot-prompts must be one of {', '.join(CHOICES)}, not '{strategy}'")
    model = load_esi(model_dir)
    statements = dataset.artifact.table("statements.parquet") if dataset.artifact.has("statements.parquet") else None
    system = dataset.records["label_system"].drop_nulls()[0]
    prevalence = member_prevalence(dataset.records["labels"].to_list(), task.rows[train])
    tried = STRATEGIES if strategy == "auto" else (strategy,)
    prompts = {s: class_prompts(task.classes, system=system, task=task.name, statements=statements, prevalence=prevalence,
                                strategy=s) for s in tried}
    indices = task.rows[np.concatenate([val, test])]
    ecg = []
    with torch.inference_mode(), progress("zero-shot", len(indices)) as bar:
        for start in range(0, len(indices), BATCH):
            idx = indices[start : start + BATCH]
            ecg.append(model.encode_ecg(getattr(model, "preprocess", preprocess)(dataset.millivolts(idx))))  # release: its own
            bar.advance(len(idx))
        ecg = torch.cat(ecg)
        scores = {s: (ecg @ text_embeddings(model, prompts[s], task.classes).T).numpy() for s in tried}
    val_auroc = {s: metrics.macro_auroc(task.y[val], scores[s][: val.size]) for s in tried}
    chosen = max(tried, key=lambda s: np.nan_to_num(val_auroc[s], nan=-1.0))  # ties keep the first: prevalence
    log("zero-shot prompts: " + ", ".join(f"{s} {val_auroc[s]:.3f}" for s in tried) + f" on validation; using {chosen}")
    return ZeroShotResult(
        scores[chosen][: val.size], scores[chosen][val.size :], chosen, val_auroc, prompts[chosen],
        {s: {c: p.describe() for c, p in prompts[s].items()} for s in tried},
    )
