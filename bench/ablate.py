"""The ablation of issue 16: what makes the ESI encoder beat its baselines at cpu-demo scale on PTB-XL.

Every arm is one `esi pretrain` run on folds 1-8 only (`--exclude-folds 9,10`, asserted from each model's
manifest). Everything chosen is chosen on fold 9: the probe's C and thresholds, the zero-shot prompt strategy
and the recommended arm; fold 10 is scored once per representation, with 95 % bootstrap CIs and a paired
bootstrap of the difference to random-init. Arms:

    default           template captions, contrastive + captioning, augmentation on, seed 0
    contrastive-only  --caption-weight 0
    statements        text = PTB-XL English statements instead of template captions
    llm               LLM captions (only with llm=MODEL; llm=local: SmolLM2-135M on this CPU, server started here)
    llm-replaced      LLM captions, those the audit finds contradicting their ECG replaced by the template's
    no-augment        --no-augment
    seed1, seed2      the default with seeds 1 and 2 (the seed spread)

Beside them: the default's contrastive `embedding` readout against `stages` pooling, fine-tuning of the
default encoder (`esi probe --finetune`) on the whole subset against fine-tuning the same architecture from
random weights (`--finetune-scratch`), and the random-init and features baselines. With captions=N only the first N
records are captioned (a real model takes ~10 s a record on 2 cores) and every arm pretrains on those; the
captions are audited side by side on the records all of them captioned (`esi audit --common`).
Each step writes one artifact under out= and is skipped when its manifest exists, so an interrupted run
resumes where it stopped (pretraining also resumes from its last checkpoint). The commands run in this one
process through the `esi` CLI (one torch import instead of dozens).

    python bench/ablate.py [data=DIR] [out=runs/ablate] [limit=N] [steps=N] [batch=N] [llm=MODEL]
        [captions=N] [llm_threads=N] [arms=default,seed1,...] [tasks=superdiagnostic,rhythm,form] [bootstrap=1000] [finetune=yes|no]
        [epochs=20] [min_positives=N] [pretrain='--extra --flags'] [report=bench/ABLATIONS.md]

Writes OUT/ablation.json and OUT/ablation.md (the section the run report includes) and the report file
(bench/ABLATIONS.md at full scale; OUT/ABLATIONS.md when limit= or steps= shrink the run). Prints its path.
"""

from __future__ import annotations

import io
import json
import shlex
import shutil
import sys
import time
from contextlib import contextmanager, redirect_stdout
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

ARMS = {
    "default": ("template captions, contrastive + captioning, augmentation on, seed 0", []),
    "contrastive-only": ("captioning loss off (--caption-weight 0)", ["--caption-weight", "0"]),
    "statements": ("text = PTB-XL English statements (--text-source statements), no captions", ["--text-source", "statements"]),
    "llm": ("text = LLM captions", []),
    "llm-replaced": ("text = LLM captions, contradicted ones replaced by the template's", []),
    "no-augment": ("augmentation off (--no-augment)", ["--no-augment"]),
    "seed1": ("the default, seed 1", ["--seed", "1"]),
    "seed2": ("the default, seed 2", ["--seed", "2"]),
}
SEEDS = ("default", "seed1", "seed2")
DEFAULTS = {"data": str(ROOT.parent / "shared" / "data" / "ptbxl"), "out": "runs/ablate", "limit": None, "steps": None,
            "batch": None, "llm": None, "captions": None, "llm_threads": None, "arms": ",".join(a for a in ARMS if not a.startswith("llm")), "tasks": "superdiagnostic,rhythm,form",
            "bootstrap": "1000", "finetune": "yes", "epochs": "20", "min_positives": None, "pretrain": "", "report": None}
