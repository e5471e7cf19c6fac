"""esi verify: re-hash every file of artifacts against their manifests and check their inputs' digests."""

from __future__ import annotations

import typer

from ._options import emit, esi_command, resolve_input

app = typer.Typer()


@app.command()
@esi_command
def verify(
    artifacts: list[str] = typer.Argument(..., help="Artifact directories ('-' reads a path from stdin)."),
) -> None:
    """Check each artifact's files (missing, resized, re-hashed, added) and inputs (manifest digest changed).

    Prints the path of every intact artifact on stdout and one line per change on stderr; exits 3 if any
    artifact changed or could not be checked whole (an input no longer at its recorded path), even with -q.
    """
    from esi_tools.artifacts import check_artifact
    from esi_tools.console import console, log, styled
    from esi_tools.errors import ArtifactError

    failed = 0
    for value in artifacts:
        path = resolve_input(value)
        problems, moved = check_artifact(path)
        for problem in problems:
            console.print(styled("changed:", "red", problem))
        for inp in moved:
            console.print(styled("not checked:", "yellow", f"{path}: input '{inp['role']}' not found at {inp['path']} "
                                 "(moved or deleted: its digest cannot be checked)"))
        if problems or moved:
            failed += 1
        else:
            log(f"{path}: intact")
            emit(path)
    if failed:
        raise ArtifactError(f"{failed} of {len(artifacts)} artifacts failed verification (changed, or an input not found)")
