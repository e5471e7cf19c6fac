"""One chat completion through litellm, made robust: per-request timeout, retries with exponential backoff
and full jitter on 429 / 5xx / timeouts / connection errors (honouring Retry-After), and answers cleaned
(clean.py: template tokens, echoes, boilerplate, lists, an answer cut at max_tokens is cut back to its last
whole sentence and kept) or, when nothing usable is left, retried and then reported with the reason.

Keys come only from the environment (litellm's provider defaults, or --api-key-env NAME); every message
that leaves this module passes through `privacy.redact`, so a provider echoing the key cannot leak it.
litellm is imported lazily (it costs seconds) with its price map read locally (no network at import).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from ..errors import EsiError, UsageError
from .clean import REFUSAL, Cleaned, Unusable
from .privacy import redact, secrets, url_secrets

RETRY_STATUS = {408, 409, 425, 429}  # plus every 5xx: transient by definition


@dataclass(frozen=True)
class LLMConfig:
    model: str
    api_base: str | None = None  # any OpenAI-compatible server (vLLM, llama.cpp, a local test server)
    api_key_env: str | None = None  # env var holding the key; None = litellm's default for the provider
    temperature: float = 0.2  # low: clinical text should vary little between runs, but not be greedy-brittle
    max_tokens: int = 98  # 2 x words + 32 for the default 33 words: a longer answer is cut back to whole sentences
    timeout_s: float = 60.0  # one request; slow local models on CPU need tens of seconds
    retries: int = 4  # after the first try: 5 attempts ride out a minute of rate limiting with backoff
    backoff_s: float = 1.0  # first backoff step; doubles each retry (full jitter spreads the herd)
    backoff_max_s: float = 30.0  # cap of one backoff step
    retry_after_max_s: float = 120.0  # a provider asking to wait longer than this is treated as this


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    latency_s: float
    attempts: int
    edits: tuple[str, ...] = ()  # what cleaning changed in the model's answer
    raw: str = ""  # the answer as the provider sent it (what the cache keeps)
    truncated: bool = False  # the provider stopped at max_tokens


class CaptionFailure(Exception):
    """A prompt that got no usable answer after all retries (recorded as a failed row, the run goes on)."""

    def __init__(self, reason: str, attempts: int, cost_usd: float, stopped: bool = False):
        super().__init__(reason)
        self.reason, self.attempts, self.cost_usd, self.stopped = reason, attempts, cost_usd, stopped


class BudgetStop(Exception):
    """--max-cost or --max-requests is reached: no further request may be sent."""


class ProviderError(EsiError):
    """A failure that every request would hit (bad key, unknown model): the run stops at once."""

    exit_code = 4


def import_litellm():
    """litellm, imported offline and quiet (its own error logs could quote provider messages verbatim)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True  # a provider that lacks a parameter ignores it instead of failing every call
    litellm.turn_off_message_logging = True  # prompts stay out of litellm's logging objects (and ~15 % less CPU)
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).disabled = True
    return litellm


