"""`esi identify`: every embedding searched under one protocol, side by side, with subject-bootstrap CIs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import ArtifactWriter
from ..console import log, warn
from ..dataset import Dataset
from ..embed.artifact import Embeddings
from ..errors import InputError
from ..probe.metrics import BOOTSTRAP, bootstrap_ci
from . import metrics
from .protocol import build_protocol

MAX_RANK = 20  # CMC plotted and stored up to rank 20


@dataclass(frozen=True)
class IdentifyConfig:
    distractors: bool = False  # enrol single-recording patients too: a harder, more realistic search
    normalise: str = "disjoint"  # z-score with single-recording patients' statistics ("none" = raw cosine)
    seed: int = 0  # gallery choice among undated recordings, impostor sampling, bootstrap
    bootstrap: int = BOOTSTRAP  # resamples of subjects for the 95 % CIs
    impostor_pairs: int = metrics.IMPOSTOR_PAIRS
    names: tuple[str, ...] = field(default=())


def _members(labels: np.ndarray, subjects: np.ndarray) -> dict:
    """subject -> positions of `labels` equal to it, ascending, in one pass (a scan per subject is quadratic:
    20,000 subjects x 80,000 probes at 100,000 records)."""
    out: dict = {s: [] for s in subjects}
    for i, s in enumerate(labels):
        if s in out:
            out[s].append(i)
    return {s: np.asarray(rows, dtype=np.int64) for s, rows in out.items()}


def evaluate(x: np.ndarray, protocol, config: IdentifyConfig) -> tuple[dict, np.ndarray]:
    """Metrics of one embedding matrix (rows = dataset records) under the protocol; also the CMC."""
    if config.normalise == "disjoint":
        x = metrics.standardise_with(x, x[protocol.singles])
    gallery_row = {s: i for i, s in enumerate(protocol.gallery_subject[: len(protocol.subject_records)])}
    truth = np.array([gallery_row[s] for s in protocol.probe_subject])
    ranks = metrics.true_match_ranks(x[protocol.probes], x[protocol.gallery], truth)
    genuine, impostor = metrics.verification_pairs(protocol.subject_records, n_impostor=config.impostor_pairs, seed=config.seed)
    g_sim, i_sim = metrics.pair_similarity(x, genuine), metrics.pair_similarity(x, impostor)
    g_subj = np.array([p[2] for p in genuine], dtype=object)
    i_subj = np.array([p[2] for p in impostor], dtype=object)

    from sklearn.metrics import roc_auc_score

    def auc_eer(g, i):
        if len(g) == 0 or len(i) == 0:
            return float("nan"), float("nan")
        return float(roc_auc_score(np.r_[np.ones(len(g)), np.zeros(len(i))], np.r_[g, i])), metrics.equal_error_rate(g, i)

    auc, eer = auc_eer(g_sim, i_sim)
    subjects = np.asarray(sorted(protocol.subject_records), dtype=object)
    probe_members = _members(protocol.probe_subject, subjects)
    g_members = _members(g_subj, subjects)
    i_members = _members(i_subj, subjects)

    def resampled(members, picked):
        return np.concatenate([members[subjects[k]] for k in picked])

    def ci(stat):
        return bootstrap_ci(stat, len(subjects), resamples=config.bootstrap, seed=config.seed)

    r1 = ci(lambda k: float((ranks[resampled(probe_members, k)] <= 1).mean()))
    r5 = ci(lambda k: float((ranks[resampled(probe_members, k)] <= 5).mean()))
    eer_ci = ci(lambda k: auc_eer(g_sim[resampled(g_members, k)], i_sim[resampled(i_members, k)])[1])
    row = {
        "rank1": float((ranks <= 1).mean()), "rank1_ci_low": r1[0], "rank1_ci_high": r1[1],
        "rank5": float((ranks <= 5).mean()), "rank5_ci_low": r5[0], "rank5_ci_high": r5[1],
        "verification_auc": auc, "eer": eer, "eer_ci_low": eer_ci[0], "eer_ci_high": eer_ci[1],
        "genuine_pairs": len(genuine), "impostor_pairs": len(impostor),
    }
    return row, metrics.cmc(ranks, min(MAX_RANK, len(protocol.gallery)))


def identify(config: IdentifyConfig, dataset_path, embedding_paths: list, out, *, force: bool = False) -> Path:
    import polars as pl

    from .report import cmc_figure, results_markdown

    if not embedding_paths:
        raise InputError("give at least one --embeddings artifact")
    if config.normalise not in ("disjoint", "none"):
        raise InputError(f"--normalise must be disjoint or none, not '{config.normalise}'")
    dataset = Dataset.open(dataset_path)
    records = dataset.records
    record_ids = records["record_id"].cast(str).to_list()
    embeddings = [Embeddings.open(p) for p in embedding_paths]
    from ..probe.run import _names

    names = _names(embeddings, config.names)
    protocol = build_protocol(records, seed=config.seed, distractors=config.distractors)
    effective = config
    if config.normalise == "disjoint" and protocol.singles.size < 2:
        warn("fewer than 2 single-recording patients: no disjoint set to standardise with, using raw cosine")
        effective = IdentifyConfig(**{**asdict(config), "normalise": "none"})
    log(f"{len(protocol.subject_records)} subjects, gallery {len(protocol.gallery)}, {len(protocol.probes)} probes"
        f"{' (with distractors)' if config.distractors else ''}")
    rows, curves = [], {}
    for name, emb in zip(names, embeddings, strict=True):
        row, curve = evaluate(emb.aligned(record_ids), protocol, effective)
        rows.append({"embedding": name, "subjects": len(protocol.subject_records), "gallery": len(protocol.gallery),
                     "probes": len(protocol.probes), "chance_rank1": 1 / len(protocol.gallery),
                     "chance_rank5": min(1.0, 5 / len(protocol.gallery)), **row})
        curves[name] = curve
        log(f"{name:<28} rank-1 {row['rank1']:.3f} [{row['rank1_ci_low']:.3f}, {row['rank1_ci_high']:.3f}]  "
            f"rank-5 {row['rank5']:.3f}  EER {row['eer']:.3f}  verification AUC {row['verification_auc']:.3f}")
    results = pl.DataFrame(rows)
    parameters = {**{k: v for k, v in asdict(config).items() if k != "names"}, "normalise_used": effective.normalise}
    inputs = {"dataset": dataset.artifact} | {f"embeddings:{n}": e.artifact for n, e in zip(names, embeddings, strict=True)}
    with ArtifactWriter(out, "identification", parameters=parameters, inputs=inputs, force=force) as writer:
        writer.write_table("results.parquet", results)
        writer.write_table("cmc.parquet", pl.DataFrame([
            {"embedding": n, "rank": r + 1, "accuracy": float(a)} for n, c in curves.items() for r, a in enumerate(c)
        ]))
        writer.write_table("protocol.parquet", pl.DataFrame({
            "record_id": [record_ids[i] for i in protocol.gallery] + [record_ids[i] for i in protocol.probes],
            "role": ["gallery"] * len(protocol.gallery) + ["probe"] * len(protocol.probes),
            "subject": list(protocol.gallery_subject) + list(protocol.probe_subject),
        }))
        writer.write_json("metrics.json", {"protocol": {"subjects": len(protocol.subject_records),
                                                        "gallery": len(protocol.gallery), "probes": len(protocol.probes),
                                                        "distractors": config.distractors,
                                                        "normalise": effective.normalise},
                                           "results": rows})
        writer.path("results.md").write_text(results_markdown(results))
        cmc_figure(curves, 1 / len(protocol.gallery), writer.path("cmc.png"))
        writer.summary.update(subjects=len(protocol.subject_records), gallery=len(protocol.gallery),
                              probes=len(protocol.probes), embeddings=len(names),
                              best_rank1=float(results["rank1"].max()))
        return writer.commit()
