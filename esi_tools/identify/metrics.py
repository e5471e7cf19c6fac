"""Identification (rank of the true match, CMC) and verification (ROC AUC, EER) on cosine similarity."""

from __future__ import annotations

import numpy as np

IMPOSTOR_PAIRS = 20000  # sampled impostor pairs: ~100x the genuine pairs of a small cohort, enough for a smooth ROC
SEARCH_CHUNK = 2048  # probes per similarity block: a 2048 x 10,000 float32 block is 80 MB


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def standardise_with(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """z-score every embedding with the mean and std of a disjoint reference population."""
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    return (x - mean) / np.where(std > 1e-12, std, 1.0)


def true_match_ranks(probes: np.ndarray, gallery: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of each probe's true gallery entry (truth[i] = its gallery row) by cosine similarity.

    Ties are counted against the probe: an entry scoring equal to the true match ranks ahead of it.
    """
    p, g = l2_normalise(probes), l2_normalise(gallery)
    ranks = np.empty(len(p), dtype=np.int64)
    for start in range(0, len(p), SEARCH_CHUNK):
        sim = p[start : start + SEARCH_CHUNK] @ g.T
        rows = np.arange(sim.shape[0])
        true = sim[rows, truth[start : start + SEARCH_CHUNK]]
        ranks[start : start + SEARCH_CHUNK] = (sim >= true[:, None]).sum(axis=1)
    return ranks


def top_k(probes: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """(n_probes, k) gallery rows of the k most similar entries, best first (the search itself)."""
    p, g = l2_normalise(probes), l2_normalise(gallery)
    out = np.empty((len(p), k), dtype=np.int64)
    for start in range(0, len(p), SEARCH_CHUNK):
        sim = p[start : start + SEARCH_CHUNK] @ g.T
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, part, axis=1), axis=1)
        out[start : start + SEARCH_CHUNK] = np.take_along_axis(part, order, axis=1)
    return out


def cmc(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """Cumulative match curve: fraction of probes whose true match is within rank r, r = 1..max_rank."""
    return np.array([(ranks <= r).mean() for r in range(1, max_rank + 1)])


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Rate where false accepts (impostor >= t) equal false rejects (genuine < t), linearly interpolated."""
    from sklearn.metrics import roc_curve

    y = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    fpr, tpr, _ = roc_curve(y, np.r_[genuine, impostor])
    fnr = 1 - tpr
    i = int(np.flatnonzero(fnr <= fpr)[0])
    if i == 0:
        return float(fpr[0])
    # crossing between points i-1 and i of the two piecewise-linear curves
    d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def verification_pairs(subject_records: dict[str, np.ndarray], *, n_impostor: int, seed: int):
    """(genuine (a, b, subject), impostor (a, b, subject of a)): all same-subject pairs, sampled cross-subject pairs."""
    genuine = [(a, b, s) for s, rows in subject_records.items() for i, a in enumerate(rows) for b in rows[i + 1 :]]
    owners = [(r, s) for s, rows in subject_records.items() for r in rows]
    rng = np.random.default_rng(seed)
    impostor, seen = [], set()
    attempts = 0
    while len(impostor) < n_impostor and attempts < 20 * n_impostor:
        attempts += 1
        i, j = rng.integers(0, len(owners), 2)
        (a, sa), (b, sb) = owners[i], owners[j]
        if sa == sb or (min(a, b), max(a, b)) in seen:
            continue
        seen.add((min(a, b), max(a, b)))
        impostor.append((a, b, sa))
    return genuine, impostor


def pair_similarity(x: np.ndarray, pairs) -> np.ndarray:
    z = l2_normalise(x)
    a = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
    b = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=len(pairs))
    return np.einsum("ij,ij->i", z[a], z[b])
