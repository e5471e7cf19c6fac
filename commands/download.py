"""esi download: an open PhysioNet dataset (ptb-xl, ludb) into a local directory, verified and resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import emit, esi_command

app = typer.Typer()


@app.command()
@esi_command
def download(
    dataset: str = typer.Argument(..., help="ptb-xl | ludb"),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to download into (PhysioNet layout)."),
    records100_only: bool = typer.Option(False, "--records100-only", help="PTB-XL: skip the 500 Hz records."),
    base_url: str = typer.Option(None, "--base-url", help="A mirror's root URL (default: physionet.org)."),
    workers: int = typer.Option(8, "--workers", "-j", min=1, help="Parallel downloads."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds to wait for a connection or data before retrying."),
) -> None:
    """Download every file listed in the dataset's SHA256SUMS.txt, verify each, resume partial files.

    A local file that fails verification is fetched again (and removed if that fails too)."""
    from esi_tools.download import download as run

    emit(run(dataset, out, base_url=base_url, records100_only=records100_only, workers=workers, timeout=timeout))
