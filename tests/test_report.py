"""esi report on real runs: nested WFDB record ids, reads kept inside each artifact, a table of contents, and
ECG plots on standard paper (25 mm/s, 10 mm/mV, 1 mm / 5 mm grid)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import LUDB, PTBXL, run_esi

PX_PER_MM = 150 / 25.4  # figures.DPI


@pytest.fixture(scope="module")
def ptbxl_run(tmp_path_factory) -> Path:
    """dataset, features, signal-statistics embeddings and a probe on 300 real PTB-XL records."""
    run = tmp_path_factory.mktemp("report") / "run"
    steps = [("dataset", "ingest", "ptbxl", PTBXL, "--limit", "300"),
             ("features", "features", run / "dataset"),
             ("emb", "embed", run / "dataset", "--signal-stats"),
             ("probe", "probe", run / "dataset", "-e", run / "emb", "--task", "superdiagnostic", "--bootstrap", "20",
              "--min-positives", "3")]
    for name, *args in steps:
        result = run_esi("-q", *args, "--out", run / name)
        assert result.exit_code == 0, result.stderr
    return run


def _report(run: Path, out: Path) -> tuple[str, str, object]:
    result = run_esi("-q", "report", run, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return (out / "report.html").read_text(), (out / "report.md").read_text(), result


def test_report_has_contents_and_ecgs_on_paper_scale(ptbxl_run, tmp_path):
    from PIL import Image

    from esi_tools.report.figures import EcgPaper

    page, markdown, _ = _report(ptbxl_run, tmp_path / "report")
    nav = re.search(r'<nav class="toc">(.*?)</nav>', page, re.S)
    assert nav, "no table of contents"
    links = re.findall(r'href="#([^"]+)"', nav.group(1))
    anchors = re.findall(r'<h[23] id="([^"]+)"', page)
    assert links == anchors and len(set(anchors)) == len(anchors)
    for section in ("Provenance", "Dataset (ptbxl)", "Sample records", "Waveform measurements", "Probe: superdiagnostic"):
        assert f">{section}</a>" in nav.group(1), section
    assert "Contents:" in markdown and "- [Provenance](#provenance)" in markdown

    ecgs = sorted((tmp_path / "report").glob("ecg_*.png"))
    assert len(ecgs) == 3
    paper = EcgPaper(10.0)  # PTB-XL: 10 s at 100 Hz
    assert paper.strip_mm == 250.0
    assert page.count(f'style="width:{paper.width_mm:.1f}mm"') == 3  # shown at real size
    image = np.asarray(Image.open(ecgs[0]).convert("RGB")).astype(int)
    assert image.shape[1::-1] == paper.pixels()
    top = round(8.0 * PX_PER_MM)  # the title band above the grid
    red = image[:, :, 0] - image[:, :, 1]  # grid lines are pink-red; the trace and text are black

    def spacing(line: np.ndarray, threshold: int) -> tuple[float, int]:
        runs = np.flatnonzero(np.diff(np.r_[0, (line > threshold).astype(int), 0]))
        centres = (runs[0::2] + runs[1::2] - 1) / 2
        return float(np.mean(np.diff(centres))), len(centres)  # lines snap to whole pixels: the mean is exact

    strip_row = image.shape[0] - round(2.5 * PX_PER_MM)  # between grid lines, below the rhythm strip's trace
    major, count = spacing(red[strip_row], 45)
    assert abs(major - 5 * PX_PER_MM) < 0.1 and count >= 50  # a bold line every 5 mm across 260 mm
    minor, _ = spacing(red[strip_row], 12)
    assert abs(minor - PX_PER_MM) < 0.05  # a thin line every 1 mm
    vertical, _ = spacing(red[top:, round(1.5 * PX_PER_MM)], 45)
    assert abs(vertical - 5 * PX_PER_MM) < 0.1
    black = image.max(axis=2) < 110
    pulse = black[top:, round(3 * PX_PER_MM) - 1: round(3 * PX_PER_MM) + 2].any(axis=1)  # rising edge at 3 mm
    edges = np.flatnonzero(np.diff(np.r_[0, pulse.astype(int), 0]))
    heights = edges[1::2] - edges[0::2]
    assert len(heights) == 4 and np.all(np.abs(heights - 10 * PX_PER_MM) < 4)  # 1 mV = 10 mm in every row
    rhythm_band = black[image.shape[0] - round(35 * PX_PER_MM):, round(10.5 * PX_PER_MM):]
    columns = np.flatnonzero(rhythm_band.any(axis=0)) + round(10.5 * PX_PER_MM)
    assert abs(columns.max() / PX_PER_MM - 260) < 1.5  # 10 s of lead II end 250 mm after the 10 mm margin


def test_report_reads_only_inside_each_artifact(ptbxl_run, tmp_path):
    run = tmp_path / "x" / "y" / "run"
    shutil.copytree(ptbxl_run, run, symlinks=True)
    secret_md = tmp_path / "x" / "secret.md"  # probe/../../../secret.md
    secret_md.write_text("| leaked-secret | value |\n|---|---|\n| leaked-secret | 42 |\n")
    secret_png = tmp_path / "x" / "secret.png"
    secret_png.write_bytes((run / "probe" / "roc.png").read_bytes() + b"LEAKED-PNG-TRAILER")
    manifest_path = run / "probe" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for path in (secret_md, secret_png):
        manifest["files"][f"../../../{path.name}"] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                                      "bytes": path.stat().st_size}
    manifest_path.write_text(json.dumps(manifest, indent=2))
    linked = run / "probe-link"  # a second probe whose results.md is a link out of its directory
    shutil.copytree(ptbxl_run / "probe", linked)
    (linked / "results.md").unlink()
    (linked / "results.md").symlink_to(secret_md)

    page, markdown, result = _report(run, tmp_path / "report")
    assert "leaked-secret" not in page and "leaked-secret" not in markdown
    assert base64.b64encode(secret_png.read_bytes()).decode() not in page
    assert "skipping" in result.stderr and "probe-link" in result.stderr
    assert "skipped directory" in page and ">probe<" in page and ">probe-link<" in page
    assert "Dataset (ptbxl)" in page and "Waveform measurements" in page  # the untouched artifacts are reported


def test_report_on_nested_wfdb_record_ids(tmp_path):
    from PIL import Image

    run = tmp_path / "run"
    result = run_esi("-q", "ingest", "wfdb", LUDB, "--limit", "3", "--fs", "500", "--out", run / "dataset")
    assert result.exit_code == 0, result.stderr
    page, markdown, _ = _report(run, tmp_path / "report")
    assert "Record data/1</h3>" in page and "Record data/10</h3>" in page  # LUDB ids are paths: data/1 ...
    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    figures = sorted(name for name in manifest["files"] if name.endswith(".png"))
    assert figures == ["ecg_data_1.png", "ecg_data_10.png", "ecg_data_100.png"]
    for name in figures:
        assert f"]({name})" in markdown
        with Image.open(io.BytesIO((tmp_path / "report" / name).read_bytes())) as image:
            assert image.size == (1535, 874)  # 500 Hz, 10 s: the same 260 x 148 mm sheet as at 100 Hz
