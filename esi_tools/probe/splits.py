"""Patient-disjoint train/validation/test splits and stratified, seeded training fractions.

PTB-XL's `strat_fold` keeps every patient in one fold: folds 1-8 train, 9 validation, 10 test (the official
benchmark split). Other data gets patient-grouped k-fold: fold k is the test set, fold k+1 validation, the rest
training, so every record is tested exactly once and no patient crosses sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

TRAIN_FOLDS, VAL_FOLD, TEST_FOLD = range(1, 9), 9, 10  # the PTB-XL benchmark's recommended split


@dataclass
class Split:
    """Index arrays into the dataset's records."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def strat_fold_split(folds) -> Split:
    folds = np.asarray([-1 if f is None else f for f in folds])
    train = np.flatnonzero(np.isin(folds, list(TRAIN_FOLDS)))
    val, test = np.flatnonzero(folds == VAL_FOLD), np.flatnonzero(folds == TEST_FOLD)
    if not (train.size and val.size and test.size):
        raise InputError("strat_fold split needs records in folds 1-8, 9 and 10 (PTB-XL); use --split kfold")
    return Split("strat_fold", train, val, test)


def patient_groups(patient_ids) -> np.ndarray:
    """Group label per record: its patient id, or a unique label where the id is missing."""
    return np.asarray([p if p not in (None, "") else f"__record_{i}" for i, p in enumerate(patient_ids)], dtype=object)


def kfold_splits(patient_ids, k: int, seed: int) -> list[Split]:
    """k patient-grouped folds: patients shuffled by seed and dealt round-robin."""
    if k < 3:
        raise InputError("--folds must be at least 3 (train, validation and test folds)")
    groups = patient_groups(patient_ids)
    uniq = np.unique(groups)
    if len(uniq) < k:
        raise InputError(f"only {len(uniq)} patients: too few for {k} folds")
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of_group = dict(zip(uniq[order], np.arange(len(uniq)) % k, strict=True))
    fold = np.array([fold_of_group[g] for g in groups])
    out = []
    for f in range(k):
        v = (f + 1) % k
        out.append(Split(f"kfold{f}", np.flatnonzero((fold != f) & (fold != v)), np.flatnonzero(fold == v), np.flatnonzero(fold == f)))
    return out


def check_disjoint(split: Split, patient_ids) -> None:
    """Raise if any patient appears in two of train/val/test (a leak would inflate every metric)."""
    groups = patient_groups(patient_ids)
    sets = [set(groups[idx]) for idx in (split.train, split.val, split.test)]
    leaks = (sets[0] & sets[1]) | (sets[0] & sets[2]) | (sets[1] & sets[2])
    if leaks:
        raise InputError(f"split {split.name}: {len(leaks)} patients appear in more than one of train/val/test")


def stratified_fraction(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Positions (into y's rows) of a seeded, label-stratified subset of about fraction * n rows.

    Multi-label stratification by each row's rarest class: strata get their share by largest remainder,
    so class frequencies in the subset follow the full training set and small fractions keep rare classes
    where the budget allows.
    """
    n = y.shape[0]
    if not 0 < fraction <= 1:
        raise InputError(f"fraction {fraction} must be in (0, 1]")
    if fraction == 1:
        return np.arange(n)
    target = max(1, int(round(fraction * n)))
    freq = y.sum(axis=0)
    rarity = np.where(y, freq[None, :], np.iinfo(np.int64).max)
    stratum = np.where(y.any(axis=1), rarity.argmin(axis=1), -1)
    labels, counts = np.unique(stratum, return_counts=True)
    share = counts * target / n
    alloc = np.floor(share).astype(int)
    for j in np.argsort(-(share - alloc), kind="stable")[: target - alloc.sum()]:
        alloc[j] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(stratum == s), size=a, replace=False) for s, a in zip(labels, alloc, strict=True) if a]
    return np.sort(np.concatenate(picked))
