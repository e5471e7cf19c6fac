"""The pretraining loop, start to finish: data, model, engine, steps, checkpoints, export. Only rank 0 logs."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from ..artifacts import ArtifactWriter, OutLock, check_out
from ..console import log, progress
from ..dataset import Dataset
from ..errors import EsiError, InputError, Stopped
from ..losses import esi_loss
from ..model.coca import ESIConfig
from ..model.factory import create_model, model_config
from . import checkpoint
from .config import PretrainConfig
from .data import Augment, Collate, PairDataset, PositionSampler, make_loader, select_pairs
from .engine import lr_lambda, make_engine, setup_distributed
from .export import write_model

LOSS_TERMS = ("loss", "contrastive_loss", "caption_loss")


class Interrupted(Stopped):
    """Ctrl-C / SIGTERM / --stop-after: a checkpoint was saved; the message says how to continue."""


def model_settings(cfg: PretrainConfig, crop_seconds: float) -> ESIConfig:
    """The architecture: the named config, then --size/--text-model, fs and crop length from the run."""
    arch = ESIConfig.from_dict(model_config(cfg.model))
    if cfg.size:
        arch = replace(arch, ecg=replace(arch.ecg, size=cfg.size, depths=(), dims=()).resolved())
    if cfg.text_model:
        arch = arch.with_text_model(cfg.text_model)
    return replace(arch, fs=cfg.fs, seconds=crop_seconds)


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints at the next step boundary and stops."""

    def __init__(self):
        self.set = False
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.set = True
        log("interrupt received: saving a checkpoint at the end of this step")

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False


def _reduce_mean(values: list[float], world_size: int) -> list[float]:
    if world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return (t / world_size).tolist()


def pretrain(cfg: PretrainConfig, dataset_path: Path, out: Path, *, captions: Path | None = None, force: bool = False) -> Path | None:
    """Train an ESI model and export it to `out`; returns the artifact path on rank 0, None elsewhere."""
    # DataLoader workers are forked: the Rust tokenizer's thread pool must not be live across the fork
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rank, world, device, created = setup_distributed(cfg)
    try:
        return _pretrain(cfg, dataset_path, out, captions, force, rank, world, device)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def _pretrain(cfg, dataset_path, out, captions, force, rank, world, device):
    """Rank 0 takes the locks on --out and on the checkpoint folder before any work and holds them to the end:
    a second run to either fails at once, instead of training and then being refused (or overwriting `latest`)."""
    out = Path(out)
    ckpt_root = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else out.parent / f"{out.name}.checkpoints"
    if rank != 0:
        return _train(cfg, dataset_path, out, captions, force, rank, world, device, ckpt_root, None)
    check_out(out, "model", inputs=[dataset_path, *([captions] if captions else [])], force=force)
    for folder in (out.parent, ckpt_root.parent):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{folder}: cannot create it ({exc.strerror})") from None
    with OutLock(out) as out_lock, OutLock(ckpt_root):
        return _train(cfg, dataset_path, out, captions, force, rank, world, device, ckpt_root, out_lock)


