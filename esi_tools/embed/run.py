"""`esi embed`: one embeddings artifact from a dataset (encoder or signal statistics) or a features artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..artifacts import Artifact, ArtifactWriter, open_artifact
from ..console import log, progress, warn
from ..dataset import Dataset, unique_ids
from ..errors import InputError
from .artifact import write_embeddings


@dataclass(frozen=True)
class EmbedConfig:
    checkpoint: str | None = None  # trained model dir (`esi pretrain`/`esi export` output) or a hub id org/name
    random_init: str | None = None  # encoder size for the untrained baseline, e.g. "atto"
    signal_stats: bool = False  # the 148-d cheap handcrafted statistics baseline
    pooling: str = "stages"  # stage outputs mean-pooled: the same readout for trained and random encoders
    seed: int = 0  # random-init weights: a fixed seed makes the baseline reproducible
    batch_size: int = 64  # ~0.2 GB of activations for atto at 10 s x 100 Hz; larger gains little on CPU

    @property
    def source(self) -> str:
        return "esi" if self.checkpoint else "random-init" if self.random_init else "signal-stats"


def fit_rows(records) -> np.ndarray:
    """Rows whose statistics may shape a baseline embedding: the training split if there is one."""
    split = records["split"].to_numpy() if "split" in records.columns else None
    train = np.flatnonzero(split == "train") if split is not None else np.array([], dtype=int)
    return train if train.size else np.arange(records.height)


def _demographics(records) -> dict[str, np.ndarray]:
    age = records["age"].cast(float).fill_null(float("nan")).to_numpy()
    sex = np.array([{"F": 1.0, "M": 0.0}.get(s, np.nan) for s in records["sex"].to_list()])
    return {"age_years": age, "sex_female": sex}


def signal_stats_matrix(dataset: Dataset) -> tuple[np.ndarray, list[str]]:
    from .stats import BANDS_HZ, PERCENTILES, signal_stats
    from .tabular import tabular_embedding

    records = dataset.records
    rows = []
    with progress("signal statistics", len(dataset)) as bar:
        for i, (age, sex) in enumerate(zip(records["age"].to_list(), records["sex"].to_list(), strict=True)):
            rows.append(signal_stats(dataset.millivolts(i), dataset.fs, age, sex))
            bar.advance()
    raw = np.stack(rows)
    stats = ["mean", "std", "min", "max", *[f"p{p}" for p in PERCENTILES], *[f"power_{lo:g}_{hi:g}hz" for lo, hi in BANDS_HZ]]
    names = [f"{lead}_{s}" for lead in dataset.leads for s in stats] + ["hr_bpm", "rr_sd_ms", "age_years", "sex_female"]
    return tabular_embedding(dict(zip(names, raw.T, strict=True)), fit_rows(records))


def features_dataset(features: Artifact) -> Dataset:
    """The dataset a features artifact was computed from (its manifest's dataset input)."""
    for item in features.manifest["inputs"]:
        if item["kind"] == "dataset":
            return Dataset.open(item["path"])
    raise InputError(f"{features.path}: features artifact names no dataset input")


def features_matrix(features: Artifact, dataset: Dataset) -> tuple[np.ndarray, list[str]]:
    """Numeric measurements + finding flags + usable flag + age and sex, aligned to the dataset's records."""
    import polars as pl

    from .tabular import tabular_embedding

    table = unique_ids(features.table("features.parquet"), f"{features.path}/features.parquet")
    records = dataset.records
    ids = records["record_id"].cast(str).to_list()
    table = table.with_columns(pl.col("record_id").cast(str))
    foreign = set(table["record_id"].to_list()) - set(ids)
    if foreign:
        raise InputError(f"{features.path}: {len(foreign)} features rows are not records of {dataset.path}")
    if table.height < len(ids):  # e.g. `esi features --limit`: missing rows become missing measurements
        warn(f"{len(ids) - table.height} records have no features row: embedded as missing measurements")
    table = pl.DataFrame({"record_id": ids}).join(table, on="record_id", how="left", maintain_order="left")
    numeric = [c for c, t in table.schema.items() if c != "record_id" and (t.is_numeric() or t == pl.Boolean)]
    columns = {c: table[c].cast(float).fill_null(float("nan")).to_numpy() for c in numeric}
    if "findings" in table.columns:
        found = [set(f or []) for f in table["findings"].to_list()]
        for name in sorted(set().union(*found)):
            columns[f"finding_{name}"] = np.array([name in f for f in found], dtype=float)
    columns.update(_demographics(records))
    return tabular_embedding(columns, fit_rows(records))


def check_model_fs(model_dir, dataset: Dataset) -> None:
    """A model only understands ECGs at the sampling rate it was trained at (its config.json `fs`)."""
    fs = model_fs(model_dir)
    if fs is not None and abs(fs - dataset.fs) > 1e-6:
        raise InputError(f"{model_dir} was trained at {fs:g} Hz but {dataset.path} is at {dataset.fs:g} Hz: "
                         f"ingest the data with --fs {fs:g}")


def model_fs(model_dir) -> float | None:
    """The sampling rate in a model folder's config.json (None when it does not say)."""
    from ..hub import read_model_config
    from .arrays import sampling_rate

    if not (Path(model_dir) / "config.json").is_file():
        raise InputError(f"{model_dir}: not an ESI model directory (no config.json)")
    fs = read_model_config(Path(model_dir)).get("fs")
    return None if fs is None else sampling_rate(fs, f"{model_dir}/config.json fs")


def encoder_matrix(config: EmbedConfig, dataset: Dataset, model_dir: Path | None = None) -> np.ndarray:
    from ..model import create_ecg_encoder, load_ecg_encoder
    from .encoder import encode_dataset

    if model_dir is not None:
        check_model_fs(model_dir, dataset)
        encoder = load_ecg_encoder(model_dir)
    else:
        encoder = create_ecg_encoder(config.random_init, seed=config.seed)
    matrix = encode_dataset(encoder, dataset, pooling=config.pooling, batch_size=config.batch_size)
    bad = int((~np.isfinite(matrix).all(axis=1)).sum())
    if bad:  # stored records are finite: NaN can only come from the model (NaN weights); never write it
        raise InputError(f"{bad:,} of {len(matrix):,} records got non-finite embeddings (NaN/inf) from "
                         f"{model_dir or config.random_init}: its weights are damaged; nothing written")
    return matrix


def embed(config: EmbedConfig, source: str | Path, out: str | Path, *, force: bool = False) -> Path:
    """Write the embeddings artifact of `source` (a dataset, or a features artifact) to `out`."""
    if sum([bool(config.checkpoint), bool(config.random_init), config.signal_stats]) > 1:
        raise InputError("give at most one of --checkpoint, --random-init, --signal-stats")
    art = open_artifact(source, ("dataset", "features"))
    parameters = {k: v for k, v in asdict(config).items() if v is not None and v is not False}
    if art.kind == "features":
        if config.checkpoint or config.random_init or config.signal_stats:
            raise InputError("a features artifact is embedded as is: drop --checkpoint/--random-init/--signal-stats")
        dataset = features_dataset(art)
        matrix, names = features_matrix(art, dataset)
        parameters = {"source": "features"}
        inputs = {"features": art, "dataset": dataset.artifact}
    else:
        dataset = Dataset(art)
        if not (config.checkpoint or config.random_init or config.signal_stats):
            raise InputError("embedding a dataset needs --checkpoint MODEL_DIR, --random-init SIZE or --signal-stats")
        inputs = {"dataset": art}
        parameters["source"] = config.source
        if config.signal_stats:
            matrix, names = signal_stats_matrix(dataset)
            parameters.pop("pooling", None), parameters.pop("batch_size", None), parameters.pop("seed", None)
        elif config.checkpoint:
            from ..hub import resolve_model

            model = resolve_model(config.checkpoint)  # a local folder, or a hub id through the hub's cache
            matrix, names = encoder_matrix(config, dataset, model.path), None
            parameters.update(model.describe())
            parameters.pop("seed", None)
        else:
            matrix, names = encoder_matrix(config, dataset), None
            parameters["size"] = config.random_init
    source_name = parameters["source"]
    with ArtifactWriter(out, "embeddings", parameters=parameters, inputs=inputs, force=force) as writer:
        write_embeddings(writer, dataset.records["record_id"].cast(str).to_list(), matrix, source_name)
        if names is not None:
            writer.write_json("columns.json", names)
        path = writer.commit()
    log(f"embedded {matrix.shape[0]} records -> {matrix.shape[1]}-d {source_name} embeddings at {path}")
    return path
