"""esi caption on real PTB-XL records: template captions, prompts, privacy, and the litellm path against a
local fault-injecting server (retries, failures, cache, resume after a kill, budgets, keys never written)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import PTBXL, ROOT, run_esi
from llm_server import LLMServer

MODEL = "openai/gpt-4o-mini"  # a model litellm prices, served by the local server: real cost accounting
SECRET = "sk-esi-test-9f8e7d6c5b4a"
N_RECORDS = 120  # enough distinct prompts for concurrency and budgets, small enough for a 2-core machine


# ---- inputs: real PTB-XL records, their features and retrieved passages -----------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(dataset, features, retrieval) for the first N_RECORDS PTB-XL records, made by the real commands."""
    tmp = tmp_path_factory.mktemp("caption_inputs")
    dataset = Path(run_esi("-q", "ingest", "ptbxl", PTBXL, "--limit", N_RECORDS, "--out", tmp / "ds").stdout.strip())
    result = run_esi("-q", "features", dataset, "--out", tmp / "features")
    assert result.exit_code == 0, result.stderr
    features = Path(result.stdout.strip())
    index = run_esi("-q", "retrieve", "index", "builtin", "--out", tmp / "index").stdout.strip()
    result = run_esi("-q", "retrieve", dataset, "--index", index, "--features", features, "--out", tmp / "retrieval")
    assert result.exit_code == 0, result.stderr
    return dataset, features, Path(result.stdout.strip())


@pytest.fixture
def server():
    """The local OpenAI-compatible server (tests/llm_server.py), fresh per test."""
    srv = LLMServer().start()
    yield srv
    srv.stop()


def caption(inputs, *extra, out: Path, **kw):
    dataset, features, retrieval = inputs
    return run_esi("-q", "caption", dataset, "--features", features, "--retrieval", retrieval, "--out", out, *extra, **kw)


def llm_args(server, *extra):
    # short timeouts and backoff keep fault tests fast; the logic is the same as with the defaults
    return ["--model", MODEL, "--api-base", server.base_url, "--timeout", "1", "--backoff", "0.01", *extra]


def read(out: Path):
    return pl.read_parquet(out / "captions.parquet"), json.loads((out / "manifest.json").read_text())


# ---- template provider ----------------------------------------------------------------------------------
def test_template_captions_state_real_measurements_findings_and_statements(inputs, tmp_path):
    from esi_tools.caption.template_provider import FINDINGS, RHYTHMS

    result = caption(inputs, out=tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "c")
    table, manifest = read(tmp_path / "c")
    features = pl.read_parquet(inputs[1] / "features.parquet")
    assert table["record_id"].to_list() == features["record_id"].to_list()  # every record, dataset order
    assert set(table["status"]) == {"ok"} and manifest["summary"]["requests"] == 0
    records = pl.read_parquet(inputs[0] / "records.parquet")
    statements = dict(pl.read_parquet(inputs[0] / "statements.parquet").select("code", "description").iter_rows())
    checked_hr = 0
    for row, feat, rec in zip(table.iter_rows(named=True), features.iter_rows(named=True),
                              records.iter_rows(named=True), strict=True):
        text = row["caption"]
        if feat["hr_mean_bpm"] is not None and math.isfinite(feat["hr_mean_bpm"]):
            assert f"{feat['hr_mean_bpm']:.0f} bpm" in text
            checked_hr += 1
        for finding in feat["findings"]:
            if finding in RHYTHMS:  # the first rhythm in RHYTHMS' order names the rhythm
                assert next(RHYTHMS[r] for r in RHYTHMS if r in feat["findings"]) in text, (finding, text)
            else:
                assert FINDINGS[finding].lower() in text.lower(), (finding, text)
        for code in rec["labels"]:
            assert statements[code] in text
        if rec["age"] is not None and rec["age"] < 90:
            assert f"{rec['age']:.0f}-year-old" in text
        for cited in re.findall(r"\[([a-z0-9_\-]+)\]", text):
            assert cited in row["passage_ids"]
    assert checked_hr > N_RECORDS * 0.8  # the measurements really are there for most records
    openings = {" ".join(c.split()[:2]) for c in table["caption"]}
    assert len(openings) >= 4  # phrasing varies: not one boilerplate string
    assert table["caption"].n_unique() == table.height or table["prompt_hash"].n_unique() < table.height


