"""JSON Schemas in `schemas/`: the envelope every manifest obeys plus one schema per artifact kind.

A kind's schema lives in `schemas/<kind>.v<N>.json`. New versions are added, never edited; the highest N
is the version this esi-tools writes and the only one it reads.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from .errors import ArtifactError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
_NAME = re.compile(r"^(?P<kind>[a-z][a-z0-9_-]*)\.v(?P<version>\d+)\.json$")


@cache
def current_versions() -> dict[str, int]:
    """kind -> newest schema version found in schemas/."""
    versions: dict[str, int] = {}
    for path in SCHEMA_DIR.glob("*.v*.json"):
        m = _NAME.match(path.name)
        if m:
            kind, version = m["kind"], int(m["version"])
            versions[kind] = max(version, versions.get(kind, 0))
    return versions


@cache
def load_schema(kind: str, version: int) -> dict:
    path = SCHEMA_DIR / f"{kind}.v{version}.json"
    if not path.exists():
        raise ArtifactError(f"no schema for artifact kind '{kind}' version {version} ({path.name} missing)")
    return json.loads(path.read_text())


def validate(instance: dict, kind: str, version: int, *, where: str) -> None:
    """Raise ArtifactError naming the first violation of `kind`'s schema (after the envelope's)."""
    import jsonschema

    for schema in (load_schema("manifest", 1), load_schema(kind, version)):
        validator = jsonschema.Draft202012Validator(schema)
        error = next(iter(sorted(validator.iter_errors(instance), key=lambda e: list(e.path))), None)
        if error is not None:
            location = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            raise ArtifactError(f"{where}: manifest fails {schema['$id']} at {location}: {error.message}")


def required_columns(kind: str, version: int) -> dict[str, list[str]]:
    """Columns each table of this kind must hold (the schema's `x-tables`)."""
    return load_schema(kind, version).get("x-tables", {})
