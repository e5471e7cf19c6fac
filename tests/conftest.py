"""Shared fixtures: real data from ../shared/data, artifacts built once per session, no network, no hub."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
PTBXL = DATA / "ptbxl"
LUDB = DATA / "ludb"
CHALLENGE = DATA / "challenge"

# Offline everywhere: litellm must not fetch its price map, transformers must not reach the hub.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test gets its own ESI_HOME and artifacts dir, and may only open sockets to loopback."""
    monkeypatch.setenv("ESI_HOME", str(tmp_path / "esi_home"))
    monkeypatch.setenv("ESI_ARTIFACTS", str(tmp_path / "artifacts"))
    real_connect = socket.socket.connect

    def loopback_only(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            raise OSError(f"network blocked in tests: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


def run_esi(*args: str, input: str | None = None):
    """Invoke the CLI in-process (CliRunner); returns the Result. stdout and stderr are kept apart."""
    from typer.testing import CliRunner

    from commands.main import app

    return CliRunner().invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture(scope="session")
def ptbxl_dataset(tmp_path_factory) -> Path:
    """The whole real PTB-XL subset (1,987 records) at 100 Hz as a dataset artifact, built once."""
    from esi_tools.ingest.run import IngestConfig, ingest

    out = tmp_path_factory.mktemp("ptbxl") / "dataset"
    return ingest(IngestConfig(kind="ptbxl", fs=100, workers=2), PTBXL, out)


@pytest.fixture(scope="session")
def ludb_dataset(tmp_path_factory) -> Path:
    """LUDB (200 records, cardiologist-annotated) at its native 500 Hz."""
    from esi_tools.ingest.run import IngestConfig, ingest

    out = tmp_path_factory.mktemp("ludb") / "dataset"
    return ingest(IngestConfig(kind="wfdb", fs=500, workers=2), LUDB / "data", out)


# ---------------------------------------------------------------- evaluation (embed / probe / identify)


@pytest.fixture(scope="session")
def ptbxl_features_embeddings(ptbxl_dataset, tmp_path_factory) -> Path:
    """`esi features` on the whole PTB-XL subset (1 worker, ~10 s), embedded as the handcrafted baseline."""
    from esi_tools.embed.run import EmbedConfig, embed
    from esi_tools.features.run import FeaturesConfig, features

    root = tmp_path_factory.mktemp("eval_features")
    feats = features(FeaturesConfig(workers=1), ptbxl_dataset, root / "features")
    return embed(EmbedConfig(), feats, root / "embeddings")
