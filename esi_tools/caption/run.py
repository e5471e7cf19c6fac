"""`esi caption`: dataset (+ features + retrieval) -> captions artifact, by template or any litellm model.

Order of work: privacy decision, evidence, prompts (identifier check), then answers from, in turn, the
previous artifact at --out (resume), the persistent cache, and finally the provider: each distinct prompt
is sent once, `concurrency` at a time, every answer cached the moment it arrives. --max-cost and
--max-requests stop new requests cleanly; the records left are written as `skipped` and a rerun asks only
for them. Ctrl-C or a kill leaves no artifact, but everything already paid for is in the cache.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..artifacts import ArtifactWriter, open_artifact
from ..console import log, progress, warn
from ..dataset import Dataset
from ..errors import EsiError, InputError, RecordError, UsageError
from . import privacy, scrub, template_provider
from .cache import Cached, CaptionCache, cache_key
from .clean import Cleaned, Unusable, clean
from .evidence import EvidenceOptions, collect
from .llm import BudgetStop, CaptionFailure, Completion, LLMClient, LLMConfig
from .prompt import load_template, prompt_hash

TEMPLATE_MODEL = "template"
ON_UNFAITHFUL = ("keep", "flag", "template")
OK, FAILED, SKIPPED = "ok", "failed", "skipped"
PROGRESS_STEP = 256  # the template provider is fast: redrawing the bar per record would cost more than it


@dataclass(frozen=True)
class CaptionConfig:
    model: str = TEMPLATE_MODEL  # offline default: no network, no cost, no key
    template: str | None = None  # None = the newest shipped prompt template (templates/v1.txt)
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float = 0.2  # see LLMConfig for the why of these request defaults
    max_tokens: int | None = None  # None = 2 x words + 32: room for the budget and a preamble, not for rambling
    timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 1.0
    concurrency: int = 8  # parallel requests: hosted APIs allow it; raise for vLLM, lower for a laptop ollama
    max_cost_usd: float | None = None  # None = no spending cap
    max_requests: int | None = None  # None = no cap on provider calls (retries count)
    seed: int = 0  # template phrasing choice; same seed + same evidence = same caption
    top_k: int = 3  # retrieved passages per prompt
    words: int = 33  # caption length: 2.5 % of PTB-XL template captions exceed the cpu-demo 64 tokens (35: 5.4 %); the prompt asks for at most this
    allow_remote: bool = False  # credentialed data stays local unless the user says otherwise
    use_cache: bool = True
    cache_path: str | None = None  # None = $ESI_HOME/cache/captions.sqlite
    limit: int | None = None  # caption only the first N records (smoke runs)
    on_unfaithful: str = "flag"  # keep | flag | template: what to do with a caption the audit contradicts
    context: int | None = None  # the model's context window in tokens: longer prompts lose passages to fit

    @property
    def answer_tokens(self) -> int:
        return self.max_tokens if self.max_tokens is not None else 2 * self.words + 32

    def llm(self) -> LLMConfig:
        return LLMConfig(model=self.model, api_base=self.api_base, api_key_env=self.api_key_env,
                         temperature=self.temperature, max_tokens=self.answer_tokens, timeout_s=self.timeout_s,
                         retries=self.retries, backoff_s=self.backoff_s)

    def request_params(self) -> dict:
        """What, beside model and prompt, decides an answer: part of the cache key."""
        return {"temperature": self.temperature, "max_tokens": self.answer_tokens}


@dataclass
class Job:
    """One distinct prompt and the dataset rows waiting for its answer."""

    key: str
    prompt_hash: str
    system: str
    user: str
    rows: list[int] = field(default_factory=list)


@dataclass
class Budget:
    """Counts provider calls and spend; refuses an attempt that could cross --max-requests / --max-cost.

    Each attempt reserves an upper bound of its cost while in flight (LLMClient.estimate_cost), so spend never
    passes --max-cost. When other requests' reservations are what stands in the way, an attempt waits for them
    to settle instead of stopping: the run stops only when the money actually spent leaves no room.
    """

    max_cost_usd: float | None = None
    max_requests: int | None = None
    requests: int = 0
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    stopped: str | None = None
    _settled: asyncio.Condition | None = field(default=None, repr=False)

    async def acquire(self, estimate: float | None) -> float:
        if self._settled is None:
            self._settled = asyncio.Condition()
        reserve = estimate or 0.0  # unknown price: nothing to reserve (the run warned about it)
        async with self._settled:
            while True:
                if self.stopped:
                    raise BudgetStop(self.stopped)
                if self.max_requests is not None and self.requests >= self.max_requests:
                    self.stopped = f"--max-requests {self.max_requests} reached"
                    raise BudgetStop(self.stopped)
                if self.max_cost_usd is not None:
                    if self.spent_usd + reserve > self.max_cost_usd:
                        self.stopped = f"--max-cost {self.max_cost_usd:g} USD reached (spent {self.spent_usd:.6f} USD)"
                        raise BudgetStop(self.stopped)
                    if self.spent_usd + self.reserved_usd + reserve > self.max_cost_usd:
                        await self._settled.wait()  # requests in flight will likely cost less than reserved
                        continue
                self.requests += 1
                self.reserved_usd += reserve
                return reserve

    async def release(self, reserved: float, cost: float | None) -> None:
        self.reserved_usd -= reserved
        self.spent_usd += cost or 0.0
        if self._settled is not None:
            async with self._settled:
                self._settled.notify_all()


async def request_all(jobs: list[Job], client: LLMClient, budget: Budget, *, concurrency: int,
                      on_answer=None, accept=None) -> dict[str, Completion | CaptionFailure]:
    """Answer every job, `concurrency` at a time; `on_answer(job, outcome)` runs as each one finishes.
    `accept(job)` gives the job's answer check (LLMClient.complete's `accept`)."""
    outcomes: dict[str, Completion | CaptionFailure] = {}
    pending = iter(jobs)
    fatal: list[Exception] = []

    async def worker() -> None:
        for job in pending:
            if fatal:
                return
            try:
                outcome = await client.complete(job.system, job.user, budget, accept(job) if accept else None)
            except CaptionFailure as failure:
                outcome = failure
            except Exception as exc:  # ProviderError (bad key ...): stop every worker, report it once
                fatal.append(exc)
                return
            outcomes[job.key] = outcome
            if on_answer is not None:
                on_answer(job, outcome)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    if fatal:
        raise fatal[0]
    return outcomes


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
HUB_PROVIDERS = ("huggingface/",)  # litellm looks these models up on the hub even when --api-base is local


def check_request_options(config: CaptionConfig) -> None:
    """Refuse, before any work, what would leak a key or reach the network unasked."""
    name = config.api_key_env
    if name and not ENV_NAME.fullmatch(name):  # a key pasted where its variable's name belongs: never echo it
        raise UsageError("--api-key-env takes the NAME of an environment variable; the value given is not a "
                         "variable name (it looks like a key itself, so it is not shown)")
    if name and not os.environ.get(name):  # fail before any work, not at the first miss
        raise UsageError(f"--api-key-env {name}: that environment variable is not set")
    if config.api_base and config.model.startswith(HUB_PROVIDERS):
        raise UsageError(f"--model {config.model} with --api-base: litellm's huggingface/ provider fetches the "
                         "model's metadata from the Hugging Face hub even for a local server; serve it through an "
                         "OpenAI-compatible endpoint and pass --model openai/NAME instead")
    if config.on_unfaithful not in ON_UNFAITHFUL:
        raise UsageError(f"--on-unfaithful {config.on_unfaithful}: choose one of {', '.join(ON_UNFAITHFUL)}")


def caption(config: CaptionConfig, dataset_path: Path, out: Path, *, features_path: Path | None = None,
            retrieval_path: Path | None = None, force: bool = False) -> Path:
    check_request_options(config)
    dataset = Dataset.open(dataset_path)
    features = open_artifact(features_path, "features") if features_path else None
    retrieval = open_artifact(retrieval_path, "retrieval") if retrieval_path else None
    records = dataset.records  # ingest also marks each credentialed record (a dataset may mix sources)
    credentialed = privacy.is_credentialed(dataset.artifact.manifest) or (
        "credentialed" in records.columns and bool(records["credentialed"].fill_null(False).any()))
    decision = privacy.decide(credentialed=credentialed,
                              model=config.model, api_base=config.api_base, allow_remote=config.allow_remote)
    previous = _previous_rows(out, config, force)
    template = load_template(config.template)
    if features is None:
        warn("no --features: prompts carry no measurements or findings")
    if retrieval is None:
        warn("no --retrieval: prompts carry no knowledge passages")

    inputs = {"dataset": dataset.artifact, **({"features": features} if features else {}),
              **({"retrieval": retrieval} if retrieval else {})}
    argv = privacy.scrub_argv(sys.argv, privacy.secrets(privacy.url_secrets(config.api_base)))
    # the writer (and its lock on --out) comes first: a second run to the same --out stops before any request
    with ArtifactWriter(out, "captions", parameters={}, inputs=inputs, force=force or previous is not None,
                        argv=argv) as writer:
        return _caption(writer, config, template, decision, dataset, features, retrieval, previous)


def _caption(writer, config: CaptionConfig, template, decision, dataset, features, retrieval, previous) -> Path:
    started = time.perf_counter()
    evidence, rejects = collect(dataset, features, retrieval, EvidenceOptions(top_k=config.top_k))
    if config.limit is not None:
        evidence = evidence[: config.limit]
    rows, jobs = [], {}
    prompts_cut = 0
    for item in evidence:
        try:
            system, user, cut = fit(template, item.evidence, config)
            prompts_cut += cut
            scrub.check_prompt(f"{system}\n{user}", item.identifiers)
        except RecordError as exc:
            rejects.append((item.record_id, exc.reason))
            continue
        key = cache_key(config.model, system, user, config.request_params())
        rows.append(_row(item.record_id, prompt_hash(system, user), config.model, item.passage_ids))
        jobs.setdefault(key, Job(key, rows[-1]["prompt_hash"], system, user)).rows.append(len(rows) - 1)

    stats = {"unique_prompts": len(jobs), "duplicates": len(rows) - len(jobs), "requests": 0, "retries": 0,
             "cache_hits": 0, "resumed": 0, "stopped": None, "cost_usd": 0.0, "cost_usd_cached": 0.0,
             "prompts_cut": prompts_cut, "prompt_tokens_estimated_max": max(
                 (estimate_tokens(job.system + job.user) for job in jobs.values()), default=0)}
    if config.model == TEMPLATE_MODEL:
        _template_captions(rows, jobs, evidence, config)
    else:
        _llm_captions(rows, list(jobs.values()), previous, config, stats)
    stats["audit"] = _audit(rows, evidence, dataset, features, config)

    elapsed = time.perf_counter() - started
    return _write(writer, config, template, decision, rows, rejects, stats, elapsed)


CHARS_PER_TOKEN = 3.0  # an over-estimate: SmolLM2 reads our prompts at 3.4 characters per token


def estimate_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 16  # + the chat template's role markers


def fit(template, evidence: dict, config: CaptionConfig) -> tuple[str, str, bool]:
    """(system, user, cut): the record's prompt, with knowledge passages dropped from the last until prompt and
    answer fit `config.context` tokens (None: no limit). A prompt that does not fit without any passage is a
    record-level problem (RecordError)."""
    system, user = template.render(evidence, words=config.words)
    if config.context is None:
        return system, user, False
    room = config.context - config.answer_tokens
    passages = list(evidence.get("passages") or [])
    keep = len(passages)
    while estimate_tokens(system + user) > room and keep > 0:
        keep -= 1
        system, user = template.render({**evidence, "passages": passages[:keep]}, words=config.words)
    if estimate_tokens(system + user) > room:
        raise RecordError(f"prompt of ~{estimate_tokens(system + user)} tokens does not fit --context "
                          f"{config.context} with a {config.answer_tokens}-token answer")
    return system, user, keep < len(passages)


def _row(record_id: str, phash: str, model: str, passage_ids: list[str]) -> dict:
    return {"record_id": record_id, "caption": None, "prompt_hash": phash, "model": model, "input_tokens": None,
            "output_tokens": None, "cost_usd": 0.0, "latency_s": None, "status": SKIPPED, "error": None,
            "passage_ids": passage_ids, "source": None, "attempts": 0, "edits": [], "faithful": None,
            "contradicted": []}


def _template_captions(rows, jobs, evidence, config: CaptionConfig) -> None:
    by_id = {item.record_id: item.evidence for item in evidence}
    with progress("caption (template)", len(rows)) as bar:
        for n, row in enumerate(rows):
            start = time.perf_counter()
            row["caption"] = template_provider.caption(by_id[row["record_id"]], seed=config.seed,
                                                       prompt_hash=row["prompt_hash"], words=config.words)
            row.update(status=OK, source="template", latency_s=time.perf_counter() - start)
            if n % PROGRESS_STEP == PROGRESS_STEP - 1:
                bar.advance(PROGRESS_STEP)
        bar.advance(len(rows) % PROGRESS_STEP)


def _fill(row: dict, answer: Cached | Completion, cleaned: Cleaned, source: str, paid: bool) -> None:
    row.update(caption=cleaned.text, input_tokens=answer.input_tokens, output_tokens=answer.output_tokens,
               cost_usd=(answer.cost_usd or 0.0) if paid else 0.0, latency_s=answer.latency_s, status=OK,
               source=source, error=None, edits=list(cleaned.edits))


def _cleaner(job: Job, config: CaptionConfig):
    """The answer check of one job: clean.clean against its own prompt and the word budget."""
    prompt = f"{job.system}\n{job.user}"
    return lambda text, truncated: clean(text, prompt=prompt, words=config.words, truncated=truncated,
                                         instructions=job.system)


def _llm_captions(rows, jobs: list[Job], previous: dict | None, config: CaptionConfig, stats: dict) -> None:
    todo = []
    for job in jobs:  # 1. rows the artifact at --out already holds
        kept = [(previous or {}).get((rows[i]["record_id"], job.prompt_hash)) for i in job.rows]
        if previous and all(kept):
            for i, old in zip(job.rows, kept, strict=True):
                rows[i].update({k: old[k] for k in ("caption", "input_tokens", "output_tokens", "latency_s", "edits")
                                if k in old}, status=OK, source="resumed", cost_usd=0.0)
            stats["resumed"] += len(job.rows)
        else:
            todo.append(job)
    cache = CaptionCache(Path(config.cache_path) if config.cache_path else None) if config.use_cache else None
    try:
        if cache is not None:  # 2. the persistent cache
            hits = cache.get_many([job.key for job in todo])
            for job in todo:
                if job.key in hits:
                    try:  # cached raw answers are cleaned with today's rules; one they reject is asked again
                        cleaned = _cleaner(job, config)(hits[job.key].text, hits[job.key].truncated)
                    except Unusable:
                        del hits[job.key]
                        continue
                    for i in job.rows:
                        _fill(rows[i], hits[job.key], cleaned, "cache", paid=False)
                    stats["cache_hits"] += len(job.rows)
                    stats["cost_usd_cached"] += hits[job.key].cost_usd or 0.0
            todo = [job for job in todo if job.key not in hits]
        if todo:  # 3. the provider
            _request(rows, todo, cache, config, stats)
    finally:
        if cache is not None:
            cache.close()


def _request(rows, todo: list[Job], cache, config: CaptionConfig, stats: dict) -> None:
    client = LLMClient(config.llm())
    if config.max_cost_usd is not None and not client.price_known:
        warn(f"litellm knows no price for '{config.model}': cost is recorded as unknown and --max-cost "
             "cannot stop this run")
    budget = Budget(config.max_cost_usd, config.max_requests)
    log(f"requesting {len(todo)} prompts from {config.model} ({config.concurrency} at a time)")
    with progress(f"caption ({config.model})", sum(len(j.rows) for j in todo)) as bar:

        def on_answer(job: Job, outcome) -> None:
            if isinstance(outcome, Completion):
                if cache is not None:
                    cache.put(job.key, model=config.model, prompt_hash=job.prompt_hash,
                              entry=Cached(outcome.raw or outcome.text, outcome.input_tokens, outcome.output_tokens,
                                           outcome.cost_usd, outcome.latency_s, outcome.truncated))
                cleaned = Cleaned(outcome.text, outcome.edits)
                for n, i in enumerate(job.rows):
                    _fill(rows[i], outcome, cleaned, "request" if n == 0 else "duplicate", paid=n == 0)
                    rows[i]["attempts"] = outcome.attempts if n == 0 else 0
            else:
                status = SKIPPED if outcome.stopped and outcome.attempts == 0 else FAILED
                for n, i in enumerate(job.rows):
                    rows[i].update(status=status, error=outcome.reason, source="request",
                                   cost_usd=outcome.cost_usd if n == 0 else 0.0,
                                   attempts=outcome.attempts if n == 0 else 0)
            bar.advance(len(job.rows))

        started = time.perf_counter()
        asyncio.run(request_all(todo, client, budget, concurrency=config.concurrency, on_answer=on_answer,
                                accept=lambda job: _cleaner(job, config)))
        stats["request_wall_s"] = round(time.perf_counter() - started, 3)  # the requests alone: throughput
    stats.update(requests=budget.requests, retries=client.retries, stopped=budget.stopped,
                 cost_usd=round(budget.spent_usd, 8), price_known=client.price_known)
    if budget.stopped:
        warn(f"stopped: {budget.stopped}; rerun the same command to caption the remaining records")
    for row in rows:  # jobs never reached because the budget ran out
        if row["status"] == SKIPPED and row["error"] is None and row["source"] is None:
            row["error"] = f"not requested: {budget.stopped}" if budget.stopped else "not requested"


def _audit(rows, evidence, dataset, features, config: CaptionConfig) -> dict | None:
    """Check every caption against its record (esi_tools.audit) and apply --on-unfaithful: `flag` marks a
    contradicted caption (faithful = false, the claims in `contradicted`), `template` replaces it by the
    template caption of the same evidence, `keep` does not audit. Counts go into the manifest."""
    if config.on_unfaithful == "keep" or features is None:
        if features is None and config.on_unfaithful != "keep":
            warn("no --features: captions cannot be audited (--on-unfaithful has no effect)")
        return None
    from ..audit.run import audit_caption, scp_classes
    from ..audit.truth import truth_of

    by_id = {item.record_id: item.evidence for item in evidence}
    classes = scp_classes(dataset)
    counts = {"audited": 0, "unfaithful": 0, "replaced": 0, "hallucinated": 0, "omissions": 0}
    for row in rows:
        if row["status"] != OK:
            continue
        truth = truth_of(by_id[row["record_id"]], classes)
        result = audit_caption(row["caption"], truth)
        counts["audited"] += 1
        counts["hallucinated"] += result.counts["hallucinated"] > 0
        counts["omissions"] += len(result.omitted)
        row.update(faithful=result.faithful, contradicted=result.contradicted())
        if result.faithful:
            continue
        counts["unfaithful"] += 1
        if config.on_unfaithful == "template":
            row.update(caption=template_provider.caption(by_id[row["record_id"]], seed=config.seed,
                                                         prompt_hash=row["prompt_hash"], words=config.words),
                       source=f"template (replaced {row['source']})", faithful=True)
            counts["replaced"] += 1
    if counts["unfaithful"]:
        what = "replaced by template captions" if config.on_unfaithful == "template" else "flagged (faithful = false)"
        warn(f"{counts['unfaithful']} of {counts['audited']} captions contradict their ECG: {what}")
    return counts


def _previous_rows(out: Path, config: CaptionConfig, force: bool) -> dict | None:
    """(record_id, prompt_hash) -> ok row of a captions artifact already at --out made with the same settings."""
    if force or not out.exists():
        return None
    try:
        old = open_artifact(out, "captions")
    except EsiError:
        raise InputError(f"{out} already exists and is not a captions artifact (pass --force to replace it)") from None
    same = {k: old.parameters.get(k) for k in ("model", "temperature", "max_tokens", "template_sha256", "on_unfaithful")}
    want = {"model": config.model, "temperature": config.temperature, "max_tokens": config.answer_tokens,
            "on_unfaithful": config.on_unfaithful,  # a resumed caption may be a template replacement
            "template_sha256": load_template(config.template).sha256}
    if same != want:
        raise InputError(f"{out} holds captions made with other settings ({same}); pass --force to replace it")
    table = old.table("captions.parquet")
    ok = table.filter(table["status"] == OK)
    log(f"resuming {out}: {ok.height} of {table.height} records already captioned")
    return {(r["record_id"], r["prompt_hash"]): r for r in ok.iter_rows(named=True)}


def _write(writer: ArtifactWriter, config: CaptionConfig, template, decision, rows, rejects, stats, elapsed) -> Path:
    import polars as pl

    schema = {"record_id": pl.String, "caption": pl.String, "prompt_hash": pl.String, "model": pl.String,
              "input_tokens": pl.Int64, "output_tokens": pl.Int64, "cost_usd": pl.Float64,
              "latency_s": pl.Float64, "status": pl.String, "error": pl.String,
              "passage_ids": pl.List(pl.String), "source": pl.String, "attempts": pl.Int64,
              "edits": pl.List(pl.String), "faithful": pl.Boolean, "contradicted": pl.List(pl.String)}
    table = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    parameters = {k: v for k, v in asdict(config).items() if k not in ("cache_path",)}
    parameters.update(template=template.name, template_sha256=template.sha256, max_tokens=config.answer_tokens,
                      api_base=privacy.safe_url(config.api_base) if config.api_base else None)
    counts = {s: int((table["status"] == s).sum()) for s in (OK, FAILED, SKIPPED)}
    writer.parameters = parameters
    writer.write_table("captions.parquet", table)
    writer.write_table("rejects.parquet", pl.DataFrame({"record_id": [r for r, _ in rejects],
                                                        "reason": [why for _, why in rejects]},
                                                       schema={"record_id": pl.String, "reason": pl.String}))
    tokens_in = table.filter(pl.col("source") == "request")["input_tokens"].sum()
    tokens_out = table.filter(pl.col("source") == "request")["output_tokens"].sum()
    writer.summary.update({
        "records": table.height, **counts, "rejects": len(rejects), **stats,
        "input_tokens": int(tokens_in or 0), "output_tokens": int(tokens_out or 0),
        "wall_s": round(elapsed, 3), "captions_per_s": round(table.height / elapsed, 1) if elapsed else None,
        "privacy": decision,
    })
    path = writer.commit()
    log(f"captioned {counts[OK]} of {table.height} records ({counts[FAILED]} failed, {counts[SKIPPED]} skipped, "
        f"{len(rejects)} rejected; {stats['requests']} requests, {stats['cache_hits']} cache hits, "
        f"{stats['cost_usd']:.4f} USD) -> {path}")
    return path
