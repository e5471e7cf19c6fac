"""`esi import-release`: the ESI authors' checkpoint (Accelerate `save_model` of their whole model) -> a model artifact.

The checkpoint is read as tensors only (safetensors, or `torch.load(weights_only=True)`: no code is ever
unpickled). Every key is accounted for: it maps to our release variant (`release.py`), or belongs to a
part inference does not use (the 5-class head, attention pooler, caption decoder), or the import stops
with one line naming the missing/unexpected keys or the first shape mismatch.
"""

from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import torch

from ..artifacts import ArtifactWriter, sha256_file
from ..console import log
from ..errors import InputError
from . import bounds
from .factory import CONFIG_FILE, ENCODER_FILE, MODEL_FILE, TEXT_DIR
from .release import RELEASE_SIZES, ReleaseConfig, ReleaseECGEncoder

CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
DIR_FILES = ("model.safetensors", "pytorch_model.bin")  # what Accelerate's save_model writes
STEM = "img_encoder.downsample_layers.0.0.weight"
# our name prefix -> the release's, for the ECG encoder (encoder.safetensors)
ECG_RENAMES = {"backbone.": "img_encoder.", "token_head.": "img_token_head.", "token_norm.weight": "img_attn_pool_norm.gamma",
               "token_norm.bias": "img_attn_pool_norm.beta", "proj.weight": "img_to_latents.to_latents.weight"}
TEXT_RENAMES = {"text.proj.weight": "text_to_latents.to_latents.weight", "log_scale": "temperature"}
# parts of the release model inference never runs: counted in the summary, not imported
UNUSED = ("img_encoder.head.", "img_attn_pool.", "text_cls_norm.", "multimodal_layers.", "to_logits.")
TEXT_PREFIXES = ("pretrained_text_encoder.", "unimodal_layers.")  # one module under two names in the release


# ---------------------------------------------------------------- reading


def checkpoint_file(path: Path) -> Path:
    """The weights file of `path` (a file, or the directory Accelerate's save_model wrote)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        found = [path / name for name in DIR_FILES if (path / name).is_file()]
        if not found:
            raise InputError(f"{path}: holds no {' or '.join(DIR_FILES)} as regular files (sharded checkpoints are not supported)")
        return found[0]
    if not path.is_file():  # a FIFO, a socket, a device: reading it could wait forever
        raise InputError(f"{path}: not a regular file")
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise InputError(f"{path}: not a checkpoint (expected {', '.join(CHECKPOINT_SUFFIXES)})")
    return path


def _is_safetensors(path: Path) -> bool:
    """By content, whatever the name: safetensors starts with an 8-byte header length and a JSON object."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors by name; one line when the file is not a plain checkpoint."""
    if path.suffix == ".safetensors" or _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except Exception as exc:  # safetensors raises its own error types for every kind of damage
            raise InputError(f"{path}: not a safetensors checkpoint ({type(exc).__name__}: {exc})") from None
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the outcome is reported below
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "allowed global" in str(exc):
                raise InputError(f"{path}: holds objects other than tensors; refused (loading it would run pickled code)") from None
            raise InputError(f"{path}: not a PyTorch checkpoint of plain tensors (unreadable without unpickling code)") from None
        except Exception as exc:
            raise InputError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    for wrapper in ("state_dict", "model", "module"):  # training scripts sometimes nest the weights one level down
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict) and not any(torch.is_tensor(v) for v in state.values()):
            state = state[wrapper]
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise InputError(f"{path}: not a checkpoint (expected a mapping of names to tensors)")
    if all(k.startswith("module.") for k in state):  # a DDP-wrapped save
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


# ---------------------------------------------------------------- matching keys


def _rename(name: str, renames: dict[str, str]) -> str:
    for ours, theirs in renames.items():
        if name.startswith(ours):
            return theirs + name[len(ours):]
    raise AssertionError(name)