HELD_OUT = {9, 10}  # PTB-XL validation and test folds: never in pretraining


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse(argv: list[str]) -> dict:
    opts = dict(DEFAULTS)
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key not in DEFAULTS:
            raise SystemExit(f"usage: ablate.py [{'] ['.join(f'{k}=…' for k in DEFAULTS)}] (got '{arg}')")
        opts[key] = value
    unknown = set(opts["arms"].split(",")) - set(ARMS)
    if unknown:
        raise SystemExit(f"unknown arms {sorted(unknown)} (known: {', '.join(ARMS)})")
    if {"llm", "llm-replaced"} & set(opts["arms"].split(",")) and not opts["llm"]:
        raise SystemExit("arms 'llm' and 'llm-replaced' need llm=MODEL (a litellm model name, or local)")
    if opts["llm"] and "llm" not in opts["arms"].split(","):
        opts["arms"] += ",llm"
    return opts


def esi(out: Path, *args, keep: bool = True) -> Path:
    """`esi ARGS --out OUT` in this process, unless OUT already holds an artifact and `keep` (then it is kept)."""
    from commands.main import app

    if keep and (out / "manifest.json").exists():
        log(f"= {out} (exists, kept)")
        return out
    argv = [str(a) for a in args] + ["--out", str(out)]
    log("+ esi " + shlex.join(argv))
    start = time.perf_counter()
    with redirect_stdout(io.StringIO()):  # the artifact path: we know it already
        code = app(argv, prog_name="esi", standalone_mode=False)
    if code not in (None, 0):
        raise SystemExit(f"esi {args[0]} failed with exit code {code}; rerun to resume from the steps already written")
    log(f"  wrote {out} in {time.perf_counter() - start:.0f}s")
    return out


def pretrain(out: Path, dataset: Path, captions: Path | None, opts: dict, arm_args: list[str]) -> Path:
    """One arm's model; resumes from its last checkpoint; asserts folds 9 and 10 stayed out."""
    from esi_tools.artifacts import open_artifact

    ckpt = out.parent / f"{out.name}.checkpoints"
    args = ["pretrain", dataset, "--profile", "cpu-demo", "--exclude-folds", "9,10", "--checkpoint-every", "50"]
    args += ["--captions", captions] if captions else []
    args += ["--max-steps", opts["steps"]] if opts["steps"] else []
    args += ["--batch-size", opts["batch"]] if opts["batch"] else []
    args += shlex.split(opts["pretrain"]) + arm_args
    if not (out / "manifest.json").exists() and (ckpt / "latest").exists():
        args += ["--resume", ckpt]
    esi(out, *args)
    model = open_artifact(out, "model")
    excluded = set(model.parameters.get("exclude_folds") or ())
    if not HELD_OUT <= excluded or model.summary["excluded"] < 1:
        raise SystemExit(f"{out}: pretrained with folds {sorted(excluded)} excluded ({model.summary['excluded']} records): "
                         "folds 9 and 10 must stay out of pretraining")
    shutil.rmtree(ckpt, ignore_errors=True)  # the model is written; its resume points are not needed any more
    return out


@contextmanager
def llm_provider(llm: str, outs: list[Path], threads: str | None = None):
    """(litellm model, extra caption flags) for llm=; `local` serves SmolLM2 from this process while needed
    (threads: the server's; 1 keeps it fast on a machine whose other cores are busy, where 2 spin-wait)."""
    if llm != "local" or all((o / "manifest.json").exists() for o in outs):
        yield ("openai/smollm2" if llm == "local" else llm), []
        return
    from esi_tools.caption.local_model import MODEL, LocalModel

    with LocalModel.start(threads=int(threads) if threads else None) as server:
        yield MODEL, ["--api-base", server.api_base, "--concurrency", "1", "--context", "4096", "--timeout", "120"]


def probe_args(opts: dict, task: str) -> list:
    args = ["--task", task, "--bootstrap", opts["bootstrap"], "--split", "strat_fold"]
    return args + (["--min-positives", opts["min_positives"]] if opts["min_positives"] else [])


