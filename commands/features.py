"""esi features: a dataset artifact -> per-record ECG measurements, per-beat fiducials and findings."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import ForceOption, OutOption, WorkersOption, default_out, emit, esi_command, resolve_input

app = typer.Typer()


@app.command()
@esi_command
def features(
    dataset: str = typer.Argument(..., help="Dataset artifact directory ('-' reads the path from stdin)."),
    out: Path = OutOption,
    limit: int = typer.Option(None, "--limit", help="Only the first N records (smoke runs)."),
    chunk: int = typer.Option(32, "--chunk", min=1, help="Records per vectorised batch; records longer than 34 s "
                              "are measured in 30-s segments, chunk x 10 s of signal per batch (bounds memory)."),
    workers: int = WorkersOption,
    force: bool = ForceOption,
) -> None:
    """Detect beats in every lead present, delineate P/QRS/T, measure intervals, axis, amplitudes and quality."""
    from esi_tools.features.run import FeaturesConfig
    from esi_tools.features.run import features as run

    path = resolve_input(dataset)
    config = FeaturesConfig(workers=workers, chunk=chunk, limit=limit)
    emit(run(config, path, out or default_out("features", path.resolve(), chunk, limit), force=force))
