"""The cardiology knowledge base: one cited passage per concept, in `esi_tools/knowledge/*.jsonl`.

Files are split by area (rhythm, conduction, ischemia, ...); each line is one passage obeying
`schemas/passage.v1.json`. The base is read once per process and validated as a whole (schema, unique
ids, no code claimed by two passages), so a bad edit fails loudly at the first use, naming file and line.

`passage_for(system, code)` maps a label to the passage that explains it: `scp` (PTB-XL statement codes),
`snomed` (PhysioNet Challenge SNOMED-CT ids), `finding` (`esi features` finding ids) and `mimic`
(MIMIC-IV-ECG machine-statement phrasings, matched case- and punctuation-insensitively).

Adding a passage: append one JSON line to the file of its area, in our own words, with criteria carrying
numbers, the leads, a differential and a citable reference (book or guideline plus section). A code may
belong to one passage only; the Challenge's equivalent SNOMED pairs (e.g. 164909002 and 733534002) share
one. Administrative statements (age not entered, unconfirmed report) get a passage whose title says
"non-clinical" and which carries no criteria and no diagnostic codes, so nothing maps them to a diagnosis.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path

from ..errors import InputError

KNOWLEDGE_DIR = Path(__file__).resolve().parent
SYSTEMS = ("scp", "snomed", "finding", "mimic")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalize_statement(text: str) -> str:
    """Fold a machine statement for lookup: lower case, punctuation and runs of spaces to one space.

    MIMIC-IV-ECG reports vary in case and in decoration ("** ** ACUTE MI / STEMI ** **"), not in words.
    """
    return _NON_WORD.sub(" ", text.lower()).strip()


def _key(system: str, code: str) -> str:
    """The lookup key of a code: SCP codes upper-cased, statements folded, others stripped."""
    code = str(code).strip()
    if system == "scp":
        return code.upper()
    if system == "mimic":
        return normalize_statement(code)
    return code


def read_passages(directory: Path) -> list[dict]:
    """Read and validate every `*.jsonl` in `directory` (sorted by file name, then line order).

    Each passage gains `area` (its file's stem) so callers can group or cite it. Raises InputError naming
    file:line for invalid JSON, a schema violation, a duplicate id or a code claimed by two passages.
    """
    import jsonschema

    from ..schemas import load_schema

    validator = jsonschema.Draft202012Validator(load_schema("passage", 1))
    passages: list[dict] = []
    where_id: dict[str, str] = {}
    files = sorted(Path(directory).glob("*.jsonl"))
    if not files:
        raise InputError(f"no knowledge files (*.jsonl) in {directory}")
    for path in files:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                passage = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            error = next(iter(sorted(validator.iter_errors(passage), key=lambda e: list(e.path))), None)
            if error is not None:
                field = "/".join(str(p) for p in error.absolute_path) or "(top level)"
                raise InputError(f"{where}: passage fails passage.v1.json at {field}: {error.message}")
            if passage["id"] in where_id:
                raise InputError(
                    f"{where}: duplicate passage id '{passage['id']}' (first at {where_id[passage['id']]})"
                )
            where_id[passage["id"]] = where
            passage["area"] = path.stem
            passages.append(passage)
    _build_index(passages)  # validates that no code is claimed twice
    return passages


def _build_index(passages: list[dict]) -> dict[str, dict[str, str]]:
    """system -> {code key -> passage id}; a code listed by two passages is an error (ambiguous lookup)."""
    index: dict[str, dict[str, str]] = {system: {} for system in SYSTEMS}
    for passage in passages:
        for system in SYSTEMS:
            for code in passage["codes"][system]:
                key = _key(system, code)
                owner = index[system].setdefault(key, passage["id"])
                if owner != passage["id"]:
                    raise InputError(
                        f"{system} code '{code}' is claimed by passages '{owner}' and '{passage['id']}'"
                    )
    return index


@cache
def _passages() -> tuple[dict, ...]:
    return tuple(read_passages(KNOWLEDGE_DIR))


@cache
def _index() -> dict[str, dict[str, str]]:
    return _build_index(list(_passages()))


def load_passages() -> list[dict]:
    """Every passage of the shipped base, validated, in file order (a fresh copy: callers may mutate it)."""
    return copy.deepcopy(list(_passages()))


def passage_for(system: str, code: str) -> str | None:
    """The id of the passage explaining `code` of `system` (scp/snomed/finding/mimic), or None if unknown."""
    if system not in SYSTEMS:
        raise InputError(f"unknown code system '{system}' (expected one of {', '.join(SYSTEMS)})")
    return _index()[system].get(_key(system, code))


def passages_by_id() -> dict[str, dict]:
    """id -> passage (a fresh copy)."""
    return {p["id"]: p for p in load_passages()}