def test_template_captions_are_seeded(inputs, tmp_path):
    a = caption(inputs, "--seed", "1", out=tmp_path / "a")
    b = caption(inputs, "--seed", "1", out=tmp_path / "b")
    c = caption(inputs, "--seed", "2", out=tmp_path / "c")
    assert a.exit_code == b.exit_code == c.exit_code == 0
    ta, tb, tc = (read(tmp_path / n)[0]["caption"] for n in "abc")
    assert ta.to_list() == tb.to_list()
    assert sum(x != y for x, y in zip(ta, tc, strict=True)) > N_RECORDS // 2


# ---- prompts and privacy --------------------------------------------------------------------------------
def test_prompts_carry_evidence_but_no_identifiers(inputs):
    from esi_tools.artifacts import open_artifact
    from esi_tools.caption.evidence import collect
    from esi_tools.caption.prompt import load_template
    from esi_tools.dataset import Dataset

    ds = Dataset.open(inputs[0])
    evidence, rejects = collect(ds, open_artifact(inputs[1], "features"), open_artifact(inputs[2], "retrieval"))
    assert not rejects and len(evidence) == N_RECORDS
    template = load_template()
    records = ds.records
    for item, rec in zip(evidence, records.iter_rows(named=True), strict=True):
        system, user = template.render(item.evidence)
        assert "do not invent" in system
        for passage_id in item.passage_ids:
            assert f"[{passage_id}]" in user
        for m in item.evidence["measurements"]:
            assert m["text"] in user
        for value in (rec["patient_id"], rec["recording_date"], rec["source_path"], "ecg_id"):
            assert str(value) not in user
        assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b", user)


def test_privacy_guard_units():
    from esi_tools.caption import privacy
    from esi_tools.errors import RecordError, UsageError

    for host in ("127.0.0.1", "127.8.9.1", "localhost", "::1", "10.2.3.4", "172.20.0.5", "192.168.1.9"):
        assert privacy.is_local_host(host), host
    for host in ("8.8.8.8", "api.openai.com", "172.32.0.1", "203.0.113.7", None, "my-gpu-box"):
        assert not privacy.is_local_host(host), host
    assert privacy.endpoint("ollama/llama3", None)[1]
    assert not privacy.endpoint("anthropic/claude-3-5-haiku", None)[1]
    assert not privacy.endpoint("hosted_vllm/m", "https://vllm.example.org/v1")[1]
    with pytest.raises(UsageError, match="credentialed"):
        privacy.decide(credentialed=True, model=MODEL, api_base=None, allow_remote=False)
    assert privacy.decide(credentialed=True, model=MODEL, api_base=None, allow_remote=True)["decision"].startswith("allowed")
    with pytest.raises(RecordError, match="identifier"):
        privacy.check_prompt("Patient 10015709 aged 56", ["1", "10015709"])
    with pytest.raises(RecordError, match="identifier"):
        privacy.check_prompt("see study s40689238/ecg", ["s40689238"])
    privacy.check_prompt("QRS 100157090 ms", ["10015709"])  # a longer number is not the id
    privacy.check_prompt("RR mean: 1304 ms", ["1304"])  # a short numeric id cannot be told from a measurement
    with pytest.raises(RecordError, match="date"):
        privacy.check_prompt("recorded 1984-11-09", [])
    with pytest.raises(RecordError, match="date"):
        privacy.check_prompt("compared with the tracing of 03/04/2150", [])  # MIMIC's shifted years
    assert privacy.scrub_dates("compared with ECG of 2150-03-04; PR 160-180 ms") == "compared with ECG of [date]; PR 160-180 ms"
    assert "SECRETVALUE" not in privacy.redact("key SECRETVALUE and Bearer abc.def", ["SECRETVALUE"])
    assert privacy.safe_url("https://user:pw@host.example:8443/v1?key=1") == "https://host.example:8443/v1"


