"""Persistent content-addressed cache of LLM answers: model + prompt + parameters -> response.

The answer is stored as the provider sent it (with whether it was cut at max_tokens) and cleaned when read,
so better cleaning rules never throw away an answer already paid for. One SQLite file under $ESI_HOME shared by every run and dataset, so the same prompt is never paid for twice
and a killed run loses nothing it already paid for (every answer is committed as it arrives). Only good
answers are stored; failures are retried by the next run. The endpoint (--api-base) is not part of the key:
the model name and the prompt decide the answer, where it was served from does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost_usd REAL,
    latency_s REAL,
    created_at REAL NOT NULL,
    truncated INTEGER
)
"""
LOOKUP_CHUNK = 500  # SQLite's default limit on bound parameters is 999 (older builds); stay well below


def esi_home() -> Path:
    """Where esi keeps state shared across runs (cache); $ESI_HOME or ~/.esi."""
    return Path(os.environ.get("ESI_HOME") or Path.home() / ".esi")


def default_cache_path() -> Path:
    return esi_home() / "cache" / "captions.sqlite"


def cache_key(model: str, system: str, user: str, params: dict) -> str:
    payload = json.dumps({"model": model, "system": system, "user": user, "params": params}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Cached:
    text: str
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    latency_s: float | None
    truncated: bool = False  # the provider stopped at max_tokens (text is the raw answer, cleaned on read)


class CaptionCache:
    """A thin wrapper over one SQLite table; safe to share between processes (WAL journal)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path or default_cache_path())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread off: the async runner writes from its loop thread only, but tests may reopen.
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; several runs may share it
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process, cheap per commit
        self._db.execute(SCHEMA)
        if "truncated" not in {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}:
            self._db.execute("ALTER TABLE responses ADD COLUMN truncated INTEGER")  # caches written before cleaning
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, Cached]:
        found: dict[str, Cached] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start:start + LOOKUP_CHUNK]
            rows = self._db.execute(
                "SELECT key, text, input_tokens, output_tokens, cost_usd, latency_s, truncated FROM responses "
                f"WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for key, *values, truncated in rows:
                found[key] = Cached(*values, bool(truncated))
        return found

    def put(self, key: str, *, model: str, prompt_hash: str, entry: Cached) -> None:
        """Store one answer and commit at once: a kill right after still keeps it."""
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, model, prompt_hash, text, input_tokens, output_tokens, cost_usd, "
            "latency_s, created_at, truncated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, model, prompt_hash, entry.text, entry.input_tokens, entry.output_tokens, entry.cost_usd,
             entry.latency_s, time.time(), int(entry.truncated)),
        )
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()
