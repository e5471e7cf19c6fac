"""esi embed: a dataset (or features artifact) -> an embeddings artifact (N x D float32 + record ids)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import ForceOption, OutOption, default_out, emit, esi_command, resolve_input

app = typer.Typer()


@app.command()
@esi_command
def embed(
    source: str = typer.Argument(..., help="Dataset artifact, or a features artifact (handcrafted baseline); '-' = stdin."),
    checkpoint: str = typer.Option(None, "--checkpoint", help="Trained ESI model: a directory (`esi pretrain` or `esi export` "
                                   "output) or a Hugging Face hub id org/name (through the hub cache; HF_HUB_OFFLINE=1 "
                                   "uses the cache only). A local directory wins over a hub id."),
    random_init: str = typer.Option(None, "--random-init", help="Untrained encoder of this size (atto, tiny, ...): the baseline."),
    signal_stats: bool = typer.Option(False, "--signal-stats", help="148-d cheap signal statistics + age/sex baseline."),
    pooling: str = typer.Option("stages", "--pooling", help="Encoder readout. stages (default): every stage's output mean-pooled over "
                                "time (600-d for atto); the probe and identification tables read ESI and random-init this way, "
                                "so both get the same readout. embedding: the trained contrastive embedding (256-d) that "
                                "zero-shot uses. Stages probes better: PTB-XL fold-10 macro AUROC 0.809 vs 0.788 (superdiagnostic), 0.756 vs "
                                "0.740 (rhythm), 0.735 vs 0.688 (form); bench/ABLATIONS.md."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random-init weights."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Records per inference batch."),
    out: Path = OutOption,
    force: bool = ForceOption,
) -> None:
    """Embed every record; rows of embeddings.npy follow the dataset's record order (ids.parquet)."""
    from esi_tools.embed.encoder import POOLINGS
    from esi_tools.embed.run import EmbedConfig
    from esi_tools.embed.run import embed as run
    from esi_tools.errors import UsageError

    if pooling not in POOLINGS:
        raise UsageError(f"--pooling must be one of {', '.join(POOLINGS)}")
    path = resolve_input(source)
    config = EmbedConfig(
        checkpoint=checkpoint or None, random_init=random_init, signal_stats=signal_stats,
        pooling=pooling, seed=seed, batch_size=batch_size,
    )
    emit(run(config, path, out or default_out("embeddings", path.resolve(), config), force=force))
