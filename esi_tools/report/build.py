"""Assemble the report of a run: provenance first, then one section per pipeline stage present.

Every number shown names the artifact it comes from (its path and manifest digest in the provenance table),
so it can be traced and reproduced from the manifests.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .. import __version__
from ..artifacts import MANIFEST, Artifact, ArtifactWriter, sha256_file
from ..console import log
from ..dataset import Dataset, unique_ids
from ..errors import EsiError
from .collect import collect, member
from .figures import histograms, twelve_lead
from .render import Page, to_html, to_markdown

FEATURE_PLOTS = ["hr_mean_bpm", "pr_ms", "qrs_ms", "qtc_bazett_ms", "qrs_axis_deg", "rr_sdnn_ms"]
EXAMPLES = 3  # sample records shown with their 12-lead plot, caption and retrieved passages


def _ref(art: Artifact, run_dir: Path) -> str:
    return f"source: {_rel(art.path, run_dir)} (manifest sha256 {art.digest[:12]}…)"


def _rel(path: Path, run_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(path)


def provenance(page: Page, arts: list[Artifact], run_dir: Path) -> None:
    page.heading("Provenance")
    page.text("Every artifact of this run, with the digest of its manifest and whether each input it recorded "
              "still has the digest it was built from.")
    rows = []
    for art in arts:
        inputs = []
        for inp in art.manifest["inputs"]:
            path = Path(inp["path"])
            manifest = path / MANIFEST
            ok = manifest.is_file() and sha256_file(manifest) == inp["manifest_sha256"]  # no FIFO, no dir
            inputs.append(f"{inp['role']}={_rel(path, run_dir)} [{inp['manifest_sha256'][:8]}{'' if ok else ' CHANGED'}]")
        rows.append([art.kind, _rel(art.path, run_dir), art.manifest["created_at"], art.digest[:16],
                     "; ".join(inputs) or "–"])
    page.table(["kind", "path", "created", "manifest sha256", "inputs (digest as recorded)"], rows)


def dataset_section(page: Page, art: Artifact, run_dir: Path) -> None:
    s, p = art.summary, art.parameters
    page.heading(f"Dataset ({p['source']})")
    page.text(f"{s['records']} records ingested at {p['fs']:g} Hz x {p['seconds']:g} s, {s['rejects']} rejected, "
              f"{s.get('patients', '–')} patients. {_ref(art, run_dir)}")
    records = Dataset(art).records
    if "split" in records.columns and records["split"].drop_nulls().len():
        counts = records["split"].value_counts().sort("split")
        page.table(["split", "records"], counts.rows())
    labels = Counter(label for row in records["labels"].to_list() for label in row)
    page.table(["label", "records"], [[k, v] for k, v in labels.most_common(12)])
    rejects = art.table("rejects.parquet")
    if rejects.height:
        reasons = Counter(r.split(":")[0] for r in rejects["reason"].to_list())
        page.table(["reject reason", "records"], [[k, v] for k, v in reasons.most_common(8)])


def examples_section(page: Page, by_kind: dict[str, list[Artifact]], run_dir: Path) -> None:
    data = Dataset(by_kind["dataset"][0])
    captions = by_kind.get("captions", [None])[0]
    retrieval = by_kind.get("retrieval", [None])[0]
    features = by_kind.get("features", [None])[0]
    ids = data.records["record_id"].to_list()
    chosen = list(range(min(EXAMPLES, len(ids))))
    if captions is not None:
        table = captions.table("captions.parquet").filter(captions.table("captions.parquet")["status"] == "ok")
        wanted = set(table["record_id"].to_list()[:EXAMPLES])
        chosen = [i for i, r in enumerate(ids) if r in wanted][:EXAMPLES] or chosen
    page.heading("Sample records")
    sources = [a for a in (captions, retrieval, features) if a is not None]
    page.text("Each with its 12-lead tracing, measured findings, generated caption and retrieved knowledge. "
              + " ".join(_ref(a, run_dir) for a in sources))
    hits = retrieval.table("hits.parquet") if retrieval else None
    passages = retrieval.table("passages.parquet") if retrieval else None
    caption_rows = {r["record_id"]: r for r in unique_ids(captions.table("captions.parquet"), "captions.parquet")
                    .iter_rows(named=True)} if captions else {}
    feature_rows = {}
    if features is not None:
        feature_rows = {r["record_id"]: r for r in unique_ids(features.table("features.parquet"), "features.parquet")
                        .iter_rows(named=True)}
    for i in chosen:
        row = data.records.row(i, named=True)
        rid = row["record_id"]
        page.heading(f"Record {rid}", 3)
        who = f"{row.get('age') or '?'} y, {row.get('sex') or '?'}; labels: {', '.join(row['labels']) or '–'}"
        png, paper = twelve_lead(data.millivolts(i), data.fs, f"record {rid}: {who}")
        page.image(f"ecg_{rid}.png", png, f"Record {rid} (25 mm/s, 10 mm/mV; real size when printed or shown at "
                   f"{paper.width_mm:.0f} mm)", width_mm=paper.width_mm)
        if rid in feature_rows:
            f = feature_rows[rid]
            page.text("Findings: " + (", ".join(f.get("findings") or []) or "none") + ". " + "; ".join(
                f"{k} {f[k]:.0f}" for k in FEATURE_PLOTS if isinstance(f.get(k), float) and f[k] == f[k]))
        if rid in caption_rows:
            page.text(f"Caption ({caption_rows[rid]['model']}): {caption_rows[rid]['caption']}")
        if hits is not None:
            mine = hits.filter(hits["record_id"] == rid).join(passages, on="passage_id", how="left").sort("rank")
            page.table(["rank", "passage", "title", "score"],
                       [[r["rank"], r["passage_id"], r.get("title"), r["score"]] for r in mine.iter_rows(named=True)])


def features_section(page: Page, art: Artifact, run_dir: Path) -> None:
    frame = art.table("features.parquet")
    page.heading("Waveform measurements")
    usable = frame["usable"].sum() if "usable" in frame.columns else frame.height
    page.text(f"{frame.height} records measured, {usable} usable. {_ref(art, run_dir)}")
    columns = [c for c in FEATURE_PLOTS if c in frame.columns]
    if columns:
        page.image("feature_distributions.png", histograms(frame, columns), "Distributions of key measurements")
    if "findings" in frame.columns:
        counts = Counter(f for row in frame["findings"].to_list() for f in (row or []))
        page.table(["finding", "records", "share"], [[k, v, f"{v / frame.height:.1%}"] for k, v in counts.most_common()])


def captions_section(page: Page, art: Artifact, run_dir: Path) -> None:
    table = art.table("captions.parquet")
    page.heading("Captions (Cardio Query Assistant)")
    status = Counter(table["status"].to_list())
    words = table["caption"].drop_nulls().str.split(" ").list.len()
    page.text(f"Model {art.parameters.get('model')}: " + ", ".join(f"{v} {k}" for k, v in status.items())
              + f"; mean length {words.mean() or 0:.0f} words; {table['caption'].n_unique()} distinct captions. "
              + _ref(art, run_dir))
    audit = art.summary.get("audit")
    if audit:
        page.text(f"Audited against their ECGs: {audit['unfaithful']} of {audit['audited']} contradict it "
                  f"({audit['replaced']} replaced by the template caption, --on-unfaithful "
                  f"{art.parameters.get('on_unfaithful')}); {audit['omissions']} key findings left out.")
    totals = {k: art.summary[k] for k in ("cost_usd", "input_tokens", "output_tokens", "requests", "prompts_cut")
              if k in art.summary}
    if totals:
        page.table(list(totals), [list(totals.values())])


AUDIT_EXAMPLES = 3  # records shown with their ECG and every caption's verdicts


def audit_section(page: Page, art: Artifact, data: Dataset | None, run_dir: Path) -> None:
    """The caption audit: rates per captions artifact, then a few records side by side with their ECG and the
    verdict on each claim (contradicted claims marked)."""
    import polars as pl

    page.heading("Caption audit: is each caption true to its ECG?")
    page.text("Claims read from each caption with the audit lexicon and checked against the record's measurements "
              "(rate ±10 %, intervals ±20 ms or ±10 %, axis ±15°) and recorded statements. " + _ref(art, run_dir))
    table = member(art, "audit.md")
    if table is not None:
        page.markdown_table(table.read_text(errors="replace"))
    claims = art.table("claims.parquet")
    captions = art.table("captions.parquet")
    wrong = claims.filter(pl.col("verdict") == "contradicted")["record_id"].unique(maintain_order=True).to_list()
    every = captions["record_id"].unique(maintain_order=True)
    faithful = every.filter(~every.is_in(wrong))  # one hashed pass (a list's `not in` was quadratic at MIMIC scale)
    shown = wrong[:AUDIT_EXAMPLES] + faithful.head(AUDIT_EXAMPLES).to_list()  # contradicted first, then others
    ids = data.records["record_id"].cast(pl.String).to_list() if data is not None else []
    for rid in shown[:AUDIT_EXAMPLES]:
        page.heading(f"Record {rid}", 3)
        if rid in ids:
            i = ids.index(rid)
            png, paper = twelve_lead(data.millivolts(i), data.fs, f"record {rid}")
            page.image(f"audit_ecg_{rid}.png", png, f"Record {rid} (25 mm/s, 10 mm/mV)", width_mm=paper.width_mm)
        rows = []
        for row in captions.filter(pl.col("record_id") == rid).iter_rows(named=True):
            mine = claims.filter((pl.col("record_id") == rid) & (pl.col("captions") == row["captions"])).sort("n")
            verdicts = "; ".join(("✗ CONTRADICTED " if c["verdict"] == "contradicted" else "")
                                 + f"{c['text']}: {c['verdict']} ({c['reason']})" for c in mine.iter_rows(named=True))
            omitted = ", ".join(row["omissions"] or [])
            rows.append([row["captions"], row["caption"], verdicts or "no claim", omitted or "–"])
        page.table(["captions of", "caption", "claims and verdicts", "omitted"], rows)


def _audited_dataset(art: Artifact, by_kind: dict) -> Dataset | None:
    """The dataset an audit read: the run's own, else the one its manifest names (if still there and intact)."""
    if "dataset" in by_kind:
        return Dataset(by_kind["dataset"][0])
    path = art.input_path("dataset")
    try:
        return Dataset.open(path) if path is not None else None
    except EsiError:
        return None