def detect_size(state: dict[str, torch.Tensor], path: Path) -> str:
    """The release size whose stem width matches the checkpoint's."""
    if STEM not in state:
        if any(k.startswith("img_encoder.") for k in state):
            raise InputError(f"{path}: its ECG encoder is not a ConvNeXt-V2 (no {STEM}); only the release's ConvNeXt-V2 "
                             "encoders are supported")
        raise InputError(f"{path}: not an ESI release checkpoint (no img_encoder.* keys; found e.g. {sorted(state)[:3]})")
    shape = list(state[STEM].shape)
    if len(shape) != 3 or shape[1:] != [12, 4]:
        raise InputError(f"{path}: shape mismatch: {STEM} expected [C, 12, 4], found {shape}")
    for size, (_, dims) in RELEASE_SIZES.items():
        if dims[0] == shape[0]:
            return size
    known = ", ".join(f"{s} ({d[0]})" for s, (_, d) in RELEASE_SIZES.items())
    raise InputError(f"{path}: unknown size: the stem has {shape[0]} channels; the release defines {known}")


def _check(path: Path, expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], claimed: set[str]) -> None:
    """Raise one line on the first problem: missing keys, unexpected keys, a shape mismatch."""
    missing = sorted(k for k in expected if k not in state)
    if missing:
        raise InputError(f"{path}: {len(missing)} missing keys: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    unexpected = sorted(k for k in state if k not in claimed)
    if unexpected:
        raise InputError(f"{path}: {len(unexpected)} unexpected keys: {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != tuple(shape):
            raise InputError(f"{path}: shape mismatch: {key} expected {list(shape)}, found {list(state[key].shape)}")


def _weights(names, renames: dict[str, str], state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Our tensors by our `names`, each taken from its release name, as contiguous float32; one line for a weight
    that is not floating point (int8, bool: a quantised or damaged file) or holds NaN/inf."""
    out = {}
    for name in names:
        key = _rename(name, renames)
        tensor = state[key]
        if not tensor.is_floating_point():
            raise InputError(f"{path}: {key} holds {str(tensor.dtype).removeprefix('torch.')} values, not floating-point "
                             "weights (a quantised or damaged checkpoint); refused")
        tensor = tensor.to(torch.float32).contiguous()
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise InputError(f"{path}: {key} holds {bad:,} non-finite values (NaN/inf) of {tensor.numel():,}; "
                             "embeddings from it would be NaN: refused")
        out[name] = tensor
    return out


def _text_source(state: dict[str, torch.Tensor]) -> str | None:
    return next((p for p in TEXT_PREFIXES if any(k.startswith(p) for k in state)), None)


# ---------------------------------------------------------------- the command's work


def _ignorable(key: str, text_prefix: str | None) -> str | None:
    """The unused part of the release model `key` belongs to; None when it must be imported (or is unexpected)."""
    for group in UNUSED:
        if key.startswith(group):
            return group.rstrip(".")
    if text_prefix is None:  # no text tower imported: the whole text side is unused
        return next((g.rstrip(".") for g in (*TEXT_PREFIXES, "text_to_latents.", "temperature") if key.startswith(g)), None)
    if key.startswith(text_prefix):
        rest = key[len(text_prefix):]
        return "text pooler" if rest.startswith("pooler.") else "position_ids" if rest.endswith("position_ids") else None
    return next((p.rstrip(".") for p in TEXT_PREFIXES if key.startswith(p)), None)  # the tower under its second name


def import_release(checkpoint: str | Path, out: str | Path, *, tokenizer: str, ecg_only: bool = False, force: bool = False) -> Path:
    """Write a model artifact (variant esi-release) from the authors' checkpoint; returns its path."""
    source = checkpoint_file(Path(checkpoint))
    state = read_state_dict(source)
    size = detect_size(state, source)
    token_dim = int(state["img_token_head.weight"].shape[0]) if "img_token_head.weight" in state else 768
    embed_dim = int(state["img_to_latents.to_latents.weight"].shape[0]) if "img_to_latents.to_latents.weight" in state else token_dim
    text_prefix = None if ecg_only else _text_source(state)
    try:
        config = ReleaseConfig(size=size, token_dim=token_dim, embed_dim=embed_dim, text_model=str(tokenizer))
    except ValueError as exc:
        raise InputError(f"{source}: {exc}") from None

    with torch.device("meta"):  # names and shapes only: nothing is allocated, whatever sizes the inputs claim
        ecg = ReleaseECGEncoder(config)
    expected = {_rename(k, ECG_RENAMES): tuple(v.shape) for k, v in ecg.state_dict().items()}
    if text_prefix:
        text, tok, hf_config = _text_tower(config, tokenizer)
        text_renames = {"text.model.": text_prefix, **TEXT_RENAMES}
        ours = {f"text.{k}": tuple(v.shape) for k, v in text.state_dict().items()} | {"log_scale": (1,)}
        expected.update({_rename(k, text_renames): shape for k, shape in ours.items()})
    ignored: dict[str, int] = {}
    for key in state:
        group = None if key in expected else _ignorable(key, text_prefix)
        if group:
            ignored[group] = ignored.get(group, 0) + 1
    _check(source, expected, state, set(expected) | {k for k in state if k not in expected and _ignorable(k, text_prefix)})

    ecg_weights = _weights(ecg.state_dict(), ECG_RENAMES, state, source)
    scale = float(state["temperature"].double().exp().reshape(-1)[0]) if "temperature" in state else None
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        if text_prefix:  # zero-shot would divide by it or multiply by it
            raise InputError(f"{source}: temperature {float(state['temperature'].reshape(-1)[0]):g} gives a logit scale "
                             f"of {scale:g}: not a usable model")
        scale = None  # unused without the text tower; the manifest stays strict JSON
    parameters = {"origin": "release-import", "checkpoint": str(source.resolve()), "source_sha256": sha256_file(source),
                  "size": size, "fs": config.fs, "text_source": str(tokenizer) if text_prefix else None}
    with ArtifactWriter(out, "model", parameters=parameters, force=force) as writer:
        from safetensors.torch import save_file

        writer.write_json(CONFIG_FILE, config.to_dict())
        save_file(ecg_weights, writer.path(ENCODER_FILE))
        if text_prefix:
            weights = {f"ecg.{k}": v for k, v in ecg_weights.items()} | _weights(ours, text_renames, state, source)
            save_file(weights, writer.path(MODEL_FILE))
            tok.save_pretrained(writer.path(TEXT_DIR))
            hf_config.save_pretrained(writer.path(TEXT_DIR))
        writer.summary.update(
            ecg_size=size, embed_dim=config.embed_dim, fs=config.fs, text_tower=bool(text_prefix),
            parameters=sum(v.numel() for v in ecg_weights.values()), source_keys=len(state), ignored_keys=ignored,
            source_dtype=str(state[STEM].dtype),
            logit_scale=scale,
        )
        path = writer.commit()
    log(f"imported the release's {size} model ({'with' if text_prefix else 'without'} text tower) from {source.name} -> {path}")
    return path


def _text_tower(config: ReleaseConfig, source: str):
    """(our TextEncoder with random weights, tokenizer, HF config) for the BERT named by `source` (hub id or dir)."""
    from transformers import AutoConfig, AutoModel

    from .text_encoder import TextEncoder, load_tokenizer, resolve_text_model

    try:
        hf_config = AutoConfig.from_pretrained(resolve_text_model(source))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the text model's config from '{source}' (a hub id or a local directory with "
                         f"config.json; or pass --ecg-only): {' '.join(str(exc).split())[:200]}") from None
    try:
        bounds.hf_text(hf_config)  # before anything is built: `vocab_size` 2e9 would ask for 512 GB
    except ValueError as exc:
        raise InputError(f"'{source}': {exc}") from None
    tok = load_tokenizer(source)
    if len(tok) > hf_config.vocab_size:
        raise InputError(f"'{source}': its tokenizer has {len(tok)} tokens but its model only {hf_config.vocab_size}")
    with torch.device("meta"):  # names and shapes, checked against the checkpoint's before any weight is taken
        text = TextEncoder(AutoModel.from_config(hf_config), pooling=config.text_pooling, embed_dim=config.embed_dim)
    return text, tok, hf_config
