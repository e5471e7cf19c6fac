"""Per-record standardisation shared by training and inference (so embeddings match what the model saw)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# Below this overall std (mV) a record is treated as flat: dividing would blow up noise.
FLAT_STD_MV = 1e-3


def standardise(x_mv: np.ndarray) -> np.ndarray:
    """(..., 12, L) mV -> float32: each lead minus its mean, then the whole record divided by one std.

    One scalar per record (not one per lead) keeps the amplitude ratios between leads, which carry
    axis, voltage and hypertrophy information; zero-filled missing leads stay zero.
    """
    x = np.asarray(x_mv, dtype=np.float32)
    x = x - x.mean(axis=-1, keepdims=True)
    std = x.std(axis=(-2, -1), keepdims=True)
    return (x / np.maximum(std, FLAT_STD_MV)).astype(np.float32)


def preprocess(x_mv) -> torch.Tensor:
    """What `ESIModel.encode_ecg` expects: a (B, 12, L) mV array/tensor -> standardised float32 tensor."""
    import torch

    if isinstance(x_mv, torch.Tensor):
        x_mv = x_mv.detach().cpu().numpy()
    return torch.from_numpy(standardise(x_mv))
