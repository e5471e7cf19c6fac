"""esi identify: embeddings -> subject identification (rank-1/5, CMC) and verification (AUC, EER) with CIs."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import (
    EmbeddingsOption,
    ForceOption,
    NamesOption,
    OutOption,
    default_out,
    emit,
    esi_command,
    resolve_input,
)

app = typer.Typer()


@app.command()
@esi_command
def identify(
    dataset: str = typer.Argument(..., help="Dataset artifact with patient ids; '-' = stdin."),
    embeddings: list[Path] = EmbeddingsOption,
    name: list[str] = NamesOption,
    distractors: bool = typer.Option(False, "--distractors", help="Enrol single-recording patients in the gallery too."),
    normalise: str = typer.Option("disjoint", "--normalise", help="disjoint (z-score with single-recording patients) | none."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=1, help="Bootstrap resamples of subjects for the CIs."),
    seed: int = typer.Option(0, "--seed", help="Seed for gallery ties, impostor pairs and bootstrap."),
    out: Path = OutOption,
    force: bool = ForceOption,
) -> None:
    """Gallery = each subject's earliest recording, probes = the later ones; cosine similarity search."""
    from esi_tools.identify.run import IdentifyConfig
    from esi_tools.identify.run import identify as run

    path = resolve_input(dataset)
    config = IdentifyConfig(distractors=distractors, normalise=normalise, seed=seed, bootstrap=bootstrap, names=tuple(name))
    target = out or default_out("identification", path.resolve(), [p.resolve() for p in embeddings], config)
    emit(run(config, path, embeddings, target, force=force))
