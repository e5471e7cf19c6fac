"""esi probe: embeddings (and/or a checkpoint) -> a probe artifact of macro AUROC / F1 with bootstrap CIs."""

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
def probe(
    dataset: str = typer.Argument(..., help="Dataset artifact with labels; '-' = stdin."),
    embeddings: list[Path] = EmbeddingsOption,
    name: list[str] = NamesOption,
    task: str = typer.Option("superdiagnostic", "--task", "-t", help="PTB-XL: all|diagnostic|subdiagnostic|superdiagnostic|form|rhythm; others: all."),
    fraction: list[float] = typer.Option([1.0], "--fraction", help="Training-label fraction(s), stratified and seeded (repeat)."),
    split: str = typer.Option("auto", "--split", help="auto | strat_fold (PTB-XL folds 1-8/9/10) | kfold (patient-grouped)."),
    folds: int = typer.Option(5, "--folds", help="Number of patient-grouped folds for --split kfold."),
    min_positives: int = typer.Option(5, "--min-positives", help="Drop classes with fewer training positives."),
    finetune: Path = typer.Option(None, "--finetune", help="Also fine-tune this ESI model's encoder end to end."),
    finetune_scratch: Path = typer.Option(None, "--finetune-scratch", help="Also fine-tune this model's architecture from random "
                                          "weights (the supervised baseline --finetune must beat)."),
    finetune_epochs: int = typer.Option(20, "--finetune-epochs", help="Most fine-tuning epochs (early stopping on val AUROC)."),
    zero_shot: Path = typer.Option(None, "--zero-shot", help="Also score classes zero-shot with this ESI model."),
    zero_shot_prompts: str = typer.Option("auto", "--zero-shot-prompts", help="Grouped classes (e.g. STTC): prevalence "
                                          "(top training members in one prompt) | ensemble (mean over all members) | auto (better on validation)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=1, help="Bootstrap resamples of test records for the CIs."),
    seed: int = typer.Option(0, "--seed", help="Seed for fractions, folds and bootstrap."),
    out: Path = OutOption,
    force: bool = ForceOption,
) -> None:
    """Linear probe every embedding (C and thresholds chosen on validation), report test metrics with CIs."""
    from esi_tools.probe.run import ProbeConfig
    from esi_tools.probe.run import probe as run

    path = resolve_input(dataset)
    config = ProbeConfig(
        task=task, fractions=tuple(fraction), split=split, folds=folds, seed=seed, min_positives=min_positives,
        bootstrap=bootstrap, finetune=str(finetune) if finetune else None,
        finetune_scratch=str(finetune_scratch) if finetune_scratch else None, zero_shot=str(zero_shot) if zero_shot else None,
        zero_shot_prompts=zero_shot_prompts, finetune_epochs=finetune_epochs, names=tuple(name),
    )
    target = out or default_out("probe", path.resolve(), [p.resolve() for p in embeddings], config)
    emit(run(config, path, embeddings, target, force=force))
