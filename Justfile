# esi-tools recipes. `just all` reproduces the whole chain; `just test` is what CI runs.

py := justfile_directory() / ".venv/bin/python"
esi := justfile_directory() / ".venv/bin/esi"

# PTB-XL root (downloaded into data/ptb-xl when missing), captioner, run name
data := ""
llm := "template"
run := "runs/ptbxl"

# The whole chain on PTB-XL: ingest -> features -> retrieve -> caption -> pretrain -> embed -> probe -> identify -> report
all:
    {{py}} -m esi_tools.pipeline --data "{{data}}" --llm "{{llm}}" --run "{{run}}" --profile cpu-demo

# The whole chain on ~100 real records with the tiny profile (minutes); the test suite runs it too
smoke data="../shared/data/ptbxl" run="runs/smoke":
    {{py}} -m esi_tools.pipeline --data "{{data}}" --llm template --run "{{run}}" --profile smoke

# The test suite (real data from ../shared/data, no network)
test *args:
    {{py}} -m pytest -q {{args}}

# Every benchmark side by side; results in bench/RESULTS.md
bench *args:
    {{py}} bench/run_all.py {{args}}

lint:
    {{py}} -m ruff check .
