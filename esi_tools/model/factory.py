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


def _read_config(model_dir: Path) -> dict:
    if not (model_dir / CONFIG_FILE).exists():
        raise ArtifactError(f"{model_dir}: not an ESI model directory (no {CONFIG_FILE})")
    return json.loads((model_dir / CONFIG_FILE).read_text())


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
    config = _read_config(model_dir)
    if config.get("variant") == RELEASE_PREFIX:
        from .release import ReleaseConfig, ReleaseECGEncoder

        encoder = ReleaseECGEncoder(ReleaseConfig.from_dict(config))
        if weights:
            _load_weights(encoder, model_dir / ENCODER_FILE)
        return encoder.eval()
    if config.get("variant") not in (None, "esi"):
        raise ArtifactError(f"{model_dir}: unknown model variant {config['variant']!r} in {CONFIG_FILE}")
    encoder = ECGEncoder(ECGEncoderConfig.from_dict(config["ecg"]))
    if weights:
        encoder.load_state_dict(load_file(model_dir / ENCODER_FILE))
    return encoder.eval()


def load_esi(model_dir: str | Path):
    """The whole trained ESI model (ECG encoder, text tower, decoder), or an imported release model: eval, CPU."""
    from safetensors.torch import load_file

    from .coca import ESIConfig, ESIModel

    model_dir = Path(model_dir)
    config = _read_config(model_dir)
    if config.get("variant") == RELEASE_PREFIX:
        from .release import ReleaseConfig, ReleaseESI

        if not (model_dir / MODEL_FILE).exists():
            raise ArtifactError(f"{model_dir}: imported without a text tower (ECG encoder only): zero-shot needs "
                                "a checkpoint with one (esi import-release keeps it when present)")
        model = ReleaseESI.from_saved(ReleaseConfig.from_dict(config), model_dir / TEXT_DIR)
        _load_weights(model, model_dir / MODEL_FILE)
        return model.eval()
    cfg = ESIConfig.from_dict(config)
    model = ESIModel.from_saved(cfg, model_dir / TEXT_DIR)
    missing, unexpected = model.load_state_dict(load_file(model_dir / MODEL_FILE), strict=False)
    missing = [k for k in missing if k != "decoder.head.weight"]  # tied to decoder.token.weight, stored once
    if missing or unexpected:
        raise ArtifactError(f"{model_dir}: {MODEL_FILE} does not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()
