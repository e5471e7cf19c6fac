"""esi import-release: the ESI authors' released checkpoint -> a model artifact that embed/probe/identify use as is."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import ForceOption, OutOption, default_out, emit, esi_command

app = typer.Typer()


@app.command("import-release")
@esi_command
def import_release(
    checkpoint: Path = typer.Argument(..., help="Their model.safetensors / pytorch_model.bin (.pt/.pth), or the folder holding it."),
    tokenizer: str = typer.Option("michiyasunaga/BioLinkBERT-base", "--tokenizer",
                                  help="Hub id or local directory of the text tower's tokenizer and config.json."),
    ecg_only: bool = typer.Option(False, "--ecg-only", help="Import the ECG encoder only (no text tower: no zero-shot)."),
    out: Path = OutOption,
    force: bool = ForceOption,
) -> None:
    """Verify every key and shape, then write config.json (variant esi-release), encoder.safetensors and the text tower."""
    from esi_tools.model.release_import import checkpoint_file
    from esi_tools.model.release_import import import_release as run

    source = checkpoint_file(checkpoint)
    target = out or default_out("model", source.resolve(), source.stat().st_size, tokenizer, ecg_only)
    emit(run(source, target, tokenizer=tokenizer, ecg_only=ecg_only, force=force))
