"""A real model's answer -> a caption, or the reason it is not one.

Small local models do not answer the way a prompt asks: they leak chat-template tokens, echo the prompt,
open with "Sure, here is…" or "As an AI…", write headings and lists instead of prose, repeat themselves, and
run past the word budget until `max_tokens` cuts them mid-sentence. Each of these is cleaned here and named
in the row's `edits`, so a caption can be traced to what the model actually sent. What cannot be cleaned
into a caption (nothing left, a refusal, a loop) raises `Unusable` with the reason; the caller retries it
within `--retries` and records the reason if every attempt fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHAT_TOKENS = re.compile(r"<\|[^|<>]{1,40}\|>|</?s>|\[/?INST\]|<</?SYS>>|<\|?endoftext\|?>|<\|?im_(?:start|end)\|?>")
ROLE_PREFIX = re.compile(r"^\s*(?:assistant|system|user|answer|response|description|caption|ecg description)\s*(?::|\n)\s*",
                         re.IGNORECASE)
LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)])\s+")
HEADING = re.compile(r"^\s*(?:#{1,6}\s.*|\**[A-Z][\w ,/()'-]{0,48}\**\s*:\s*\**|\*\*[^*]{1,60}\*\*\s*:?)\s*$")
MARKUP = re.compile(r"\*\*|__|`|^\s*>\s*")
BOILERPLATE = re.compile(
    r"\bas an ai\b|\bi am (?:an ai|a language model|not a (?:doctor|physician|medical))|\blanguage model\b"
    r"|\bconsult (?:a|your|with a) (?:doctor|physician|healthcare|cardiologist|medical)|\bhope this helps\b"
    r"|\bhere(?: is|'s) (?:a|an|the|my) (?:\w+ )?(?:description|summary|caption|interpretation|report)\b"
    r"|^(?:sure|certainly|of course|okay|ok)\b[,!.]|\bnot (?:a substitute for )?medical advice\b"
    r"|\blet me know if\b|\bfeel free to\b|^describe this ecg\b", re.IGNORECASE)
LEAD_IN = re.compile(r"^(?:(?:sure|certainly|of course|okay|ok)\b[,!.]?\s*)?"
                     r"(?:here(?: is|'s) (?:a|an|the|my) [^:.\n]{0,60}[:.]\s*)?", re.IGNORECASE)
REFUSAL = re.compile(r"^\W*(?:I'?m sorry|I am sorry|I apologi[sz]e|I can(?:no|')t|I'?m unable|I am unable|"
                     r"I (?:will|won'?t) not)", re.IGNORECASE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
TERMINAL = (".", "!", "?")
MIN_WORDS = 4  # "Sinus rhythm, 63 bpm." is the shortest useful caption
ECHO_CHARS = 12  # a prompt line at least this long, repeated verbatim, is an echo, not an answer
ECHO_WORDS = 6  # a sentence repeating this many consecutive words of the instructions restates them


class Unusable(Exception):
    """An answer that no cleaning turns into a caption (the reason is recorded, the prompt retried)."""


@dataclass(frozen=True)
class Cleaned:
    text: str
    edits: tuple[str, ...]  # what was changed, in order: "removed chat-template tokens", ...


def clean(raw: str, *, prompt: str, words: int, truncated: bool = False, instructions: str = "") -> Cleaned:
    """The caption in `raw` (a model's answer to `prompt`), within `words` words, with the edits made.

    truncated: the provider stopped at max_tokens (finish_reason=length), so an unfinished last sentence is cut.
    instructions: the system message; a sentence restating it ("a 12-lead resting ECG for a teaching
    database") is an echo, not a description."""
    edits: list[str] = []
    text = raw or ""
    if not text.strip():
        raise Unusable("empty answer")
    stripped = CHAT_TOKENS.sub(" ", text)
    if stripped != text:
        edits.append("removed chat-template tokens")
    text = ROLE_PREFIX.sub("", stripped.strip())
    lead_in = LEAD_IN.match(text)
    if lead_in and lead_in.group(0):
        text = text[lead_in.end():]
        edits.append("removed boilerplate")
    text = _prose(text, prompt, edits)
    text = _sentences(text, edits, truncated, _ngrams(instructions))
    if not text:
        raise Unusable("nothing left after cleaning (" + "; ".join(edits) + ")" if edits else "empty answer")
    if REFUSAL.match(text):
        raise Unusable("refusal")
    text = _budget(text, words, edits)
    if len(text.split()) < MIN_WORDS:
        raise Unusable(f"too short after cleaning ({len(text.split())} words)")
    return Cleaned(text, tuple(edits))


def _prose(text: str, prompt: str, edits: list[str]) -> str:
    """Drop echoed prompt lines and headings; turn list items into sentences; remove markup."""
    prompt_lines = {_norm(line) for line in prompt.splitlines() if len(_norm(line)) >= ECHO_CHARS}
    prompt_text = _norm(prompt)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        norm = _norm(line)
        if len(norm) >= ECHO_CHARS and (norm in prompt_lines or (len(norm) > 40 and norm in prompt_text)):
            _note(edits, "removed prompt echo")
            continue
        if HEADING.match(line):
            _note(edits, "removed heading")
            continue
        if LIST_ITEM.match(line):
            _note(edits, "joined list into prose")
            line = LIST_ITEM.sub("", line).strip()
            if line and not line.endswith(TERMINAL):
                line += "."
        unmarked = MARKUP.sub("", line)
        if unmarked != line:
            _note(edits, "removed markup")
        out.append(unmarked.strip())
    return " ".join(out)


def _ngrams(text: str) -> set[str]:
    tokens = re.sub(r"[^\w\s-]", " ", text.lower()).split()
    return {" ".join(tokens[i:i + ECHO_WORDS]) for i in range(len(tokens) - ECHO_WORDS + 1)}


def _sentences(text: str, edits: list[str], truncated: bool, instruction_grams: set[str]) -> str:
    """Drop boilerplate, restated instructions and repeated sentences, and an unfinished last sentence of a
    cut answer."""
    sentences = [s.strip() for s in SENTENCE_END.split(" ".join(text.split())) if s.strip()]
    if truncated and sentences and not sentences[-1].endswith(TERMINAL):
        sentences.pop()
        _note(edits, "cut unfinished sentence (finish_reason=length)")
    kept, seen, repeats = [], set(), 0
    for sentence in sentences:
        if BOILERPLATE.search(sentence):
            _note(edits, "removed boilerplate")
            continue
        if instruction_grams and _ngrams(sentence) & instruction_grams:
            _note(edits, "removed prompt echo")
            continue
        key = re.sub(r"\W+", " ", sentence.lower()).strip()
        if key in seen or _loops(key):
            repeats += 1
            continue
        seen.add(key)
        kept.append(sentence)
    if repeats:
        if repeats >= max(2, len(kept)):
            raise Unusable(f"repetitive answer ({repeats} repeated sentences)")
        _note(edits, "removed repeated text")
    text = " ".join(kept)
    if text and not text.endswith(TERMINAL):
        text += "."
    return text


def _loops(sentence: str) -> bool:
    """A sentence that says the same four words three or more times (a decoding loop)."""
    tokens = sentence.split()
    grams = [" ".join(tokens[i:i + 4]) for i in range(len(tokens) - 3)]
    return any(grams.count(g) >= 3 for g in set(grams))


def _budget(text: str, words: int, edits: list[str]) -> str:
    """Whole sentences up to `words` words; the first one is kept if it fits twice the budget."""
    sentences = SENTENCE_END.split(text)
    kept, used = [], 0
    for sentence in sentences:
        n = len(sentence.split())
        if used + n > words and (kept or n > 2 * words):
            break
        kept.append(sentence)
        used += n
    if not kept:
        raise Unusable(f"no sentence within the word budget ({len(sentences[0].split())} words in the first)")
    if len(kept) < len(sentences):
        _note(edits, f"cut at the word budget ({words} words)")
    return " ".join(kept)


def _norm(line: str) -> str:
    return " ".join(LIST_ITEM.sub("", MARKUP.sub("", line)).lower().split())


def _note(edits: list[str], edit: str) -> None:
    if edit not in edits:
        edits.append(edit)
