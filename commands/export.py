"""esi export: a model artifact -> a folder that uploads to the Hugging Face hub as it is (weights, config, card)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import ForceOption, OutOption, default_out, emit, esi_command, resolve_input

app = typer.Typer()


@app.command()
@esi_command
def export(
    model: str = typer.Argument(..., help="Model artifact (`esi pretrain` or `esi import-release` output); '-' = stdin."),
    format: str = typer.Option("hf", "--format", help="Output format: hf (a Hugging Face hub model folder)."),
    license: str = typer.Option(None, "--license", help="Licence id for the card (cc-by-4.0, mit, other, ...). Default: the "
                                "training data's when known and open; required for credentialed data or imported weights."),
    repo_id: str = typer.Option(None, "--repo-id", help="org/name the folder will be uploaded as (shown in the card's "
                                "usage example; default your-org/<out folder name>)."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Where to find the probe and identification artifacts of this "
                                 "model for the card (default: the model artifact's parent directory)."),
    results: list[str] = typer.Option([], "--results", help="A probe or identification artifact to list in the card (repeat)."),
    out: Path = OutOption,
    force: bool = ForceOption,
) -> None:
    """Write config.json, encoder.safetensors, model.safetensors, text/ and a model card README.md (licence, training
    data, profile, probe and identification tables); upload the folder with `hf upload ORG/NAME DIR`."""
    from esi_tools.export_hf import ExportConfig, export_hf

    path = resolve_input(model)
    config = ExportConfig(format=format, license=license, repo_id=repo_id,
                          run_dir=str(run_dir) if run_dir else None, results=tuple(results))
    emit(export_hf(config, path, out or default_out("hf-model", path.resolve(), config), force=force))
