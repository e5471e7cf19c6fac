"""A real language model (SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server, CPU, offline) captions
real PTB-XL records through the same litellm path a user's provider takes; its captions are cleaned, audited
and cached. CI installs the [llm] extra and runs these."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import polars as pl
import pytest
from conftest import ROOT, run_esi
from test_caption import inputs  # noqa: F401 (fixture: 120 real PTB-XL records, features, retrieval)

from esi_tools.caption.local_model import MODEL

pytestmark = [pytest.mark.llm, pytest.mark.slow]
WORDS = 33


def test_a_real_model_captions_real_records_cleaned_audited_and_cached(inputs, local_llm, tmp_path):  # noqa: F811
    dataset, features, retrieval = inputs
    args = ["caption", dataset, "-f", features, "-r", retrieval, "--model", MODEL, "--api-base", local_llm.api_base,
            "--limit", "3", "--concurrency", "1", "--retries", "1", "--context", "4096", "--timeout", "120"]
    result = run_esi(*args, "--out", tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    table = pl.read_parquet(tmp_path / "c" / "captions.parquet")
    summary = json.loads((tmp_path / "c" / "manifest.json").read_text())["summary"]
    assert table.height == 3 and summary["requests"] >= 3 and summary["prompts_cut"] == 0
    for row in table.iter_rows(named=True):
        if row["status"] != "ok":  # a failed answer says why (after the retry)
            assert row["status"] == "failed" and row["error"], row
            continue
        assert row["input_tokens"] > 300  # the real prompt, counted by the server
        words = row["caption"].split()
        assert 4 <= len(words) <= 2 * WORDS and not re.search(r"<\|[^>]*\|>|^\s*(#|- )", row["caption"])
        assert row["faithful"] is not None  # audited against its ECG
    assert summary["ok"] >= 1 and summary["audit"]["audited"] == summary["ok"]

    again = run_esi(*args, "--out", tmp_path / "again")  # raw answers cached, cleaned on read: nothing re-asked
    assert again.exit_code == 0, again.stderr
    summary2 = json.loads((tmp_path / "again" / "manifest.json").read_text())["summary"]
    # a failed record is asked again (twice if its answer is unusable again; once if it had timed out on a busy machine)
    assert summary2["cache_hits"] == summary["ok"] and summary["failed"] <= summary2["requests"] <= summary["failed"] * 2

    audit = run_esi("audit", tmp_path / "c", "--out", tmp_path / "audit")
    assert audit.exit_code == 0, audit.stderr
    rates = json.loads((tmp_path / "audit" / "manifest.json").read_text())["summary"]["by_captions"][MODEL]
    assert rates["captions"] == summary["ok"]


def test_the_wrapper_serves_the_model_to_a_command_and_stops_it(tmp_path):
    probe = ("import os, urllib.request; base = os.environ['ESI_API_BASE']; "
             "print(base, urllib.request.urlopen(base + '/models').status)")
    proc = subprocess.run([sys.executable, "-m", "esi_tools.caption.local_model", "--", sys.executable, "-c", probe],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    base, status = proc.stdout.split()
    assert status == "200" and base.startswith("http://127.0.0.1:")
    port = int(base.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as s:  # the server is gone with the command
        assert s.connect_ex(("127.0.0.1", port)) != 0
