#!/usr/bin/env bash
# Prepare what bench/gpu_pretrain.sh needs on a GPU machine without network (run here, where the registries answer):
#   .whl/                      wheels of the packages that machine lacks (git-ignored)
#   .gpu-data/ptbxl500.tar.xz  200 PTB-XL 500 Hz records + the two PTB-XL tables (git-ignored)
#   .gpu-data/tokenizer/       the MiniLM (BERT uncased) tokenizer files: the text tower's vocab, without the 83 MB wheel
# Both fit the device tool's 64 MiB carry limit (~46 MB of wheels, polars is most of it; ~8 MB of data).
# Then carry both to the GPU machine (device tool: carry [".whl", ".gpu-data"]) and run bash bench/gpu_pretrain.sh there.
# usage: bash bench/gpu_prepare.sh [DATA]   (DATA defaults to ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
PY=${PYTHON:-.venv/bin/python}
mkdir -p .whl .gpu-data
# the GPU machine runs Python 3.12 on x86_64 Linux
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 -d .whl \
  polars==1.33.1 jsonschema referencing rpds-py jsonschema-specifications pydantic pydantic_core annotated-types \
  typing-inspection hjson wfdb rank-bm25
$PY -m pip wheel -q --no-deps -w .whl deepspeed  # an sdist only; builds into a pure-Python wheel (no ops compiled)
# 200 records: the first 200 rows of the PTB-XL table all have a records500 file in the shared subset
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/ptbxl/records500/00000"
$PY - "$DATA/ptbxl" "$STAGE/ptbxl" <<'PY'
import csv, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
with open(src / "ptbxl_database.csv", newline="") as fh:
    reader = csv.DictReader(fh)
    rows = [r for r in reader if (src / (r["filename_hr"] + ".hea")).exists()][:200]
with open(dst / "ptbxl_database.csv", "w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=reader.fieldnames)
    writer.writeheader()
    writer.writerows(rows)
shutil.copy(src / "scp_statements.csv", dst / "scp_statements.csv")
shutil.copy(src / "LICENSE.txt", dst / "LICENSE.txt")
for r in rows:
    for ext in (".hea", ".dat"):
        shutil.copy(src / (r["filename_hr"] + ext), dst / (r["filename_hr"] + ext))
print(f"{len(rows)} records", file=sys.stderr)
PY
tar -cJf .gpu-data/ptbxl500.tar.xz -C "$STAGE" ptbxl
$PY -c "import sys; from esi_tools.model.text_encoder import load_tokenizer; load_tokenizer('sentence-transformers/all-MiniLM-L6-v2').save_pretrained(sys.argv[1])" .gpu-data/tokenizer
du -sh .whl .gpu-data >&2
