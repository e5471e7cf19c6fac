"""What may leave this machine: credentialed data only to local endpoints, no keys in logs or artifacts.

PhysioNet's credentialed licence (MIMIC-IV-ECG) forbids sending the data to third-party services, so a
dataset whose manifest marks it credentialed is only captioned by a provider on this machine or the local
network (reached directly, not through a proxy elsewhere) unless the user passes --allow-remote; the
decision is written to the captions manifest. What a prompt may carry is `scrub.py`'s concern.
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import UsageError

# Literal addresses counted as "this machine or the local network". Host names other than localhost are
# treated as remote: resolving them would itself be a network call, and a name can point anywhere.
LOCAL_NETWORKS = [ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128",  # loopback
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918 private LAN
    "fc00::/7",  # IPv6 unique-local
)]
# Never local, even inside a range above: link-local addresses reach whatever answers on the link (in a
# cloud VM, the provider's metadata and proxy services), and metadata endpoints hand out credentials.
NOT_LOCAL = [ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10",  # link-local (169.254.169.254: AWS, GCP, Azure, OpenStack metadata)
    "fd00:ec2::254/128",  # AWS instance metadata over IPv6 (inside fc00::/7)
    "100.100.100.200/32",  # Alibaba Cloud metadata
)]
LOCAL_PROVIDERS = {"ollama": "http://localhost:11434", "ollama_chat": "http://localhost:11434"}  # their default servers
# Proxy variables that HTTP clients (httpx, aiohttp, requests) honour. Both spellings are read because clients
# differ in which one wins: a proxy named in any of them is assumed to be used.
PROXY_VARIABLES = {"http": ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"),
                   "https": ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")}
SECRET_ENV = re.compile(r"(_API_KEY|_TOKEN|_SECRET|_KEY)$")
SECRET_TEXT = re.compile(r"(Bearer\s+)\S+|\b(sk|pk|key)-[A-Za-z0-9_\-]{6,}")
# A query parameter (or key=value pair in a message) whose value is a credential: api_key, key, token, sig, ...
SECRET_NAME = re.compile(r"key|token|sig|secret|pass|pwd|auth|credential|session", re.IGNORECASE)
SECRET_PAIR = re.compile(r"(?<![\w\-])((?:x-)?(?:api[_-]?key|key|(?:access[_-]|refresh[_-]|id[_-])?token|sig|signature|"
                         r"secret|client[_-]secret|password|passwd|pwd|auth|code|subscription[_-]key))=([^&\s'\"]+)",
                         re.IGNORECASE)
URL_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
MASK = "***"


# ---- where prompts go ------------------------------------------------------------------------------------
def is_local_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if getattr(address, "ipv4_mapped", None):  # ::ffff:169.254.169.254 is 169.254.169.254
        address = address.ipv4_mapped
    if any(address in net for net in NOT_LOCAL if net.version == address.version):
        return False
    return any(address in net for net in LOCAL_NETWORKS if net.version == address.version)


def proxies_for(url: str) -> list[str]:
    """Proxy URLs the environment would route a request to `url` through (none when NO_PROXY exempts its host).

    NO_PROXY is read narrowly (`*`, the exact host, or a domain suffix), the subset every client agrees on:
    an entry one client would ignore (a CIDR range, a host with a port) is not taken as an exemption.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    found = []
    for name in PROXY_VARIABLES.get(parts.scheme.lower(), ("all_proxy", "ALL_PROXY")):
        value = os.environ.get(name, "").strip()
        if value and value not in found:
            found.append(value)
    if not found:
        return []
    exempt = [e.strip().lower() for name in ("no_proxy", "NO_PROXY") for e in os.environ.get(name, "").split(",")]
    for entry in filter(None, exempt):
        if entry == "*" or entry.strip("[]") == host:
            return []
        domain = entry.lstrip("*").lstrip(".")
        if domain and not _is_address(domain) and host.endswith("." + domain):
            return []
    return found


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return False
    return True


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
    try:
        host = urlsplit(base).hostname
    except ValueError:
        return safe_url(base), False
    where, local = safe_url(base), is_local_host(host)
    proxies = proxies_for(base)
    if proxies:  # the client connects to the proxy, which may be anywhere: local only if every proxy is
        where += " via proxy " + ", ".join(safe_url(p if "://" in p else f"http://{p}") for p in proxies)
        local = local and all(is_local_host(urlsplit(p if "://" in p else f"http://{p}").hostname) for p in proxies)
    return where, local


def is_credentialed(manifest: dict) -> bool:
    """Whether a dataset manifest marks its data credentialed (in its summary or parameters, however ingested)."""
    summary, parameters = manifest.get("summary") or {}, manifest.get("parameters") or {}
    return bool(summary.get("credentialed") or parameters.get("credentialed")
                or parameters.get("source") == "mimic-iv-ecg")


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
            f"'{model}' sends prompts to {where}, which is not this machine or the local network reached "
            f"directly; use a local provider (--model template, ollama/..., or --api-base "
            f"http://127.0.0.1:PORT/v1, with NO_PROXY covering it if a proxy is set) or pass --allow-remote "
            f"if your agreement permits it"
        )
    return decision


# ---- secrets: never written, never logged ----------------------------------------------------------------
def secrets(extra: list[str] | None = None) -> list[str]:
    """Values that must never be written anywhere: API keys and tokens from the environment, plus `extra`."""
    found = [v for k, v in os.environ.items() if SECRET_ENV.search(k) and v and len(v) >= 6]
    return sorted(set(found + [v for v in (extra or []) if v]), key=len, reverse=True)


def url_secrets(url: str | None) -> list[str]:
    """The credentials a URL carries (userinfo, key-like query values), raw and percent-decoded."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    user, colon, password = parts.netloc.rpartition("@")[0].partition(":")
    # the password; a user name only when it is the credential itself (https://KEY@host) or key-length, so a
    # plain name like "user" does not mask every path that contains it
    found = [v for v in (password, user if not colon or len(user) >= 12 else "") if v]
    for pair in f"{parts.query}&{parts.fragment}".split("&"):
        name, _, value = pair.partition("=")
        if value and SECRET_NAME.search(name):
            found.append(value)
    found += [unquote(v) for v in found]
    return [v for v in set(found) if len(v) >= 4]


def redact(text: str, known: list[str] | None = None) -> str:
    """Text safe to log or store: known secrets, URL credentials, bearer tokens and key-shaped strings masked."""
    for value in known if known is not None else secrets():
        text = text.replace(value, MASK)
    text = URL_TEXT.sub(lambda m: safe_url(m.group(0)), text)
    text = SECRET_PAIR.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return SECRET_TEXT.sub(lambda m: f"{m.group(1) or ''}{MASK}", text)


def scrub_argv(argv: list[str], known: list[str] | None = None) -> list[str]:
    """A command line fit for a manifest: every argument redacted (URLs in it lose their credentials)."""
    return [redact(str(arg), known) for arg in argv]


def safe_url(url: str) -> str:
    """A URL without user:password@ and with key-like query values masked (api_key=***); other parts kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "[unparseable url]"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, _mask_pairs(parts.query), _mask_pairs(parts.fragment)))


def _mask_pairs(query: str) -> str:
    pairs = []
    for pair in query.split("&") if query else []:
        name, eq, value = pair.partition("=")
        if eq and SECRET_NAME.search(name):
            value = MASK
        elif not eq and len(name) >= 8:  # a bare value (?SECRET) may itself be a key
            name = MASK
        pairs.append(f"{name}{eq}{value}")
    return "&".join(pairs)
