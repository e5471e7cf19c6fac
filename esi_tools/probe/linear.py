"""Linear probe: standardised embeddings, one-vs-rest logistic regression, C chosen on validation log loss.

One C is shared by all classes and picked by the mean validation log loss over classes: a per-class choice
on a validation fold of a few hundred records would chase noise for rare classes. The model is fitted on the
training split only; validation serves model selection and thresholds, the test split nothing but scoring.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

# Inverse regularisation strengths tried: 1e-4 (almost the class prior) to 1e2 (almost unregularised),
# half a decade apart; the 2026 "random encoders" study showed a coarse grid misses the optimum by a lot.
C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 13))
MAX_ITER = 1000  # lbfgs converges well within this on standardised inputs of a few hundred dims
PATIENCE = 2  # stop the C sweep after validation loss rose at this many consecutive grid points


@dataclass
class LinearResult:
    scores_val: np.ndarray  # (n_val, C) probabilities
    scores_test: np.ndarray  # (n_test, C)
    c: float  # the chosen inverse regularisation
    val_log_loss: dict[float, float]  # C -> mean validation log loss


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """z-score every array with the training rows' mean and std (constant columns keep std 1)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return [((a - mean) / std).astype(np.float64) for a in (train, *others)]


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _fit_predict(x_train, y_train, c: float, *xs, models: dict | None = None) -> list[np.ndarray]:
    """One logistic regression per class; a class with one label value in training predicts its prior.

    `models` (class -> fitted model) carries fits across the C sweep: each starts from the previous C's
    solution (warm start), which cuts lbfgs iterations several-fold on collinear embeddings.
    """
    from sklearn.linear_model import LogisticRegression

    models = {} if models is None else models
    outs = [np.zeros((x.shape[0], y_train.shape[1])) for x in xs]
    for k in range(y_train.shape[1]):
        target = y_train[:, k]
        if target.min() == target.max():
            for o in outs:
                o[:, k] = float(target.mean())
            continue
        # newton-cholesky: ~5 Newton steps whatever the conditioning (random-init stage means are highly
        # collinear and took lbfgs hundreds of iterations); lbfgs where features outnumber samples
        solver = "newton-cholesky" if x_train.shape[0] > 2 * x_train.shape[1] else "lbfgs"
        model = models.setdefault(k, LogisticRegression(max_iter=MAX_ITER, warm_start=True, solver=solver))
        model.set_params(C=c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at the weakest regularisation is expected
            model.fit(x_train, target)
        for x, o in zip(xs, outs, strict=True):
            o[:, k] = model.predict_proba(x)[:, 1]
    return outs


def linear_probe(x_train, y_train, x_val, y_val, x_test, *, c_grid=C_GRID) -> LinearResult:
    x_train, x_val, x_test = standardise(x_train, x_val, x_test)
    y_train, y_val = y_train.astype(float), y_val.astype(float)
    losses, best, worse, models, best_out = {}, None, 0, {}, None
    for c in sorted(c_grid):  # strong -> weak regularisation: cheap fits first, warm starts after
        p_val, p_test = _fit_predict(x_train, y_train, c, x_val, x_test, models=models)
        losses[c] = float(np.mean([_log_loss(y_val[:, k], p_val[:, k]) for k in range(y_val.shape[1])]))
        if best is None or losses[c] < losses[best]:
            best, worse, best_out = c, 0, (p_val, p_test)
        else:
            worse += 1
            if worse >= PATIENCE:  # validation loss is unimodal in C in practice; weaker fits only overfit more
                break
    return LinearResult(best_out[0], best_out[1], best, losses)
