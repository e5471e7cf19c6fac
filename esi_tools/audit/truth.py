"""What is known about one ECG, and the verdict on each claim a caption makes about it.

The truth of a record is what was recorded with it (its statements, read with the same lexicon as captions,
plus what each PTB-XL code and diagnostic class means) and what `esi features` measured (values and
findings). A claim is **supported** when the recording or the measurement holds it, **contradicted** when
they hold the opposite (a number outside its tolerance, a rhythm that excludes the recorded one, a diagnosis
of a labelled record that is neither recorded nor measured: a hallucinated diagnosis), and **not checkable**
when nothing is known either way (no measurement, no statements).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import lexicon as lx
from .claims import Claim, extract

SUPPORTED, CONTRADICTED, NOT_CHECKABLE, BACKGROUND = "supported", "contradicted", "not checkable", "background"


@dataclass
class Truth:
    recorded: set[str] = field(default_factory=set)  # concepts of the recorded statements, with their ancestors
    measured: set[str] = field(default_factory=set)  # concepts of the measured findings, with their ancestors
    values: dict[str, float] = field(default_factory=dict)  # measurement column -> value
    labelled: bool = False  # statements were recorded: a diagnosis they lack is not just unknown

    @property
    def known(self) -> set[str]:
        return self.recorded | self.measured


def _close(concepts) -> set[str]:
    return set().union(*(lx.ancestors(c) for c in concepts)) if concepts else set()


def truth_of(evidence: dict, scp_class: dict[str, str] | None = None) -> Truth:
    """The Truth of one record from its caption evidence (esi_tools.caption.evidence: statements with code and
    text, measurements with name and value, finding ids); `scp_class` maps a PTB-XL code to its class."""
    recorded: set[str] = set()
    for statement in evidence.get("statements") or []:
        code = statement.get("code")
        recorded |= {c.concept for c in extract(statement.get("text") or "") if not c.negated and c.kind != "number"}
        recorded |= set(lx.SCP_CODES.get(code, ()))
        if scp_class and code in scp_class and scp_class[code] in lx.SCP_CLASS:
            recorded.add(lx.SCP_CLASS[scp_class[code]])
    measured = {c for f in evidence.get("findings") or [] for c in lx.FINDING_CONCEPTS.get(f["id"], ())}
    values = {m["name"]: float(m["value"]) for m in evidence.get("measurements") or []}
    hr = values.get("hr_mean_bpm")
    if hr is not None:  # the rate words follow from the measured rate itself
        measured |= {"tachycardia"} if hr > lx.TACHY_BPM else {"bradycardia"} if hr < lx.BRADY_BPM else set()
    return Truth(_close(recorded), _close(measured), values, labelled=bool(evidence.get("statements")))


def verdict(claim: Claim, truth: Truth) -> tuple[str, str, bool]:
    """(verdict, reason, hallucinated) of one claim."""
    if claim.background:
        return BACKGROUND, "background knowledge, not a claim about this ECG", False
    if claim.kind == "number":
        return (*_number(claim, truth), False)
    if claim.kind == "rate" and "hr_mean_bpm" in truth.values:
        return (*_rate_word(claim, truth.values["hr_mean_bpm"]), False)
    if claim.concept in ("left_axis_deviation", "right_axis_deviation") and "qrs_axis_deg" in truth.values \
            and claim.concept not in truth.recorded:
        return (*_axis_word(claim, truth.values["qrs_axis_deg"]), False)
    if claim.negated:
        return _negated(claim, truth)
    return _asserted(claim, truth)


def _number(claim: Claim, truth: Truth) -> tuple[str, str]:
    columns, absolute, relative = lx.NUMBERS[claim.concept]
    measured = [truth.values[c] for c in columns if c in truth.values]
    if not measured:
        return NOT_CHECKABLE, f"{claim.concept} was not measured"
    high = claim.value if claim.high is None else claim.high
    for m in measured:
        slack = max(absolute, relative * abs(m))
        if claim.value - slack <= m <= high + slack:
            return SUPPORTED, f"measured {m:.0f}"
    shown = " or ".join(f"{m:.0f}" for m in measured)
    stated = f"{claim.value:g}" if claim.high is None else f"{claim.value:g}-{claim.high:g}"
    return CONTRADICTED, f"states {stated}, measured {shown} (tolerance ±{absolute:g} or ±{relative:.0%})"


def _rate_word(claim: Claim, hr: float) -> tuple[str, str]:
    tol = lx.RATE_TOLERANCE
    holds = hr > lx.TACHY_BPM * (1 - tol) if claim.concept == "tachycardia" else hr < lx.BRADY_BPM * (1 + tol)
    clearly = hr > lx.TACHY_BPM * (1 + tol) if claim.concept == "tachycardia" else hr < lx.BRADY_BPM * (1 - tol)
    if claim.negated:
        return (CONTRADICTED, f"says no {claim.concept}, measured {hr:.0f} bpm") if clearly else \
            (SUPPORTED, f"measured {hr:.0f} bpm")
    return (SUPPORTED, f"measured {hr:.0f} bpm") if holds else (CONTRADICTED, f"measured {hr:.0f} bpm")


def _axis_word(claim: Claim, axis: float) -> tuple[str, str]:
    tol = lx.AXIS_TOLERANCE_DEG
    if claim.concept == "left_axis_deviation":
        holds, clearly = axis <= lx.AXIS_LEFT_DEG + tol, axis <= lx.AXIS_LEFT_DEG - tol
    else:
        holds, clearly = axis >= lx.AXIS_RIGHT_DEG - tol, axis >= lx.AXIS_RIGHT_DEG + tol
    if claim.negated:
        return (CONTRADICTED, f"measured axis {axis:+.0f}°") if clearly else (SUPPORTED, f"measured axis {axis:+.0f}°")
    return (SUPPORTED if holds else CONTRADICTED), f"measured axis {axis:+.0f}°"


def _asserted(claim: Claim, truth: Truth) -> tuple[str, str, bool]:
    c = claim.concept
    for source, concepts in (("recorded", truth.recorded), ("measured", truth.measured)):
        if c in concepts:
            return SUPPORTED, source, False
        clash = [x for x in lx.EXCLUDES.get(c, ()) if x in concepts]
        if clash:
            return CONTRADICTED, f"{source}: {clash[0].replace('_', ' ')}", False
    if c == "abnormal_ecg" and truth.known - {"sinus_rhythm", "normal_ecg"}:
        return SUPPORTED, "abnormal findings recorded or measured", False
    if truth.labelled:
        hallucinated = claim.kind in ("rhythm", "diagnosis")
        return CONTRADICTED, "neither recorded nor measured", hallucinated
    return NOT_CHECKABLE, "no statements recorded and not measured", False


def _negated(claim: Claim, truth: Truth) -> tuple[str, str, bool]:
    c = claim.concept
    if c in truth.recorded:
        return CONTRADICTED, f"says no {c.replace('_', ' ')}, but it is recorded", False
    if c in truth.measured:
        return CONTRADICTED, f"says no {c.replace('_', ' ')}, but it is measured", False
    if truth.labelled:
        return SUPPORTED, "not recorded, not measured", False
    return NOT_CHECKABLE, "no statements recorded", False


def omissions(claims: list[Claim], truth: Truth) -> list[str]:
    """Key findings the record holds (recorded or measured) that the caption does not mention."""
    said = set().union(*(lx.ancestors(c.concept) for c in claims if not c.negated and c.kind != "number")) \
        if claims else set()
    if any(c.concept == "rate" for c in claims):
        said.add("tachycardia")  # a stated rate tells the reader the rate
    holds = truth.recorded | truth.measured
    if "hr_mean_bpm" in truth.values:  # a tachycardia is the measured rate's, not a stale label's
        holds = (holds - {"tachycardia"}) | ({"tachycardia"} if truth.values["hr_mean_bpm"] > lx.TACHY_BPM else set())
    return [k for k in lx.KEY_FINDINGS if k in holds and k not in said]
