"""Fine-tuning: a checkpoint's ECG encoder + a linear head trained end to end on the training rows.

With `from_scratch` the same architecture starts from random weights instead: what pretraining must beat.

The head reads the backbone's last stage mean-pooled over time (the contrastive projection is dropped: it
was shaped for text matching). Early stopping keeps the epoch with the best validation macro AUROC; the test
rows are scored once, with that epoch's weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..console import log
from . import metrics


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 20  # upper bound; on a few thousand ECGs the best validation epoch usually comes before 10
    patience: int = 3  # epochs without a validation gain before stopping
    batch_size: int = 32  # the CPU speed table's batch: ~0.7 s per atto step at 10 s x 100 Hz
    lr_encoder: float = 1e-4  # small: keep what pretraining learnt
    lr_head: float = 1e-3  # the new head starts from scratch
    weight_decay: float = 0.05  # ConvNeXt-V2 fine-tuning default
    seed: int = 0  # head init and batch order
    from_scratch: bool = False  # same architecture, random weights: the supervised baseline for a pretrained encoder


@dataclass
class FinetuneResult:
    scores_val: np.ndarray
    scores_test: np.ndarray
    best_epoch: int
    val_auroc: list[float]


def _scores(model, dataset, indices: np.ndarray, batch: int) -> np.ndarray:
    import torch

    from ..model.preprocess import standardise

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(indices), batch):
            x = torch.from_numpy(standardise(dataset.millivolts(indices[start : start + batch])))
            out.append(torch.sigmoid(model(x)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def finetune(model_dir, dataset, rows: np.ndarray, y: np.ndarray, train, val, test, config: FinetuneConfig) -> FinetuneResult:
    """rows: dataset indices of the task rows; train/val/test: positions into rows and y."""
    import torch
    from torch import nn

    from ..model import load_ecg_encoder
    from ..model.preprocess import standardise

    torch.manual_seed(config.seed)
    encoder = load_ecg_encoder(model_dir, weights=not config.from_scratch)  # fresh weights are drawn under the seed above
    backbone = encoder.backbone

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.head = nn.Linear(backbone.norm.normalized_shape[0], y.shape[1])

        def forward(self, x):
            return self.head(self.backbone(x).mean(dim=1))

    model = Classifier()
    optimiser = torch.optim.AdamW(
        [{"params": model.backbone.parameters(), "lr": config.lr_encoder}, {"params": model.head.parameters(), "lr": config.lr_head}],
        weight_decay=config.weight_decay,
    )
    positives = y[train].sum(axis=0)
    # balance rare classes a little: pos_weight = sqrt(neg/pos), capped, so a 2 % class is not ignored
    pos_weight = torch.tensor(np.clip(np.sqrt((len(train) - positives) / np.maximum(positives, 1)), 1, 10), dtype=torch.float32)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    rng = np.random.default_rng(config.seed)
    best, best_state, history, waited = -1.0, None, [], 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = rng.permutation(train)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            x = torch.from_numpy(standardise(dataset.millivolts(rows[batch])))
            loss = loss_fn(model(x), torch.from_numpy(y[batch].astype(np.float32)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        auc = float(np.nan_to_num(metrics.macro_auroc(y[val], _scores(model, dataset, rows[val], config.batch_size * 2)), nan=0.0))
        history.append(auc)
        log(f"fine-tune epoch {epoch}: validation macro AUROC {auc:.3f}")
        if auc > best:
            best, best_state, waited = auc, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    model.load_state_dict(best_state)
    scores_val = _scores(model, dataset, rows[val], config.batch_size * 2)
    scores_test = _scores(model, dataset, rows[test], config.batch_size * 2)
    return FinetuneResult(scores_val, scores_test, 1 + int(np.argmax(history)), history)
