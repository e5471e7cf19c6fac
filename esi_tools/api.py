"""The Python API: load a model and embed or classify ECG arrays, measure arrays, open artifacts.

Everything here calls the code the commands call: `Model.embed_ecg` prepares arrays as `esi ingest` stores
records and embeds them through `esi_tools.embed.encoder.encode` (as `esi embed` does), `Model.zero_shot`
builds class embeddings with `esi probe`'s `text_embeddings`, and `measure` is `esi features`' per-record
path. torch and transformers are imported on first use, never by `import esi_tools`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from .artifacts import open_artifact
from .errors import ArtifactError, InputError
from .hub import ModelSource, read_model_config, resolve_model

BATCH = 64  # ECGs or texts per forward pass: ~0.2 GB of activations for atto at 10 s x 100 Hz

__all__ = ["Model", "load_model", "measure", "open_artifact"]


def load_model(path_or_hub_id: str | Path, *, revision: str | None = None) -> Model:
    """A trained ESI model from a folder (`esi pretrain`, `esi export`, `esi import-release` output) or a
    Hugging Face hub id `org/name` (downloaded once into the hub cache; HF_HUB_OFFLINE=1 reads the cache only).
    A local folder always wins over a hub id. Weights load lazily on first use, on the CPU."""
    return Model(source=resolve_model(path_or_hub_id, revision=revision))


class Model:
    """One ESI model folder: ECG and text embeddings in one space, and zero-shot class probabilities.

    ECG input: one record (12, L) or a batch (N, 12, L) at any rate `fs`, in `units` "mV" or "uV", leads in
    the standard order I, II, III, aVR, aVL, aVF, V1-V6 unless `leads` names them (absent leads are zeros).
    """

    def __init__(self, *, source: ModelSource):
        self.source = source
        from .embed.arrays import sampling_rate

        self.path = source.path
        if not (self.path / "config.json").is_file():
            raise InputError(f"{self.path}: not an ESI model directory (no config.json)")
        self.config = read_model_config(self.path)
        try:  # the rate the model was trained at; inputs are resampled to it
            self.fs = sampling_rate(self.config.get("fs", 100.0), "the model's fs")
        except InputError as exc:
            raise ArtifactError(f"{self.path / 'config.json'}: {exc}") from None

    def __repr__(self) -> str:
        where = self.source.hub_id or str(self.path)
        return f"<esi_tools.Model {where} variant={self.config.get('variant', 'esi')} fs={self.fs:g} Hz>"

    @cached_property
    def esi(self):
        """The whole model (ECG encoder, text tower, logit scale), loaded on first text or zero-shot use."""
        from .model import load_esi

        return load_esi(self.path)

    @property
    def encoder(self):
        """The ECG encoder: the whole model's when that is loaded, else the ECG side alone (no text tower built)."""
        if "esi" in self.__dict__:
            return self.esi.ecg
        if "_encoder" not in self.__dict__:
            from .model import load_ecg_encoder

            self._encoder = load_ecg_encoder(self.path)
        return self._encoder

    def embed_ecg(self, x, fs: float, *, units: str = "mV", leads=None, pooling: str = "embedding") -> np.ndarray:
        """(D,) for one ECG, (N, D) for a batch. `pooling`: "embedding" (L2-normalised, the space of
        `embed_text`) or "stages" (every encoder stage mean-pooled: the readout `esi embed` uses by default)."""
        from .embed.arrays import model_millivolts, sampling_rate
        from .embed.encoder import POOLINGS, encode

        if pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        arr = x if isinstance(x, np.ndarray) else np.asarray(x)
        single = arr.ndim == 2
        batch = arr[None] if single else arr
        if batch.ndim != 3 or len(batch) == 0:
            raise InputError(f"expected an ECG (leads, samples) or a batch (records, leads, samples), got shape {arr.shape}")
        sampling_rate(fs)  # before the model loads: a bad rate is the caller's error, not the model's
        encoder = self.encoder
        z = []
        for start in range(0, len(batch), BATCH):  # converted batch by batch: memory stays flat for big memmaps
            part = batch[start : start + BATCH]
            mv = model_millivolts(part, fs, target_fs=self.fs, units=units, leads=leads)
            out = encode(encoder, mv, pooling=pooling)
            out[~np.isfinite(part).any(axis=(-2, -1))] = np.nan  # no sample at all (all NaN/inf): no embedding
            z.append(out)
        z = np.concatenate(z)
        return z[0] if single else z

    def embed_text(self, texts: str | list[str]) -> np.ndarray:
        """(D,) for one string, (N, D) for a list: L2-normalised, in the space of `embed_ecg`."""
        import torch

        single = isinstance(texts, str)
        items = [texts] if single else [str(t) for t in texts]
        if not items:
            raise InputError("embed_text needs at least one text")
        with torch.inference_mode():
            z = torch.cat([self.esi.encode_text(items[s : s + BATCH]) for s in range(0, len(items), BATCH)])
        z = z.float().numpy()
        return z[0] if single else z

    def zero_shot(self, x, fs: float, classes: dict[str, str | list[str]], *, units: str = "mV", leads=None) -> np.ndarray:
        """Class probabilities: (C,) for one ECG, (N, C) for a batch, columns in the order of `classes`.

        `classes` maps a name to its prompt, or to several prompts whose embeddings are averaged (as `esi probe
        --zero-shot` does for grouped classes). Probabilities are the softmax over classes of the cosine
        similarities times the model's learnt logit scale (clamped at 100 as our training does; an imported
        release model's as the release computes it)."""
        import torch

        from .losses import logit_scale_value
        from .probe.zeroshot import ClassPrompt, text_embeddings

        if not classes:
            raise InputError("zero_shot needs at least one class")
        prompts = {name: ClassPrompt([p] if isinstance(p, str) else [str(t) for t in p], "given") for name, p in classes.items()}
        if any(not p.texts for p in prompts.values()):
            raise InputError("every class needs at least one prompt")
        names = list(prompts)
        model = self.esi  # load the whole model first, so embed_ecg reuses its ECG encoder
        z = self.embed_ecg(x, fs, units=units, leads=leads, pooling="embedding")
        with torch.inference_mode():
            text = text_embeddings(model, prompts, names)
            ours = self.config.get("variant", "esi") == "esi"  # our training clamps the scale; the release's does not
            scale = logit_scale_value(model.log_scale) if ours else model.log_scale.exp()
            logits = torch.from_numpy(np.atleast_2d(z)) @ text.T * scale
            probs = torch.softmax(logits, dim=-1).float().numpy()
        return probs[0] if z.ndim == 1 else probs


