"""What may leave this machine: no identifiers in prompts, credentialed data only to local endpoints, no keys in logs.

PhysioNet's credentialed licence (MIMIC-IV-ECG) forbids sending the data to third-party services, so a
dataset whose manifest says `credentialed: true` is only captioned by a provider on this machine or the
local network unless the user passes --allow-remote; the decision is written to the captions manifest.
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import urlsplit, urlunsplit

from ..errors import RecordError, UsageError

# Literal addresses counted as "this machine or the local network". Host names other than localhost are
# treated as remote: resolving them would itself be a network call, and a name can point anywhere.
LOCAL_NETWORKS = [ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128",  # loopback
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918 private LAN
    "fc00::/7", "fe80::/10", "169.254.0.0/16",  # IPv6 unique-local, link-local
)]
LOCAL_PROVIDERS = {"ollama": "http://localhost:11434", "ollama_chat": "http://localhost:11434"}  # their default servers
# A numeric id shorter than this is indistinguishable from a measured value (PTB-XL ecg_id 1304 vs an RR of
# 1304 ms), so it is not searched for; evidence is built from an allow-list, so ids cannot enter it anyway.
# MIMIC's subject and study ids have 8 digits and are checked.
MIN_NUMERIC_ID = 6
SECRET_ENV = re.compile(r"(_API_KEY|_TOKEN|_SECRET|_KEY)$")
SECRET_TEXT = re.compile(r"(Bearer\s+)\S+|\b(sk|pk|key)-[A-Za-z0-9_\-]{6,}")
# ISO and day/month/year dates; MIMIC shifts its dates into 2100-2200, so those years count too.
DATE_TEXT = re.compile(r"\b(19|20|21|22)\d\d-[01]\d-[0-3]\d\b|\b[0-3]?\d[./-][01]?\d[./-](19|20|21|22)\d\d\b")
DATE_HINT = re.compile(r"\d[-./][01]?\d[-./]\d")  # a cheap first pass before the full date pattern


def is_local_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(address in net for net in LOCAL_NETWORKS)


def endpoint(model: str, api_base: str | None) -> tuple[str, bool]:
    """(where requests go, whether that is local) for a litellm model name and optional --api-base."""
    if model == "template":
        return "in-process template provider", True
    provider = model.split("/", 1)[0] if "/" in model else ""
    base = api_base
    if base is None and provider in LOCAL_PROVIDERS:
        base = os.environ.get("OLLAMA_API_BASE") or LOCAL_PROVIDERS[provider]
    if base is None:
        return f"{provider or model} cloud API", False
    return safe_url(base), is_local_host(urlsplit(base).hostname)


def decide(*, credentialed: bool, model: str, api_base: str | None, allow_remote: bool) -> dict:
    """The privacy decision for this run (goes into the manifest); raises UsageError when refused."""
    where, local = endpoint(model, api_base)
    decision = {"credentialed": credentialed, "endpoint": where, "endpoint_local": local,
                "allow_remote": allow_remote}
    if not credentialed:
        decision["decision"] = "allowed: dataset is not credentialed"
    elif local:
        decision["decision"] = "allowed: credentialed dataset, local endpoint"
    elif allow_remote:
        decision["decision"] = "allowed: credentialed dataset sent to a remote endpoint under --allow-remote"
    else:
        raise UsageError(
            f"refused: this dataset is credentialed (its data use agreement forbids third-party services) and "
            f"'{model}' sends prompts to {where}, which is not this machine or the local network; use a "
            f"local provider (--model template, ollama/..., or --api-base http://127.0.0.1:PORT/v1) or pass "
            f"--allow-remote if your agreement permits it"
        )
    return decision


def check_prompt(prompt: str, identifiers: list[str]) -> None:
    """Refuse a prompt carrying a record's identifiers (ids, dates, paths): a RecordError names which."""
    for value in identifiers:
        shortest = MIN_NUMERIC_ID if value.isdigit() else 4
        if value and len(value) >= shortest and _contains_token(prompt, value):
            raise RecordError(f"privacy: the prompt contains an identifier of the record ({_hint(value)})")
    if DATE_HINT.search(prompt) and DATE_TEXT.search(prompt):
        raise RecordError("privacy: the prompt contains a calendar date")


def scrub_dates(text: str) -> str:
    """Free text (a statement, a report line) with any calendar date replaced: dates identify a visit."""
    return DATE_TEXT.sub("[date]", text) if DATE_HINT.search(text) else text


def _contains_token(text: str, value: str) -> bool:
    """`value` in `text` as a whole token (so id 1234 does not match inside 12345); str.find, no regex per id."""
    start = text.find(value)
    while start >= 0:
        before = text[start - 1] if start else " "
        after = text[start + len(value)] if start + len(value) < len(text) else " "
        if not (before.isalnum() or before in "._") and not (after.isalnum() or after in "._"):
            return True
        start = text.find(value, start + 1)
    return False


def _hint(value: str) -> str:
    return f"{value[:2]}…" if len(value) > 4 else "short id"


def secrets(extra: list[str] | None = None) -> list[str]:
    """Values that must never be written anywhere: API keys and tokens from the environment."""
    found = [v for k, v in os.environ.items() if SECRET_ENV.search(k) and v and len(v) >= 6]
    return sorted(set(found + [v for v in (extra or []) if v]), key=len, reverse=True)


def redact(text: str, known: list[str] | None = None) -> str:
    """Text safe to log or store: known secrets, bearer tokens and key-shaped strings masked."""
    for value in known if known is not None else secrets():
        text = text.replace(value, "***")
    return SECRET_TEXT.sub(lambda m: f"{m.group(1) or ''}***", text)


def safe_url(url: str) -> str:
    """A URL without user:password@ or query string (either may carry a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
