"""`esi pretrain -j 2` killed: its DataLoader workers go too and the pipe ends (issue 24.2: every command with
workers). torch's DataLoader workers watch their parent every 5 s; this checks that they are gone within 10 s."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import kill_and_expect_orphans_gone, tiny_text_tower

ESI = str(Path(sys.executable).parent / "esi")


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_pretrain_workers_die_with_their_parent(ptbxl_small, tmp_path, how):
    arch = tiny_text_tower(tmp_path)
    proc = subprocess.Popen([ESI, "-q", "pretrain", str(ptbxl_small), "--model", str(arch), "--text-model",
                             str(tmp_path / "text"), "--max-steps", "100000", "--batch-size", "4", "--crop-seconds", "2.5",
                             "-j", "2", "--out", str(tmp_path / "model")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    parent, deadline, children = psutil.Process(proc.pid), time.time() + 180, []
    while time.time() < deadline and proc.poll() is None and len(children) < 2:
        children = [p for p in parent.children(recursive=True) if "resource_tracker" not in " ".join(p.cmdline())]
        time.sleep(0.1)
    assert proc.poll() is None and len(children) >= 2, "pretrain ended before its workers could be observed"
    time.sleep(1.0)  # the workers are loading batches
    kill_and_expect_orphans_gone(proc, how, within_s=10)
