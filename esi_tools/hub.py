"""Where a model lives: a local folder, or a Hugging Face hub id (`org/name`) fetched into the hub's own cache.

A local path always wins over a hub id of the same spelling. Hub models go through `huggingface_hub`'s
`snapshot_download`, so its cache (HF_HOME / HF_HUB_CACHE), HF_HUB_OFFLINE=1 and HF_ENDPOINT apply unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")  # org/name as the hub spells repo ids


@dataclass(frozen=True)
class ModelSource:
    """A resolved model folder, and the hub id and commit it came from (None for a local folder)."""

    path: Path
    hub_id: str | None = None
    revision: str | None = None

    def describe(self) -> dict:
        """What an artifact records about the model it used."""
        if self.hub_id is None:
            return {"checkpoint": str(self.path.resolve())}
        return {"checkpoint": self.hub_id, "checkpoint_revision": self.revision}


def resolve_model(path_or_hub_id: str | Path, *, revision: str | None = None) -> ModelSource:
    """The model folder for a local path or a hub id; one clear InputError when neither gives one."""
    text = str(path_or_hub_id)
    local = Path(text).expanduser()
    if local.exists():
        return ModelSource(local)
    if not HUB_ID.fullmatch(text):
        raise InputError(f"{text}: no such model directory (nor a Hugging Face hub id of the form org/name)")
    if isinstance(path_or_hub_id, Path) or text.startswith((".", "~")) or local.parent.is_dir():
        # a Path, or a path whose folder exists here (`runs/modle`): a typo, never a reason to ask the network
        raise InputError(f"{text}: no such model directory ({local.parent} exists, {local.name} is not in it); "
                         f"a Hugging Face hub id is looked up only when no local folder {local.parent} exists")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(text, revision=revision))
    except LocalEntryNotFoundError as exc:
        if constants.HF_HUB_OFFLINE:
            raise InputError(f"{text}: no such local model directory, and with HF_HUB_OFFLINE=1 the Hugging Face hub "
                             f"model must already be in the cache {constants.HF_HUB_CACHE}, which lacks it") from None
        raise InputError(f"{text}: no such local model directory, and the Hugging Face hub model is neither in the cache "
                         f"{constants.HF_HUB_CACHE} nor downloadable: {str(exc).splitlines()[0]}") from None
    except HfHubHTTPError as exc:
        raise InputError(f"{text}: Hugging Face hub refused the download: {str(exc).splitlines()[0]}") from None
    return ModelSource(folder, hub_id=text, revision=folder.name)


def read_model_config(model_dir: Path) -> dict:
    """A model directory's config.json as a dict (no torch imported); one ArtifactError line when it is
    missing, unreadable or not a JSON object."""
    import json

    from .errors import ArtifactError

    path = model_dir / "config.json"
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: not an ESI model directory (no config.json)")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{path}: not a JSON object")
    return config
