"""esi export --format hf on a real run, and hub ids through a Hugging Face cache filled by huggingface_hub itself.

The cache is filled the way a user's is: huggingface_hub's `snapshot_download` talks to a hub, here a minimal one
on 127.0.0.1 serving the exported folder. Loading then runs with HF_HUB_OFFLINE=1 and the server stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from conftest import ROOT, run_esi

import esi_tools
from esi_tools.artifacts import open_artifact
from esi_tools.dataset import Dataset

REPO = "esi-tools-tests/tiny-ptbxl"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def run_dir(ptbxl_small, tiny_model, tmp_path_factory):
    """A run: the model, its embeddings, a probe and an identification of it, and one identification of another."""
    run = tmp_path_factory.mktemp("run")
    shutil.copytree(tiny_model, run / "model")
    steps = [
        ("emb-esi", "embed", ptbxl_small, "--checkpoint", run / "model"),
        ("emb-random", "embed", ptbxl_small, "--random-init", "atto"),
        ("probe-superdiagnostic", "probe", ptbxl_small, "-e", run / "emb-esi", "--task", "superdiagnostic",
         "--min-positives", "3", "--bootstrap", "50"),
        ("identify", "identify", ptbxl_small, "-e", run / "emb-esi", "--bootstrap", "50"),
        ("identify-random", "identify", ptbxl_small, "-e", run / "emb-random", "--bootstrap", "50"),
    ]
    for name, *args in steps:
        result = run_esi(*args, "--out", run / name)
        assert result.exit_code == 0, result.stderr
    return run


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "hf"
    result = run_esi("export", run_dir / "model", "--format", "hf", "--repo-id", REPO, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return out


def test_folder_uploads_as_is_with_a_model_card(exported, run_dir):
    from huggingface_hub import ModelCard

    art = open_artifact(exported, "hf-model")
    art.verify()
    assert {"README.md", "config.json", "encoder.safetensors", "model.safetensors", "text/config.json",
            "text/tokenizer.json", "train_curves.png"} <= set(art.manifest["files"])
    assert not any(n.endswith((".parquet", ".tmp")) for n in art.manifest["files"])
    assert (exported / "config.json").read_bytes() == (run_dir / "model" / "config.json").read_bytes()

    card = ModelCard.load(exported / "README.md")  # the hub's own parser of the front matter
    assert card.data.license == "cc-by-4.0" and card.data.datasets == ["PTB-XL"]
    assert "ecg" in card.data.tags and card.data.library_name == "esi-tools"
    text = card.text
    assert "| PTB-XL | 160 | 100 Hz | cc-by-4.0 |" in text and "Wagner et al." in text
    assert "profile **custom (no --profile)**" in text and "strat_fold 9, 10 held out" in text
    probe_table = (run_dir / "probe-superdiagnostic" / "results.md").read_text().strip()
    identify_table = (run_dir / "identify" / "results.md").read_text().strip()
    assert probe_table in text and identify_table in text
    assert "identify-random" not in text and "random-init" not in text  # an evaluation of another model is not listed
    assert f'esi_tools.load_model("{REPO}")' in text and str(run_dir) not in text  # no local path in the card
    assert [i["role"] for i in art.manifest["inputs"]] == ["model", "probe:probe-superdiagnostic", "identification:identify"]


def test_exported_folder_loads_like_the_model(exported, run_dir, ptbxl_small):
    x = Dataset.open(ptbxl_small).waveforms[:4]
    a, b = esi_tools.load_model(exported), esi_tools.load_model(run_dir / "model")
    assert np.array_equal(a.embed_ecg(x, 100, units="uV"), b.embed_ecg(x, 100, units="uV"))
    assert np.array_equal(a.embed_text(["Normal ECG."]), b.embed_text(["Normal ECG."]))


def test_licence_and_format_checks(run_dir, tmp_path):
    from esi_tools.errors import UsageError
    from esi_tools.export_hf import SOURCES, DataSource, TrainingData, choose_license

    model = open_artifact(run_dir / "model")
    mimic = TrainingData(SOURCES["mimic-iv-ecg"], 100, 500.0, True)
    unknown = TrainingData(DataSource("WFDB records (x)", None, None, None), 10, 500.0, False)
    with pytest.raises(UsageError, match="credentialed"):
        choose_license(None, [mimic], model)
    with pytest.raises(UsageError, match="pass --license"):
        choose_license(None, [unknown], model)
    assert choose_license("other", [mimic], model) == "other"

    result = run_esi("export", run_dir / "model", "--format", "onnx", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "--format must be hf" in result.stderr
    result = run_esi("export", run_dir / "emb-esi", "--out", tmp_path / "x")
    assert result.exit_code == 3 and "expected 'model'" in result.stderr
    result = run_esi("export", run_dir / "model", "--license", "mit", "--results", run_dir / "identify-random",
                     "--out", tmp_path / "y")
    assert result.exit_code == 0, result.stderr
    art = open_artifact(tmp_path / "y")
    assert art.parameters["license"] == "mit" and art.parameters["repo_id"] == "your-org/y"
    assert art.summary["result_tables"] == 3 and "identify-random" in (tmp_path / "y" / "README.md").read_text()


def test_exported_manifest_names_no_local_path(exported, run_dir):
    """Issue 24: the manifest is uploaded as is: no argv paths, no run_dir, inputs by digest only."""
    text = (exported / "manifest.json").read_text()
    manifest = json.loads(text)
    assert str(run_dir) not in text and str(exported) not in text and "/tmp/" not in text
    assert "run_dir" not in manifest["parameters"] and manifest["argv"][:2] == ["esi", "export"]
    assert {i["path"] for i in manifest["inputs"]} == {""} and all(len(i["manifest_sha256"]) == 64 for i in manifest["inputs"])
    result = run_esi("verify", exported)
    assert result.exit_code == 0 and result.stdout.strip() == str(exported), result.stderr


def test_export_refuses_a_model_changed_since_written(run_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(run_dir / "model", model)
    data = bytearray((model / "encoder.safetensors").read_bytes())
    data[-1] ^= 0x01  # one bit of one weight, same size: only the hash can tell
    (model / "encoder.safetensors").write_bytes(bytes(data))
    result = run_esi("export", model, "--license", "mit", "--out", tmp_path / "hf")
    assert result.exit_code == 3 and "changed since it was written" in result.stderr and not (tmp_path / "hf").exists()


@pytest.mark.parametrize("given", ["do what you like", "MIT; plus", "cc-by-4.0\nextra: yes"])
def test_license_takes_only_a_hub_licence_id(run_dir, tmp_path, given):
    result = run_esi("export", run_dir / "model", "--license", given, "--out", tmp_path / "hf")
    assert result.exit_code == 2 and "not a licence id" in result.stderr and not (tmp_path / "hf").exists()


def serve_folder(repo_id: str, folder: Path) -> ThreadingHTTPServer:
    """The three hub endpoints snapshot_download uses (revision info, file tree, file resolve), for one folder."""
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, body: bytes, headers: dict, code: int = 200):
            self.send_response(code)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            path = urlparse(self.path).path
            if path.startswith(f"/api/models/{repo_id}/revision/"):
                info = {"id": repo_id, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}
                return self.reply(json.dumps(info).encode(), {"Content-Type": "application/json"})
            if path.startswith(f"/api/models/{repo_id}/tree/"):
                tree = [{"type": "file", "path": n, "size": p.stat().st_size,
                         "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for n, p in files.items()]
                return self.reply(json.dumps(tree).encode(), {"Content-Type": "application/json"})
            prefix = f"/{repo_id}/resolve/{COMMIT}/"
            if path.startswith(prefix) and path[len(prefix):] in files:
                body = files[path[len(prefix):]].read_bytes()
                return self.reply(body, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(body).hexdigest()}"'})
            return self.reply(b"", {"X-Error-Code": "RepoNotFound"}, 404)

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def hub_env(hf_home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return {**env, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1", **extra}


def test_hub_id_through_a_prefilled_cache_offline(exported, run_dir, ptbxl_small, tmp_path, monkeypatch):
    hf_home = tmp_path / "hf_home"
    server = serve_folder(REPO, exported)
    try:  # fill the cache by huggingface_hub's own download (its own process: its settings are read at import)
        fill = f"from huggingface_hub import snapshot_download; print(snapshot_download({REPO!r}))"
        env = hub_env(hf_home, HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", HF_HUB_OFFLINE="0")
        done = subprocess.run([sys.executable, "-c", fill], env=env, capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    snapshot = Path(done.stdout.strip().splitlines()[-1])
    assert snapshot == hf_home / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT

    offline = hub_env(hf_home, HF_HUB_OFFLINE="1")  # the server is gone: only the cache can answer
    esi = Path(sys.executable).parent / "esi"
    out = tmp_path / "emb-hub"
    cli = subprocess.run([str(esi), "embed", str(ptbxl_small), "--checkpoint", REPO, "--out", str(out)], cwd=tmp_path,
                         env=offline, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr
    art = open_artifact(out)
    assert art.parameters["checkpoint"] == REPO and art.parameters["checkpoint_revision"] == COMMIT
    assert np.array_equal(art.array("embeddings.npy"), open_artifact(run_dir / "emb-esi").array("embeddings.npy"))

    code = f"import esi_tools; m = esi_tools.load_model({REPO!r}); print(m.path); print(m.embed_text('Normal ECG.')[:4].tolist())"
    api = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=offline, capture_output=True, text=True, timeout=600)
    assert api.returncode == 0, api.stderr
    path, values = api.stdout.strip().splitlines()[-2:]
    assert Path(path) == snapshot
    assert np.allclose(json.loads(values), esi_tools.load_model(exported).embed_text("Normal ECG.")[:4], atol=1e-6)

    missing = subprocess.run([str(esi), "embed", str(ptbxl_small), "--checkpoint", "esi-tools-tests/absent", "--out",
                              str(tmp_path / "x")], cwd=tmp_path, env=offline, capture_output=True, text=True, timeout=600)
    assert missing.returncode == 2 and "HF_HUB_OFFLINE=1" in missing.stderr and str(hf_home / "hub") in missing.stderr

    local = tmp_path / REPO  # a local folder spelt like the hub id wins over the hub
    shutil.copytree(run_dir / "model", local)
    monkeypatch.chdir(tmp_path)
    model = esi_tools.load_model(REPO)
    assert model.source.hub_id is None and model.path == Path(REPO)
