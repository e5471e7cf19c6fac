"""The `embeddings` artifact: embeddings.npy float32 (N, D) + ids.parquet (record_id), row i <-> record i."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import Artifact, open_artifact
from ..dataset import unique_ids
from ..errors import InputError

SOURCES = ("esi", "random-init", "features", "signal-stats")


@dataclass
class Embeddings:
    artifact: Artifact
    record_ids: list[str]
    matrix: np.ndarray  # float32 (N, D), memory-mapped

    @classmethod
    def open(cls, path: str | Path) -> Embeddings:
        art = open_artifact(path, "embeddings")
        ids = unique_ids(art.table("ids.parquet"), f"{path}/ids.parquet")["record_id"].cast(str).to_list()
        matrix = art.array("embeddings.npy")
        if matrix.shape[0] != len(ids):
            raise InputError(f"{path}: {matrix.shape[0]} embedding rows but {len(ids)} record ids")
        return cls(art, ids, matrix)

    @property
    def name(self) -> str:
        """Label used in result tables: the source, plus the encoder size or checkpoint name if any."""
        p = self.artifact.parameters
        extra = p.get("size") or (Path(p["checkpoint"]).name if p.get("checkpoint") else None)
        return f"{self.artifact.summary['source']}" + (f":{extra}" if extra else "")

    def aligned(self, record_ids: list[str]) -> np.ndarray:
        """Rows in the order of `record_ids` (a dataset's records); refuse any mismatch of ids."""
        position = {r: i for i, r in enumerate(self.record_ids)}
        missing = [r for r in record_ids if r not in position]
        extra = len(set(self.record_ids) - set(record_ids))
        if missing or extra:
            raise InputError(
                f"{self.artifact.path}: embeddings do not match the dataset's records ({len(missing)} dataset "
                f"records without an embedding, e.g. {missing[:3]}; {extra} embeddings of records not in the "
                f"dataset): embed this dataset with `esi embed`"
            )
        order = np.fromiter((position[r] for r in record_ids), dtype=np.int64, count=len(record_ids))
        if np.array_equal(order, np.arange(len(order))):
            return np.asarray(self.matrix, dtype=np.float32)
        return np.asarray(self.matrix[order], dtype=np.float32)


def write_embeddings(writer, record_ids: list[str], matrix: np.ndarray, source: str) -> None:
    """Fill an open ArtifactWriter of kind 'embeddings'."""
    import polars as pl

    if source not in SOURCES:
        raise ValueError(source)
    matrix = np.asarray(matrix, dtype=np.float32)
    writer.write_array("embeddings.npy", matrix)
    writer.write_table("ids.parquet", pl.DataFrame({"record_id": [str(r) for r in record_ids]}))
    writer.summary.update(source=source, dim=int(matrix.shape[1]), records=int(matrix.shape[0]))