def _train(cfg, dataset_path, out, captions, force, rank, world, device, ckpt_root, out_lock):
    if cfg.resume:
        checkpoint.find(cfg.resume)  # a wrong path fails now, not after the model is built
    ds = Dataset.open(dataset_path)
    if abs(ds.fs - cfg.fs) > 1e-6:
        raise InputError(f"{dataset_path}: dataset is at {ds.fs:g} Hz but this run expects --fs {cfg.fs:g} (ingest with --fs {cfg.fs:g}, or pass --fs {ds.fs:g})")
    pairs = select_pairs(ds, text_source=cfg.text_source, captions=captions, exclude_folds=cfg.exclude_folds)
    crop = round(cfg.crop_seconds * cfg.fs)
    arch = model_settings(cfg, crop / cfg.fs)
    model = create_model(arch.to_dict(), seed=cfg.seed)
    model.configure(grad_checkpointing=cfg.grad_checkpointing, compile=cfg.compile)
    steps_per_epoch = len(pairs.indices) // (cfg.batch_size * world) // cfg.grad_accum
    if steps_per_epoch == 0:
        raise InputError(f"{len(pairs.indices)} training pairs: fewer than one step of {cfg.batch_size} x {world} ranks x {cfg.grad_accum} micro-steps")
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    engine = make_engine(model, cfg, lr_lambda(cfg, steps_per_epoch, total), world_size=world, device=device)
    settings = {**cfg.to_dict(), "text_source": pairs.text_source}
    step, history = 0, []
    if cfg.resume:
        step, history = checkpoint.load(cfg.resume, engine, settings=settings, rank=rank, world_size=world)
        log(f"resumed from {checkpoint.find(cfg.resume)} at step {step}")
    else:
        torch.manual_seed(cfg.seed * 1000 + rank)  # drop-path/dropout masks differ per rank, fixed per seed
    n_params = count_parameters(model)
    cut = cut_fraction(model.tokenizer, pairs.texts, arch.max_text_tokens)
    if rank == 0:
        log(f"{len(pairs.indices)} pairs ({pairs.text_source}), {pairs.excluded} excluded by fold, {pairs.rejects.height} rejected; "
            f"{n_params / 1e6:.1f}M parameters, {engine.name} engine, {world} rank(s), {total} steps of {cfg.batch_size * world * cfg.grad_accum}")
        log(f"{100 * cut:.1f} % of the captions are cut at {arch.max_text_tokens} tokens")

    data = PairDataset(ds.artifact.file("waveforms.npy"), pairs, fs=cfg.fs, crop=crop, seed=cfg.seed, aug=Augment() if cfg.augment else None)
    sampler = PositionSampler(len(pairs.indices), batch_size=cfg.batch_size, rank=rank, world_size=world, seed=cfg.seed,
                              start=step * cfg.grad_accum, stop=total * cfg.grad_accum)
    loader = make_loader(data, sampler, Collate(model.tokenizer, arch.max_text_tokens), workers=cfg.workers, pin=device.type == "cuda")

    def loss_fn(outputs):
        return esi_loss(outputs, contrastive_weight=cfg.contrastive_weight, caption_weight=cfg.caption_weight, rank=rank, world_size=world)

    samples_per_step = cfg.batch_size * world * cfg.grad_accum
    model.train()
    sums, micro, t0, start_time = [0.0] * len(LOSS_TERMS), 0, time.perf_counter(), time.perf_counter()
    waited = 0.0  # seconds this step spent waiting for the loader: the part of a slow step that is the data's
    batches = iter(loader)
    with _StopFlag() as stop, progress("pretrain", (total - step) * samples_per_step if rank == 0 else 0, unit="samples") as bar:
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            waited += time.perf_counter() - asked
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            micro += 1
            boundary = micro % cfg.grad_accum == 0
            terms = engine.micro_step(batch, loss_fn, boundary=boundary)
            sums = [s + float(terms[k].detach()) for s, k in zip(sums, LOSS_TERMS, strict=True)]
            if not boundary:
                continue
            lr = engine.lr
            grad_norm = engine.step()
            step += 1
            values = _reduce_mean([s / cfg.grad_accum for s in sums], world)
            elapsed = time.perf_counter() - t0
            row = {"step": step, "epoch": step / steps_per_epoch, "lr": lr, **dict(zip(LOSS_TERMS, values, strict=True)),
                   "temperature": 1.0 / float(terms["logit_scale"]),
                   "grad_norm": grad_norm, "samples_per_s": samples_per_step / elapsed, "data_s": waited, "step_s": elapsed,
                   "wall_s": time.perf_counter() - start_time}
            if device.type == "cuda":
                row["peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
            if step % cfg.log_every == 0 or step == total:
                history.append(row)
            bar.advance(samples_per_step)
            sums, waited = [0.0] * len(LOSS_TERMS), 0.0
            t0 = time.perf_counter()
            if cfg.stop_after is not None and step >= cfg.stop_after and step < total:
                stop.set = True
            if step % cfg.checkpoint_every == 0 or stop.set:
                tag = checkpoint.save(ckpt_root, engine, step=step, settings=settings, history=history, rank=rank, world_size=world)
                if stop.set:
                    raise Interrupted(f"stopped at step {step}/{total}; checkpoint saved, continue with --resume {tag.parent}")
    if step < total:
        raise EsiError(f"data ran out at step {step} of {total}")
    state = engine.full_state_dict()  # every rank takes part (ZeRO-3 gathers shards)
    if rank != 0:
        return None
    model.eval()
    last = history[-1] if history else {}
    inputs = {"dataset": ds.artifact} | ({"captions": pairs.captions} if pairs.captions is not None else {})
    with ArtifactWriter(out, "model", parameters={**settings, "engine": engine.name, "world_size": world}, inputs=inputs, force=force,
                        lock=out_lock) as writer:
        write_model(writer, model, state, history)
        writer.write_table("rejects.parquet", pairs.rejects)
        writer.summary.update(
            steps=step, epochs=round(step / steps_per_epoch, 3), pairs=int(len(pairs.indices)), excluded=pairs.excluded,
            rejects=pairs.rejects.height, text_source=pairs.text_source, parameters=n_params, captions_cut=round(cut, 4),
            ecg_size=arch.ecg.size, embed_dim=arch.ecg.embed_dim, fs=cfg.fs, engine=engine.name, world_size=world,
            final_loss=last.get("loss"), final_contrastive_loss=last.get("contrastive_loss"), final_caption_loss=last.get("caption_loss"),
            samples_per_s=_median([r["samples_per_s"] for r in history[1:]] or [last.get("samples_per_s", 0.0)]),
        )
        return writer.commit()


def count_parameters(model: torch.nn.Module) -> int:
    """All parameters, also when ZeRO-3 has partitioned them (their local numel is then 0; ds_numel is the full size)."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())


CUT_SAMPLE = 20_000  # captions tokenized to estimate the cut fraction: exact below this, evenly spaced above


def cut_fraction(tokenizer, texts: list[str], max_tokens: int) -> float:
    """Fraction of captions longer than max_tokens (special tokens included): the part the model never reads."""
    picked = texts if len(texts) <= CUT_SAMPLE else [texts[i] for i in range(0, len(texts), len(texts) // CUT_SAMPLE)]
    lengths = [len(ids) for ids in tokenizer(picked, add_special_tokens=True)["input_ids"]]
    return sum(n > max_tokens for n in lengths) / max(1, len(lengths))


def _median(values: list[float]) -> float:
    values = sorted(values)
    return float(values[len(values) // 2]) if values else 0.0