def measure(x, fs: float, *, leads=None, units: str = "mV", ids=None, valid=None, sex=None, chunk: int = 32):
    """The measurements `esi features` makes, for arrays in memory: (features, beats, rejects) polars DataFrames.

    x: (leads, samples) for one record or (records, leads, samples), in `units` "mV" or "uV"; `leads` names
    the rows (default the 12 standard leads in order); ids: one per record; valid: samples holding signal per
    record; sex: "M"/"F"/None per record; chunk: records measured at once. Gaps (NaN, inf) follow `esi
    ingest`'s rule: up to 5 % of a lead become its mean (flag `nan_filled`), a lead with more is not measured
    (flag `nan_lead_dropped`). A record that cannot be measured is a rejects row, never an error.
    """
    from .embed.arrays import UNITS, sampling_rate
    from .features.records import measure_arrays
    from .ingest.records import MAX_NAN_FRACTION
    from .signal.storage import fill_missing

    if units not in UNITS:
        raise InputError(f"units must be 'uV' or 'mV', not {units!r}")
    fs = sampling_rate(fs)
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise InputError(f"chunk must be a whole number of records >= 1, not {chunk!r}")
    arr = np.array(x, dtype=np.float32)  # a copy: gaps are filled in it
    if arr.ndim not in (2, 3) or arr.shape[-1] == 0:
        raise InputError(f"expected (leads, samples) or (records, leads, samples), got shape {arr.shape}")
    n = 1 if arr.ndim == 2 else arr.shape[0]
    for name, given in (("ids", ids), ("valid", valid), ("sex", None if isinstance(sex, str) else sex)):
        if given is not None and np.ndim(given) != 1 and not (n == 1 and np.ndim(given) == 0):
            raise InputError(f"{name} must be a sequence of one value per record")
        if given is not None and np.size(given) != n:
            raise InputError(f"{name} has {np.size(given)} values for {n} records")
    if units != "mV":
        arr *= np.float32(UNITS[units] / UNITS["mV"])
    lengths = np.full(n, arr.shape[-1]) if valid is None else np.clip(np.asarray(valid, int).reshape(n), 1, arr.shape[-1])
    flags = _fill_gaps(arr.reshape(n, *arr.shape[-2:]), leads, lengths, MAX_NAN_FRACTION, fill_missing)
    features, beats, rejects = measure_arrays(arr, fs, leads=leads, ids=ids, valid=valid, sex=sex, chunk=int(chunk))
    if any(flags):
        import polars as pl

        features = features.with_columns(pl.Series("quality_flags", [
            list(old or []) + extra for old, extra in zip(features["quality_flags"].to_list(), flags, strict=True)
        ], dtype=pl.List(pl.String)))
    return features, beats, rejects


def _fill_gaps(arr: np.ndarray, leads, lengths: np.ndarray, max_fraction: float, fill_missing) -> list[list[str]]:
    """In place on (N, leads, L): each lead's gaps become its mean, or the whole lead zeros (not measured) when
    more than `max_fraction` of its first `lengths[r]` samples (the valid ones) is missing; each record's flags."""
    missing = ~np.isfinite(arr)
    fractions = np.stack([missing[r, :, : lengths[r]].mean(axis=-1) for r in range(arr.shape[0])])
    from .signal.leads import STANDARD_LEADS

    names = list(STANDARD_LEADS) if leads is None else [str(n) for n in leads]
    flags: list[list[str]] = []
    for r in range(arr.shape[0]):
        found = []
        for lead in np.flatnonzero(fractions[r]):
            name = names[lead] if lead < len(names) else str(lead)
            if fractions[r, lead] > max_fraction:
                missing[r, lead] = True  # the whole lead: zeros, read as absent
                found.append(f"nan_lead_dropped: {name} {fractions[r, lead]:.1%}")
            else:
                found.append(f"nan_filled: {name} {fractions[r, lead]:.1%}")
        flags.append(found)
    fill_missing(arr, missing)
    return flags