class LLMClient:
    """Async chat completions for one model; `complete` never raises for a per-prompt problem."""

    def __init__(self, config: LLMConfig):
        self.config = config
        self.litellm = import_litellm()
        self.provider = config.model.split("/", 1)[0] if "/" in config.model else ""
        self._key = self._api_key()
        self._secrets = secrets(([self._key] if self._key else []) + url_secrets(config.api_base))
        self.retries = 0  # attempts beyond the first, over the whole run
        self.price_known = self._price(1, 1) is not None

    def _api_key(self) -> str | None:
        cfg = self.config
        if cfg.api_key_env:
            if not os.environ.get(cfg.api_key_env):  # run.check_request_options has refused key-like names
                raise UsageError("--api-key-env: that environment variable is not set")
            return os.environ[cfg.api_key_env]
        if cfg.api_base and self.provider in ("openai", "") and not os.environ.get("OPENAI_API_KEY"):
            return "no-key"  # OpenAI-compatible local servers ignore it; the client library insists on one
        return None

    def _price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        try:
            inp, out = self.litellm.cost_per_token(model=self.config.model, prompt_tokens=prompt_tokens,
                                                   completion_tokens=completion_tokens)
        except Exception:  # litellm raises a bare Exception for models missing from its price map
            return None
        return float(inp + out)

    def estimate_cost(self, system: str, user: str) -> float | None:
        """An upper bound of one attempt's cost (the prompt's tokens and a full max_tokens answer): what
        --max-cost reserves while the request is in flight, so the cap holds whatever the answers cost."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        try:
            tokens = self.litellm.token_counter(model=self.config.model, messages=messages)
        except Exception:  # no tokenizer for this model: ~2.3 characters per token is the worst seen on prompts
            tokens = (len(system) + len(user)) // 2
        return self._price(tokens, self.config.max_tokens)

    async def complete(self, system: str, user: str, budget, accept=None) -> Completion:
        """Ask until a usable answer arrives or retries run out; `budget.acquire` may stop before any attempt.

        `budget` is run.Budget (max_cost_usd, async acquire(estimate) -> reserved, async release(reserved, cost)).
        `accept(text, truncated) -> clean.Cleaned` turns an answer into a caption or raises clean.Unusable
        (None: the answer is taken as it is, unless cut at max_tokens).
        """
        cfg = self.config
        attempts, spent, reason = 0, 0.0, "no attempt made"
        for attempt in range(cfg.retries + 1):
            try:
                estimate = self.estimate_cost(system, user) if budget.max_cost_usd is not None else None
                reserved = await budget.acquire(estimate)
            except BudgetStop as stop:
                raise CaptionFailure(f"{reason}; not retried: {stop}" if attempts else str(stop),
                                     attempts, spent, stopped=True) from None
            attempts += 1
            self.retries += attempt > 0
            started = time.perf_counter()
            cost, retry_after = 0.0, None
            try:
                response = await asyncio.wait_for(self._call(system, user), cfg.timeout_s + 5)
            except (asyncio.TimeoutError, TimeoutError):
                reason = f"timeout after {cfg.timeout_s:g} s"
            except Exception as exc:  # litellm maps every provider error onto its exception classes
                verdict, reason, retry_after = self._classify(exc)
                if verdict == "fatal":
                    await budget.release(reserved, 0.0)
                    raise ProviderError(f"{cfg.model}: {reason}") from None
                if verdict == "fail":
                    await budget.release(reserved, 0.0)
                    raise CaptionFailure(reason, attempts, spent) from None
            else:
                cost = _cost(self.litellm, response)
                spent += cost or 0.0
                text, reason, truncated = self._check(response)
                if reason is None:
                    try:
                        cleaned = accept(text, truncated) if accept else _as_is(text, truncated)
                    except Unusable as exc:
                        reason = str(exc)
                if reason is None:
                    await budget.release(reserved, cost)
                    usage = getattr(response, "usage", None)
                    return Completion(cleaned.text, getattr(usage, "prompt_tokens", None),
                                      getattr(usage, "completion_tokens", None), spent if cost is not None else None,
                                      time.perf_counter() - started, attempts, cleaned.edits, text, truncated)
            await budget.release(reserved, cost)
            if attempt < cfg.retries:
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise CaptionFailure(f"{reason} (after {attempts} attempts)", attempts, spent)

    async def _call(self, system: str, user: str):
        cfg = self.config
        kwargs = {"api_base": cfg.api_base} if cfg.api_base else {}
        if self._key:
            kwargs["api_key"] = self._key
        return await self.litellm.acompletion(
            model=cfg.model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            timeout=cfg.timeout_s,
            max_retries=0,  # the OpenAI client's own retries would hide attempts from our budget and counts
            num_retries=0,
            **kwargs,
        )

    def _classify(self, exc: Exception) -> tuple[str, str, float | None]:
        """('retry' | 'fail' | 'fatal', redacted reason, Retry-After seconds or None)."""
        lt = self.litellm
        status = getattr(exc, "status_code", None)
        message = redact(" ".join(str(exc).split())[:300], self._secrets)
        reason = f"{type(exc).__name__}" + (f" {status}" if status else "") + f": {message}"
        if isinstance(exc, (lt.AuthenticationError, lt.PermissionDeniedError, lt.NotFoundError)):
            return "fatal", reason, None
        if isinstance(exc, (lt.Timeout, lt.APIConnectionError, lt.RateLimitError, lt.InternalServerError,
                            lt.ServiceUnavailableError, lt.BadGatewayError)):
            return "retry", reason, _retry_after(exc)
        if isinstance(status, int) and (status >= 500 or status in RETRY_STATUS):
            return "retry", reason, _retry_after(exc)
        return "fail", reason, None  # bad request, context window, content policy: the same prompt fails again

    @staticmethod
    def _check(response) -> tuple[str, str | None, bool]:
        """(answer text, why it is not usable or None, whether it was cut at max_tokens)."""
        try:
            choice = response.choices[0]
        except (AttributeError, IndexError):
            return "", "malformed answer (no choices)", False
        message = choice.message
        text = (getattr(message, "content", None) or "").strip()
        if getattr(message, "refusal", None):
            return text, "refusal", False
        if not text:
            return text, "empty answer", False
        return text, None, choice.finish_reason == "length"

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cfg = self.config
        delay = random.uniform(0, min(cfg.backoff_max_s, cfg.backoff_s * 2 ** attempt))  # full jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, cfg.retry_after_max_s))
        return delay


def _as_is(text: str, truncated: bool) -> Cleaned:
    """The answer unchanged (no cleaning asked for), unless it was cut or refuses."""
    if truncated:
        raise Unusable("truncated answer (finish_reason=length; raise --max-tokens)")
    if REFUSAL.match(text):
        raise Unusable("refusal")
    return Cleaned(text, ())


def _retry_after(exc: Exception) -> float | None:
    """Seconds asked for by a Retry-After (or retry-after-ms) header, if the error carries one."""
    headers = getattr(exc, "litellm_response_headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _cost(litellm, response) -> float | None:
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    if cost is None:
        try:
            cost = litellm.completion_cost(completion_response=response)
        except Exception:  # unknown model price: cost stays unknown rather than a made-up number
            return None
    return float(cost)
