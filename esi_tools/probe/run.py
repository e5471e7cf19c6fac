"""`esi probe`: every given representation evaluated on one task and split, side by side, with CIs.

For each method (linear probe per embeddings artifact, optionally fine-tuning and zero-shot of a checkpoint)
and each training fraction: fit on the training rows, choose C / early-stop / thresholds on validation, score
the test rows once. k-fold pools the out-of-fold test scores. Nothing from the test rows chooses anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactWriter
from ..console import log
from ..dataset import Dataset
from ..embed.artifact import Embeddings
from ..errors import InputError
from . import metrics
from .linear import linear_probe
from .splits import check_disjoint, kfold_splits, strat_fold_split, stratified_fraction
from .tasks import build_task


@dataclass(frozen=True)
class ProbeConfig:
    task: str = "superdiagnostic"  # the PTB-XL benchmark's headline task
    fractions: tuple[float, ...] = (1.0,)  # label-efficiency curve points, e.g. 0.01 0.1 1.0
    split: str = "auto"  # strat_fold for PTB-XL folds, else patient-grouped kfold
    folds: int = 5  # kfold only: 5 folds -> 60/20/20 train/val/test
    seed: int = 0  # fractions, kfold assignment and bootstrap all derive from it
    min_positives: int = 5  # a class needs this many training positives to be fitted and scored
    bootstrap: int = metrics.BOOTSTRAP  # resamples for the 95 % CIs
    finetune: str | None = None  # model dir: also fine-tune its encoder end to end
    finetune_scratch: str | None = None  # model dir: also fine-tune its architecture from random weights (the baseline)
    zero_shot: str | None = None  # model dir: also score classes by ECG-text similarity
    zero_shot_prompts: str = "auto"  # prevalence | ensemble | auto (the better of both on validation)
    finetune_epochs: int = 20  # upper bound; early stopping on validation macro AUROC usually ends sooner
    names: tuple[str, ...] = field(default=())  # labels for the embeddings in the table (default: their source)


@dataclass
class Outcome:
    """Test-set scores of one (method, representation, fraction), pooled over folds."""

    method: str
    embedding: str
    fraction: float
    n_train: int
    rows: list[np.ndarray] = field(default_factory=list)  # task-row positions of test records
    scores: list[np.ndarray] = field(default_factory=list)
    preds: list[np.ndarray] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _splits(config: ProbeConfig, records):
    mode = config.split
    if mode == "auto":
        folds = records["fold"].to_list() if "fold" in records.columns else []
        mode = "strat_fold" if folds and set(f for f in folds if f is not None) >= set(range(1, 11)) else "kfold"
    if mode == "strat_fold":
        splits = [strat_fold_split(records["fold"].to_list())]
    elif mode == "kfold":
        splits = kfold_splits(records["patient_id"].to_list(), config.folds, config.seed)
    else:
        raise InputError(f"unknown split '{config.split}' (auto, strat_fold, kfold)")
    for s in splits:
        check_disjoint(s, records["patient_id"].to_list())
    return mode, splits


def _names(embeddings: list[Embeddings], given: tuple[str, ...]) -> list[str]:
    names = list(given) if given else [e.name for e in embeddings]
    if len(names) != len(embeddings):
        raise InputError(f"{len(names)} --name values for {len(embeddings)} embeddings")
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def probe(config: ProbeConfig, dataset_path, embedding_paths: list, out, *, force: bool = False) -> Path:
    dataset = Dataset.open(dataset_path)
    records = dataset.records
    record_ids = records["record_id"].cast(str).to_list()
    embeddings = [Embeddings.open(p) for p in embedding_paths]
    if not embeddings and not (config.finetune or config.finetune_scratch or config.zero_shot):
        raise InputError("nothing to evaluate: give --embeddings, --finetune, --finetune-scratch or --zero-shot")
    names = _names(embeddings, config.names)
    from .zeroshot import CHOICES

    if config.zero_shot_prompts not in CHOICES:
        raise InputError(f"--zero-shot-prompts must be one of {', '.join(CHOICES)}, not '{config.zero_shot_prompts}'")
    matrices = [e.aligned(record_ids) for e in embeddings]
    for model_dir in filter(None, (config.finetune, config.finetune_scratch, config.zero_shot)):
        from ..embed.run import check_model_fs

        check_model_fs(model_dir, dataset)
    mode, splits = _splits(config, records)
    all_train = np.zeros(records.height, dtype=bool)
    for s in splits:
        all_train[s.train] = True
    statements = dataset.artifact.table("statements.parquet") if dataset.artifact.has("statements.parquet") else None
    task = build_task(records, config.task, statements=statements, train_mask=all_train if mode == "strat_fold" else np.ones(records.height, bool), min_positives=config.min_positives)
    position = np.full(records.height, -1)
    position[task.rows] = np.arange(task.rows.size)
    log(f"task {task.name}: {len(task.classes)} classes on {task.rows.size} records ({len(task.dropped)} classes dropped), split {mode}")

    outcomes: dict[tuple, Outcome] = {}

    def record(method, name, fraction, n_train, test_pos, scores_val, y_val, scores_test, info):
        key = (method, name, fraction)
        o = outcomes.setdefault(key, Outcome(method, name, fraction, 0))
        o.n_train += n_train
        thresholds = metrics.tune_thresholds(y_val, scores_val)
        o.rows.append(test_pos)
        o.scores.append(scores_test)
        o.preds.append(scores_test >= thresholds[None, :])
        o.info.setdefault("val_auroc", []).append(metrics.macro_auroc(y_val, scores_val))
        for k, v in info.items():
            o.info.setdefault(k, []).append(v)

    for split in splits:
        tr, va, te = (position[idx][position[idx] >= 0] for idx in (split.train, split.val, split.test))
        y_tr, y_va = task.y[tr], task.y[va]
        for fraction in config.fractions:
            sub = tr[stratified_fraction(y_tr, fraction, config.seed)]
            for name, matrix in zip(names, matrices, strict=True):
                x = matrix[task.rows]
                res = linear_probe(x[sub], task.y[sub], x[va], y_va, x[te])
                record("linear", name, fraction, sub.size, te, res.scores_val, y_va, res.scores_test, {"C": res.c})
            for model_dir, scratch in ((config.finetune, False), (config.finetune_scratch, True)):
                if not model_dir:
                    continue
                from .finetune import FinetuneConfig, finetune

                res = finetune(model_dir, dataset, task.rows, task.y, sub, va, te,
                               FinetuneConfig(epochs=config.finetune_epochs, seed=config.seed, from_scratch=scratch))
                record("finetune", f"{'scratch' if scratch else 'esi'}:{Path(model_dir).name}", fraction, sub.size, te,
                       res.scores_val, y_va, res.scores_test, {"epochs": res.best_epoch})
        if config.zero_shot:
            from .zeroshot import zero_shot

            zs = zero_shot(config.zero_shot, dataset, task, train=tr, val=va, test=te, strategy=config.zero_shot_prompts)
            record("zero-shot", f"esi:{Path(config.zero_shot).name}", 0.0, 0, te, zs.scores_val, y_va, zs.scores_test,
                   {"strategy": zs.strategy, "strategy_val_auroc": zs.val_auroc, "candidates": zs.candidates})
            prompts = {c: p.describe() for c, p in zs.prompts.items()}

    train_positives = task.y[all_train[task.rows]].sum(axis=0)
    return _write(config, mode, task, dataset, embeddings, names, outcomes, records, out, force,
                  prompts=prompts if config.zero_shot else None, train_positives=train_positives)


def _write(config, mode, task, dataset, embeddings, names, outcomes, records, out, force, *, prompts, train_positives) -> Path:
    import polars as pl

    from .report import per_class_markdown, results_markdown, roc_figure

    ids = np.asarray(records["record_id"].cast(str).to_list(), dtype=object)[task.rows]
    result_rows, class_rows, pred_frames, curves, zero_shot_info = [], [], [], [], []
    for o in outcomes.values():
        rows = np.concatenate(o.rows)
        scores, preds, y = np.concatenate(o.scores), np.concatenate(o.preds), task.y[rows]
        per_class = metrics.per_class_auroc(y, scores)
        auc = metrics.macro_auroc(y, scores)
        lo, hi = metrics.macro_auroc_ci(y, scores, resamples=config.bootstrap, seed=config.seed)
        f1 = metrics.macro_f1(y, preds)
        f1_lo, f1_hi = metrics.macro_f1_ci(y, preds, resamples=config.bootstrap, seed=config.seed)
        result_rows.append({
            "task": task.name, "method": o.method, "embedding": o.embedding, "fraction": o.fraction,
            "n_train": o.n_train // len(o.rows), "n_test": int(rows.size), "n_classes": int(np.isfinite(per_class).sum()),
            "macro_auroc": auc, "auroc_ci_low": lo, "auroc_ci_high": hi,
            "macro_f1": f1, "f1_ci_low": f1_lo, "f1_ci_high": f1_hi,
            "c": float(np.median(o.info["C"])) if "C" in o.info else None,
            "val_macro_auroc": float(np.nanmean(o.info["val_auroc"])) if np.isfinite(o.info["val_auroc"]).any() else None,
        })
        if o.method == "zero-shot":
            zero_shot_info.append({"embedding": o.embedding, "strategy": o.info["strategy"],
                                   "val_macro_auroc": o.info["strategy_val_auroc"], "prompts": o.info["candidates"]})
        for c, name in enumerate(task.classes):
            class_rows.append({"method": o.method, "embedding": o.embedding, "fraction": o.fraction, "class": name,
                               "n_test_pos": int(y[:, c].sum()), "auroc": None if np.isnan(per_class[c]) else float(per_class[c])})
        pred_frames.append(pl.DataFrame({
            "method": o.method, "embedding": o.embedding, "fraction": o.fraction,
            "record_id": np.repeat(ids[rows], len(task.classes)).tolist(),
            "class": np.tile(np.asarray(task.classes, dtype=object), rows.size).tolist(),
            "score": scores.reshape(-1).astype(np.float64), "label": y.reshape(-1), "predicted": preds.reshape(-1),
        }))
        curves.append((o, y, scores, auc, lo, hi))
    results = pl.DataFrame(result_rows).sort(["method", "fraction", "embedding"])
    parameters = {k: v for k, v in asdict(config).items() if v is not None}
    parameters["split_used"] = mode
    inputs = {"dataset": dataset.artifact} | {f"embeddings:{n}": e.artifact for n, e in zip(names, embeddings, strict=True)}
    with ArtifactWriter(out, "probe", parameters=parameters, inputs=inputs, force=force) as writer:
        writer.write_table("results.parquet", results)
        writer.write_table("per_class.parquet", pl.DataFrame(class_rows))
        writer.write_table("predictions.parquet", pl.concat(pred_frames))
        writer.write_table("classes.parquet", pl.DataFrame({
            "class": task.classes + sorted(task.dropped),
            "kept": [True] * len(task.classes) + [False] * len(task.dropped),
            "n_train_pos": [int(n) for n in train_positives] + [None] * len(task.dropped),
            "reason": [None] * len(task.classes) + [task.dropped[c] for c in sorted(task.dropped)],
        }))
        if prompts is not None:
            writer.write_table("prompts.parquet", pl.DataFrame({"class": list(prompts), "prompt": list(prompts.values())}))
        writer.write_json("metrics.json", {
            "task": task.name, "split": mode, "classes": task.classes, "dropped": task.dropped,
            "results": results.to_dicts(), "per_class": class_rows,
            **({"zero_shot": zero_shot_info} if zero_shot_info else {}),
        })
        (writer.path("results.md")).write_text(results_markdown(results))
        (writer.path("per_class.md")).write_text(per_class_markdown(class_rows))
        roc_figure(curves, task.name, writer.path("roc.png"))
        writer.summary.update(task=task.name, split=mode, classes=len(task.classes), dropped=len(task.dropped),
                              evaluated=results.height, best_macro_auroc=float(results["macro_auroc"].max()))
        path = writer.commit()
    for row in results.iter_rows(named=True):
        log(f"{row['method']:>9} {row['embedding']:<28} frac {row['fraction']:<5} macro AUROC {row['macro_auroc']:.3f} "
            f"[{row['auroc_ci_low']:.3f}, {row['auroc_ci_high']:.3f}]  F1 {row['macro_f1']:.3f}")
    return path
