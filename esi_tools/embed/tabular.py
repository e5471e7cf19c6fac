"""Tabular measurements -> a dense baseline embedding: median imputation, missing indicators, z-scores.

Fill values and scales come from the rows in `fit_rows` (the training split where the dataset has one), so
no validation or test statistic shapes the representation.
"""

from __future__ import annotations

import numpy as np


def tabular_embedding(columns: dict[str, np.ndarray], fit_rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(N, D) float32 and the D column names; a column with any NaN also gets a `<name>_missing` 0/1 column."""
    names, blocks = [], []
    for name, values in columns.items():
        v = np.asarray(values, dtype=np.float64)
        v = np.where(np.isfinite(v), v, np.nan)
        missing = np.isnan(v)
        fit = v[fit_rows]
        fill = float(np.nanmedian(fit)) if np.isfinite(fit).any() else 0.0
        v = np.where(missing, fill, v)
        mean, std = v[fit_rows].mean(), v[fit_rows].std()
        blocks.append((v - mean) / (std if std > 1e-12 else 1.0))
        names.append(name)
        if missing.any():
            blocks.append(missing.astype(np.float64))
            names.append(f"{name}_missing")
    return np.stack(blocks, axis=1).astype(np.float32), names