def test_credentialed_dataset_refused_for_remote_api_base(inputs, tmp_path, server):
    from esi_tools.artifacts import ArtifactWriter
    from esi_tools.dataset import Dataset

    ds = Dataset.open(inputs[0])  # the same real records, marked credentialed as a MIMIC-IV-ECG ingest would
    with ArtifactWriter(tmp_path / "cred", "dataset", parameters={**ds.artifact.parameters, "source": "mimic-iv-ecg"}) as w:
        w.write_table("records.parquet", ds.records.head(8))
        w.write_array("waveforms.npy", np.asarray(ds.waveforms[:8]))
        w.write_table("rejects.parquet", pl.DataFrame({"path": [], "reason": []}, schema={"path": pl.String, "reason": pl.String}))
        w.summary.update({**ds.artifact.summary, "records": 8, "credentialed": True})
        cred = w.commit()
    remote = run_esi("caption", cred, "--model", MODEL, "--api-base", "https://203.0.113.7/v1", "--out", tmp_path / "r")
    assert remote.exit_code == 2 and "refused" in remote.stderr and "credentialed" in remote.stderr
    assert "Traceback" not in remote.stderr and not (tmp_path / "r").exists()
    cloud = run_esi("caption", cred, "--model", "anthropic/claude-3-5-haiku-latest", "--out", tmp_path / "r")
    assert cloud.exit_code == 2 and "refused" in cloud.stderr
    assert server.requests == 0
    local = run_esi("-q", "caption", cred, *llm_args(server), "--out", tmp_path / "l")
    assert local.exit_code == 0, local.stderr
    privacy_record = read(tmp_path / "l")[1]["summary"]["privacy"]
    assert privacy_record["credentialed"] and privacy_record["endpoint_local"]
    assert privacy_record["decision"] == "allowed: credentialed dataset, local endpoint"


