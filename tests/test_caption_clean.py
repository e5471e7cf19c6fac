"""What a real model sends back is cleaned into a caption or counted as a failed answer with its reason; an answer
cut at max_tokens keeps its whole sentences instead of being paid for again; --on-unfaithful acts on the audit."""

from __future__ import annotations

import polars as pl
import pytest
from test_caption import SECRET, caption, inputs, llm_args, read, server  # noqa: F401 (fixtures)

from esi_tools.caption.clean import Unusable, clean
from esi_tools.caption.prompt import load_template

PROMPT = "Patient: 56-year-old female\n\nMeasurements (automated, from the waveform):\n- heart rate: 63 bpm\nDescribe this ECG."
SYSTEM = load_template().system


@pytest.mark.parametrize("raw, text, edit", [
    ("<|im_start|>assistant\nSinus rhythm at 63 bpm with normal intervals.<|im_end|>",
     "Sinus rhythm at 63 bpm with normal intervals.", "removed chat-template tokens"),
    ("Patient: 56-year-old female\n- heart rate: 63 bpm\nSinus rhythm at 63 bpm, normal axis.",
     "Sinus rhythm at 63 bpm, normal axis.", "removed prompt echo"),
    ("This is a 12-lead resting ECG for a teaching database. Sinus rhythm at 63 bpm.",
     "Sinus rhythm at 63 bpm.", "removed prompt echo"),
    ("Sure, here is a description of the ECG: Sinus rhythm at 63 bpm. As an AI, I cannot give medical advice.",
     "Sinus rhythm at 63 bpm.", "removed boilerplate"),
    ("## ECG description\n**Rhythm:**\n- Sinus rhythm at 63 bpm\n- Normal PR interval",
     "Sinus rhythm at 63 bpm. Normal PR interval.", "joined list into prose"),
    ("Sinus rhythm at 63 bpm. Normal axis. Sinus rhythm at 63 bpm.", "Sinus rhythm at 63 bpm. Normal axis.",
     "removed repeated text"),
    ("Sinus rhythm at 63 bpm with normal conduction. The QRS complex is narrow and the axis is normal. "
     "The T waves are upright in the lateral leads and the ST segments are flat.",
     "Sinus rhythm at 63 bpm with normal conduction. The QRS complex is narrow and the axis is normal.",
     "cut at the word budget (20 words)"),
])
def test_answers_are_cleaned_and_each_edit_named(raw, text, edit):
    cleaned = clean(raw, prompt=PROMPT, words=20, instructions=SYSTEM)
    assert cleaned.text == text and edit in cleaned.edits


def test_an_answer_cut_at_max_tokens_keeps_its_whole_sentences():
    cleaned = clean("Sinus rhythm at 63 bpm. The QRS is narrow and the", prompt=PROMPT, words=33, truncated=True)
    assert cleaned.text == "Sinus rhythm at 63 bpm." and "cut unfinished sentence (finish_reason=length)" in cleaned.edits


@pytest.mark.parametrize("raw, reason", [
    ("", "empty answer"), ("<|im_end|>", "nothing left"), ("I'm sorry, I can't describe this ECG.", "refusal"),
    ("The ECG shows. The ECG shows. The ECG shows. The ECG shows.", "repetitive"),
    ("Normal ECG.", "too short"), ("Sinus rhythm and", "nothing left"),
])
def test_unusable_answers_give_their_reason(raw, reason):
    with pytest.raises(Unusable, match=reason):
        clean(raw, prompt=PROMPT, words=33, truncated=raw == "Sinus rhythm and")


