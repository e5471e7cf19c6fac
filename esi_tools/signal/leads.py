"""The standard 12-lead order and the spellings datasets use for each lead (the alias table).

| header name (case, spaces, `_` and a `lead` prefix ignored) | stored as | kind |
|---|---|---|
| I II III aVR aVL aVF V1..V6 | itself | exact |
| D1 D2 D3, DI DII DIII (European limb-lead naming) | I II III | exact |
| MLI MLII MLIII, ML1 ML2 ML3 (Holter modified limb leads) | I II III | exact (by convention) |
| C1..C6 (European chest-lead naming) | V1..V6 | exact |
| CM5 CC5 CS5 CB5 CR5 CA5 MV5 ML5 (modified/bipolar chest leads, any digit 1-6) | V1..V6, same digit | approximate (flagged) |
| ECG1, ECG2, -aVR and anything else | not stored: listed in `unknown_leads` | unless `--lead-map` names it |

`--lead-map ECG1=II,ECG2=V5` maps a header name to a standard lead before this table is consulted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

_ALIASES = {lead.lower(): lead for lead in STANDARD_LEADS}
_ALIASES.update({"d1": "I", "d2": "II", "d3": "III", "di": "I", "dii": "II", "diii": "III",
                 "mli": "I", "mlii": "II", "mliii": "III", "ml1": "I", "ml2": "II", "ml3": "III"})
for _n in range(1, 7):
    _ALIASES[f"c{_n}"] = f"V{_n}"
_MODIFIED_CHEST = re.compile(r"^(?:cm|cc|cs|cb|cr|ca|mv|ml)([1-6])$")  # ml1-3 are limb leads (matched above)


def _key(name: str) -> str:
    key = name.strip().lower().replace(" ", "").replace("_", "")
    return key[4:] if key.startswith("lead") and len(key) > 4 else key


def standard_lead(name: str) -> str | None:
    """The standard name for an exact alias ('i', 'AVR', 'lead II', 'D3', 'MLII', 'C1'), else None."""
    return _ALIASES.get(_key(name))


def approximate_lead(name: str) -> str | None:
    """The nearest standard lead of a modified chest lead ('CM5' -> 'V5'), else None."""
    m = _MODIFIED_CHEST.match(_key(name))
    return f"V{m[1]}" if m else None


def parse_lead_map(text: str | None) -> dict[str, str]:
    """'ECG1=II,ECG2=V5' -> {'ecg1': 'II', 'ecg2': 'V5'}; ValueError naming a bad entry or target."""
    mapping: dict[str, str] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        name, sep, target = entry.partition("=")
        lead = standard_lead(target)
        if not sep or not name.strip() or lead is None:
            raise ValueError(f"--lead-map entry {entry.strip()!r}: expected NAME=LEAD with LEAD one of "
                             f"{', '.join(STANDARD_LEADS)}")
        if _key(name) in mapping:
            raise ValueError(f"--lead-map names {name.strip()!r} twice (as {mapping[_key(name)]} and as {lead}); "
                             "give each channel one lead")
        mapping[_key(name)] = lead
    return mapping


def unmatched_entries(lead_map: dict[str, str], channels: set[str]) -> list[str]:
    """The --lead-map names (as parsed) that match none of `channels` (header channel names seen)."""
    seen = {_key(name) for name in channels}
    return sorted(name for name in lead_map if name not in seen)


@dataclass
class LeadAssignment:
    """Where each header channel goes: `slots[i]` is the standard-lead index of channel i, or None."""

    slots: list[int | None]
    unknown: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def assign_leads(names: list[str], lead_map: dict[str, str] | None = None) -> LeadAssignment:
    """Map header channel names to standard leads: --lead-map and exact aliases first, then approximations.

    A channel whose lead is already taken, or whose name is unknown, is not stored; its name is listed in
    `unknown` so the record keeps its known leads instead of being rejected.
    """
    lead_map = lead_map or {}
    slots: list[int | None] = [None] * len(names)
    taken: set[str] = set()
    out = LeadAssignment(slots)
    for approximate in (False, True):
        for i, name in enumerate(names):
            if slots[i] is not None:
                continue
            lead = approximate_lead(name) if approximate else lead_map.get(_key(name)) or standard_lead(name)
            if lead is None:
                continue
            if lead in taken:
                out.flags.append(f"duplicate lead: {name} not stored ({lead} already is)")
                continue
            taken.add(lead)
            slots[i] = STANDARD_LEADS.index(lead)
            if approximate:
                out.flags.append(f"approximate lead: {name} stored as {lead}")
    out.unknown = [name for name, slot in zip(names, slots) if slot is None]
    return out


def lead_index(name: str) -> int | None:
    lead = standard_lead(name)
    return None if lead is None else STANDARD_LEADS.index(lead)
