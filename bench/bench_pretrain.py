"""CPU benchmark of `esi pretrain` (cpu-demo: atto x all-MiniLM-L6-v2, 100 Hz, 10 s, batch 32).

Prints one Markdown table: samples/s of
  - the ECG encoder alone, forward+backward on an in-memory batch,
  - the whole ESI step (both towers + decoder + loss + backward + AdamW) on in-memory batches ("bare"): the very
    batches the pipeline below is fed (same sampler positions, collated beforehand), so the two differ only in
    where the batch comes from (a fixed batch of the first 32 records would be padded to 29 statement tokens
    where random ones average ~47: a third of the step is the vocabulary head, so that would not be like for like),
  - the data pipeline alone (DataLoader workers: memmap read, augment, standardise, tokenize),
  - the training pipeline (DataLoader workers feeding the engine's step), interleaved step by step with
    the bare step so both see the same load (this machine is shared),
  - the real training loop end to end (`esi_tools.train.loop.pretrain`, median step after the first),
and the pipeline cost relative to the bare step (target <= 1.5x: loading must not be the bottleneck).

usage: .venv/bin/python bench/bench_pretrain.py [DATASET_ARTIFACT] [--steps N] [--workers W]
(without a dataset it ingests ../shared/data/ptbxl at 100 Hz into a temp dir first)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, ROOT, table

sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ESI_QUIET", "1")


def timed(fn, steps: int, warmup: int = 1) -> float:
    """Median seconds per call after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", nargs="?")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import polars as pl
    import torch

    from esi_tools.console import set_quiet
    from esi_tools.dataset import Dataset
    from esi_tools.losses import esi_loss
    from esi_tools.model import create_model
    from esi_tools.train.config import build_config
    from esi_tools.train.data import Augment, Collate, PairDataset, PositionSampler, make_loader, select_pairs
    from esi_tools.train.engine import PlainEngine, lr_lambda, make_optimizer
    from esi_tools.train.loop import model_settings, pretrain

    set_quiet(True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-pretrain-"))
    dataset = args.dataset
    if dataset is None:
        from esi_tools.ingest.run import IngestConfig, ingest

        dataset = ingest(IngestConfig(kind="ptbxl", fs=100, workers=2), DATA / "ptbxl", tmp / "dataset")
    cfg = build_config("cpu-demo", None, {"workers": args.workers, "max_steps": args.steps + 1})
    batch = cfg.batch_size
    ds = Dataset.open(dataset)
    pairs = select_pairs(ds, text_source=None, captions=None, exclude_folds=cfg.exclude_folds)
    arch = model_settings(cfg, cfg.crop_seconds)
    model = create_model(arch.to_dict(), seed=0).train()
    data = PairDataset(ds.artifact.file("waveforms.npy"), pairs, fs=cfg.fs, crop=round(cfg.crop_seconds * cfg.fs), seed=0, aug=Augment())
    collate = Collate(model.tokenizer, arch.max_text_tokens)
    fixed = collate([data[(0, i)] for i in range(batch)])

    # 1. ECG encoder alone
    def encoder_step():
        emb, tokens = model.ecg(fixed["ecg"])
        (emb.sum() + tokens.sum()).backward()

    t_encoder = timed(encoder_step, args.steps)
    # 2. bare ESI step on an in-memory batch
    optimizer = make_optimizer(model, cfg)

    sampler = PositionSampler(len(pairs.indices), batch_size=batch, rank=0, world_size=1, seed=0, start=0, stop=args.steps + 1)
    same = iter([collate([data[key] for key in keys]) for keys in sampler])  # what the pipeline's loader will yield

    def bare_step():
        b = next(same)
        out = model(b["ecg"], b["input_ids"], b["attention_mask"])
        esi_loss(out, contrastive_weight=1.0, caption_weight=1.0, rank=0, world_size=1)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # 3. data pipeline alone
    n_batches = 4 * args.steps
    sampler = PositionSampler(len(pairs.indices), batch_size=batch, rank=0, world_size=1, seed=0, start=0, stop=n_batches + 2)
    loader = iter(make_loader(data, sampler, collate, workers=args.workers))
    next(loader), next(loader)
    t = time.perf_counter()
    for _ in range(n_batches):
        next(loader)
    t_data = (time.perf_counter() - t) / n_batches
    # 4. the training pipeline (DataLoader workers + engine step, as in train/loop.py), interleaved with the
    #    bare step so both see the same load on a machine shared with other jobs
    engine = PlainEngine(model, cfg, lr_lambda(cfg, 40, 40), world_size=1, device=torch.device("cpu"))
    sampler = PositionSampler(len(pairs.indices), batch_size=batch, rank=0, world_size=1, seed=0, start=0, stop=args.steps + 1)
    loader = iter(make_loader(data, sampler, collate, workers=args.workers))

    def pipeline_step():
        b = next(loader)
        engine.micro_step(b, lambda o: esi_loss(o, contrastive_weight=1.0, caption_weight=1.0, rank=0, world_size=1), boundary=True)
        engine.step()

    bare_step(), pipeline_step()  # warm-up (allocator, worker start)
    bare, piped = [], []
    for _ in range(args.steps):
        for fn, times in ((bare_step, bare), (pipeline_step, piped)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    t_bare, t_pipe = statistics.median(bare), statistics.median(piped)
    # 5. the real loop end to end, for reference (its own run: contention may differ)
    out = pretrain(cfg, Path(dataset), tmp / "model")
    log = pl.read_parquet(out / "train_log.parquet")
    e2e = float(np.median(log["samples_per_s"].to_numpy()[1:]))

    rows = [
        ("ECG encoder atto fwd+bwd (in-memory batch)", batch / t_encoder),
        ("bare ESI step: atto + MiniLM + decoder, fwd+bwd+AdamW (in-memory)", batch / t_bare),
        ("training pipeline: DataLoader + engine step (interleaved with the bare step)", batch / t_pipe),
        (f"data pipeline alone ({args.workers} workers: memmap, augment, standardise, tokenize)", batch / t_data),
        ("`pretrain` loop end to end, separate run (median step)", e2e),
    ]
    title = f"esi pretrain, CPU (cpu-demo: atto x MiniLM, 100 Hz x 10 s, batch {batch}, {torch.get_num_threads()} torch threads)"
    print(table(title, [{"what": name, "samples/s": f"{rate:.1f}", "s/step": f"{batch / rate:.2f}"} for name, rate in rows]))
    print(f"Pipeline cost / bare step (interleaved): {t_pipe / t_bare:.2f}x (target <= 1.5x).")

if __name__ == "__main__":
    main()
