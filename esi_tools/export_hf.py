"""`esi export --format hf`: a model artifact -> a folder that uploads to the Hugging Face hub as it is.

The folder holds what `esi_tools.load_model` and `esi embed --checkpoint` read (config.json,
encoder.safetensors, model.safetensors, the text tower's tokenizer and config in text/), the training curves,
and README.md: a model card whose YAML front matter (license, tags, datasets) the hub reads, and whose text
lists the training data, the training profile and settings, the licence and the probe and identification
tables of the run. The folder is an artifact itself (kind `hf-model`), so what it was made from stays traceable.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .artifacts import Artifact, ArtifactWriter, open_artifact
from .console import log, warn
from .errors import ArtifactError, EsiError, UsageError
from .hub import HUB_ID

CARRIED = ("config.json", "encoder.safetensors", "model.safetensors", "train_curves.png")  # plus text/*
TAGS = ["ecg", "electrocardiogram", "esi-tools", "ecg-text", "contrastive-learning", "zero-shot-classification"]
RESULT_KINDS = ("probe", "identification")
# The licence ids the Hugging Face hub knows (SPDX ids, lower case, and a few of its own); "other" for the rest.
LICENSES = frozenset("""
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
lgpl-2.1 lgpl-3.0 isc lppl-1.3c ms-pl mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib
pddl lgpl-lr unknown other
""".split())


@dataclass(frozen=True)
class DataSource:
    name: str
    url: str | None
    license: str | None  # hub licence id of the data; None = credentialed or unknown
    citation: str | None


SOURCES = {
    "ptbxl": DataSource("PTB-XL", "https://physionet.org/content/ptb-xl/", "cc-by-4.0",
                        "Wagner et al., Sci Data 7:154 (2020)"),
    "challenge": DataSource("PhysioNet/CinC Challenge 2020/2021", "https://physionet.org/content/challenge-2021/",
                            "cc-by-4.0", "Reyna et al., Computing in Cardiology (2021)"),
    "mimic-iv-ecg": DataSource("MIMIC-IV-ECG", "https://physionet.org/content/mimic-iv-ecg/", None,
                               "Gow et al., MIMIC-IV-ECG (PhysioNet, 2023)"),
}


@dataclass(frozen=True)
class ExportConfig:
    format: str = "hf"  # the one format: a Hugging Face hub model folder
    license: str | None = None  # hub licence id; None = the training data's, refused when unknown or credentialed
    repo_id: str | None = None  # org/name it will be uploaded as (the card's usage example); None = your-org/<out name>
    run_dir: str | None = None  # where the probe/identification artifacts are; None = the model artifact's parent
    results: tuple[str, ...] = ()  # more probe/identification artifacts to list in the card


@dataclass
class TrainingData:
    source: DataSource
    records: int | None
    fs: float | None
    credentialed: bool


def training_data(model: Artifact) -> list[TrainingData]:
    """The datasets a model artifact was trained on, from its manifest's dataset inputs."""
    found = []
    for item in model.manifest["inputs"]:
        if item["kind"] != "dataset":
            continue
        try:
            art = open_artifact(item["path"], "dataset")
        except EsiError as exc:
            warn(f"training dataset {item['path']} cannot be read ({exc}): the card names it without details")
            found.append(TrainingData(DataSource(Path(item["path"]).name, None, None, None), None, None, False))
            continue
        kind = art.parameters.get("source")
        source = SOURCES.get(kind) or DataSource(f"WFDB records ({Path(art.parameters.get('src', art.path)).name})",
                                                 None, None, None)
        found.append(TrainingData(source, art.summary.get("records"), art.parameters.get("fs"),
                                  bool(art.summary.get("credentialed")) or kind == "mimic-iv-ecg"))
    return found


def choose_license(given: str | None, data: list[TrainingData], model: Artifact) -> str:
    """The licence the card states: the one given, else the training data's when all share a known open one."""
    if given:
        if given.strip().lower() not in LICENSES:
            raise UsageError(f"--license {given!r} is not a licence id the Hugging Face hub knows (an SPDX id such as "
                             "cc-by-4.0, mit, apache-2.0, gpl-3.0; or other, and name the terms in the card)")
        return given.strip().lower()
    if model.parameters.get("origin") == "release-import":
        raise UsageError("an imported release model carries its authors' terms: check them and pass --license")
    if any(d.credentialed for d in data):
        raise UsageError("the model was trained on credentialed data (e.g. MIMIC-IV-ECG), whose use agreement may forbid "
                         "sharing derived weights: check it and pass --license explicitly")
    licenses = {d.source.license for d in data}
    if not data or None in licenses or len(licenses) > 1:
        raise UsageError("the training data's licence is not known here (or differs between datasets): pass --license "
                         "(a Hugging Face licence id such as cc-by-4.0, mit, apache-2.0, other)")
    return licenses.pop()


def _open_quietly(path: Path) -> Artifact | None:
    try:
        return open_artifact(path)
    except EsiError:
        return None


