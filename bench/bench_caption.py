"""Caption throughput: the litellm path against a local server with 200 ms latency, cold and with a warm cache,
and the offline template provider on the real PTB-XL subset. Prints a Markdown table.

    .venv/bin/python bench/bench_caption.py [--data ../shared/data/ptbxl] [--prompts 1000] [--concurrency 32]

Goals (issue 5): cold >= 80 % of the ideal concurrency / latency (160 captions/s at 32 x 200 ms); warm cache
>= 5,000 captions/s with zero requests; template provider >= 5,000 records/s.
The server runs in its own process (tests/llm_server.py) so it does not share this process's GIL.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import esi

ROOT = Path(__file__).resolve().parent.parent
MODEL = "openai/gpt-4o-mini"  # priced by litellm, so cost accounting is exercised too


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "llm_server.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def server_requests(base_url: str) -> int:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats") as answer:
        return json.loads(answer.read())["requests"]


def distinct_jobs(dataset, features, retrieval, n: int):
    """The first n distinct prompts of the real PTB-XL records (evidence -> template, as `esi caption` does)."""
    from esi_tools.artifacts import open_artifact
    from esi_tools.caption.cache import cache_key
    from esi_tools.caption.evidence import collect
    from esi_tools.caption.prompt import load_template, prompt_hash
    from esi_tools.caption.run import CaptionConfig, Job
    from esi_tools.dataset import Dataset

    config = CaptionConfig(model=MODEL)
    evidence, _ = collect(Dataset.open(dataset), open_artifact(features, "features"), open_artifact(retrieval, "retrieval"))
    template, jobs = load_template(), {}
    for item in evidence:
        system, user = template.render(item.evidence)
        key = cache_key(MODEL, system, user, config.request_params())
        jobs.setdefault(key, Job(key, prompt_hash(system, user), system, user, [len(jobs)]))
        if len(jobs) == n:
            break
    return list(jobs.values())


def raw_http(jobs, base_url: str, concurrency: int) -> float:
    """The ceiling of this machine and server: the same requests by a bare httpx client (no litellm), per s."""
    import asyncio

    import httpx

    async def go() -> float:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            pending = iter(jobs)

            async def worker():
                for job in pending:
                    body = {"model": "raw", "messages": [{"role": "system", "content": job.system},
                                                         {"role": "user", "content": job.user + " (raw)"}]}
                    (await client.post(f"{base_url}/chat/completions", json=body)).json()

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return len(jobs) / (time.perf_counter() - started)

    return asyncio.run(go())


def run_llm(jobs, base_url: str, concurrency: int) -> tuple[float, dict]:
    from esi_tools.caption.run import CaptionConfig, _llm_captions, _row

    config = CaptionConfig(model=MODEL, api_base=base_url, concurrency=concurrency, timeout_s=30)
    rows = [_row(str(i), job.prompt_hash, MODEL, []) for i, job in enumerate(jobs)]
    stats = {"requests": 0, "retries": 0, "cache_hits": 0, "resumed": 0, "stopped": None, "cost_usd": 0.0,
             "cost_usd_cached": 0.0}
    started = time.perf_counter()
    _llm_captions(rows, jobs, None, config, stats)
    elapsed = time.perf_counter() - started
    assert all(r["status"] == "ok" for r in rows), {r["error"] for r in rows if r["status"] != "ok"}
    return elapsed, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ptbxl")
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_caption_"))
    os.environ["ESI_HOME"] = str(work / "esi_home")  # a cold cache of its own
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ["ESI_QUIET"] = "1"
    t = time.perf_counter()
    dataset = esi("ingest", "ptbxl", args.data, "--out", work / "ds")
    features = esi("features", dataset, "--out", work / "features")
    index = esi("retrieve", "index", "builtin", "--out", work / "index")
    retrieval = esi("retrieve", dataset, "--index", index, "--features", features, "--out", work / "retrieval")
    print(f"inputs (ingest, features, retrieve of {args.data.name}) built in {time.perf_counter() - t:.1f} s",
          file=sys.stderr)

    from esi_tools.caption.llm import import_litellm
    from esi_tools.caption.run import CaptionConfig, caption

    t = time.perf_counter()
    import_litellm()
    litellm_import_s = time.perf_counter() - t
    jobs = distinct_jobs(dataset, features, retrieval, args.prompts)
    rows = []
    proc, base_url = start_server(args.latency)
    try:
        ideal = args.concurrency / args.latency
        cold_s, cold = run_llm(jobs, base_url, args.concurrency)
        cold_requests = server_requests(base_url)
        rate = len(jobs) / cold_s
        rows.append((f"litellm, {len(jobs)} distinct prompts, concurrency {args.concurrency}, {args.latency * 1000:.0f} ms "
                     "latency, cold cache", f"{rate:,.0f} captions/s", f"{cold_requests} requests, "
                     f"{rate / ideal:.0%} of ideal {ideal:.0f}/s", "≥ 80 % of ideal"))
        raw = raw_http(jobs, base_url, args.concurrency)
        rows.append(("bare httpx client, same prompts and server (no litellm): this machine's ceiling",
                     f"{raw:,.0f} requests/s", f"{raw / ideal:.0%} of ideal; litellm path reaches {rate / raw:.0%} of it", ""))
        cold_requests = server_requests(base_url)
        warm_s, warm = run_llm(jobs, base_url, args.concurrency)
        warm_requests = server_requests(base_url) - cold_requests
        rows.append(("same prompts again, warm cache (answer step: cache lookup and fill)", f"{len(jobs) / warm_s:,.0f} captions/s",
                     f"{warm_requests} requests, {warm['cache_hits']} cache hits", "≥ 5,000/s, 0 requests"))
        # the whole command, warm: every record of the subset asked once (cold), then the same run again
        llm = CaptionConfig(model=MODEL, api_base=base_url, concurrency=args.concurrency, timeout_s=30)
        caption(llm, dataset, work / "llm-cold", features_path=features, retrieval_path=retrieval)
        before = server_requests(base_url)
        t = time.perf_counter()
        out = caption(llm, dataset, work / "llm-warm", features_path=features, retrieval_path=retrieval)
        whole_s = time.perf_counter() - t
        summary = json.loads((out / "manifest.json").read_text())["summary"]
        rows.append((f"whole `esi caption` run, litellm model, warm cache, PTB-XL subset ({summary['records']:,} records)",
                     f"{summary['records'] / whole_s:,.0f} captions/s",
                     f"{server_requests(base_url) - before} requests, {summary['cache_hits']:,} cache hits, "
                     f"{whole_s:.2f} s", ""))
    finally:
        proc.terminate()
        proc.wait()

    caption(CaptionConfig(), dataset, work / "warmup", features_path=features, retrieval_path=retrieval)  # imports
    t = time.perf_counter()
    out = caption(CaptionConfig(), dataset, work / "template", features_path=features, retrieval_path=retrieval)
    total_s = time.perf_counter() - t
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    import polars as pl

    table = pl.read_parquet(out / "captions.parquet")
    stage_s = float(table["latency_s"].sum())
    rows.append((f"template provider, PTB-XL subset ({summary['records']:,} records), caption step only",
                 f"{summary['records'] / stage_s:,.0f} records/s", f"{table['caption'].n_unique():,} distinct captions",
                 "≥ 5,000/s"))
    rows.append(("template provider, whole `esi caption` run (evidence, prompts, privacy check, artifact)",
                 f"{summary['records'] / total_s:,.0f} records/s", f"{total_s:.2f} s", ""))

    load = os.getloadavg()[0]
    print(f"\n### esi caption throughput ({os.cpu_count()} CPU cores, load average {load:.1f} at the end; "
          f"litellm import {litellm_import_s:.1f} s, not counted)\n")
    print("| run | rate | detail | goal |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