def test_cut_answers_are_kept_not_paid_for_again(inputs, tmp_path, server):  # noqa: F811
    server.always = "say-cut:Sinus rhythm at 63 bpm with a normal axis. The QRS complex is narrow and"
    result = caption(inputs, *llm_args(server, "--limit", "5"), out=tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    table, manifest = read(tmp_path / "c")
    assert table["status"].to_list() == ["ok"] * 5 and server.requests == manifest["summary"]["unique_prompts"]
    assert set(table["caption"]) == {"Sinus rhythm at 63 bpm with a normal axis."}
    assert all("cut unfinished sentence (finish_reason=length)" in e for e in table["edits"].to_list())
    assert manifest["parameters"]["max_tokens"] == 2 * 33 + 32


def test_on_unfaithful_flags_or_replaces_a_contradicted_caption(inputs, tmp_path, server):  # noqa: F811
    """Record 1 (PTB-XL: sinus rhythm, normal ECG, ~63 bpm) answered with atrial fibrillation at 150 bpm."""
    server.rules.append(("Patient: 56-year-old female", "say:Atrial fibrillation at 150 bpm with left bundle branch block."))
    flagged = caption(inputs, *llm_args(server, "--limit", "3"), out=tmp_path / "flag")
    assert flagged.exit_code == 0, flagged.stderr
    table, manifest = read(tmp_path / "flag")
    row = table.filter(pl.col("record_id") == "1").row(0, named=True)
    assert row["faithful"] is False and row["caption"].startswith("Atrial fibrillation")
    assert any("150 bpm" in c for c in row["contradicted"]) and any("bundle" in c for c in row["contradicted"])
    assert manifest["summary"]["audit"]["unfaithful"] >= 1 and "contradict their ECG" in flagged.stderr

    replaced = caption(inputs, *llm_args(server, "--limit", "3", "--on-unfaithful", "template"), out=tmp_path / "tpl")
    assert replaced.exit_code == 0, replaced.stderr
    table, manifest = read(tmp_path / "tpl")
    row = table.filter(pl.col("record_id") == "1").row(0, named=True)
    assert row["faithful"] is True and row["source"].startswith("template (replaced")
    assert "sinus rhythm" in row["caption"].lower() and manifest["summary"]["audit"]["replaced"] >= 1
    resumed = caption(inputs, *llm_args(server, "--limit", "3", "--on-unfaithful", "flag"), out=tmp_path / "tpl")
    assert resumed.exit_code != 0 and "other settings" in resumed.stderr  # a replacement never resumes as the model's

    kept = caption(inputs, *llm_args(server, "--limit", "3", "--on-unfaithful", "keep"), out=tmp_path / "keep")
    assert kept.exit_code == 0, kept.stderr
    table, manifest = read(tmp_path / "keep")
    assert table["faithful"].is_null().all() and manifest["summary"]["audit"] is None


def test_a_key_given_as_the_variable_name_is_refused_unechoed(inputs, tmp_path, server):  # noqa: F811
    result = caption(inputs, *llm_args(server, "--api-key-env", SECRET), out=tmp_path / "c")
    assert result.exit_code == 2 and SECRET not in result.stderr + result.stdout and "looks like a key" in result.stderr
    assert server.requests == 0


def test_huggingface_provider_with_a_local_api_base_is_refused(inputs, tmp_path, server):  # noqa: F811
    result = caption(inputs, "--model", "huggingface/HuggingFaceTB/SmolLM2-135M-Instruct", "--api-base",
                     server.base_url, out=tmp_path / "c")
    assert result.exit_code == 2 and "openai/NAME" in result.stderr and server.requests == 0


def test_the_report_shows_the_audit_side_by_side(inputs, tmp_path, server):  # noqa: F811
    """Two captions artifacts of the same records (a wrong model answer and the template), audited, reported."""
    from conftest import run_esi

    server.rules.append(("Patient: 56-year-old female", "say:Atrial fibrillation at 150 bpm with left bundle branch block."))
    run = tmp_path / "run"
    assert caption(inputs, *llm_args(server, "--limit", "4"), out=run / "llm").exit_code == 0
    assert caption(inputs, "--limit", "4", out=run / "template").exit_code == 0
    result = run_esi("audit", run / "llm", run / "template", "--common", "--out", run / "audit")
    assert result.exit_code == 0, result.stderr
    report = run_esi("report", run, "--out", tmp_path / "report")
    assert report.exit_code == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Caption audit" in text and "✗ CONTRADICTED" in text and "Atrial fibrillation at 150 bpm" in text
    assert "Record 1" in text and (tmp_path / "report" / "audit_ecg_1.png").is_file()