def test_template_file_is_replaceable_and_checked(inputs, tmp_path):
    good = tmp_path / "short.txt"
    good.write_text("[system]\nBe brief.\n[user]\nFindings: {findings}\nPassages: {passage_ids}\n")
    result = caption(inputs, "--template", good, out=tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    assert read(tmp_path / "c")[1]["parameters"]["template"] == "file:short.txt"
    bad = tmp_path / "bad.txt"
    bad.write_text("[system]\nx\n[user]\nRecord {record_id}\n")
    result = caption(inputs, "--template", bad, out=tmp_path / "d")
    assert result.exit_code == 2 and "unknown placeholder {record_id}" in result.stderr
    bad.write_text("[system]\nanswer as JSON {\n[user]\n{findings}\n")
    result = caption(inputs, "--template", bad, out=tmp_path / "e")
    assert result.exit_code == 2 and "literal brace" in result.stderr


# ---- the LLM path: litellm against the local server -----------------------------------------------------
def test_retries_on_transient_faults_then_succeeds(inputs, tmp_path, server):
    server.queue.extend(["429", "500", "503", "hang", "malformed", "drop", "empty", "truncated", "refusal"])
    result = caption(inputs, *llm_args(server, "--limit", "30", "--concurrency", "4", "--retries", "9"),
                     out=tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    table, manifest = read(tmp_path / "c")
    summary = manifest["summary"]
    assert set(table["status"]) == {"ok"}
    assert summary["retries"] == 9 and summary["requests"] == summary["unique_prompts"] + 9 == server.requests
    assert server.by_fault["ok"] == summary["unique_prompts"]
    assert table["caption"].str.starts_with("Local model caption").all()
    assert summary["cost_usd"] > 0 and summary["input_tokens"] > 0
    assert abs(table["cost_usd"].sum() - summary["cost_usd"]) < 1e-9  # paid bad answers are counted too


def test_retry_after_is_honoured(server):
    import asyncio

    from esi_tools.caption.llm import LLMClient, LLMConfig
    from esi_tools.caption.run import Budget

    client = LLMClient(LLMConfig(model=MODEL, api_base=server.base_url, timeout_s=2, backoff_s=0.01))
    server.retry_after_s = 0.8

    def timed(fault: str) -> float:
        server.queue.append(fault)
        started = time.perf_counter()
        answer = asyncio.run(client.complete("system", f"user {fault}", Budget()))
        assert answer.attempts == 2 and answer.text.startswith("Local model caption")
        return time.perf_counter() - started

    assert timed("429") >= 0.8  # waited as the server asked
    assert timed("500") < 0.5  # no Retry-After: only the short jittered backoff


def test_persistent_failures_are_recorded_with_reason(inputs, tmp_path, server):
    server.rules += [("Patient: 56-year-old female", "empty"), ("Patient: 19-year-old male", "refusal"),
                     ("Patient: 37-year-old female", "truncated"), ("Patient: 24-year-old male", "500")]
    result = caption(inputs, *llm_args(server, "--limit", "12", "--retries", "2"), out=tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    table, manifest = read(tmp_path / "c")
    failed = {r["record_id"]: r for r in table.filter(pl.col("status") == "failed").iter_rows(named=True)}
    reasons = " | ".join(r["error"] for r in failed.values())
    for word in ("empty answer", "refusal", "truncated answer", "InternalServerError 500"):
        assert word in reasons
    assert all(r["caption"] is None for r in failed.values())
    assert {r["attempts"] for r in failed.values()} <= {0, 3}  # 3 tries; a duplicate prompt rides on the first
    assert manifest["summary"]["failed"] == len(failed) >= 4
    assert (table.filter(pl.col("status") == "ok")["caption"].str.len_chars() > 0).all()


def test_cache_and_dedup_prevent_repeat_calls(inputs, tmp_path, server):
    first = caption(inputs, *llm_args(server, "--concurrency", "16"), out=tmp_path / "a")
    assert first.exit_code == 0, first.stderr
    a, ma = read(tmp_path / "a")
    assert max(server.prompts.values()) == 1  # identical prompts were sent once
    assert server.requests == ma["summary"]["unique_prompts"] and ma["summary"]["cache_hits"] == 0
    server.reset_counters()
    second = caption(inputs, *llm_args(server), out=tmp_path / "b")
    assert second.exit_code == 0, second.stderr
    b, mb = read(tmp_path / "b")
    assert server.requests == 0 and mb["summary"]["cache_hits"] == N_RECORDS and mb["summary"]["cost_usd"] == 0
    assert a["caption"].to_list() == b["caption"].to_list()
    third = caption(inputs, *llm_args(server, "--temperature", "0.7"), out=tmp_path / "t")  # other parameters
    assert third.exit_code == 0 and server.requests == ma["summary"]["unique_prompts"]


def test_max_cost_stops_cleanly_and_rerun_completes(inputs, tmp_path, server):
    from esi_tools.caption.cache import CaptionCache, default_cache_path

    result = caption(inputs, *llm_args(server, "--max-cost", "0.0012", "--concurrency", "2"), out=tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    table, manifest = read(tmp_path / "c")
    summary = manifest["summary"]
    assert summary["stopped"].startswith("--max-cost") and 0 < summary["cost_usd"] <= 0.0012
    assert 0 < summary["ok"] < N_RECORDS and summary["skipped"] == N_RECORDS - summary["ok"]
    skipped = table.filter(pl.col("status") == "skipped")
    assert skipped["error"].str.contains("max-cost").all() and skipped["caption"].is_null().all()
    paid = len(CaptionCache(default_cache_path()))
    assert paid == server.requests  # every answer paid for is kept
    server.reset_counters()
    rerun = caption(inputs, *llm_args(server), out=tmp_path / "c")  # same --out: resume
    assert rerun.exit_code == 0, rerun.stderr
    table2, manifest2 = read(tmp_path / "c")
    assert set(table2["status"]) == {"ok"}
    assert server.requests == manifest2["summary"]["unique_prompts"] - paid
    assert manifest2["summary"]["resumed"] + manifest2["summary"]["cache_hits"] + manifest2["summary"]["requests"] \
        + manifest2["summary"]["duplicates"] >= N_RECORDS


def test_max_requests_stops(inputs, tmp_path, server):
    result = caption(inputs, *llm_args(server, "--max-requests", "5", "--concurrency", "3"), out=tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    summary = read(tmp_path / "c")[1]["summary"]
    assert server.requests == summary["requests"] == 5 and summary["stopped"] == "--max-requests 5 reached"


def test_resume_after_killed_run_requests_only_missing(inputs, tmp_path, server):
    from esi_tools.caption.cache import CaptionCache, default_cache_path

    server.latency_s = 0.3
    dataset, features, retrieval = inputs
    env = {**os.environ, "ESI_QUIET": "1"}
    cmd = [str(ROOT / ".venv" / "bin" / "esi"), "caption", str(dataset), "--features", str(features), "--retrieval",
           str(retrieval), "--out", str(tmp_path / "c"), *llm_args(server, "--concurrency", "2")]
    if not Path(cmd[0]).exists():  # not installed as a script: the same app through the interpreter
        cmd = [sys.executable, "-c", "from commands.main import app; app()", *cmd[1:]]
    proc = subprocess.Popen(cmd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.time() + 60
    while server.requests < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert server.requests >= 8, proc.stderr.read().decode()[-2000:]
    assert not (tmp_path / "c").exists()  # a killed run leaves no artifact ...
    paid = len(CaptionCache(default_cache_path()))
    assert paid >= 6  # ... but what it was paid for is kept
    before = dict(server.prompts)
    server.latency_s = 0.0
    server.reset_counters()
    result = caption(inputs, *llm_args(server, "--concurrency", "8"), out=tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    summary = read(tmp_path / "c")[1]["summary"]
    assert summary["cache_hits"] >= paid and summary["ok"] == N_RECORDS
    assert server.requests == summary["unique_prompts"] - paid
    assert len(set(before) & set(server.prompts)) <= 2  # at most the in-flight ones are asked twice


def test_api_key_never_written_or_logged(inputs, tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.always = "401-echo"  # a provider quoting the key back in its error message
    bad = caption(inputs, *llm_args(server, "--limit", "4"), out=tmp_path / "bad")
    assert bad.exit_code == 4 and "AuthenticationError" in bad.stderr and "Traceback" not in bad.stderr
    server.always = None
    server.queue.extend(["500", "empty"])
    good = run_esi("caption", inputs[0], "--features", inputs[1], *llm_args(server, "--limit", "20"),
                   "--out", tmp_path / "good")
    assert good.exit_code == 0, good.stderr
    assert server.auth_headers and all(h == f"Bearer {SECRET}" for h in server.auth_headers)  # the key was used
    for text in (bad.stdout, bad.stderr, good.stdout, good.stderr):
        assert SECRET not in text
    unset = caption(inputs, *llm_args(server, "--api-key-env", "ESI_TEST_NO_SUCH_KEY"), out=tmp_path / "unset")
    assert unset.exit_code == 2 and "ESI_TEST_NO_SUCH_KEY" in unset.stderr and "not set" in unset.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()] + [p for p in Path(os.environ["ESI_HOME"]).rglob("*") if p.is_file()]
    assert any(p.name == "captions.sqlite" for p in files) and any(p.name == "captions.parquet" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
