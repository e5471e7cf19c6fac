"""Read side of a dataset artifact: the records table and the (N, 12, L) int16 microvolt waveforms."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .artifacts import Artifact, open_artifact
from .errors import ArtifactError
from .signal.leads import STANDARD_LEADS

UV_TO_MV = 1e-3


def unique_ids(table, where: str, column: str = "record_id"):
    """`table` (polars DataFrame) unchanged if its ids are unique; else ArtifactError naming the repeated ids.

    Every join by record id goes through this: a repeated id would give one ECG another record's caption,
    features or label.
    """
    import polars as pl

    if column not in table.columns:
        raise ArtifactError(f"{where}: no {column} column")
    repeated = table.group_by(column).len().filter(pl.col("len") > 1)
    if repeated.height:
        examples = ", ".join(repr(v) for v in repeated[column].head(3).to_list())
        raise ArtifactError(f"{where}: {repeated.height} {column}(s) occur more than once (e.g. {examples}); "
                            f"ids must be unique to join tables")
    return table


@dataclass
class Dataset:
    artifact: Artifact

    @classmethod
    def open(cls, path: str | Path) -> Dataset:
        return cls(open_artifact(path, "dataset"))

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def fs(self) -> float:
        return float(self.artifact.parameters["fs"])

    @property
    def leads(self) -> tuple[str, ...]:
        return STANDARD_LEADS

    @cached_property
    def records(self):
        """polars DataFrame, row i describes waveforms[i]; record ids checked unique."""
        return unique_ids(self.artifact.table("records.parquet"), f"{self.path}/records.parquet")

    @cached_property
    def waveforms(self) -> np.ndarray:
        """int16 microvolts, memory-mapped: (N, 12, L)."""
        return self.artifact.array("waveforms.npy")

    def __len__(self) -> int:
        return self.waveforms.shape[0]

    def millivolts(self, index) -> np.ndarray:
        """float32 mV for one index, a slice or an index array."""
        return self.waveforms[index].astype(np.float32) * UV_TO_MV

    @cached_property
    def lead_mask(self) -> np.ndarray:
        """bool (N, 12): which standard leads the record really has (others are zero-filled)."""
        return np.array(self.records["lead_mask"].to_list(), dtype=bool).reshape(len(self), len(STANDARD_LEADS))
