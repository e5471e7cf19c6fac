"""esi ingest: an ECG collection -> a dataset artifact (records.parquet + waveforms.npy + rejects.parquet)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import ForceOption, OutOption, WorkersOption, default_out, emit, esi_command

app = typer.Typer()


@app.command()
@esi_command
def ingest(
    kind: str = typer.Argument(..., help="ptbxl | mimic-iv-ecg | challenge | wfdb"),
    src: Path = typer.Argument(..., help="Root directory of the collection in its PhysioNet layout."),
    out: Path = OutOption,
    fs: float = typer.Option(100.0, "--fs", help="Output sampling rate in Hz (polyphase resampling)."),
    seconds: float = typer.Option(10.0, "--seconds", help="Cut or zero-pad every record to this length."),
    records: str = typer.Option(None, "--records", help="PTB-XL: records100 or records500 (default: by --fs)."),
    limit: int = typer.Option(None, "--limit", help="Ingest only the first N records (smoke runs)."),
    workers: int = WorkersOption,
    force: bool = ForceOption,
) -> None:
    """Read every record, resample to --fs, reorder leads to I..V6, store int16 uV; bad records go to rejects."""
    from esi_tools.ingest.run import IngestConfig
    from esi_tools.ingest.run import ingest as run

    config = IngestConfig(kind=kind, fs=fs, seconds=seconds, records=records, workers=workers, limit=limit)
    emit(run(config, src, out or default_out("dataset", kind, src.resolve(), fs, seconds, records, limit), force=force))