def model_section(page: Page, art: Artifact, run_dir: Path) -> None:
    page.heading("Pretraining")
    shown = {k: v for k, v in art.summary.items() if not isinstance(v, (dict, list))}
    page.text(_ref(art, run_dir))
    page.table(["quantity", "value"], [[k, v] for k, v in shown.items()])
    curves = member(art, "train_curves.png") if art.has("train_curves.png") else None
    if curves is not None:
        page.image("train_curves.png", curves.read_bytes(), "Training curves")


def embeddings_section(page: Page, arts: list[Artifact], run_dir: Path) -> None:
    page.heading("Representations compared")
    page.table(["embedding", "source", "dim", "records", "path"],
               [[a.path.name, a.summary.get("source"), a.summary.get("dim"), a.manifest["files"]["embeddings.npy"]["shape"][0],
                 _rel(a.path, run_dir)] for a in arts])


def evaluation_section(page: Page, art: Artifact, run_dir: Path, title: str) -> None:
    """Probe and identification artifacts: their own results tables and figures, as written."""
    page.heading(title)
    page.text(_ref(art, run_dir) + ". Parameters: " + ", ".join(
        f"{k}={v}" for k, v in art.parameters.items() if not isinstance(v, (dict, list)) and v not in (None, "")))
    files = {name: member(art, name) for name in sorted(art.manifest["files"])}  # None: not inside the artifact
    for name, path in files.items():
        if name.endswith(".md") and path is not None:
            page.markdown_table(path.read_text(errors="replace"))
    for name, path in files.items():
        if name.endswith(".png") and path is not None:
            page.image(f"{art.path.name}_{name}", path.read_bytes(), f"{title}: {name}")


