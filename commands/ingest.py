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
    seconds: float = typer.Option(10.0, "--seconds", help="Keep each recording's first SECONDS (cut or zero-padded; "
                                  "the cut/padded/coverage columns say which)."),
    window: float = typer.Option(None, "--window", help="Cut every recording into windows of SECONDS, each a record "
                                 "(parent_record_id, start_s); replaces --seconds."),
    stride: float = typer.Option(None, "--stride", help="Seconds between window starts (default: --window, no overlap)."),
    lead_map: str = typer.Option(None, "--lead-map", help="Map header lead names to standard leads, e.g. "
                                 "ECG1=II,ECG2=V5 (applied before the built-in alias table)."),
    records: str = typer.Option(None, "--records", help="PTB-XL: records100 or records500 (default: by --fs)."),
    limit: int = typer.Option(None, "--limit", help="Ingest only the first N records (smoke runs)."),
    workers: int = WorkersOption,
    force: bool = ForceOption,
) -> None:
    """Read every record, resample to --fs, reorder leads to I..V6, store int16 uV; bad records go to rejects.

    Lead names are mapped through the alias table (MLII->II, D3->III, CM5->V5, ...; see the README); a record
    with some unknown leads keeps its known ones and lists the others in `unknown_leads`."""
    from esi_tools.ingest.run import IngestConfig
    from esi_tools.ingest.run import ingest as run

    config = IngestConfig(kind=kind, fs=fs, seconds=seconds, window=window, stride=stride, lead_map=lead_map,
                          records=records, workers=workers, limit=limit)
    default = default_out("dataset", kind, src.resolve(), fs, seconds, window, stride, lead_map, records, limit)
    emit(run(config, src, out or default, force=force))
