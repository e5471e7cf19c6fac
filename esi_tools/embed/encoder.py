"""Encoder inference: batched, no grad, CPU by default; representations an ECG encoder offers.

`stages`: each backbone stage's output averaged over time and concatenated (40+80+160+320 = 600-d for atto):
the standard probe for a random-init baseline, applied alike to trained checkpoints for a fair comparison.
`embedding`: the model's L2-normalised contrastive embedding (what zero-shot and retrieval use).

`esi embed` (a dataset's records) and `esi_tools.load_model(...).embed_ecg` (arrays in memory) both go
through `encode`, so the same ECG gives the same embedding either way.
"""

from __future__ import annotations

import numpy as np
import torch

from ..console import progress
from ..model.preprocess import standardise

POOLINGS = ("stages", "embedding")


def stage_means(encoder, x: torch.Tensor) -> torch.Tensor:
    """(B, 12, L) standardised -> (B, sum(dims)): every stage's output mean-pooled over time."""
    pooled = []
    backbone = encoder.backbone
    for down, stage in zip(backbone.downsample, backbone.stages, strict=True):
        x = stage(down(x))
        pooled.append(x.mean(dim=-1))
    return torch.cat(pooled, dim=1)


def model_input(encoder, millivolts: np.ndarray) -> torch.Tensor:
    """(B, 12, L) mV -> what `encoder` reads: an imported release encoder brings its own input handling,
    ours is `standardise` (the per-record scaling training used)."""
    if hasattr(encoder, "preprocess"):
        return encoder.preprocess(millivolts)
    return torch.from_numpy(standardise(millivolts))


def encode(encoder, millivolts: np.ndarray, *, pooling: str) -> np.ndarray:
    """(B, 12, L) mV at the encoder's rate -> (B, D) float32 with `pooling` (see the module docstring)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    with torch.inference_mode():
        x = model_input(encoder, millivolts)
        z = stage_means(encoder, x) if pooling == "stages" else encoder.embed(x)
    return z.float().numpy()


def encode_dataset(encoder, dataset, *, pooling: str, batch_size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Embed every record of `dataset` (rows in dataset order) into `out` (allocated if None)."""
    encoder = encoder.eval()
    n = len(dataset)
    with progress("embedding", n) as bar:
        for start in range(0, n, batch_size):
            idx = slice(start, min(n, start + batch_size))
            z = encode(encoder, dataset.millivolts(idx), pooling=pooling)
            if out is None:
                out = np.zeros((n, z.shape[1]), dtype=np.float32)
            out[idx] = z
            bar.advance(z.shape[0])
    return out
