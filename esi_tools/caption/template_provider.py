"""`--model template`: captions composed offline from the same evidence an LLM would get, no model at all.

Every sentence has several phrasings and the section order varies; the choice is seeded by (seed, prompt
hash), so the same evidence always gives the same caption while a corpus does not read as one boilerplate
string. Only facts in the evidence are stated: measured values, flagged findings, recorded statements and
the first sentence of retrieved passages linked to the record's own labels or findings, cited by their id.

A caption has a length budget in words (`esi caption --words`): whole sentences are kept by priority (rhythm
and rate, recorded statements, flagged findings, intervals, axis, knowledge, other values) until the budget is
spent, so the text tower's token limit does not cut a caption in the middle (at the default budget, <= 5 %
of PTB-XL captions exceed 64 MiniLM tokens; measured in bench/ABLATIONS.md).
"""

from __future__ import annotations

import random

RHYTHMS = {  # rhythm finding id -> phrase; the first one present names the rhythm
    "possible_atrial_fibrillation": "an irregularly irregular rhythm suggestive of atrial fibrillation",
    "sinus_tachycardia": "sinus tachycardia",
    "sinus_bradycardia": "sinus bradycardia",
    "sinus_rhythm": "sinus rhythm",
    "irregular_rhythm": "an irregular rhythm",
}
FINDINGS = {  # finding id -> phrase used inside a sentence; unknown ids fall back to their title
    "irregular_rhythm": "irregular RR intervals",
    "absent_p_waves": "no discernible P waves",
    "first_degree_av_block": "a prolonged PR interval consistent with first-degree AV block",
    "short_pr": "a short PR interval",
    "wide_qrs": "a widened QRS complex",
    "incomplete_conduction_delay": "borderline QRS widening in keeping with an incomplete conduction delay",
    "prolonged_qtc": "a prolonged corrected QT interval",
    "short_qtc": "a short corrected QT interval",
    "left_axis_deviation": "left axis deviation",
    "right_axis_deviation": "right axis deviation",
    "extreme_axis_deviation": "an extreme QRS axis",
    "low_voltage": "low QRS voltages",
    "lvh_voltage": "voltage criteria for left ventricular hypertrophy",
    "rvh_voltage": "voltage criteria for right ventricular hypertrophy",
    "st_elevation": "ST-segment elevation",
    "st_depression": "ST-segment depression",
    "t_wave_inversion": "T-wave inversion",
    "ectopic_beats": "ectopic beats",
    "poor_signal_quality": "poor signal quality",
}
INTERVALS = {  # measurement -> short and long names
    "pr_ms": ("PR", "PR interval"),
    "qrs_ms": ("QRS", "QRS duration"),
    "qt_ms": ("QT", "QT interval"),
    "qtc_bazett_ms": ("QTc", "QTc (Bazett)"),
    "qtc_fridericia_ms": ("QTcF", "QTc (Fridericia)"),
}
OTHER_MEASUREMENTS = {  # the few further values a report mentions, with short names (the prompt has them all)
    "p_ms": "P wave duration",
    "sokolow_lyon_mv": "Sokolow-Lyon voltage",
    "cornell_mv": "Cornell voltage",
}

OPENINGS = (
    "This 12-lead ECG of a {who} shows {rhythm}{rate}.",
    "ECG of a {who}: {rhythm}{rate}.",
    "The recording, from a {who}, shows {rhythm}{rate}.",
    "In this {who}, the tracing shows {rhythm}{rate}.",
)
UNMEASURED_OPENINGS = ("12-lead ECG of a {who}.", "ECG recorded from a {who}.", "Resting ECG, {who}.")
RATES = (" at {hr}", " with a rate of {hr}", ", heart rate {hr}")
INTERVAL_LEADS = ("Intervals: {items}.", "The measured intervals are {items}.", "Automated measurements give {items}.")
AXES = ("The frontal QRS axis is {axis}.", "The mean QRS axis lies at {axis}.", "QRS axis {axis}.")
OTHERS = ("Further measurements: {items}.", "Other values: {items}.", "The analysis also reports {items}.")
ABNORMAL = ("The automated analysis flags {items}.", "Of note: {items}.", "Findings include {items}.")
NORMAL = (
    "No conduction, axis or voltage abnormality is flagged.",
    "The automated rules flag no further abnormality.",
    "No other abnormality is detected by the measurement rules.",
)
POOR = (
    "Poor signal quality ({reason}) means these values should be read with caution.",
    "There is poor signal quality ({reason}); the measurements are less reliable.",
)
STATEMENTS = ("The statements recorded with the ECG read {items}.", "It was labelled {items}.",
              "Recorded interpretation: {items}.")
PASSAGES = ("Background: {text} [{id}].", "For reference, {text_lc} [{id}].", "Relevant knowledge: {text} [{id}].")


