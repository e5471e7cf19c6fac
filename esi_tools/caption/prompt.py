"""Evidence -> prompt: a versioned template file with a [system] and a [user] part and named placeholders.

The shipped template is `templates/v2.txt` (v1 asked for 80-160 words, which a 64- or 128-token text tower
cuts: v2 asks for at most {words}, `esi caption --words`); `--template FILE` replaces it. The template's name and sha256
go into the manifest, and each record's prompt hash into captions.parquet, so a caption can be traced to
the exact text that produced it. Free text (statements, passages) arrives scrubbed and capped (evidence.py)
and is fenced here as quoted data, which the system message declares not to be instructions.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .scrub import DATA_NOTE, fence

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_TEMPLATE = "v2"  # the newest shipped template; older ones stay for reproducing old artifacts
FIELDS = ("demographics", "measurements", "findings", "statements", "passages", "passage_ids", "words")


@dataclass(frozen=True)
class Template:
    name: str
    sha256: str
    system: str
    user: str

    def render(self, evidence: dict, *, words: int = 33) -> tuple[str, str]:
        """(system, user) messages for one record's evidence ({words}: the caption's length budget); the system
        message always ends by declaring the fenced free text to be data (whatever template is used)."""
        sections = sections_for(evidence) | {"words": str(words)}
        return f"{self.system.format_map(sections)}\n{DATA_NOTE}", self.user.format_map(sections)


def load_template(path: str | Path | None = None) -> Template:
    """The shipped template (None or a shipped name like 'v1') or a template file given by the user."""
    if path is None or (isinstance(path, str) and (TEMPLATES / f"{path}.txt").exists()):
        file = TEMPLATES / f"{path or DEFAULT_TEMPLATE}.txt"
    else:
        file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such template file")
    text = file.read_text(encoding="utf-8")
    body = "\n".join(line for line in _strip_comments(text.splitlines()))
    if "[system]" not in body or "[user]" not in body:
        raise InputError(f"{file}: a template needs a [system] line and a [user] line, each followed by its text")
    head, _, user = body.partition("[user]")
    system = head.partition("[system]")[2]
    for part in (system, user):
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(part)]
        except ValueError as exc:
            raise InputError(f"{file}: {exc} (write a literal brace as {{{{ or }}}})") from None
        for name in fields:
            if name is not None and name not in FIELDS:
                raise InputError(f"{file}: unknown placeholder {{{name}}}; allowed: "
                                 + ", ".join(f"{{{f}}}" for f in FIELDS))
    name = file.stem if file.parent == TEMPLATES else f"file:{file.name}"
    return Template(name, hashlib.sha256(text.encode()).hexdigest(), system.strip(), user.strip())


def _strip_comments(lines: list[str]):
    started = False
    for line in lines:
        started = started or line.strip() == "[system]"
        if started or not line.startswith("#"):
            yield line


def prompt_hash(system: str, user: str) -> str:
    return hashlib.sha256(f"{system}\x00{user}".encode()).hexdigest()


# ---- evidence -> text sections ------------------------------------------------------------------------
def demographics(evidence: dict) -> str:
    age, sex = evidence.get("age"), {"M": "male", "F": "female"}.get(evidence.get("sex"))
    cap = evidence.get("age_cap", 90)
    age_text = None if age is None else (f"aged {cap} or older" if age >= cap else f"{age}-year-old")
    if age_text and sex:
        return f"{age_text} {sex}" if age < cap else f"{sex}, {age_text}"
    if age_text:
        return f"{age_text}, sex not recorded"
    if sex:
        return f"{sex}, age not recorded"
    return "age and sex not recorded"


def sections_for(evidence: dict) -> dict[str, str]:
    measurements = evidence.get("measurements")
    if measurements is None:
        measurement_text = "- not available (no features artifact was given)"
    else:
        measurement_text = "\n".join(f"- {m['label']}: {m['text']}" for m in measurements) or "- none could be measured"
    findings = evidence.get("findings")
    if findings is None:
        finding_text = "- not available (no features artifact was given)"
    else:
        finding_text = "\n".join(f"- {f['title']} [{f['id']}]" for f in findings) or "- none flagged"
        if evidence.get("usable") is False:
            finding_text += f"\n- signal quality too poor for reliable measurement ({evidence.get('quality_reason') or 'unspecified'})"
    statements = []
    for s in evidence.get("statements") or []:
        detail = ", ".join(x for x in (s.get("code"), _likelihood(s)) if x)
        statements.append(f"- {s['text']}" + (f" ({detail})" if detail else ""))
    passages = evidence.get("passages") or []
    return {
        "demographics": demographics(evidence),
        "measurements": measurement_text,
        "findings": finding_text,
        "statements": fence("\n".join(statements)) if statements else "- none recorded",
        "passages": fence("\n".join(f"[{p['id']}] {p['title']}: {p['text']}" for p in passages)) if passages
        else "- none retrieved",
        "passage_ids": ", ".join(p["id"] for p in passages) or "none",
    }


def _likelihood(statement: dict) -> str | None:
    value = statement.get("likelihood")
    return f"likelihood {value:.0f}%" if value else None
