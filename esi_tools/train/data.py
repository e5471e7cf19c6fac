"""Training pairs: dataset waveforms x caption text, read from the memmap inside DataLoader workers.

Every random choice (shuffle order, augmentation) is a pure function of (seed, epoch, index), so the data
stream depends only on the position in it: resuming at micro-step m replays exactly what a straight run
would have seen, whatever the number of workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..artifacts import open_artifact
from ..dataset import UV_TO_MV, Dataset, unique_ids
from ..errors import InputError
from ..model.preprocess import standardise

# ---------------------------------------------------------------- texts


def statement_captions(ds: Dataset) -> list[str | None]:
    """PTB-XL: English statement descriptions ordered by likelihood (the German `report` is poor text)."""
    if not ds.artifact.has("statements.parquet"):
        raise InputError(f"{ds.path}: no statements.parquet (text source 'statements' needs a PTB-XL dataset)")
    table = ds.artifact.table("statements.parquet", columns=["code", "description"])
    describe = dict(zip(table["code"].to_list(), table["description"].to_list(), strict=True))
    texts: list[str | None] = []
    for labels, likelihoods in zip(ds.records["labels"].to_list(), ds.records["label_likelihoods"].to_list(), strict=True):
        weights = json.loads(likelihoods) if likelihoods else {}
        ordered = sorted(labels or [], key=lambda code: -float(weights.get(code) or 0.0))
        phrases = [describe.get(code) or code for code in ordered]
        texts.append("; ".join(dict.fromkeys(phrases)) or None)
    return texts


def caption_texts(ds: Dataset, captions_path: Path) -> tuple[list[str | None], object]:
    """Captions artifact joined on record_id (failed/skipped/empty captions -> None); returns texts and the artifact."""
    art = open_artifact(captions_path, "captions")
    table = unique_ids(art.table("captions.parquet", columns=["record_id", "caption", "status"]), f"{captions_path}")
    table = table.filter(pl.col("status") == "ok")  # failed and skipped rows carry no usable caption
    table = table.filter(pl.col("caption").is_not_null() & (pl.col("caption").str.strip_chars() != ""))
    by_id = dict(zip(table["record_id"].cast(pl.Utf8).to_list(), table["caption"].to_list(), strict=True))
    return [by_id.get(rid) for rid in ds.records["record_id"].cast(pl.Utf8).to_list()], art


def column_texts(ds: Dataset, column: str) -> list[str | None]:
    """Any text (or list-of-text) column of records.parquet."""
    if column not in ds.records.columns:
        raise InputError(f"{ds.path}: records.parquet has no column '{column}' for --text-source")
    values = ds.records[column].to_list()
    return [("; ".join(map(str, v)) if isinstance(v, list) else (str(v) if v is not None else None)) or None for v in values]


@dataclass
class Pairs:
    """Which dataset rows train, with their text; and the rows left out, with a reason."""

    indices: np.ndarray  # dataset row numbers (int64)
    texts: list[str]
    rejects: pl.DataFrame  # record_id, reason
    excluded: int  # rows dropped by --exclude-folds (not rejects: a deliberate split)
    text_source: str
    captions: object | None  # the captions Artifact, when used


def select_pairs(ds: Dataset, *, text_source: str | None, captions: Path | None, exclude_folds: tuple[int, ...]) -> Pairs:
    source = text_source or ("captions" if captions else ("statements" if ds.artifact.has("statements.parquet") else "report"))
    cap_art = None
    if source == "captions":
        if captions is None:
            raise InputError("text source 'captions' needs --captions CAPTIONS_ARTIFACT")
        texts, cap_art = caption_texts(ds, captions)
    elif source == "statements":
        texts = statement_captions(ds)
    else:
        texts = column_texts(ds, source)
    records = ds.records
    folds = records["fold"].to_list() if "fold" in records.columns else [None] * len(records)
    has_leads = ds.lead_mask.any(axis=1)
    keep, rejects, excluded = [], [], 0
    for i, (rid, fold, text) in enumerate(zip(records["record_id"].to_list(), folds, texts, strict=True)):
        if fold is not None and int(fold) in exclude_folds:
            excluded += 1
        elif not has_leads[i]:
            rejects.append((rid, "no leads present"))
        elif text is None or not str(text).strip():
            rejects.append((rid, f"no text in source '{source}'"))
        else:
            keep.append(i)
    if not keep:
        raise InputError(f"{ds.path}: no record left to train on (text source '{source}', excluded folds {exclude_folds})")
    return Pairs(
        indices=np.asarray(keep, dtype=np.int64),
        texts=[str(texts[i]).strip() for i in keep],
        rejects=pl.DataFrame(rejects, schema={"record_id": pl.Utf8, "reason": pl.Utf8}, orient="row"),
        excluded=excluded,
        text_source=source,
        captions=cap_art,
    )


# ---------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Augment:
    """Augmentation strengths (mV or probabilities), applied before standardisation."""

    scale: tuple[float, float] = (0.8, 1.25)  # amplitude gain range: electrode/body-size variation
    noise_mv: float = 0.02  # Gaussian noise std: typical EMG/quantisation level
    wander_mv: float = 0.1  # baseline wander amplitude (respiration, 0.05-0.5 Hz)
    lead_dropout: float = 0.1  # chance each lead is zeroed (missing/poor leads at inference)


def augment(x: np.ndarray, rng: np.random.Generator, fs: float, aug: Augment) -> np.ndarray:
    """(12, L) mV -> augmented copy."""
    leads, length = x.shape
    x = x * rng.uniform(*aug.scale)
    x = x + rng.normal(0.0, aug.noise_mv, size=x.shape).astype(np.float32)
    t = np.arange(length, dtype=np.float32) / fs
    freq, phase = rng.uniform(0.05, 0.5), rng.uniform(0, 2 * np.pi)
    x = x + (aug.wander_mv * rng.uniform(0, 1) * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)
    drop = rng.random(leads) < aug.lead_dropout
    if drop.all():  # keep at least one lead: an all-zero input carries no signal to align
        drop[rng.integers(leads)] = False
    x[drop] = 0.0
    return x


# ---------------------------------------------------------------- torch side


class PairDataset:
    """Map-style dataset whose keys are (epoch, position): returns (standardised (12, crop) float32, text)."""

    def __init__(self, waveforms: Path, pairs: Pairs, *, fs: float, crop: int, seed: int, aug: Augment | None):
        self.waveforms_path, self.indices, self.texts = waveforms, pairs.indices, pairs.texts
        self.fs, self.crop, self.seed, self.aug = fs, crop, seed, aug
        self._memmap = None  # opened lazily, once per worker process

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]):
        epoch, pos = key
        if self._memmap is None:
            self._memmap = np.load(self.waveforms_path, mmap_mode="r")
        rng = np.random.default_rng((self.seed, epoch, pos))
        row = self._memmap[self.indices[pos]]
        length = row.shape[-1]
        if length > self.crop:
            start = int(rng.integers(0, length - self.crop + 1)) if self.aug else (length - self.crop) // 2
            row = row[:, start : start + self.crop]
        x = row.astype(np.float32) * UV_TO_MV
        if length < self.crop:
            x = np.pad(x, ((0, 0), (0, self.crop - length)))
        if self.aug is not None:
            x = augment(x, rng, self.fs, self.aug)
        return standardise(x), self.texts[pos]


class Collate:
    """Stack ECGs and tokenize texts in the worker (the tokenizer is picklable)."""

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer, self.max_tokens = tokenizer, max_tokens

    def __call__(self, items):
        import torch

        ecg = torch.from_numpy(np.stack([x for x, _ in items]))
        enc = self.tokenizer([t for _, t in items], padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return {"ecg": ecg, "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


class PositionSampler:
    """Batch sampler over (epoch, position) keys: this rank's slice of each global micro-batch.

    Micro-step m covers global positions [m*G, (m+1)*G) of epoch m // steps_per_epoch's permutation, with
    G = batch_size * world_size; the incomplete tail of an epoch is dropped so every batch is full.
    """

    def __init__(self, n: int, *, batch_size: int, rank: int, world_size: int, seed: int, start: int, stop: int):
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size
        self.seed, self.start, self.stop = seed, start, stop
        self.per_epoch = n // (batch_size * world_size)
        if self.per_epoch == 0:
            raise InputError(f"only {n} training pairs: fewer than one global batch of {batch_size * world_size}")

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        global_batch = self.batch_size * self.world_size
        perm, perm_epoch = None, None
        for micro in range(self.start, self.stop):
            epoch, step = divmod(micro, self.per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = np.random.default_rng((self.seed, epoch)).permutation(self.n), epoch
            lo = step * global_batch + self.rank * self.batch_size
            yield [(epoch, int(p)) for p in perm[lo : lo + self.batch_size]]


def _worker_init(_worker_id: int) -> None:
    """Workers ignore Ctrl-C: the main process finishes its step and checkpoints; the workers must still feed it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: PairDataset, sampler: PositionSampler, collate: Collate, *, workers: int, pin: bool = False):
    """DataLoader with its own generator, so creating it never consumes the global torch RNG (resume exactness).

    `pin` (on GPUs): batches land in page-locked memory, so the loop's non_blocking copies overlap the step.
    """
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        prefetch_factor=4 if workers else None,  # a few batches ahead absorbs jitter in step time
        persistent_workers=False,
        pin_memory=pin,
        worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(0),
    )
