"""`--resume` never runs code from a checkpoint (issue 13.2): no unpickling, `latest` stays inside the directory.

A real PlainEngine (a small torch module, AdamW, LambdaLR) is checkpointed with `checkpoint.save`; the tests
then plant pickles that would create a marker file if anything unpickled them, and point `latest` outside.
"""

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_esi

from esi_tools.errors import InputError

torch = pytest.importorskip("torch")

from esi_tools.train import checkpoint  # noqa: E402
from esi_tools.train.config import PretrainConfig  # noqa: E402
from esi_tools.train.engine import PlainEngine  # noqa: E402


class _Payload:
    """Unpickling this creates `marker`: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _engine():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.LayerNorm(4))
    return PlainEngine(model, PretrainConfig(), lambda step: 1.0, world_size=1, device=torch.device("cpu"))


def _save(root, step=3):
    settings = PretrainConfig().to_dict()
    engine = _engine()
    tag = checkpoint.save(root, engine, step=step, settings=settings, history=[{"step": 1, "loss": 1.0}], rank=0,
                          world_size=1)
    return tag, settings


def _load(path, settings):
    return checkpoint.load(path, _engine(), settings=settings, rank=0, world_size=1)


def test_rng_state_round_trips_without_pickle(tmp_path):
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    tag, settings = _save(tmp_path / "ck")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    assert not list(tag.glob("*.pt")) or {p.name for p in tag.glob("*.pt")} == {"state.pt"}
    json.loads((tag / "rng-rank0.json").read_text())  # plain JSON, readable by anyone
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    step, history = _load(tmp_path / "ck", settings)
    assert step == 3 and history == [{"step": 1, "loss": 1.0}]
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_planted_rng_pickle_never_runs(tmp_path):
    tag, settings = _save(tmp_path / "ck")
    marker = tmp_path / "pwned"
    torch.save(_Payload(marker), tag / "rng-rank0.pt")  # the file name older versions unpickled
    assert _load(tmp_path / "ck", settings)[0] == 3  # resumes from the safe JSON state
    assert not marker.exists()
    (tag / "rng-rank0.json").unlink()  # a checkpoint with only the pickle: refused, still not run
    with pytest.raises(InputError, match="rng-rank0.json"):
        _load(tmp_path / "ck", settings)
    assert not marker.exists()


def test_planted_model_state_pickle_is_refused_cleanly(tmp_path):
    tag, settings = _save(tmp_path / "ck")
    marker = tmp_path / "pwned"
    torch.save({"model": _Payload(marker)}, tag / "state.pt")
    with pytest.raises(InputError, match="state.pt"):
        _load(tmp_path / "ck", settings)
    assert not marker.exists()


def test_malformed_rng_json_is_refused(tmp_path):
    tag, settings = _save(tmp_path / "ck")
    (tag / "rng-rank0.json").write_text('{"torch": [1, 2, 3]}')
    with pytest.raises(InputError, match="rng-rank0.json"):
        _load(tmp_path / "ck", settings)


@pytest.mark.parametrize("latest", ["../other/step-00000003", "/tmp", "step-00000003/../../other/step-00000003",
                                    "..", ""])
def test_latest_must_name_a_sibling_inside_the_directory(tmp_path, latest):
    _save(tmp_path / "other")  # a real checkpoint elsewhere: following `latest` there would "work"
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "latest").write_text(latest)
    with pytest.raises(InputError, match="'latest' names"):
        checkpoint.find(tmp_path / "ck")


def test_latest_naming_a_symlink_out_of_the_directory_is_refused(tmp_path):
    tag, _ = _save(tmp_path / "other")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "step-00000009").symlink_to(tag)
    (tmp_path / "ck" / "latest").write_text("step-00000009")
    with pytest.raises(InputError, match="'latest' names .* outside"):
        checkpoint.find(tmp_path / "ck")


def test_cli_resume_with_escaping_latest_is_one_line(tmp_path):
    _save(tmp_path / "other")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "latest").write_text("../other/step-00000003")
    result = run_esi("pretrain", tmp_path / "no-dataset", "--resume", tmp_path / "ck", "--out", tmp_path / "m")
    assert result.exit_code == 2
    assert "'latest' names" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_no_unsafe_torch_load_in_the_tree():
    """Every torch.load in the package names weights_only=True; nothing unpickles."""
    offenders = []
    for folder in ("esi_tools", "commands", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                unsafe = "weights_only=False" in line or "pickle.load" in line or "allow_pickle=True" in line
                if unsafe or ("torch.load(" in line and "weights_only=True" not in line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == []


DEEPSPEED_SCRIPT = r"""
import sys
from pathlib import Path
import torch
from esi_tools.errors import InputError
from esi_tools.train import checkpoint
from esi_tools.train.config import PretrainConfig
from esi_tools.train.engine import make_engine, setup_distributed

root, marker = Path(sys.argv[1]), Path(sys.argv[2])
cfg = PretrainConfig(deepspeed=str(Path("esi_tools/train/configs/zero2.json").resolve()), batch_size=2)
setup_distributed(cfg)

def engine():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.LayerNorm(4))
    return make_engine(model, cfg, lambda s: 1.0, world_size=1, device=torch.device("cpu"))

settings = cfg.to_dict()
tag = checkpoint.save(root, engine(), step=2, settings=settings, history=[], rank=0, world_size=1)
print("clean", checkpoint.load(root, engine(), settings=settings, rank=0, world_size=1)[0])
class Payload:
    def __reduce__(self):
        return (open, (str(marker), "w"))
optim = sorted(tag.glob("*optim_states.pt"))[0]
torch.save({"optimizer_state_dict": Payload()}, optim)
try:
    checkpoint.load(root, engine(), settings=settings, rank=0, world_size=1)
    print("loaded")
except InputError as exc:
    print("refused", exc)
"""


@pytest.mark.slow
def test_deepspeed_checkpoint_loads_weights_only(tmp_path):
    """DeepSpeed's own loader unpickles (weights_only=False); resume swaps in a weights-only loader."""
    pytest.importorskip("deepspeed")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", DEEPSPEED_SCRIPT, str(tmp_path / "ck"), str(tmp_path / "pwned")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith(("clean", "refused", "loaded"))]
    assert lines[0] == "clean 2", done.stdout
    assert lines[1].startswith("refused") and "optim_states.pt" in lines[1], done.stdout
    assert not (tmp_path / "pwned").exists()
