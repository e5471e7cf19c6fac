"""Human-readable outputs of identification: a Markdown table and the cumulative match curve PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def results_markdown(results) -> str:
    lines = [
        "| embedding | gallery | probes | rank-1 [95% CI] | rank-5 [95% CI] | EER [95% CI] | verification AUC | chance rank-1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results.iter_rows(named=True):
        lines.append(
            f"| {r['embedding']} | {r['gallery']} | {r['probes']} | {r['rank1']:.3f} [{r['rank1_ci_low']:.3f}, "
            f"{r['rank1_ci_high']:.3f}] | {r['rank5']:.3f} [{r['rank5_ci_low']:.3f}, {r['rank5_ci_high']:.3f}] | "
            f"{r['eer']:.3f} [{r['eer_ci_low']:.3f}, {r['eer_ci_high']:.3f}] | {r['verification_auc']:.3f} | "
            f"{r['chance_rank1']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def cmc_figure(curves: dict[str, np.ndarray], chance: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", ms=3, label=name)
    n = max(len(c) for c in curves.values())
    ax.plot(np.arange(1, n + 1), np.minimum(1, chance * np.arange(1, n + 1)), ls=":", color="grey", label="chance")
    ax.set(xlabel="rank", ylabel="identification rate", title="cumulative match curve", ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
