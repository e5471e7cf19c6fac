"""esi audit: captions (+ dataset, features) -> audit artifact: is each caption true to its ECG?"""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import ForceOption, OutOption, default_out, emit, esi_command, resolve_input

app = typer.Typer()


@app.command()
@esi_command
def audit(
    captions: list[str] = typer.Argument(..., help="Captions artifact(s) of one dataset ('-' = read a path from stdin)."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset artifact (default: the one the captions were made from)."),
    features: str = typer.Option(None, "--features", "-f", help="Features artifact (default: the one the captions were made from)."),
    name: list[str] = typer.Option([], "--name", help="Label per captions artifact, in order (default: its model)."),
    common: bool = typer.Option(False, "--common", help="Audit only records every captions artifact captioned."),
    limit: int = typer.Option(None, "--limit", min=1, help="Audit only the first N captions of each artifact."),
    out: Path = OutOption,
    force: bool = ForceOption,
) -> None:
    """Extract the claims of every caption (rhythm, rate, intervals, axis, blocks, infarction, ischaemia, hypertrophy,
    normal/abnormal ECG, pacing) and check each against the record's measurements and recorded statements:
    supported, contradicted or not checkable; key findings left out are omissions. The summary gives the
    contradiction, hallucinated-diagnosis, omission and number-error rates per captions artifact."""
    from esi_tools.audit.run import AuditConfig
    from esi_tools.audit.run import audit as run

    paths = [resolve_input(c) for c in captions]
    dataset_path = resolve_input(dataset) if dataset else None
    features_path = resolve_input(features) if features else None
    target = out or default_out("audit", *(p.resolve() for p in paths), dataset_path, features_path, common, limit, name)
    emit(run(AuditConfig(common=common, limit=limit), paths, target, dataset_path=dataset_path,
             features_path=features_path, names=name or None, force=force))
