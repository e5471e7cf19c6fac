"""Human-readable outputs of a probe: Markdown tables (macro and per-class AUROC) and a macro-average ROC-curve PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def results_markdown(results) -> str:
    """One row per (method, embedding, fraction): macro AUROC and macro F1 with their 95 % CIs."""
    lines = [
        "| method | embedding | fraction | n_train | classes | macro AUROC [95% CI] | macro F1 [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results.iter_rows(named=True):
        lines.append(
            f"| {r['method']} | {r['embedding']} | {r['fraction']:g} | {r['n_train']} | {r['n_classes']} | "
            f"{r['macro_auroc']:.3f} [{r['auroc_ci_low']:.3f}, {r['auroc_ci_high']:.3f}] | "
            f"{r['macro_f1']:.3f} [{r['f1_ci_low']:.3f}, {r['f1_ci_high']:.3f}] |"
        )
    return "\n".join(lines) + "\n"


def per_class_markdown(class_rows: list[dict]) -> str:
    """Per-class test AUROC: one row per class, one column per (method, embedding) at its largest fraction."""
    largest: dict[tuple, float] = {}
    for r in class_rows:
        key = (r["method"], r["embedding"])
        largest[key] = max(largest.get(key, 0.0), r["fraction"])
    columns = sorted(largest)
    cell = {(r["class"], r["method"], r["embedding"]): r["auroc"] for r in class_rows if r["fraction"] == largest[(r["method"], r["embedding"])]}
    positives = {r["class"]: r["n_test_pos"] for r in class_rows}
    lines = ["Per-class test AUROC (largest training fraction of each):", "",
             "| class | test positives | " + " | ".join(f"{m} {e}" for m, e in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for c in dict.fromkeys(r["class"] for r in class_rows):
        values = [cell.get((c, m, e)) for m, e in columns]
        lines.append(f"| {c} | {positives[c]} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def macro_roc(y: np.ndarray, scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean over evaluable classes of each class's TPR interpolated at the false-positive rates in grid."""
    from sklearn.metrics import roc_curve

    tprs = []
    for c in range(y.shape[1]):
        if 0 < y[:, c].sum() < len(y):
            fpr, tpr, _ = roc_curve(y[:, c], scores[:, c])
            tprs.append(np.interp(grid, fpr, tpr))
    return np.mean(tprs, axis=0) if tprs else np.full_like(grid, np.nan)


def roc_figure(curves, task: str, path: Path) -> None:
    """Macro-average ROC of every evaluated representation at its largest training fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    largest: dict[tuple, tuple] = {}
    for item in curves:
        o = item[0]
        key = (o.method, o.embedding)
        if key not in largest or o.fraction > largest[key][0].fraction:
            largest[key] = item
    grid = np.linspace(0, 1, 201)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for (method, name), (o, y, scores, auc, lo, hi) in sorted(largest.items()):
        frac = "" if method == "zero-shot" else f", {o.fraction:g} of train"
        ax.plot(grid, macro_roc(y, scores, grid), label=f"{method} {name}{frac}: {auc:.3f} [{lo:.3f}, {hi:.3f}]")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate (macro average over classes)",
           title=f"{task}: macro-average ROC on the test split", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
