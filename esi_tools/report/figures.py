"""PNG figures for the report (matplotlib, Agg backend), returned as bytes so the HTML can inline them."""

from __future__ import annotations

import io

import numpy as np

from ..signal.leads import STANDARD_LEADS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _plt().close(fig)
    return buffer.getvalue()


def twelve_lead(mv: np.ndarray, fs: float, title: str) -> bytes:
    """A 6x2 grid of the 12 leads on ECG paper (1 mm = 40 ms / 0.1 mV; bold every 5 mm)."""
    plt = _plt()
    seconds = mv.shape[1] / fs
    fig, axes = plt.subplots(6, 2, figsize=(12, 8), sharex=True)
    t = np.arange(mv.shape[1]) / fs
    for k, lead in enumerate(STANDARD_LEADS):
        ax = axes[k % 6, k // 6]
        ax.set_xticks(np.arange(0, seconds + 1e-9, 0.2))
        ax.set_xticks(np.arange(0, seconds + 1e-9, 0.04), minor=True)
        ax.set_yticks(np.arange(-2, 2.01, 0.5))
        ax.set_yticks(np.arange(-2, 2.01, 0.1), minor=True)
        ax.grid(which="major", color="#e8a0a0", lw=0.6)
        ax.grid(which="minor", color="#f6dede", lw=0.3)
        ax.plot(t, mv[k], color="black", lw=0.7)
        ax.set_ylim(-1.6, 1.6)
        ax.set_xlim(0, seconds)
        ax.text(0.05, 1.1, lead, fontsize=9, weight="bold")
        ax.tick_params(labelleft=False, labelbottom=k % 6 == 5, labelsize=7)
    for ax in axes[5]:
        ax.set_xticks(np.arange(0, seconds + 1e-9, 1.0))
        ax.set_xlabel("s (grid: 40 ms x 0.1 mV)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _png(fig)


def histograms(frame, columns: list[str]) -> bytes:
    """One histogram per measurement column (NaNs left out, count shown)."""
    plt = _plt()
    n = len(columns)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, columns):
        values = frame[name].drop_nulls().drop_nans().to_numpy()
        ax.hist(values, bins=40, color="#4472c4")
        ax.set_title(f"{name} (n={values.size})", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)

