"""esi report: a run directory's artifacts -> one self-contained HTML page (and Markdown)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import ForceOption, OutOption, emit, esi_command, resolve_input

app = typer.Typer()


@app.command()
@esi_command
def report(
    run_dir: str = typer.Argument(..., help="Directory holding a run's artifacts ('-' = stdin)."),
    out: Path = OutOption,
    force: bool = ForceOption,
) -> None:
    """Provenance, sample ECGs with captions and passages, measurements, training curves, probe and identification results."""
    from esi_tools.report.build import build_report

    run = resolve_input(run_dir)
    emit(build_report(run, out or run / "report", force=force))
