"""Hardening, second pass (issue 24, issue 23 items 4-5): each test fails on the code before it.

Gaps in ECGs follow one rule (the ESI release's: a missing sample becomes its lead's mean) in the API, in
`esi ingest` and in an imported release model; the API refuses what it cannot use with one clear error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import test_download
import test_import_release as rel
import wfdb
from conftest import PTBXL, kill_and_expect_orphans_gone, run_esi
from test_ingest import _copy_record, _rewrite

import esi_tools
from esi_tools.artifacts import LOCK_SIGNATURE, TMP_MARKER
from esi_tools.dataset import Dataset
from esi_tools.errors import InputError

ESI = str(Path(sys.executable).parent / "esi")
MIMIC_TO_OURS = [0, 1, 2, 3, 5, 4, *range(6, 12)]  # MIMIC-IV-ECG's lead order (aVF before aVL) -> ours


@pytest.fixture(scope="module")
def release_sd():
    return rel.release_state_dict(*rel.ATTO)


@pytest.fixture(scope="module")
def ecg_only(release_sd, tmp_path_factory):
    """An imported release model (atto, random weights, no text tower): cheap, and its forward is known."""
    from safetensors.torch import save_file

    src = tmp_path_factory.mktemp("rel") / "model.safetensors"
    save_file(release_sd, src)
    out = src.parent / "model"
    result = run_esi("import-release", src, "--ecg-only", "--out", out)
    assert result.exit_code == 0, result.stderr
    return esi_tools.load_model(out)


def _ptbxl100(ecg_id: int = 1) -> tuple[np.ndarray, list[str]]:
    rec = wfdb.rdrecord(str(PTBXL / "records100" / "00000" / f"{ecg_id:05d}_lr"))
    return rec.p_signal.T.copy(), rec.sig_name


# ---------------------------------------------------------------- one gap rule (issue 24.1, issue 23.5)


def test_a_record_with_gaps_embeds_as_the_release_forward(ecg_only, release_sd):
    x = rel.reference_input(1)  # (5000, 12) mV at 500 Hz, MIMIC lead order, read by wfdb
    x[1000:1080, 0] = np.nan
    x[2000:2060, 7] = np.nan
    x[3000:3060, 10] = np.nan  # 200 missing samples over 3 leads
    ref = rel.reference_embedding(release_sd, rel.reference_normalise(x)[None]).numpy()[0]
    ours = ecg_only.embed_ecg(x[:, MIMIC_TO_OURS].T, 500)
    assert np.abs(ours - ref).max() < 2e-7  # float32 precision, as for records without gaps (was 2.6e-3)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_an_ecg_with_no_sample_gets_no_finite_embedding(ecg_only, value):
    x = rel.reference_input(1)[:, MIMIC_TO_OURS].T
    batch = np.stack([x, np.full_like(x, value), x])
    z = ecg_only.embed_ecg(batch, 500)
    assert np.isfinite(z[[0, 2]]).all() and np.isnan(z[1]).all()
    assert np.array_equal(z[0], z[2])


@pytest.mark.parametrize("where, value", [("lead I", np.nan), ("every lead", np.nan), ("every lead", np.inf)])
def test_measure_fills_a_gap_as_ingest_does(where, value):
    x, names = _ptbxl100()
    clean = esi_tools.measure(x, 100, leads=names)[0].row(0, named=True)
    x[0 if where == "lead I" else slice(None), 500] = value
    row = esi_tools.measure(x, 100, leads=names)[0].row(0, named=True)
    assert clean["usable"] and row["usable"], row["quality_reason"]
    assert row["hr_mean_bpm"] == pytest.approx(clean["hr_mean_bpm"], abs=0.5)
    assert any(f.startswith("nan_filled: I ") for f in row["quality_flags"])


def test_measure_of_an_all_nan_record_is_not_usable():
    x, names = _ptbxl100()
    features, _, rejects = esi_tools.measure(np.stack([x, np.full_like(x, np.nan)]), 100, leads=names)
    assert features["usable"].to_list() == [True, False] and rejects["record_id"].to_list() == ["1"]


def test_measure_counts_gaps_within_the_valid_samples_only():
    x, names = _ptbxl100()
    padded = np.concatenate([x, np.full((12, 500), np.nan)], axis=1)  # NaN padding after the record's 10 s
    row = esi_tools.measure(padded, 100, leads=names, valid=[1000])[0].row(0, named=True)
    assert row["usable"] and not any("nan_lead_dropped" in f for f in row["quality_flags"])


def test_ingest_fills_gaps_with_the_lead_mean(tmp_path):
    """A 500 Hz record with a 40-sample gap in lead III: the gap holds the mean of III's other samples."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    record = _copy_record(PTBXL / "records500" / "00000", "00001_hr", corpus, "gap")
    _rewrite(record, lambda d: d.__setitem__((slice(2000, 2040), 2), -32768))  # format 16's NaN
    result = run_esi("-q", "ingest", "wfdb", corpus, "--fs", "500", "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / "ds")
    stored = ds.waveforms[0, 2].astype(float)  # III, microvolts
    raw = wfdb.rdrecord(str(record)).p_signal[:, 2] * 1000
    assert np.isnan(raw[2000:2040]).all()
    assert (stored[2000:2040] == np.rint(np.nanmean(raw))).all()  # not a line between the gap's neighbours
    assert any(f.startswith("nan_filled: III") for f in ds.records["quality_flags"][0])


# ---------------------------------------------------------------- API misuse: one clear error (issue 24)


@pytest.mark.parametrize("fs", ["100", None, True, 0, -5, float("nan"), 1e-3, 1e9])
def test_measure_refuses_a_bad_rate(fs):
    x, _ = _ptbxl100()
    with pytest.raises(InputError, match="sampling rate"):
        esi_tools.measure(x, fs)


@pytest.mark.parametrize("options, match", [
    ({"ids": ["a"]}, "ids has 1 values for 2 records"),
    ({"chunk": 0}, "chunk"),
    ({"chunk": -1}, "chunk"),
    ({"valid": [1000]}, "valid has 1 values"),
])
def test_measure_refuses_bad_options(options, match):
    x, _ = _ptbxl100()
    with pytest.raises(InputError, match=match):
        esi_tools.measure(np.stack([x, x]), 100, **options)


@pytest.mark.parametrize("fs", [1e-3, 0.5, "500", None, True])
def test_embed_ecg_refuses_a_rate_that_would_allocate_gigabytes(ecg_only, fs):
    x = np.zeros((12, 5000))
    with pytest.raises(InputError, match="sampling rate"):
        ecg_only.embed_ecg(x, fs)


# ---------------------------------------------------------------- only what is provably ours is deleted (issue 24.4)


def _dead_pid(pid: int = 99999) -> int:
    while (Path("/proc") / str(pid)).exists():
        pid += 1
    return pid


@pytest.fixture()
def one_record(tmp_path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _copy_record(PTBXL / "records100" / "00000", "00001_lr", corpus, "r1")
    return corpus


def test_a_user_folder_named_like_a_stale_temporary_is_kept(one_record, tmp_path):
    pid = _dead_pid()
    user = tmp_path / f".result.tmp-{pid}"
    user.mkdir()
    (user / "thesis.txt").write_text("mine")
    result = run_esi("-q", "ingest", "wfdb", one_record, "--out", tmp_path / "result")
    assert result.exit_code == 0, result.output
    assert (user / "thesis.txt").read_text() == "mine"
    # a temporary an esi writer left (it holds our marker) is still cleaned up
    ours = tmp_path / f".result.tmp-{_dead_pid(pid + 1)}"
    ours.mkdir()
    (ours / TMP_MARKER).write_text("esi-tools temporary\n")
    result = run_esi("-q", "ingest", "wfdb", one_record, "--out", tmp_path / "result", "--force")
    assert result.exit_code == 0, result.output
    assert not ours.exists() and user.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".result")) == [user.name]


