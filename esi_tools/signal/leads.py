"""The standard 12-lead order and the many spellings datasets use for each lead."""

from __future__ import annotations

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

_ALIASES = {lead.lower(): lead for lead in STANDARD_LEADS}
_ALIASES.update({"avr": "aVR", "avl": "aVL", "avf": "aVF", "-avr": None, "mlii": "II", "mli": "I", "mliii": "III"})
for _n in range(1, 7):
    _ALIASES[f"c{_n}"] = f"V{_n}"  # European chest-lead naming


def standard_lead(name: str) -> str | None:
    """The standard name for a lead label ('i', 'AVR', 'lead II', 'C1' ...), or None if it is not one of the 12."""
    key = name.strip().lower().replace(" ", "").replace("_", "")
    if key.startswith("lead"):
        key = key[4:]
    return _ALIASES.get(key)


def lead_index(name: str) -> int | None:
    lead = standard_lead(name)
    return None if lead is None else STANDARD_LEADS.index(lead)