def build_report(run_dir: Path, out: Path, *, force: bool = False) -> Path:
    arts, skipped = collect(run_dir)
    by_kind: dict[str, list[Artifact]] = {}
    for art in arts:
        by_kind.setdefault(art.kind, []).append(art)
    page = Page(f"esi-tools report: {run_dir.resolve().name}")
    page.text(f"Run directory {run_dir.resolve()}; {len(arts)} artifacts; esi-tools {__version__}.")
    provenance(page, arts, run_dir)
    if skipped:
        page.table(["skipped directory", "reason"], [[_rel(Path(path), run_dir), why] for path, why in skipped])
    if "dataset" in by_kind:
        dataset_section(page, by_kind["dataset"][0], run_dir)
        examples_section(page, by_kind, run_dir)
    for art in by_kind.get("features", []):
        features_section(page, art, run_dir)
    for art in by_kind.get("captions", []):
        captions_section(page, art, run_dir)
    for art in by_kind.get("audit", []):
        audit_section(page, art, _audited_dataset(art, by_kind), run_dir)
    for art in by_kind.get("model", []):
        model_section(page, art, run_dir)
    if by_kind.get("embeddings"):
        embeddings_section(page, by_kind["embeddings"], run_dir)
    for art in by_kind.get("probe", []):
        evaluation_section(page, art, run_dir, f"Probe: {art.summary.get('task', '')}")
    for art in by_kind.get("identification", []):
        evaluation_section(page, art, run_dir, "Subject identification")
    ablation = run_dir / "ablation.md"  # written by `just ablate` (bench/ablate.py) into its run directory
    if ablation.is_file() and not ablation.is_symlink():
        page.markdown(ablation.read_text(errors="replace"))
    inputs = {f"{a.kind}:{_rel(a.path, run_dir)}": a for a in arts}
    with ArtifactWriter(out, "report", parameters={"run_dir": str(run_dir.resolve())}, inputs=inputs, force=force) as w:
        w.path("report.html").write_text(to_html(page))
        w.path("report.md").write_text(to_markdown(page))
        for name, png in page.images.items():
            w.path(name).write_bytes(png)
        w.summary.update(artifacts=len(arts), kinds=sorted(by_kind), images=len(page.images), skipped=len(skipped))
        path = w.commit()
    log(f"report of {len(arts)} artifacts -> {path / 'report.html'}")
    return path