def run(opts: dict) -> dict[str, dict]:
    """Every step; returns {group: {task: probe dir}} and the model dirs."""
    out = Path(opts["out"])
    tasks = opts["tasks"].split(",")
    ds = esi(out / "dataset", "ingest", "ptbxl", opts["data"], *(["--limit", opts["limit"]] if opts["limit"] else []))
    feats = esi(out / "features", "features", ds)
    index = esi(out / "index", "retrieve", "index", "builtin")
    retrieval = esi(out / "retrieval", "retrieve", ds, "--features", feats, "--index", index)
    subset = ["--limit", opts["captions"]] if opts["captions"] else []
    captions = esi(out / "captions", "caption", ds, "-f", feats, "-r", retrieval, "--model", "template", *subset)
    texts = {"statements": None, "llm": None, "llm-replaced": None}
    if opts["llm"]:
        wanted = {"llm": ["--on-unfaithful", "flag"], "llm-replaced": ["--on-unfaithful", "template"]}
        with llm_provider(opts["llm"], [out / f"captions-{a}" for a in wanted], opts["llm_threads"]) as (model, extra):
            for arm, how in wanted.items():
                texts[arm] = esi(out / f"captions-{arm}", "caption", ds, "-f", feats, "-r", retrieval, "--model", model,
                                 *extra, *how, *subset)
        name = "SmolLM2-135M (local)" if opts["llm"] == "local" else opts["llm"]
        esi(out / "audit", "audit", captions, texts["llm"], texts["llm-replaced"], "--common", "--name", "template",
            "--name", name, "--name", f"{name}, contradicted replaced")
    random = esi(out / "baselines" / "emb-random", "embed", ds, "--random-init", "atto")
    features = esi(out / "baselines" / "emb-features", "embed", feats)
    probes: dict[str, dict] = {"baselines": {}}
    for task in tasks:
        probes["baselines"][task] = esi(out / "baselines" / f"probe-{task}", "probe", ds, "-e", random, "--name", "random-init",
                                        "-e", features, "--name", "features", *probe_args(opts, task))
    models = {}
    for arm in opts["arms"].split(","):
        text = texts.get(arm, captions)
        models[arm] = model = pretrain(out / arm / "model", ds, text, opts, ARMS[arm][1])
        emb = ["-e", esi(out / arm / "emb-stages", "embed", ds, "--checkpoint", model, "--pooling", "stages"), "--name", f"{arm}:stages"]
        if arm == "default":
            emb += ["-e", esi(out / arm / "emb-embedding", "embed", ds, "--checkpoint", model, "--pooling", "embedding"),
                    "--name", f"{arm}:embedding"]
        probes[arm] = {task: esi(out / arm / f"probe-{task}", "probe", ds, *emb, "--zero-shot", model, *probe_args(opts, task))
                       for task in tasks}
    if opts["finetune"] == "yes" and "default" in models:
        for group, option in (("finetune", "--finetune"), ("finetune-scratch", "--finetune-scratch")):
            probes[group] = {task: esi(out / group / f"probe-{task}", "probe", ds, option, models["default"],
                                       "--finetune-epochs", opts["epochs"], *probe_args(opts, task)) for task in tasks}
    return {"probes": probes, "models": models, "dataset": ds}


# ------------------------------------------------------------------------------------------------ summary


def paired_delta(a, b, classes: list[str], resamples: int) -> tuple[float, float, float]:
    """Macro AUROC of predictions a minus b on the same test records, with a paired bootstrap 95 % CI."""
    from esi_tools.probe import metrics

    def matrix(pred):
        wide = pred.pivot(on="class", index="record_id", values="score").sort("record_id")
        labels = pred.pivot(on="class", index="record_id", values="label").sort("record_id")
        return wide["record_id"].to_list(), wide.select(classes).to_numpy(), labels.select(classes).to_numpy().astype(bool)

    ids_a, sa, y = matrix(a)
    ids_b, sb, _ = matrix(b)
    assert ids_a == ids_b, "paired comparison needs the same test records"
    delta = metrics.macro_auroc(y, sa) - metrics.macro_auroc(y, sb)
    lo, hi = metrics.bootstrap_ci(lambda i: metrics.macro_auroc(y[i], sa[i]) - metrics.macro_auroc(y[i], sb[i]), len(y),
                                  resamples=resamples)
    return float(delta), lo, hi