def _same_model(value, model: Artifact) -> bool:
    return bool(value) and Path(str(value)).expanduser().resolve() == model.path.resolve()


def related_results(model: Artifact, run_dir: Path, extra: tuple[str, ...]) -> list[Artifact]:
    """Probe and identification artifacts of `run_dir` that evaluated this model, and those given in `extra`
    (probes first, by task)."""
    siblings = [a for a in (_open_quietly(m.parent) for m in sorted(run_dir.glob("*/manifest.json"))) if a is not None]
    embedded = {a.digest for a in siblings if a.kind == "embeddings" and _same_model(a.parameters.get("checkpoint"), model)}
    found = []
    for art in siblings:
        if art.kind not in RESULT_KINDS:
            continue
        uses_embeddings = any(i["manifest_sha256"] in embedded for i in art.manifest["inputs"])
        uses_model = any(_same_model(art.parameters.get(k), model) for k in ("zero_shot", "finetune"))
        if uses_embeddings or uses_model:
            found.append(art)
    for path in extra:
        art = open_artifact(path, RESULT_KINDS)
        if all(a.path.resolve() != art.path.resolve() for a in found):
            found.append(art)
    return sorted(found, key=lambda a: (RESULT_KINDS.index(a.kind), str(a.parameters.get("task", "")), a.path.name))


def _profile(model: Artifact) -> str:
    """The --profile `esi pretrain` was given (from the manifest's argv), else "custom"."""
    argv = [str(a) for a in model.manifest.get("argv", [])]
    for i, arg in enumerate(argv):
        if arg == "--profile" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--profile="):
            return arg.split("=", 1)[1]
    return "custom (no --profile)"


def _text_tower(model: Artifact) -> str:
    """A description of the text tower that names no local path."""
    config = json.loads((model.path / "config.json").read_text())
    source = str(config.get("text_model", ""))
    text_config = model.path / "text" / "config.json"
    shape = ""
    if text_config.is_file():
        tc = json.loads(text_config.read_text())
        shape = f"{tc.get('model_type', 'transformer')}, {tc.get('num_hidden_layers', '?')} layers, {tc.get('hidden_size', '?')} wide"
    name = source if HUB_ID.fullmatch(source) and not Path(source).exists() else "trained from a local model"
    return f"{shape} ({name})" if shape else name


def _results_section(results: list[Artifact]) -> list[str]:
    from .report.collect import member

    if not results:
        return ["No probe or identification artifacts of this model were found next to it; evaluate it with",
                "`esi probe` and `esi identify` (or pass their artifacts with `--results`).", ""]
    lines = ["Rows labelled `esi…` are this model; the other rows are baselines scored on the same split.", ""]
    for art in results:
        table = member(art, "results.md")
        if table is None:
            continue
        if art.kind == "probe":
            title = f"Probe: {art.parameters.get('task')} ({art.parameters.get('split_used')} split)"
        else:
            title = f"Subject identification ({art.summary.get('subjects')} subjects)"
        lines += [f"### {title}", "", f"From the `{art.kind}` artifact `{art.path.name}`.", "", table.read_text().rstrip(), ""]
    return lines


