"""Sane bounds for the numbers a model's config.json holds, checked before anything is built.

A folder or a hub id can serve any config: a width of 2e6 would ask for terabytes before a single weight is
read. Every bound is far beyond the models this project builds or imports (ConvNeXt-V2 huge: 2,816 wide, 27
blocks in a stage; BERT-large: 1,024 wide, 24 layers, 30-50 k tokens).
"""

from __future__ import annotations

import math
from numbers import Real

MAX_WIDTH = 8192  # channels or embedding width
MAX_DEPTH = 64  # blocks in one encoder stage, or transformer layers
MAX_STAGES = 8  # encoder stages
MAX_TOKENS = 8192  # text length, decoder memory tokens, position table
MAX_VOCAB = 1_000_000  # text vocabulary
MIN_FS, MAX_FS = 25.0, 20_000.0  # Hz, as `esi ingest` accepts


def whole(name: str, value, lo: int, hi: int) -> int:
    """`value` as an int within [lo, hi]; ValueError naming `name` otherwise (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number within {lo:,}-{hi:,}, not {value!r}")
    return value


def real(name: str, value, lo: float, hi: float) -> float:
    """`value` as a finite float within [lo, hi]; ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number within {lo:g}-{hi:g}, not {value!r}")
    return float(value)


def stages(depths, dims) -> None:
    """An encoder's per-stage depths and widths: as many of each, every one within bounds."""
    if not 1 <= len(depths) <= MAX_STAGES or len(depths) != len(dims):
        raise ValueError(f"depths and dims must list 1-{MAX_STAGES} stages each, got {list(depths)} and {list(dims)}")
    for d in depths:
        whole("a stage depth", d, 1, MAX_DEPTH)
    for c in dims:
        whole("a stage width", c, 1, MAX_WIDTH)


def hf_text(config) -> None:
    """A Hugging Face text model config (BERT-like): vocabulary, width, layers and lengths within bounds."""
    for name, hi in (("vocab_size", MAX_VOCAB), ("hidden_size", MAX_WIDTH), ("num_hidden_layers", MAX_DEPTH),
                     ("intermediate_size", 4 * MAX_WIDTH), ("max_position_embeddings", MAX_TOKENS),
                     ("num_attention_heads", MAX_WIDTH), ("type_vocab_size", 1024)):
        if hasattr(config, name):
            whole(f"the text model's {name}", getattr(config, name), 1, hi)
