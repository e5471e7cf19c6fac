"""bench/ablate.py end to end at a tiny scale on real PTB-XL records: every arm's artifacts, folds 9 and 10
kept out of pretraining (and a run that lets them in refused), zero-shot per-class AUROCs, resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import PTBXL, ROOT, tiny_text_tower

from esi_tools.knowledge import passage_for


def _tiny_text_tower(root):
    arch = tiny_text_tower(root)
    return f"--model {arch} --text-model {root / 'text'} --workers 0"


def _ablate(*args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "ablate.py"), *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
def test_tiny_ablation_end_to_end(tmp_path):
    out = tmp_path / "ablate"
    common = [f"out={out}", f"data={PTBXL}", "limit=300", "steps=2", "batch=16", "tasks=superdiagnostic", "bootstrap=50",
              "epochs=1", "min_positives=3", f"pretrain={_tiny_text_tower(tmp_path)}"]
    result = _ablate(*common, "arms=default,contrastive-only")
    assert result.returncode == 0, result.stderr[-3000:]
    report = out / "ABLATIONS.md"  # a shrunk run never overwrites bench/ABLATIONS.md
    assert result.stdout.strip() == str(report)
    summary = json.loads((out / "ablation.json").read_text())
    for p in summary["pretraining"]:
        assert p["excluded_folds"] == [9, 10] and p["excluded_records"] > 0 and p["steps"] == 2
    rows = summary["rows"]
    got = {(r["group"], r["method"], r["representation"]) for r in rows}
    assert got == {("baselines", "linear", "random-init"), ("baselines", "linear", "features"),
                   ("default", "linear", "default:stages"), ("default", "linear", "default:embedding"),
                   ("default", "zero-shot", "esi:model"), ("contrastive-only", "linear", "contrastive-only:stages"),
                   ("contrastive-only", "zero-shot", "esi:model"), ("finetune", "finetune", "esi:model"),
                   ("finetune-scratch", "finetune", "scratch:model")}
    gain = summary["finetune_gain"]["superdiagnostic"]
    assert gain["delta_low"] <= gain["delta"] <= gain["delta_high"]
    for r in rows:
        assert 0 <= r["ci_low"] <= r["macro_auroc"] <= r["ci_high"] <= 1 and r["val_macro_auroc"] is not None
        if r["representation"] != "random-init":
            assert r["delta_low"] <= r["delta"] <= r["delta_high"]
    assert summary["chosen_on_fold9"]["superdiagnostic"]["representation"] in {"default:stages", "default:embedding", "contrastive-only:stages"}
    # zero-shot: the prompt strategy chosen on fold 9, per-class AUROC of every class in the probe artifact
    probe = out / "default" / "probe-superdiagnostic"
    metrics = json.loads((probe / "metrics.json").read_text())
    (zs,) = metrics["zero_shot"]
    assert zs["strategy"][0] in ("prevalence", "ensemble") and set(zs["val_macro_auroc"][0]) == {"prevalence", "ensemble"}
    # in these 300 records' training folds STTC is mostly NDT and ISC_, CD mostly IRBBB and LAFB (NST_ and IVCD once each)
    prompts = zs["prompts"][0]
    assert all(passage_for("scp", code) in prompts["prevalence"]["STTC"] for code in ("NDT", "ISC_"))
    assert all(passage_for("scp", code) in prompts["prevalence"]["CD"] for code in ("IRBBB", "LAFB"))
    assert all(passage_for("scp", code) in prompts["ensemble"]["STTC"] for code in ("NDT", "ISC_", "NST_", "ANEUR"))
    assert all(passage_for("scp", code) in prompts["ensemble"]["CD"] for code in ("LAFB", "IRBBB", "IVCD"))
    per_class = {c["class"]: c["auroc"] for c in metrics["per_class"] if c["method"] == "zero-shot"}
    assert set(per_class) == {"CD", "HYP", "MI", "NORM", "STTC"} and all(0 <= v <= 1 for v in per_class.values())
    assert (probe / "per_class.md").read_text().splitlines()[2].endswith("| zero-shot esi:model |")
    text = report.read_text()
    assert "### superdiagnostic" in text and "Chosen on fold 9" in text and f"| default | {zs['strategy'][0]} (" in text
    assert (out / "ablation.md").read_text() in text
    page = (out / "report" / "report.md").read_text()  # the run's report ends with the ablation section
    assert "Ablation: what helps the ESI encoder" in page and "Chosen on fold 9" in page
    assert page.index("Ablation: what helps") > page.index("Probe: superdiagnostic")

    # rerun: every artifact present is kept (nothing recomputed); a model that saw fold 10 (a doctored copy of
    # the default's manifest) is refused before anything is probed with it
    leaky = out / "seed1" / "model"
    shutil.copytree(out / "default" / "model", leaky)
    manifest = json.loads((leaky / "manifest.json").read_text())
    manifest["parameters"]["exclude_folds"] = [9]
    (leaky / "manifest.json").write_text(json.dumps(manifest))
    again = _ablate(*common, "arms=default,contrastive-only,seed1")
    assert again.returncode != 0 and "folds 9 and 10 must stay out of pretraining" in again.stderr
    assert "+ esi" not in again.stderr and again.stderr.count("(exists, kept)") == 16
    assert not (out / "seed1" / "probe-superdiagnostic").exists()
