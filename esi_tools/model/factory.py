"""Build and load models: ECG encoders by size, whole ESI models from `configs/*.json`, trained model dirs.

A trained model directory (the `model` artifact of `esi pretrain`) holds `config.json` (everything needed to
rebuild the architecture), `encoder.safetensors` (ECG encoder + projection), `model.safetensors` (the
whole ESI model) and `text/` (tokenizer and HF config of the text tower), so no training flags are needed.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

from ..errors import ArtifactError, InputError
from ..hub import read_model_config
from .ecg_encoder import SIZES, ECGEncoder, ECGEncoderConfig

CONFIG_FILE = "config.json"
ENCODER_FILE = "encoder.safetensors"
MODEL_FILE = "model.safetensors"
TEXT_DIR = "text"
RELEASE_PREFIX = "esi-release"  # configs/esi-release-*.json: the authors' released sizes (variant "esi-release")


def _seeded(seed: int):
    """Build under a fixed seed without disturbing the caller's RNG."""
    rng = torch.random.fork_rng(devices=[])
    rng.__enter__()
    torch.manual_seed(seed)
    return rng


def create_ecg_encoder(size: str, *, seed: int, **overrides) -> ECGEncoder:
    """A freshly initialised ECG encoder (`size` in atto..large; overrides: embed_dim, drop_path, ...)."""
    if size not in SIZES:
        raise InputError(f"unknown ECG encoder size '{size}' (known: {', '.join(SIZES)})")
    rng = _seeded(seed)
    try:
        return ECGEncoder(ECGEncoderConfig(size=size, **overrides))
    finally:
        rng.__exit__(None, None, None)


def model_config_names() -> list[str]:
    """Names of the architecture configs shipped in esi_tools/model/configs that `esi pretrain` can train."""
    names = (p.name[:-5] for p in resources.files(__package__).joinpath("configs").iterdir() if p.name.endswith(".json"))
    return sorted(n for n in names if not n.startswith(RELEASE_PREFIX))  # release configs are imported, not trained


def model_config(name_or_path: str) -> dict:
    """An architecture config by shipped name (e.g. `esi-atto`) or by path to a JSON file."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        return json.loads(path.read_text())
    if str(name_or_path).startswith(RELEASE_PREFIX):
        raise InputError(f"'{name_or_path}' is the ESI authors' released architecture: load their weights with "
                         "`esi import-release CHECKPOINT`; it is not trained by esi pretrain")
    shipped = resources.files(__package__).joinpath("configs", f"{name_or_path}.json")
    if not shipped.is_file():
        raise InputError(f"unknown model config '{name_or_path}' (shipped: {', '.join(model_config_names())})")
    return json.loads(shipped.read_text())


def create_model(config: dict, *, seed: int, text_model: str | None = None):
    """A freshly initialised ESI model from an architecture config dict (text tower from `text_model`)."""
    from .coca import ESIConfig, ESIModel

    cfg = ESIConfig.from_dict(config)
    if text_model is not None:
        cfg = cfg.with_text_model(text_model)
    rng = _seeded(seed)
    try:
        return ESIModel.create(cfg)
    finally:
        rng.__exit__(None, None, None)


def read_config(model_dir: Path) -> dict:
    """A model directory's config.json as a dict; one ArtifactError line when it is missing or not JSON."""
    return read_model_config(model_dir)


def parsed(model_dir: Path, parse, config: dict):
    """`parse(config)` (a config class's from_dict), its ValueError/TypeError/KeyError as one ArtifactError line."""
    try:
        return parse(config)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ArtifactError(f"{model_dir / CONFIG_FILE}: {exc}") from None


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors file's header (no tensor is read)."""
    from safetensors import safe_open

    if not path.is_file():
        raise ArtifactError(f"{path.parent}: no {path.name}" if not path.exists() else f"{path}: not a regular file")
    try:
        with safe_open(path, "pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118 - safe_open has no iterator
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for every kind of damage
        raise ArtifactError(f"{path}: not a safetensors file ({type(exc).__name__}: {exc})") from None


def built_to_match(build, path: Path):
    """`build()` once the weights file at `path` is known to fit it: the architecture is first built on the
    meta device (no memory) and its shapes compared with the file's header, so a config that asks for
    terabytes, or for other shapes than its weights, fails in one line before anything is allocated."""
    have = _file_shapes(path)
    try:
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except ValueError as exc:  # e.g. the text tower's saved config out of bounds
        raise ArtifactError(f"{path.parent}: {exc}") from None
    for key, shape in want.items():
        if key in have and have[key] != shape:
            raise ArtifactError(f"{path}: does not match config.json ({key}: config {list(shape)}, "
                                f"weights {list(have[key])})")
    return build()


def _load_weights(module, path: Path) -> None:
    """Strict load of a safetensors file, one line naming what does not match."""
    from safetensors.torch import load_file

    if not path.exists():
        raise ArtifactError(f"{path.parent}: no {path.name}")
    try:
        module.load_state_dict(load_file(path))
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: does not match config.json ({' '.join(str(exc).split())[:300]})") from None


def load_ecg_encoder(model_dir: str | Path, *, weights: bool = True):
    """Only the ECG side of a trained or imported model (no text tower is built): eval mode, CPU.

    weights=False builds the same architecture with fresh random weights (the from-scratch baseline)."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    path = model_dir / ENCODER_FILE
    if config.get("variant") == RELEASE_PREFIX:
        from .release import ReleaseConfig, ReleaseECGEncoder

        cfg = parsed(model_dir, ReleaseConfig.from_dict, config)
        encoder = built_to_match(lambda: ReleaseECGEncoder(cfg), path) if weights else ReleaseECGEncoder(cfg)
        if weights:
            _load_weights(encoder, path)
        return encoder.eval()
    if config.get("variant") not in (None, "esi"):
        raise ArtifactError(f"{model_dir}: unknown model variant {config['variant']!r} in {CONFIG_FILE}")
    cfg = parsed(model_dir, lambda c: ECGEncoderConfig.from_dict(c["ecg"]), config)
    encoder = built_to_match(lambda: ECGEncoder(cfg), path) if weights else ECGEncoder(cfg)
    if weights:
        encoder.load_state_dict(load_file(path))
    return encoder.eval()


def load_esi(model_dir: str | Path):
    """The whole trained ESI model (ECG encoder, text tower, decoder), or an imported release model: eval, CPU."""
    from safetensors.torch import load_file

    from .coca import ESIConfig, ESIModel

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    if config.get("variant") == RELEASE_PREFIX:
        from .release import ReleaseConfig, ReleaseESI

        if not (model_dir / MODEL_FILE).exists():
            raise ArtifactError(f"{model_dir}: imported without a text tower (ECG encoder only): zero-shot needs "
                                "a checkpoint with one (esi import-release keeps it when present)")
        cfg = parsed(model_dir, ReleaseConfig.from_dict, config)
        model = built_to_match(lambda: ReleaseESI.from_saved(cfg, model_dir / TEXT_DIR), model_dir / MODEL_FILE)
        _load_weights(model, model_dir / MODEL_FILE)
        return model.eval()
    cfg = parsed(model_dir, ESIConfig.from_dict, config)
    model = built_to_match(lambda: ESIModel.from_saved(cfg, model_dir / TEXT_DIR), model_dir / MODEL_FILE)
    missing, unexpected = model.load_state_dict(load_file(model_dir / MODEL_FILE), strict=False)
    missing = [k for k in missing if k != "decoder.head.weight"]  # tied to decoder.token.weight, stored once
    if missing or unexpected:
        raise ArtifactError(f"{model_dir}: {MODEL_FILE} does not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()