def test_a_user_file_named_like_the_lock_is_refused_not_deleted(one_record, tmp_path):
    precious = tmp_path / ".precious.lock"
    precious.write_text("my notes")
    result = run_esi("ingest", "wfdb", one_record, "--out", tmp_path / "precious")
    assert result.exit_code == 2 and "not an esi lock" in result.stderr and "Traceback" not in result.stderr
    assert precious.read_text() == "my notes" and not (tmp_path / "precious").exists()


def test_a_lock_left_by_a_killed_writer_is_reused(one_record, tmp_path):
    (tmp_path / ".out.lock").write_bytes(LOCK_SIGNATURE)
    result = run_esi("-q", "ingest", "wfdb", one_record, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".out.lock").exists() and (tmp_path / "out" / "manifest.json").is_file()
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name == TMP_MARKER]


# ---------------------------------------------------------------- workers die with their command (issue 24.2)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_features_workers_die_with_their_parent(ptbxl_dataset, tmp_path, how):
    """`esi features -j 2` killed: its workers and multiprocessing's resource tracker go too, the pipe ends."""
    proc = subprocess.Popen([ESI, "-q", "features", str(ptbxl_dataset), "-j", "2", "--chunk", "8",
                             "--out", str(tmp_path / "f")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    parent, deadline = psutil.Process(proc.pid), time.time() + 120
    children: list = []
    while time.time() < deadline and proc.poll() is None:
        children = parent.children(recursive=True)
        if len([p for p in children if "spawn_main" in " ".join(p.cmdline())]) == 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None and len(children) >= 2, "features ended before its workers could be observed"
    time.sleep(1.0)  # the workers are measuring
    kill_and_expect_orphans_gone(proc, how, within_s=5)


# ---------------------------------------------------------------- model files from anywhere (issue 24.3, 24.5, Low)

tiny_bert = rel.tiny_bert  # the release tests' tiny BERT (tokenizer + config on the MiniLM vocabulary)
mirror = test_download.mirror  # a local HTTP mirror of PTB-XL files


def _limited(code: str, gib: int = 4) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python under an address-space limit, so a huge allocation fails instead of paging."""
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({gib} << 30, {gib} << 30))\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300)


def _model_copy(ecg_only, tmp_path, edit) -> Path:
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(ecg_only.path, folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("key, stage, value, match", [
    ("dims", 3, 2_000_000, "stage width"), ("dims", 3, 3_000_000, "stage width"), ("dims", 0, 10**12, "stage width"),
    ("depths", 2, 10**9, "stage depth"),
])
def test_a_config_asking_for_terabytes_fails_before_building(ecg_only, tmp_path, key, stage, value, match):
    folder = _model_copy(ecg_only, tmp_path, lambda c: c["ecg"][key].__setitem__(stage, value))
    out = _limited(f"import numpy as np, esi_tools\nm = esi_tools.load_model({str(folder)!r})\n"
                   "try:\n    m.embed_ecg(np.zeros((12, 5000)), 500)\n"
                   "except esi_tools.errors.EsiError as exc:\n    print('ESI', exc)\n")
    assert out.returncode == 0 and out.stdout.startswith("ESI "), out.stderr[-500:]
    assert match in out.stdout and "config.json" in out.stdout


def test_a_config_within_bounds_that_does_not_fit_its_weights_fails_before_building(ecg_only, tmp_path):
    from esi_tools.errors import ArtifactError

    folder = _model_copy(ecg_only, tmp_path, lambda c: c["ecg"]["dims"].__setitem__(3, 4096))
    with pytest.raises(ArtifactError, match=r"does not match config.json .*config \[4096"):
        esi_tools.load_model(folder).embed_ecg(np.zeros((12, 5000)), 500)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.__setitem__("fs", 0), "fs"),
    (lambda c: c.__setitem__("fs", "fast"), "fs"),
    (lambda c: c["ecg"].__setitem__("depths", [2, 2]), "stages"),
])
def test_bad_numbers_in_a_config_are_one_clear_error(ecg_only, tmp_path, edit, match):
    from esi_tools.errors import ArtifactError

    folder = _model_copy(ecg_only, tmp_path, edit)
    with pytest.raises(ArtifactError, match=match):
        esi_tools.load_model(folder).embed_ecg(np.zeros((12, 5000)), 500)


def test_a_config_that_is_not_json_is_one_clear_error(ecg_only, tmp_path):
    from esi_tools.errors import ArtifactError

    folder = _model_copy(ecg_only, tmp_path, lambda c: None)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not a readable JSON config"):
        esi_tools.load_model(folder)


def test_a_typo_of_a_local_path_never_asks_the_hub(tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants

    (tmp_path / "runs" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def network(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", network)
    with pytest.raises(InputError, match="runs/modle: no such model directory"):
        esi_tools.load_model("runs/modle")


def test_import_release_refuses_a_fifo(tmp_path):
    for name in ("model.safetensors", "model.bin"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        try:
            out = subprocess.run([ESI, "import-release", str(fifo), "--ecg-only", "--out", str(tmp_path / "m")],
                                 capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"esi import-release hangs on a FIFO {name}")
        assert out.returncode == 2 and "not a regular file" in out.stderr and "Traceback" not in out.stderr


def test_import_release_refuses_a_tokenizer_config_asking_for_512_gb(tiny_bert, release_sd, tmp_path):
    import json
    import shutil

    from safetensors.torch import save_file

    tok = tmp_path / "tok"
    shutil.copytree(tiny_bert[0], tok)
    config = json.loads((tok / "config.json").read_text())
    config["vocab_size"] = 2_000_000_000
    (tok / "config.json").write_text(json.dumps(config))
    sd = rel.release_state_dict(*rel.ATTO, bert=tiny_bert[1])
    save_file(sd, tmp_path / "model.safetensors")
    out = _limited("import sys\nfrom commands.main import app\nsys.argv = ['esi', 'import-release', "
                   f"{str(tmp_path / 'model.safetensors')!r}, '--tokenizer', {str(tok)!r}, '--out', {str(tmp_path / 'm')!r}]\n"
                   "app()\n")
    assert out.returncode == 2 and "vocab_size" in out.stderr and "Traceback" not in out.stderr, out.stderr[-500:]


def _import(tmp_path, sd, *args, name="model.safetensors"):
    from safetensors.torch import save_file

    save_file(sd, tmp_path / name)
    return run_esi("import-release", tmp_path / name, *args, "--out", tmp_path / "m")


def test_import_release_refuses_nan_and_integer_weights(release_sd, tmp_path):
    import torch

    sd = dict(release_sd)
    sd["img_encoder.stages.0.0.dwconv.weight"] = torch.full_like(sd["img_encoder.stages.0.0.dwconv.weight"], float("nan"))
    result = _import(tmp_path, sd, "--ecg-only")
    assert result.exit_code == 2 and "non-finite" in result.stderr and not (tmp_path / "m").exists()
    sd = dict(release_sd)
    sd["img_encoder.stages.0.0.dwconv.weight"] = sd["img_encoder.stages.0.0.dwconv.weight"].to(torch.int8)
    result = _import(tmp_path, sd, "--ecg-only")
    assert result.exit_code == 2 and "int8" in result.stderr and not (tmp_path / "m").exists()


def test_import_release_refuses_an_infinite_logit_scale(tiny_bert, tmp_path):
    import torch

    sd = rel.release_state_dict(*rel.ATTO, bert=tiny_bert[1])
    sd["temperature"] = torch.tensor([1000.0])
    result = _import(tmp_path, sd, "--tokenizer", tiny_bert[0])
    assert result.exit_code == 2 and "logit scale" in result.stderr and not (tmp_path / "m").exists()


def test_import_release_reads_a_safetensors_file_named_bin(release_sd, tmp_path):
    result = _import(tmp_path, release_sd, "--ecg-only", name="model.bin")
    assert result.exit_code == 0, result.stderr
    assert esi_tools.open_artifact(tmp_path / "m").summary["ecg_size"] == "atto"


def test_embed_refuses_to_write_nan_embeddings(ecg_only, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for k in (1, 2):
        _copy_record(PTBXL / "records500" / "00000", f"{k:05d}_hr", corpus, f"r{k}")
    assert run_esi("-q", "ingest", "wfdb", corpus, "--fs", "500", "--out", tmp_path / "ds").exit_code == 0
    folder = tmp_path / "model"
    shutil.copytree(ecg_only.path, folder)
    weights = load_file(folder / "encoder.safetensors")
    weights["proj.weight"] = torch.full_like(weights["proj.weight"], float("nan"))
    save_file(weights, folder / "encoder.safetensors")
    result = run_esi("embed", tmp_path / "ds", "--checkpoint", folder, "--pooling", "embedding", "--out", tmp_path / "e")
    assert result.exit_code == 2 and "non-finite" in result.stderr and not (tmp_path / "e").exists()


# ---------------------------------------------------------------- --window keeps the last partial window (issue 23.4)


def _joined(folder: Path, seconds: float) -> Path:
    """A 12-lead 500 Hz WFDB recording of `seconds`: LUDB records joined end to end, the last one cut."""
    from conftest import LUDB

    parts = [wfdb.rdrecord(str(LUDB / "data" / str(k))).p_signal for k in range(1, 2 + int(seconds // 10))]
    sig = np.concatenate(parts)[: int(round(seconds * 500))]
    folder.mkdir()
    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3",
                "V4", "V5", "V6"], p_signal=sig, fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                write_dir=str(folder))
    return folder


def test_the_last_partial_window_is_a_padded_record(tmp_path):
    src = _joined(tmp_path / "src", 35.6)
    result = run_esi("-q", "ingest", "wfdb", src, "--window", "10", "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    rows = Dataset.open(tmp_path / "ds").records
    assert rows["start_s"].to_list() == [0.0, 10.0, 20.0, 30.0]
    last = rows.row(3, named=True)
    assert last["padded"] and last["coverage"] == pytest.approx(0.56) and "padded: 5.60 s of 10 s" in last["quality_flags"]
    assert not rows["padded"][:3].any()


def test_a_short_last_window_is_a_reject_with_its_length(tmp_path):
    src = _joined(tmp_path / "src", 32.4)
    result = run_esi("-q", "ingest", "wfdb", src, "--window", "10", "--out", tmp_path / "ds")
    assert result.exit_code == 0, result.output
    ds = Dataset.open(tmp_path / "ds")
    assert len(ds) == 3 and ds.artifact.summary["rejects"] == 1
    reason = ds.artifact.table("rejects.parquet")["reason"][0]
    assert "last partial window at 30 s: 2.40 s of 10 s" in reason


# ---------------------------------------------------------------- locks taken before the work (issue 24, Low)


def _pretrain_args(ptbxl_small, root: Path, out: Path, *extra) -> list:
    from conftest import tiny_text_tower

    if not (root / "arch.json").exists():
        tiny_text_tower(root)
    return ["pretrain", ptbxl_small, "--model", root / "arch.json", "--text-model", root / "text", "--max-steps", "1",
            "--batch-size", "4", "--crop-seconds", "2.5", "--workers", "0", "--out", out, *extra]


def test_pretrain_takes_its_out_lock_before_training(ptbxl_small, tmp_path):
    from esi_tools.artifacts import OutLock

    with OutLock(tmp_path / "model"):  # another run writing this --out
        result = run_esi(*_pretrain_args(ptbxl_small, tmp_path, tmp_path / "model"))
    assert result.exit_code == 2 and "being written by another esi process" in result.stderr
    assert " pairs (" not in result.stderr  # refused before the data was even read, not after training


def test_two_runs_never_share_a_checkpoint_folder(ptbxl_small, tmp_path):
    from esi_tools.artifacts import OutLock

    shared = tmp_path / "ckpts"
    with OutLock(shared):  # another run checkpointing there
        result = run_esi(*_pretrain_args(ptbxl_small, tmp_path, tmp_path / "model", "--checkpoint-dir", shared))
    assert result.exit_code == 2 and "being written by another esi process" in result.stderr
    assert not (tmp_path / "model").exists()


def test_a_second_download_to_one_out_is_refused_in_one_line(tmp_path, mirror):
    from esi_tools.artifacts import OutLock

    url, handler = mirror
    out = tmp_path / "ptbxl"
    out.mkdir()
    with OutLock(out.resolve()):  # a first download still running
        result = run_esi("download", "ptb-xl", "--out", out, "--base-url", url, "--records100-only")
    assert result.exit_code == 2 and "being written by another esi process" in result.stderr
    assert "internal error" not in result.stderr and not any(out.iterdir())
    assert run_esi("-q", "download", "ptb-xl", "--out", out, "--base-url", url, "--records100-only").exit_code == 0


# ---------------------------------------------------------------- options with silent effects (issue 24, Low)


def test_a_window_shorter_than_one_sample_is_a_usage_error(one_record, tmp_path):
    for flag in ("--window", "--seconds"):
        result = run_esi("ingest", "wfdb", one_record, flag, "0.001", "--out", tmp_path / "x")
        assert result.exit_code == 2 and "shorter than one sample" in result.stderr, result.stderr


def test_lead_map_duplicates_and_unmatched_entries_are_not_silent(one_record, tmp_path):
    result = run_esi("ingest", "wfdb", one_record, "--lead-map", "ECG1=II,ecg1=V5", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "twice" in result.stderr
    result = run_esi("ingest", "wfdb", one_record, "--lead-map", "ECG9=V1", "--out", tmp_path / "y")
    assert result.exit_code == 0 and "matching no channel of any record: ecg9" in result.stderr


def test_a_run_that_keeps_no_record_fails_naming_the_commonest_reason(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for k in (1, 2, 3):
        _rewrite(_copy_record(PTBXL / "records100" / "00000", f"{k:05d}_lr", corpus, f"r{k}"),
                 lambda d: d.__setitem__((slice(None), 2), -32768))
    result = run_esi("ingest", "wfdb", corpus, "--out", tmp_path / "ds")
    assert result.exit_code == 2 and "no record kept: all 3 rejected" in result.stderr and "III" in result.stderr
    assert not (tmp_path / "ds").exists()


# ---------------------------------------------------------------- quiet means quiet; a designed stop is no error


def test_quiet_pretrain_prints_nothing_and_a_designed_stop_is_not_an_error(ptbxl_small, tmp_path):
    args = [str(a) for a in _pretrain_args(ptbxl_small, tmp_path, tmp_path / "model")]
    out = subprocess.run([ESI, "-q", *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr[-400:]  # transformers' "Loading weights" bar included
    args = [a if a != "1" else "4" for a in args]  # --max-steps 4
    result = run_esi(*args[:-1], str(tmp_path / "model2"), "--stop-after", "1", "--checkpoint-every", "1")
    assert result.exit_code == 130 and "stopped:" in result.stderr and "error:" not in result.stderr, result.stderr
