"""Caption text -> claims: each concept of the lexicon it names (asserted or negated) and each number it states.

Sentences are read one at a time. A negation cue (no, without, absence of ...) negates the concepts after it
in its sentence until a contrast word (but, however, although ...) or a semicolon. Where phrases overlap the
longest wins ("left bundle branch block" is one claim, not also "bundle branch block"). A sentence that opens
as background knowledge ("Background: ...") is kept with `background=True` and not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .lexicon import BACKGROUND, COMPILED, CONCEPTS, IMPLIED_BY_PHRASE, INCOMPLETE, NEGATION

SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'])")
LIST_BREAK = re.compile(r",|\band\b")
RESET = re.compile(r";|\b(?:but|however|although|though|whereas|while|yet|except)\b", re.IGNORECASE)
_FILLER = r"(?:\s*(?:of|is|was|at|around|about|approximately|roughly|measures|measured at|measuring|lies at|=|:|~))*"
_PER_MIN = r"(?:bpm|beats?\s*(?:per|/|a)\s*min(?:ute)?\b|/\s*min\b)"
RATE_RANGE = re.compile(r"\b(\d{2,3})\s*(?:-|–|to)\s*(\d{2,3})\s*" + _PER_MIN, re.IGNORECASE)
RATE_UNIT = re.compile(r"\b(\d{2,3}(?:\.\d+)?)\s*(?:bpm|beats?\s*(?:per|/|a)\s*min(?:ute)?\b|/\s*min\b)", re.IGNORECASE)
RATE_WORD = re.compile(r"\b(?:heart|ventricular|atrial)?\s*rate" + _FILLER + r"\s*(\d{2,3}(?:\.\d+)?)\b(?!\s*(?:ms|%))",
                       re.IGNORECASE)
INTERVAL = re.compile(r"\b(QTcF|QTc|QT|PR|QRS|P)(?:[- ]wave)?(?:\s*(?:interval|duration|complex|segment))?"
                      r"(?:\s*\((?:Bazett|Fridericia)\))?" + _FILLER +
                      r"\s*(\d{1,4}(?:\.\d+)?)\s*(ms|msec|milliseconds?|s|sec|seconds?)\b", re.IGNORECASE)
RATE_QUALIFIER = re.compile(r"\b(?:(lowest|minimum|min|slowest)|(highest|maximum|max|fastest|peak))\b", re.IGNORECASE)
AXIS = re.compile(r"\b(?:(QRS|P|T)\s+)?(?:frontal\s+|mean\s+|electrical\s+)*(?:QRS\s+)?axis" + _FILLER +
                  r"\s*([+\-−–]?\s?\d{1,3})\s*(?:°|degrees?\b|deg\b)", re.IGNORECASE)


@dataclass(frozen=True)
class Claim:
    kind: str  # "number", "rate", "rhythm", "diagnosis" or "global"
    concept: str  # a lexicon concept, or a number's name ("rate", "PR", "QRS axis" ...)
    text: str  # the words that made the claim
    value: float | None = None
    high: float | None = None  # a range's upper end ("60-100 bpm"); value is its lower end
    negated: bool = False
    background: bool = False


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE.split(text or "") if s.strip()]


def extract(text: str) -> list[Claim]:
    """Every claim of a caption, in reading order; one claim per (sentence, concept, negation)."""
    claims: list[Claim] = []
    for sentence in sentences(text):
        background = BACKGROUND.match(sentence) is not None
        claims.extend(_numbers(sentence, background))
        claims.extend(_concepts(sentence, background))
    return claims


def _concepts(sentence: str, background: bool) -> list[Claim]:
    spans = []  # (start, end, concept, matched text)
    for concept, patterns in COMPILED.items():
        for pattern in patterns:
            spans.extend((m.start(), m.end(), concept, m.group(0)) for m in pattern.finditer(sentence))
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    kept, end = [], -1
    for span in spans:  # longest phrase wins where phrases overlap
        if span[0] >= end:
            kept.append(span)
            end = span[1]
    out, seen = [], set()
    for start, stop, concept, words in kept:
        negated = _negated(sentence, start)
        if concept.endswith("bundle_branch_block") and INCOMPLETE.search(sentence[max(0, start - 25):stop]):
            concept = "conduction_delay"  # incomplete BBB is a conduction delay, not a BBB
        implied = [c for p, cs in IMPLIED_BY_PHRASE.items() if re.fullmatch(p, words, re.IGNORECASE) for c in cs]
        for c in (concept, *implied):
            if (c, negated) not in seen:
                seen.add((c, negated))
                out.append(Claim(CONCEPTS[c][0], c, words, negated=negated, background=background))
    return out


def _negated(sentence: str, start: int) -> bool:
    """Whether a negation cue governs the phrase at `start`: the cue stands in the same clause (after the last
    contrast word or semicolon), and a list between them is joined by "or"/"nor" ("no ST elevation, depression
    or T inversion") rather than "and" ("no P waves, left axis deviation and ST elevation" negates one item)."""
    clause_start = max((m.end() for m in RESET.finditer(sentence[:start])), default=0)
    clause_end = min((m.start() for m in RESET.finditer(sentence, start)), default=len(sentence))
    cues = list(NEGATION.finditer(sentence[clause_start:start]))
    if not cues:
        return False
    between = sentence[clause_start + cues[-1].end():start]
    if not LIST_BREAK.search(between):
        return True
    rest = sentence[clause_start + cues[-1].end():clause_end]
    return re.search(r"\b(?:or|nor)\b", rest) is not None and re.search(r"\band\b", rest) is None


def _numbers(sentence: str, background: bool) -> list[Claim]:
    out, taken = [], []

    def add(name: str, value: float, match: re.Match, high: float | None = None) -> None:
        if any(match.start() < e and s < match.end() for s, e in taken):
            return  # "a rate of 63 bpm" is one claim
        taken.append(match.span())
        out.append(Claim("number", name, match.group(0).strip(), value=value, high=high, background=background))

    for m in INTERVAL.finditer(sentence):
        name, value, unit = m.group(1).upper(), float(m.group(2)), m.group(3).lower()
        name = {"QTCF": "QTc", "QTC": "QTc"}.get(name, name)
        if unit.startswith("s") and value < 3:  # 0.16 s
            value *= 1000
        if name == "P" and not re.search(r"P[- ]wave", m.group(0), re.IGNORECASE):
            continue  # a bare "P 100 ms" is too ambiguous to check
        add(name, value, m)
    for m in AXIS.finditer(sentence):
        number = m.group(2).replace("−", "-").replace("–", "-").replace(" ", "")
        add(f"{(m.group(1) or 'QRS').upper()} axis", float(number), m)
    for m in RATE_RANGE.finditer(sentence):
        low, high = sorted((float(m.group(1)), float(m.group(2))))
        add("rate", low, m, high)
    for pattern in (RATE_UNIT, RATE_WORD):
        for m in pattern.finditer(sentence):
            add(_rate_name(sentence[:m.start()] + m.group(0)), float(m.group(1)), m)
    return out


def _rate_name(before: str) -> str:
    """'lowest rate', 'highest rate' or 'rate', from a qualifier in the clause that states the number."""
    clause = re.split(r"[,;:]|\band\b", before)[-1]
    qualifier = RATE_QUALIFIER.search(clause)
    if qualifier is None:
        return "rate"
    return "lowest rate" if qualifier.group(1) else "highest rate"
