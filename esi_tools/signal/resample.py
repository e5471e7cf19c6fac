"""Polyphase resampling to the dataset's common rate, and what a piece of a signal needs to be resampled alone."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """(up, down) with fs_out ~= fs_in * up / down (denominator at most 1000)."""
    if abs(fs_in - fs_out) < 1e-9:
        return 1, 1
    r = Fraction(fs_out / fs_in).limit_denominator(1000)
    return r.numerator, r.denominator


def margin(fs_in: float, fs_out: float) -> int:
    """Input samples to read beyond each end of a piece so its resampled inside equals the whole signal's.

    scipy's filter spans 10 * max(up, down) upsampled samples each side; the margin is a multiple of `down`
    so that a piece starting at a margin boundary starts on an output sample.
    """
    up, down = ratio(fs_in, fs_out)
    if up == down == 1:
        return 0
    need = math.ceil(10 * max(up, down) / up) + 1
    return math.ceil(need / down) * down


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample along the last axis with an anti-aliasing polyphase filter (scipy.signal.resample_poly)."""
    up, down = ratio(fs_in, fs_out)
    if up == down == 1:
        return signal
    from scipy.signal import resample_poly

    return resample_poly(signal, up, down, axis=-1, padtype="line").astype(np.float32)