def collect(result: dict, opts: dict) -> dict:
    """Rows of every probe, paired deltas to random-init, the fold-9 choice, the seed spread, pretraining facts."""
    from esi_tools.artifacts import open_artifact

    rows, zero_shot, finetune_pred = [], [], {}
    resamples = int(opts["bootstrap"])
    for group, by_task in result["probes"].items():
        for task, path in by_task.items():
            art = open_artifact(path, "probe")
            base = open_artifact(result["probes"]["baselines"][task], "probe")
            base_pred = base.table("predictions.parquet").filter(method="linear", embedding="random-init")
            classes = json.loads((art.path / "metrics.json").read_text())["classes"]
            pred = art.table("predictions.parquet")
            if group in ("finetune", "finetune-scratch"):
                finetune_pred.setdefault(task, {})[group] = (pred.filter(method="finetune"), classes)
            for r in art.table("results.parquet").iter_rows(named=True):
                row = {"group": group, "task": task, "method": r["method"], "representation": r["embedding"],
                       "val_macro_auroc": r.get("val_macro_auroc"), "macro_auroc": r["macro_auroc"],
                       "ci_low": r["auroc_ci_low"], "ci_high": r["auroc_ci_high"], "macro_f1": r["macro_f1"], "n_test": r["n_test"]}
                if not (group == "baselines" and r["embedding"] == "random-init"):
                    mine = pred.filter(method=r["method"], embedding=r["embedding"])
                    row["delta"], row["delta_low"], row["delta_high"] = paired_delta(mine, base_pred, classes, resamples)
                rows.append(row)
            for z in json.loads((art.path / "metrics.json").read_text()).get("zero_shot", []):
                per_class = [c for c in json.loads((art.path / "metrics.json").read_text())["per_class"] if c["method"] == "zero-shot"]
                zero_shot.append({"group": group, "task": task, "strategy": z["strategy"][0], "val_macro_auroc": z["val_macro_auroc"][0],
                                  "per_class": {c["class"]: c["auroc"] for c in per_class}})
    finetune_gain = {}  # fine-tuning the pretrained encoder minus fine-tuning the same architecture from scratch
    for task, by_group in finetune_pred.items():
        if len(by_group) == 2:
            (pretrained, classes), (scratch, _) = by_group["finetune"], by_group["finetune-scratch"]
            finetune_gain[task] = dict(zip(("delta", "delta_low", "delta_high"), paired_delta(pretrained, scratch, classes, resamples)))
    chosen = {}
    for task in opts["tasks"].split(","):
        esi_rows = [r for r in rows if r["task"] == task and r["method"] == "linear" and r["group"] not in ("baselines",)
                    and r["val_macro_auroc"] is not None]
        if esi_rows:
            best = max(esi_rows, key=lambda r: r["val_macro_auroc"])
            chosen[task] = {"representation": best["representation"], "val_macro_auroc": best["val_macro_auroc"],
                            "macro_auroc": best["macro_auroc"], "ci_low": best["ci_low"], "ci_high": best["ci_high"],
                            "delta": best.get("delta"), "delta_low": best.get("delta_low"), "delta_high": best.get("delta_high")}
    spread = {}
    for task in opts["tasks"].split(","):
        values = [r["macro_auroc"] for r in rows if r["task"] == task and r["method"] == "linear" and r["group"] in SEEDS
                  and r["representation"] == f"{r['group']}:stages"]
        if len(values) > 1:
            spread[task] = {"n": len(values), "mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)),
                            "min": float(min(values)), "max": float(max(values))}
    pretraining = []
    for arm, path in result["models"].items():
        model = open_artifact(path, "model")
        log_rows = model.table("train_log.parquet")
        pretraining.append({"arm": arm, "what": ARMS[arm][0], "steps": model.summary["steps"], "pairs": model.summary["pairs"],
                            "excluded_folds": sorted(model.parameters["exclude_folds"]), "excluded_records": model.summary["excluded"],
                            "text_source": model.summary["text_source"],
                            "contrastive_loss": model.summary.get("final_contrastive_loss"),
                            "caption_loss": model.summary.get("final_caption_loss") if model.parameters["caption_weight"] else None,
                            "minutes": float(log_rows["wall_s"][-1]) / 60 if log_rows.height else None})
    audit = Path(opts["out"]) / "audit" / "audit.md"
    return {"scale": {k: opts[k] for k in ("limit", "steps", "batch", "llm", "captions", "arms", "tasks", "bootstrap", "finetune",
                                           "epochs")}, "audit": audit.read_text() if audit.is_file() else None,
            "date": date.today().isoformat(), "rows": rows, "zero_shot": zero_shot, "chosen_on_fold9": chosen,
            "seed_spread": spread, "finetune_gain": finetune_gain, "pretraining": pretraining}


