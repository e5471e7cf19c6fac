"""esi pretrain: dataset (+ captions) -> a trained ESI model artifact (contrastive + captioning)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import ForceOption, OutOption, default_out, emit, esi_command, resolve_input

app = typer.Typer()


@app.command()
@esi_command
def pretrain(
    dataset: str = typer.Argument(..., help="Dataset artifact (- = read its path from stdin)."),
    captions: str = typer.Option(None, "--captions", help="Captions artifact (esi caption) joined on record_id."),
    text_source: str = typer.Option(None, "--text-source", help="captions | statements (PTB-XL English) | a records column such as report."),
    profile: str = typer.Option(None, "--profile", help="cpu-demo (atto, MiniLM, 100 Hz) | paper (base, BioLinkBERT, 500 Hz)."),
    config: Path = typer.Option(None, "--config", help="JSON of settings (between the profile and flags)."),
    model: str = typer.Option(None, "--model", help="Architecture config: esi-atto | esi-tiny | esi-base | a JSON path."),
    size: str = typer.Option(None, "--size", help="ECG encoder size: atto femto pico nano tiny base large."),
    text_model: str = typer.Option(None, "--text-model", help="Text tower: HF hub id or local directory."),
    fs: float = typer.Option(None, "--fs", help="Sampling rate the dataset must have (Hz)."),
    exclude_folds: str = typer.Option(None, "--exclude-folds", help="Comma-separated folds kept out (default 9,10; '' for none)."),
    crop_seconds: float = typer.Option(None, "--crop-seconds", help="Random crop length (s)."),
    augment: bool = typer.Option(None, "--augment/--no-augment", help="Training augmentations."),
    epochs: int = typer.Option(None, "--epochs", help="Passes over the training pairs."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after N optimizer steps (overrides --epochs)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Per-rank micro-batch."),
    grad_accum: int = typer.Option(None, "--grad-accum", help="Micro-batches per optimizer step."),
    lr: float = typer.Option(None, "--lr", help="Peak AdamW learning rate."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="AdamW weight decay (not on norms, biases, temperature)."),
    warmup_epochs: float = typer.Option(None, "--warmup-epochs", help="Linear warm-up length in epochs."),
    schedule: str = typer.Option(None, "--schedule", help="cosine | step (x0.1 every --decay-epochs)."),
    decay_epochs: float = typer.Option(None, "--decay-epochs", help="Step schedule: x0.1 every this many epochs."),
    clip_grad: float = typer.Option(None, "--clip-grad", help="Global gradient-norm clip."),
    contrastive_weight: float = typer.Option(None, "--contrastive-weight", help="Weight of the InfoNCE term."),
    caption_weight: float = typer.Option(None, "--caption-weight", help="Weight of the captioning term (0 = contrastive only)."),
    seed: int = typer.Option(None, "--seed", help="Seed of init, shuffling and augmentation."),
    workers: int = typer.Option(None, "--workers", "-j", help="DataLoader worker processes (0 = in the main process)."),
    deepspeed: Path = typer.Option(None, "--deepspeed", help="DeepSpeed JSON (ZeRO 1/2/3); see esi_tools/train/configs."),
    bf16: bool = typer.Option(None, "--bf16/--fp32", help="bf16 mixed precision (GPU)."),
    grad_checkpointing: bool = typer.Option(None, "--grad-checkpointing/--no-grad-checkpointing", help="Recompute activations in backward: less memory, ~1/3 slower."),
    compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile each ECG encoder block (minutes of compiling first)."),
    checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Optimizer steps between checkpoints."),
    checkpoint_dir: Path = typer.Option(None, "--checkpoint-dir", help="Default: <out>.checkpoints."),
    stop_after: int = typer.Option(None, "--stop-after", help="Checkpoint and stop at this step (exit 130), e.g. for time-limited jobs."),
    resume: Path = typer.Option(None, "--resume", help="Checkpoint directory to continue from."),
    out: Path = OutOption,
    force: bool = ForceOption,
) -> None:
    """Pretrain the ESI model; works as one CPU process, under torchrun, or under the deepspeed launcher."""
    from esi_tools.errors import UsageError
    from esi_tools.train.config import build_config
    from esi_tools.train.loop import pretrain as run

    folds = None
    if exclude_folds is not None:
        try:
            folds = tuple(int(f) for f in exclude_folds.split(",") if f.strip())
        except ValueError:
            raise UsageError(f"--exclude-folds must be comma-separated integers, not '{exclude_folds}'") from None
    flags = dict(
        text_source=text_source, model=model, size=size, text_model=text_model, fs=fs, exclude_folds=folds,
        crop_seconds=crop_seconds, augment=augment, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        grad_accum=grad_accum, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, schedule=schedule,
        decay_epochs=decay_epochs, clip_grad=clip_grad, contrastive_weight=contrastive_weight,
        caption_weight=caption_weight, seed=seed, workers=workers, deepspeed=str(deepspeed) if deepspeed else None,
        bf16=bf16, grad_checkpointing=grad_checkpointing, compile=compile, checkpoint_every=checkpoint_every, checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
        stop_after=stop_after, resume=str(resume) if resume else None,
    )
    cfg = build_config(profile, config, flags)
    data = resolve_input(dataset)
    cap = resolve_input(captions) if captions else None
    target = out or default_out("model", data.resolve(), cap.resolve() if cap else None, cfg.to_dict())
    path = run(cfg, data, target, captions=cap, force=force)
    if path is not None:  # only rank 0 writes (and prints) the artifact
        emit(path)


if __name__ == "__main__":  # launchers run a module: `torchrun -m commands.pretrain …`, `deepspeed --module commands.pretrain …`
    app()