def model_card(model: Artifact, *, license: str, repo_id: str, data: list[TrainingData], results: list[Artifact]) -> str:
    """README.md for the hub: YAML front matter (via huggingface_hub's ModelCardData) and the card's text."""
    from huggingface_hub import ModelCardData

    p, s = model.parameters, model.summary
    front = ModelCardData(license=license, library_name="esi-tools", tags=TAGS, pipeline_tag="feature-extraction",
                          datasets=[d.source.name for d in data] or None)
    fs = s.get("fs") or p.get("fs")
    lines = [
        "---", front.to_yaml(), "---", "",
        f"# {repo_id.split('/')[-1]}", "",
        f"An ECG-text foundation model made with esi-tools after the ECG Semantic Integrator (ESI; Yu, Guo & Sano, "
        f"TMLR 2024), for 12-lead ECGs at {fs:g} Hz. ECG encoder: 1D ConvNeXt-V2 ({s.get('ecg_size', p.get('size', '?'))}); "
        f"text tower: {_text_tower(model)}; both map into one {s.get('embed_dim', '?')}-d embedding space.", "",
        "## Use", "", "```python", "import esi_tools", "",
        f'model = esi_tools.load_model("{repo_id}")  # downloaded once into the Hugging Face cache',
        'z = model.embed_ecg(x, fs, units="mV")  # x: (12, L) or (N, 12, L), leads I, II, III, aVR, aVL, aVF, V1-V6',
        'p = model.zero_shot(x, fs, classes={"NORM": "Normal ECG.", "AFIB": "Atrial fibrillation."})',
        "```", "",
        f"From the command line: `esi embed DATASET --checkpoint {repo_id}`. Inputs at another rate are resampled "
        f"to {fs:g} Hz and standardised per record exactly as in training.", "",
        "## Training data", "",
    ]
    if data:
        lines += ["| dataset | records | rate | licence | source | cite |", "|---|---|---|---|---|---|"]
        for d in data:
            lines.append(f"| {d.source.name} | {d.records if d.records is not None else '?'} | "
                         f"{f'{d.fs:g} Hz' if d.fs else '?'} | {d.source.license or ('credentialed' if d.credentialed else 'unknown')} | "
                         f"{d.source.url or '-'} | {d.source.citation or '-'} |")
        lines.append("")
    else:
        lines += ["Imported weights: see the original release for its training data.", ""]
    if p.get("origin") == "release-import":
        lines += ["## Origin", "", f"Imported by `esi import-release` from `{Path(str(p.get('checkpoint'))).name}` "
                  f"(sha256 {p.get('source_sha256')}).", ""]
    else:
        held_out = ", ".join(str(f) for f in p.get("exclude_folds") or [])
        held_out = f"; PTB-XL strat_fold {held_out} held out for validation and test" if held_out and any(
            d.source is SOURCES["ptbxl"] for d in data) else ""
        lines += [
            "## Training", "",
            f"`esi pretrain`, profile **{_profile(model)}**: {s.get('steps')} optimizer step(s) ({s.get('epochs', '?')} "
            f"epochs) on {s.get('pairs', '?')} ECG-text pairs (text: {s.get('text_source', p.get('text_source'))}){held_out}.", "",
            "| setting | value |", "|---|---|",
            *[f"| {k} | {v} |" for k, v in {
                "architecture": Path(str(p.get("model"))).name, "batch size x ranks": f"{p.get('batch_size')} x {p.get('world_size')}",
                "learning rate": f"{p.get('lr')} ({p.get('schedule')})", "engine": p.get("engine"),
                "parameters": f"{s.get('parameters', 0) / 1e6:.1f} M", "final loss (contrastive + caption)":
                f"{s.get('final_loss', float('nan')):.3f} ({s.get('final_contrastive_loss', float('nan')):.3f} + "
                f"{s.get('final_caption_loss', float('nan')):.3f})",
            }.items()], "",
        ]
        if model.has("train_curves.png"):
            lines += ["![training curves](train_curves.png)", ""]
    lines += ["## Evaluation", "", *_results_section(results)]
    cites = "; ".join(d.source.citation for d in data if d.source.citation)
    lines += ["## Licence", "", f"`{license}`." + (f" Cite the training data: {cites}." if cites else ""), "",
              "## Files", "",
              "`config.json` (architecture, sampling rate), `encoder.safetensors` (ECG encoder and projection), "
              "`model.safetensors` (the whole model), `text/` (tokenizer and configuration of the text tower), "
              "`manifest.json` (what this folder was made from, with sha256 of every file)."]
    return "\n".join(lines) + "\n"


def export_hf(config: ExportConfig, model_path: str | Path, out: str | Path, *, force: bool = False) -> Path:
    """Write the hub folder of a model artifact to `out` (an `hf-model` artifact)."""
    from .report.collect import member

    if config.format != "hf":
        raise UsageError(f"--format must be hf, not '{config.format}'")
    out = Path(out)
    repo_id = config.repo_id or f"your-org/{out.name}"
    if not HUB_ID.fullmatch(repo_id):
        raise UsageError(f"--repo-id must look like org/name, not '{repo_id}'")
    model = open_artifact(model_path, "model")
    changed = model.file_changes()  # what is uploaded must be what was written: re-hash every file
    if changed:
        raise ArtifactError(f"{model.path} changed since it was written, not exported: {changed[0]}")
    data = training_data(model)
    license = choose_license(config.license, data, model)
    run_dir = Path(config.run_dir) if config.run_dir else model.path.parent
    results = related_results(model, run_dir, config.results)
    names = [n for n in model.manifest["files"] if n in CARRIED or n.startswith("text/")]
    inputs = {"model": model} | {f"{a.kind}:{a.path.name}": a for a in results}
    parameters = {"format": "hf", "license": license, "repo_id": repo_id}  # no local path: the folder is uploaded
    argv = ["esi", "export", "--format", "hf", "--license", license, "--repo-id", repo_id]
    with ArtifactWriter(out, "hf-model", parameters=parameters, inputs=inputs, force=force, argv=argv,
                        portable=True) as writer:
        total = 0
        for name in names:
            src = member(model, name)
            if src is None:
                raise EsiError(f"{model.path}: {name} is not a regular file inside the artifact")
            writer.path(name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, writer.path(name))
            total += src.stat().st_size
        card = model_card(model, license=license, repo_id=repo_id, data=data, results=results)
        writer.path("README.md").write_text(card)
        writer.summary.update(license=license, datasets=[d.source.name for d in data], result_tables=len(results),
                              text_tower="model.safetensors" in names, bytes=total + len(card.encode()))
        path = writer.commit()
    log(f"exported {model.path} with {len(results)} result tables -> {path} (upload: hf upload {repo_id} {path})")
    return path
