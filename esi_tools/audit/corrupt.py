"""Corrupt a true caption on purpose, so the audit can be checked against known errors: the stated rate, an
interval, the rhythm or a diagnosis is swapped for a wrong one (far outside the tolerances, or a diagnosis the
record neither holds nor measures). Used by the tests and bench/bench_audit.py."""

from __future__ import annotations

import random
import re

from .claims import extract
from .truth import Truth

KINDS = ("rate", "interval", "rhythm", "diagnosis")
WRONG_DIAGNOSES = (("left bundle branch block", "left_bundle_branch_block"),
                   ("anterior myocardial infarction", "infarction"),
                   ("third-degree AV block", "third_degree_av_block"),
                   ("Wolff-Parkinson-White pre-excitation", "pre_excitation"),
                   ("right ventricular hypertrophy", "right_ventricular_hypertrophy"))


def corrupt(caption: str, truth: Truth, kind: str, rng: random.Random) -> str | None:
    """The caption with one error of `kind`, or None when it has nothing of that kind to swap."""
    claims = [c for c in extract(caption) if not c.background and not c.negated]
    if kind in ("rate", "interval"):
        names = ("rate", "lowest rate", "highest rate") if kind == "rate" else ("PR", "QRS", "QT", "QTc")
        numbers = [c for c in claims if c.kind == "number" and c.concept in names]
        if not numbers:
            return None
        claim = rng.choice(numbers)
        if kind == "rate":  # far outside +-10 %
            wrong = claim.value + 45 if claim.value < 90 else claim.value - 40
        else:  # far outside +-20 ms or +-10 %
            wrong = claim.value + max(60.0, 0.4 * claim.value)
        new = re.sub(r"\d+(?:\.\d+)?", f"{wrong:.0f}", claim.text, count=1)
        return caption.replace(claim.text, new, 1)
    if kind == "rhythm":
        rhythm = next((c for c in claims if c.kind == "rhythm" and c.concept in
                       ("sinus_rhythm", "atrial_fibrillation", "atrial_flutter")), None)
        if rhythm is None:
            return None
        wrong = "atrial fibrillation" if rhythm.concept == "sinus_rhythm" else "sinus rhythm"
        if "atrial_fibrillation" in truth.known and wrong == "atrial fibrillation":
            wrong = "atrial flutter"
        return caption.replace(rhythm.text, wrong, 1)
    phrase = next((p for p, concept in rng.sample(WRONG_DIAGNOSES, len(WRONG_DIAGNOSES))
                   if concept not in truth.known), None)
    if phrase is None:
        return None
    diagnosis = next((c for c in claims if c.kind in ("diagnosis", "global")), None)
    swapped = caption.replace(diagnosis.text, phrase, 1) if diagnosis is not None else caption
    return swapped if swapped != caption else f"{caption.rstrip()} Findings include {phrase}."