def _f(v, digits=3) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def section(summary: dict) -> str:
    """The Markdown section (also what the run report includes)."""
    scale = summary["scale"]
    lines = ["## Ablation: what helps the ESI encoder at cpu-demo scale", "",
             f"PTB-XL subset ({'first ' + scale['limit'] + ' records' if scale['limit'] else 'all 1,987 records'}"
             f"{'; captions and pretraining on the first ' + scale['captions'] + ' records only' if scale.get('captions') else ''}), cpu-demo profile"
             f"{', ' + scale['steps'] + ' steps per run' if scale['steps'] else ''}; pretraining on folds 1-8 only (9 and 10 "
             "excluded, checked in every model manifest); probe C, thresholds, zero-shot prompts and the recommended arm chosen "
             f"on fold 9; fold 10 scored once. 95 % CIs from {scale['bootstrap']} bootstrap resamples of test records; Δ is the "
             "paired bootstrap difference to the random-init encoder on the same records.", ""]
    goals = []
    for task in ("superdiagnostic", "rhythm"):
        r = next((r for r in summary["rows"] if r["task"] == task and r["representation"] == "default:stages"), None)
        if r:
            goals.append(f"- {task}: ESI default (linear, stages) minus random-init {_f(r['delta'])} [{_f(r['delta_low'])}, "
                         f"{_f(r['delta_high'])}]: " + ("outside the CI, goal met." if r["delta_low"] > 0 else "CI includes 0, goal not met."))
    z = next((r for r in summary["rows"] if r["task"] == "superdiagnostic" and r["group"] == "default" and r["method"] == "zero-shot"), None)
    if z:
        goals.append(f"- superdiagnostic zero-shot macro AUROC {_f(z['macro_auroc'])} [{_f(z['ci_low'])}, {_f(z['ci_high'])}]: "
                     + ("≥ 0.75, goal met." if z["macro_auroc"] >= 0.75 else "below the 0.75 goal."))
    if goals:
        lines += ["Goals of issue 16 (fold 10):", "", *goals, ""]
    for task in scale["tasks"].split(","):
        lines += [f"### {task}", "", "| arm | method | representation | fold 9 macro AUROC | fold 10 macro AUROC [95% CI] | Δ vs random-init [95% CI] | macro F1 |",
                  "|---|---|---|---|---|---|---|"]
        for r in (r for r in summary["rows"] if r["task"] == task):
            delta = f"{_f(r['delta'])} [{_f(r['delta_low'])}, {_f(r['delta_high'])}]" if "delta" in r else "(reference)"
            lines.append(f"| {r['group']} | {r['method']} | {r['representation']} | {_f(r['val_macro_auroc'])} | "
                         f"{_f(r['macro_auroc'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}] | {delta} | {_f(r['macro_f1'])} |")
        chosen = summary["chosen_on_fold9"].get(task)
        if chosen:
            separated = chosen["delta_low"] is not None and chosen["delta_low"] > 0
            lines += ["", f"Chosen on fold 9: **{chosen['representation']}** (fold 9 {_f(chosen['val_macro_auroc'])}); fold 10 "
                      f"{_f(chosen['macro_auroc'])} [{_f(chosen['ci_low'])}, {_f(chosen['ci_high'])}], Δ vs random-init "
                      f"{_f(chosen['delta'])} [{_f(chosen['delta_low'])}, {_f(chosen['delta_high'])}]: "
                      + ("better outside the CI." if separated else "not separated from random-init at this scale.")]
        gain = summary.get("finetune_gain", {}).get(task)
        if gain:
            lines += ["", f"Fine-tuning, pretrained minus from scratch (same architecture, epochs and seed; paired bootstrap): "
                      f"{_f(gain['delta'])} [{_f(gain['delta_low'])}, {_f(gain['delta_high'])}]."]
        spread = summary["seed_spread"].get(task)
        if spread:
            lines += ["", f"Seed spread of the default (seeds 0-{spread['n'] - 1}, linear probe on stages): mean "
                      f"{_f(spread['mean'])}, sd {_f(spread['sd'])}, range {_f(spread['min'])}-{_f(spread['max'])}."]
        lines.append("")
    if summary["zero_shot"]:
        lines += ["### Zero-shot per class (fold 10 AUROC; prompt strategy chosen on fold 9)", ""]
        for task in scale["tasks"].split(","):
            zs = [z for z in summary["zero_shot"] if z["task"] == task]
            if not zs:
                continue
            cls = list(dict.fromkeys(c for z in zs for c in z["per_class"]))
            if len(cls) > 12:  # form/rhythm: macro numbers above are enough
                continue
            lines += [f"{task}:", "", "| arm | prompts (fold 9 macro AUROC) | " + " | ".join(cls) + " |", "|---|---|" + "---|" * len(cls)]
            for z in zs:
                val = ", ".join(f"{s} {_f(v)}" for s, v in z["val_macro_auroc"].items())
                lines.append(f"| {z['group']} | {z['strategy']} ({val}) | " + " | ".join(_f(z["per_class"].get(c)) for c in cls) + " |")
            lines.append("")
    if summary.get("audit"):
        lines += ["### Caption audit (the same records for every captions artifact; `esi audit --common`)", "", summary["audit"], ""]
    lines += ["### Pretraining runs", "", "| arm | what changed | text | steps | pairs | folds out (records) | final contrastive / caption loss | minutes |",
              "|---|---|---|---|---|---|---|---|"]
    for p in summary["pretraining"]:
        lines.append(f"| {p['arm']} | {p['what']} | {p['text_source']} | {p['steps']} | {p['pairs']} | "
                     f"{','.join(map(str, p['excluded_folds']))} ({p['excluded_records']}) | {_f(p['contrastive_loss'])} / "
                     f"{_f(p['caption_loss'])} | {_f(p['minutes'], 1)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    opts = parse(argv)
    out = Path(opts["out"])
    out.mkdir(parents=True, exist_ok=True)
    result = run(opts)
    summary = collect(result, opts)
    text = section(summary)
    (out / "ablation.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "ablation.md").write_text(text)
    full = not (opts["limit"] or opts["steps"] or opts["captions"])
    report = Path(opts["report"] or (HERE / "ABLATIONS.md" if full else out / "ABLATIONS.md"))
    from _common import machine

    report.write_text(f"# Ablations (issue 16)\n\nWritten by `just ablate {' '.join(argv)}` on {summary['date']}; machine: {machine()}. "
                      f"Artifacts in `{out}`; the same section is `{out / 'ablation.md'}` (data: `{out / 'ablation.json'}`).\n\n" + text)
    esi(out / "report", "report", out, "--force", keep=False)  # the run's report, the ablation its last section
    log(f"ablation: {report}; report: {out / 'report' / 'report.html'}")
    print(report)
    return 0


if __name__ == "__main__":
    from esi_tools.errors import EsiError

    try:
        sys.exit(main(sys.argv[1:]))
    except EsiError as exc:  # e.g. an artifact kept from an older esi-tools: one line, saying which
        log(f"error: {exc}")
        sys.exit(2)
