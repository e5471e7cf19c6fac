"""esi caption: dataset (+ features + retrieval) -> captions artifact, offline template or any litellm model."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import ForceOption, OutOption, default_out, emit, esi_command, resolve_input

app = typer.Typer()


@app.command()
@esi_command
def caption(
    dataset: str = typer.Argument(..., help="Dataset artifact ('-' = read its path from stdin)."),
    features: str = typer.Option(None, "--features", "-f", help="Features artifact of this dataset (measurements, findings)."),
    retrieval: str = typer.Option(None, "--retrieval", "-r", help="Retrieval artifact of this dataset (knowledge passages)."),
    model: str = typer.Option("template", "--model", "-m", help="'template' (offline, no LLM) or a litellm model: "
                              "openai/gpt-4o-mini, anthropic/..., ollama/..., hosted_vllm/..."),
    api_base: str = typer.Option(None, "--api-base", envvar="ESI_API_BASE", show_envvar=False,
                                 help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (or $ESI_API_BASE)."),
    api_key_env: str = typer.Option(None, "--api-key-env", help="Environment variable holding the API key "
                                    "(default: the provider's usual one, e.g. OPENAI_API_KEY). Keys are never taken as arguments."),
    template: str = typer.Option(None, "--template", help="Prompt template file replacing the shipped one (see esi_tools/caption/templates/v1.txt)."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Requests in flight at once."),
    temperature: float = typer.Option(0.2, "--temperature", min=0.0, help="Sampling temperature sent to the model."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help="Longest answer asked for (default 2 x --words + 32); an "
                                   "answer cut there is cut back to its last whole sentence and kept."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds one request may take."),
    retries: int = typer.Option(4, "--retries", min=0, help="Retries per prompt on 429/5xx/timeouts and answers that no cleaning "
                                "makes a caption (empty, refused, repetitive)."),
    backoff: float = typer.Option(1.0, "--backoff", min=0.0, help="First backoff step in seconds (doubles per retry, full jitter)."),
    max_cost: float = typer.Option(None, "--max-cost", min=0.0, help="Stop sending requests before spending more than this (USD)."),
    max_requests: int = typer.Option(None, "--max-requests", min=0, help="Stop after this many provider calls (retries count)."),
    top_k: int = typer.Option(3, "--top-k", min=0, help="Retrieved passages per prompt."),
    seed: int = typer.Option(0, "--seed", help="Seed of the template provider's phrasing."),
    words: int = typer.Option(33, "--words", min=5, help="Caption length budget in words: the template keeps whole sentences by priority "
                              "within it, the prompt asks for at most this. 33 fits 64 MiniLM tokens (cpu-demo) for 97.5 % of PTB-XL."),
    on_unfaithful: str = typer.Option("flag", "--on-unfaithful", help="A caption the audit finds contradicting its ECG "
                                      "(needs --features): 'keep' it unaudited, 'flag' it (faithful = false), or replace it "
                                      "by the 'template' caption."),
    context: int = typer.Option(None, "--context", min=64, help="The model's context window in tokens: a prompt that would "
                                "not leave room for the answer loses knowledge passages, last first (counted as prompts_cut)."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a credentialed dataset to be sent to a non-local provider."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the answer cache ($ESI_HOME/cache/captions.sqlite)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Caption only the first N records (smoke runs)."),
    out: Path = OutOption,
    force: bool = ForceOption,
) -> None:
    """Write a grounded description of every ECG from its demographics, measurements, findings, statements and
    retrieved passages. Rerunning into the same --out resumes: only records without a caption are requested."""
    from esi_tools.caption.run import CaptionConfig
    from esi_tools.caption.run import caption as run

    dataset_path = resolve_input(dataset)
    features_path = resolve_input(features) if features else None
    retrieval_path = resolve_input(retrieval) if retrieval else None
    config = CaptionConfig(
        model=model, template=template, api_base=api_base, api_key_env=api_key_env, temperature=temperature,
        max_tokens=max_tokens, timeout_s=timeout, retries=retries, backoff_s=backoff, concurrency=concurrency,
        max_cost_usd=max_cost, max_requests=max_requests, seed=seed, top_k=top_k, allow_remote=allow_remote,
        use_cache=not no_cache, limit=limit, words=words, on_unfaithful=on_unfaithful,
        context=context,
    )
    target = out or default_out("captions", dataset_path.resolve(), features_path, retrieval_path, model, template,
                                temperature, max_tokens, seed, top_k, limit, words, on_unfaithful, context)
    emit(run(config, dataset_path, target, features_path=features_path, retrieval_path=retrieval_path, force=force))
