"""esi-tools: turn raw 12-lead ECGs into an ECG-text foundation model (after ESI, Yu, Guo & Sano 2024).

The Python API (see README "Python"), importable without torch until a model is used:

- `open_artifact(path)`: any artifact directory: `.kind`, `.manifest`, `.table(name)` (polars),
  `.array(name)` (memory-mapped numpy);
- `load_model(path_or_hub_id)`: `.embed_ecg(x, fs, units=...)`, `.embed_text(texts)`,
  `.zero_shot(x, fs, classes={name: prompt})`;
- `measure(x, fs, leads=...)`: the measurements of `esi features` for arrays in memory.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Model", "load_model", "measure", "open_artifact"]

_LAZY = {"open_artifact": "artifacts", "load_model": "api", "measure": "api", "Model": "api"}


def __getattr__(name: str):
    """Import the API's modules on first use, so `import esi_tools` (and `esi --help`) stays fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'esi_tools' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