def join(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def who(evidence: dict, rng: random.Random) -> str:
    age, sex, cap = evidence.get("age"), evidence.get("sex"), evidence.get("age_cap", 90)
    noun = {"M": rng.choice(("man", "male patient")), "F": rng.choice(("woman", "female patient"))}.get(sex, "patient")
    if age is None:
        return f"{noun} of unrecorded age" if sex else "patient of unrecorded age and sex"
    if age >= cap:
        return f"{noun} aged {cap} or older"
    return f"{age}-year-old {noun}"


def caption(evidence: dict, *, seed: int, prompt_hash: str, words: int | None = None) -> str:
    """One fluent caption for one record's evidence; deterministic in (seed, prompt_hash, words).

    words: length budget; sentences that would exceed it are left out, lowest priority first (None = all)."""
    rng = random.Random(f"{seed}:{prompt_hash}")
    measured = {m["name"]: m for m in evidence.get("measurements") or []}
    finding_ids = [f["id"] for f in evidence.get("findings") or []]
    titles = {f["id"]: f["title"] for f in evidence.get("findings") or []}
    rhythm_id = next((r for r in RHYTHMS if r in finding_ids), None)

    rhythm = RHYTHMS[rhythm_id] if rhythm_id else "a rhythm the automated rules do not classify"
    rate = rng.choice(RATES).format(hr=measured["hr_mean_bpm"]["text"]) if "hr_mean_bpm" in measured else ""
    if evidence.get("findings") is None and not rate:  # no features given: nothing measured to open with
        opening = rng.choice(UNMEASURED_OPENINGS).format(who=who(evidence, rng))
    else:
        opening = rng.choice(OPENINGS).format(who=who(evidence, rng), rhythm=rhythm, rate=rate)

    intervals, axis, others = _intervals(measured, rng), _axis(measured, rng), _others(measured, rng)
    findings = _findings(evidence, finding_ids, rhythm_id, titles, rng)
    order = [intervals, axis, others, findings] if rng.random() < 0.5 else [findings, intervals, axis, others]
    statements, passages = _statements(evidence, rng), _passages(evidence, rng)
    sentences = [opening, *order, statements, *passages]
    kept = _within(words, [opening, statements, findings, intervals, axis, *passages[:1], others, *passages[1:]])
    return " ".join(s for s in sentences if s and s in kept)


def _within(words: int | None, by_priority: list[str]) -> set[str]:
    """The sentences that fit `words`, taken in priority order (one that does not fit is skipped, not cut)."""
    if words is None:
        return set(by_priority)
    kept, used = set(), 0
    for sentence in by_priority:
        n = len(sentence.split())
        if sentence and (used + n <= words or not kept):  # the opening always stays
            kept.add(sentence)
            used += n
    return kept


def _intervals(measured: dict, rng: random.Random) -> str:
    items = []
    for name, (short, long) in INTERVALS.items():
        if name in measured:
            items.append(f"{rng.choice((short, long))} {measured[name]['text']}")
    return rng.choice(INTERVAL_LEADS).format(items=join(items)) if items else ""


def _axis(measured: dict, rng: random.Random) -> str:
    return rng.choice(AXES).format(axis=measured["qrs_axis_deg"]["text"]) if "qrs_axis_deg" in measured else ""


def _others(measured: dict, rng: random.Random) -> str:
    items = [f"{label} {measured[name]['text']}" for name, label in OTHER_MEASUREMENTS.items() if name in measured]
    return rng.choice(OTHERS).format(items=join(items)) if items else ""


def _findings(evidence: dict, finding_ids, rhythm_id, titles, rng: random.Random) -> str:
    if evidence.get("findings") is None:
        return ""
    items = [FINDINGS.get(f) or titles[f].lower() for f in finding_ids
             if f != rhythm_id and f not in ("sinus_rhythm", "poor_signal_quality")]
    poor = evidence.get("usable") is False or "poor_signal_quality" in finding_ids
    if items:
        text = rng.choice(ABNORMAL).format(items=join(items))
    else:  # "no abnormality" would overstate a recording too noisy to measure
        text = "" if poor else rng.choice(NORMAL)
    if poor:
        reason = evidence.get("quality_reason") or "flagged by the quality check"
        text = f"{text} {rng.choice(POOR).format(reason=reason)}".strip()
    return text


def _statements(evidence: dict, rng: random.Random) -> str:
    items = []
    for s in evidence.get("statements") or []:
        text = s["text"]
        if s.get("likelihood") and s["likelihood"] < 100:
            text += f" (likelihood {s['likelihood']:.0f}%)"
        items.append(text)
    return rng.choice(STATEMENTS).format(items=join(items)) if items else ""


def _passages(evidence: dict, rng: random.Random) -> list[str]:
    out = []
    # Only passages the knowledge base links to this record's own labels or findings: the template cannot judge
    # the relevance of the others (an LLM sees them all). Two keep a caption readable.
    linked = [p for p in evidence.get("passages") or [] if p.get("linked")]
    for passage in linked[:2]:
        first = passage["text"].split(". ")[0].rstrip(".").strip()
        if not first:
            continue
        out.append(rng.choice(PASSAGES).format(text=first, text_lc=first[0].lower() + first[1:], id=passage["id"]))
    return out
