# esi-tools recipes. `just all` reproduces the whole chain; `just test` is what CI runs.

py := justfile_directory() / ".venv/bin/python"

# The whole chain: just all [data=DIR] [llm=MODEL|local] [api_base=URL] [captions=N] [run=DIR] [profile=cpu-demo|smoke]
# llm=local: SmolLM2-135M on this CPU (the [llm] extra; the recipe starts and stops its server);
# llm=openai/NAME api_base=http://host:port/v1: your own server; any litellm name: a provider.
# captions=N captions only the first N records (a real model takes ~10 s a record on 2 cores).
# ingest -> features -> retrieve index + retrieve -> caption -> audit -> pretrain -> embed (ESI + baselines)
# -> probe (superdiagnostic, form, rhythm; linear + zero-shot) -> identify -> report.
# Each step writes one artifact under the run directory and is skipped when that artifact exists:
# delete a step's directory to redo it (and the steps after it).
all *args:
    #!/usr/bin/env bash
    set -euo pipefail
    data=""; llm=template; run=runs/ptbxl; profile=cpu-demo; api_base=""; captions=""
    for kv in {{args}}; do
        case "$kv" in
            data=*|llm=*|run=*|profile=*|api_base=*|captions=*) printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
            *) echo "usage: just all [data=DIR] [llm=MODEL|local] [api_base=URL] [captions=N] [run=DIR] [profile=cpu-demo|smoke]" >&2; exit 2 ;;
        esac
    done
    export PATH="{{justfile_directory()}}/.venv/bin:$PATH" LITELLM_LOCAL_MODEL_COST_MAP=True
    case "$profile" in
        # 300 real records, a few training steps, fewer resamples: proves the chain works in minutes
        smoke) limit=(--limit 300); train=(--profile cpu-demo --max-steps 12 --batch-size 16 --workers 0)
               boot=(--bootstrap 200); probe=(--min-positives 3) ;;
        # the whole PTB-XL subset, atto encoder + MiniLM text tower on the CPU
        cpu-demo) limit=(); train=(--profile cpu-demo); boot=(); probe=() ;;
        *) echo "unknown profile '$profile' (cpu-demo | smoke)" >&2; exit 2 ;;
    esac
    # the caption step: which model, and what runs around it (llm=local starts and stops the local server)
    pre=(); wrap=(); model="$llm"; llm_opts=()
    if [ "$llm" = local ]; then
        model=openai/smollm2; wrap=("{{py}}" -m esi_tools.caption.local_model --)
        llm_opts=(--concurrency 1 --context 4096 --timeout 120)  # llama.cpp serves one request at a time
        [ "$profile" = smoke ] && [ -z "$captions" ] && captions=24  # a real model takes ~10 s a record
    fi
    [ -n "$api_base" ] && llm_opts+=(--api-base "$api_base")
    [ -n "$captions" ] && llm_opts+=(--limit "$captions")
    if [ -z "$data" ]; then
        data=data/ptb-xl
        [ -f "$data/ptbxl_database.csv" ] || esi download ptb-xl --records100-only --out "$data" >/dev/null
    fi
    mkdir -p "$run"
    step() {  # step NAME ESI-ARGS...: run `esi ESI-ARGS --out RUN/NAME` unless that artifact exists
        local out="$run/$1"; shift
        if [ -f "$out/manifest.json" ]; then echo "= $out (exists, kept)" >&2; return; fi
        echo "+ esi $* --out $out" >&2
        SECONDS=0
        "${pre[@]}" esi "$@" --out "$out" >/dev/null
        echo "  wrote $out in ${SECONDS}s" >&2
    }
    step dataset ingest ptbxl "$data" "${limit[@]}"
    step features features "$run/dataset"
    step index retrieve index builtin
    step retrieval retrieve "$run/dataset" --features "$run/features" --index "$run/index"
    pre=("${wrap[@]}")
    step captions caption "$run/dataset" -f "$run/features" -r "$run/retrieval" --model "$model" "${llm_opts[@]}"
    pre=()
    step audit audit "$run/captions"
    step model pretrain "$run/dataset" --captions "$run/captions" "${train[@]}"
    step emb-esi embed "$run/dataset" --checkpoint "$run/model"
    step emb-random embed "$run/dataset" --random-init atto
    step emb-features embed "$run/features"
    embeddings=(-e "$run/emb-esi" -e "$run/emb-random" -e "$run/emb-features" --name esi --name random-init --name features)
    for task in superdiagnostic form rhythm; do
        step "probe-$task" probe "$run/dataset" "${embeddings[@]}" --task "$task" --fraction 0.1 --fraction 1.0 \
            --zero-shot "$run/model" "${boot[@]}" "${probe[@]}"
    done
    step identify identify "$run/dataset" "${embeddings[@]}" "${boot[@]}"
    esi report "$run" --out "$run/report" --force >/dev/null
    echo "report: $run/report/report.html" >&2
    echo "$run"

# The whole chain on 300 real PTB-XL records with the smoke profile (minutes); the test suite runs it too
smoke *args:
    @"{{just_executable()}}" all data=../shared/data/ptbxl run=runs/smoke profile=smoke {{args}}

# The test suite (real data from ../shared/data, no network)
test *args:
    {{py}} -m pytest -q {{args}}

# Options (key=value): data out limit steps batch llm captions llm_threads arms tasks bootstrap finetune epochs min_positives pretrain report.
# Hours on 2 cores; resumable (a rerun continues), e.g. in the background: nohup just ablate > ablate.log 2>&1 &
# Tiny check of the recipe: just ablate steps=12 limit=300 out=runs/ablate-tiny (writes runs/ablate-tiny/ABLATIONS.md)
# Issue 16 ablation: arms pretrained on folds 1-8, choices on fold 9, fold 10 once with CIs -> bench/ABLATIONS.md
[positional-arguments]
ablate *args:
    LITELLM_LOCAL_MODEL_COST_MAP=True {{py}} bench/ablate.py "$@"

# Every benchmark side by side; results in bench/RESULTS.md
bench *args:
    {{py}} bench/run_all.py {{args}}

lint:
    {{py}} -m ruff check .
