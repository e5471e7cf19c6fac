"""esi import-release without the real checkpoint: a state dict with the release's key names and shapes (random
weights, atto size, a tiny BERT on the MiniLM tokenizer), checked against a reference forward written here from
the release's equations, on real PTB-XL 500 Hz records read straight from their WFDB files."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PTBXL, run_esi

from esi_tools.artifacts import open_artifact, sha256_file

ATTO = ((2, 2, 6, 2), (40, 80, 160, 320))
DIM = 64  # the release's CoCa width is the BERT hidden size; the tiny BERT here is 64 wide
MIMIC = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
N_RECORDS = 200  # ecg_id 1-200 at 500 Hz: 7 patients with two ECGs, every fold


# ---------------------------------------------------------------- a release-shaped checkpoint


def release_state_dict(depths, dims, *, bert=None, seed=0) -> dict[str, torch.Tensor]:
    """Every key the release's ESI model saves (ConvNeXt-V2 encoder + CoCa heads + text tower), random weights."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.1, around=0.0):
        return (around + scale * torch.randn(*shape, generator=g)).float()

    sd, e = {}, "img_encoder."
    sd[e + "downsample_layers.0.0.weight"] = rnd(dims[0], 12, 4, scale=48**-0.5)
    sd[e + "downsample_layers.0.0.bias"] = rnd(dims[0])
    sd[e + "downsample_layers.0.1.weight"], sd[e + "downsample_layers.0.1.bias"] = rnd(1, dims[0], 1, around=1), rnd(1, dims[0], 1)
    for i in range(1, 4):
        p = f"{e}downsample_layers.{i}."
        sd[p + "0.weight"], sd[p + "0.bias"] = rnd(1, dims[i - 1], 1, around=1), rnd(1, dims[i - 1], 1)
        sd[p + "1.weight"], sd[p + "1.bias"] = rnd(dims[i], dims[i - 1], 2, scale=(2 * dims[i - 1]) ** -0.5), rnd(dims[i])
    for s, (depth, c) in enumerate(zip(depths, dims)):
        for b in range(depth):
            p = f"{e}stages.{s}.{b}."
            sd[p + "dwconv.weight"], sd[p + "dwconv.bias"] = rnd(c, 1, 7, scale=7**-0.5), rnd(c)
            sd[p + "norm.weight"], sd[p + "norm.bias"] = rnd(c, around=1), rnd(c)
            sd[p + "pwconv1.weight"], sd[p + "pwconv1.bias"] = rnd(4 * c, c, scale=c**-0.5), rnd(4 * c)
            sd[p + "grn.gamma"], sd[p + "grn.beta"] = rnd(1, 1, 4 * c), rnd(1, 1, 4 * c)
            sd[p + "pwconv2.weight"], sd[p + "pwconv2.bias"] = rnd(c, 4 * c, scale=0.5 * (4 * c) ** -0.5), rnd(c)
    last = dims[-1]
    sd[e + "norm.weight"], sd[e + "norm.bias"] = rnd(last, around=1), rnd(last)
    sd[e + "head.weight"], sd[e + "head.bias"] = rnd(5, last), rnd(5)  # the unused 5-class head
    sd["img_token_head.weight"], sd["img_token_head.bias"] = rnd(DIM, last, scale=last**-0.5), rnd(DIM)
    for name, width in (("norm", DIM), ("context_norm", last)):  # attention pooler: defined, never called
        sd[f"img_attn_pool.{name}.gamma"], sd[f"img_attn_pool.{name}.beta"] = rnd(width, around=1), torch.zeros(width)
    sd["img_attn_pool.to_q.weight"], sd["img_attn_pool.to_kv.weight"] = rnd(512, DIM), rnd(128, last)
    sd["img_attn_pool.to_out.weight"] = rnd(DIM, 512)
    sd["img_attn_pool_norm.gamma"], sd["img_attn_pool_norm.beta"] = rnd(DIM, around=1), torch.zeros(DIM)  # beta: a buffer
    sd["text_cls_norm.gamma"], sd["text_cls_norm.beta"] = rnd(DIM, around=1), torch.zeros(DIM)
    sd["img_to_latents.to_latents.weight"] = rnd(DIM, DIM, scale=DIM**-0.5)
    sd["text_to_latents.to_latents.weight"] = rnd(DIM, DIM, scale=DIM**-0.5)
    sd["temperature"] = torch.tensor([2.0])
    sd["multimodal_layers.0.0.fn.norm.gamma"] = rnd(DIM, around=1)
    sd["multimodal_layers.0.0.fn.fused_attn_ff_proj.weight"] = rnd(512 + 128 + 2 * 4 * DIM * 2, DIM)
    sd["to_logits.0.gamma"], sd["to_logits.0.beta"] = rnd(DIM, around=1), torch.zeros(DIM)
    if bert is not None:
        sd["to_logits.1.weight"] = rnd(bert.config.vocab_size, DIM)
        sd.update({f"pretrained_text_encoder.{k}": v.clone() for k, v in bert.state_dict().items()})
    return sd


# ---------------------------------------------------------------- the reference forward, from the equations


def reference_input(ecg_id: int) -> np.ndarray:
    """(5000, 12) mV in MIMIC-IV-ECG's lead order, read from the PTB-XL WFDB file itself (not our dataset)."""
    import wfdb

    rec = wfdb.rdrecord(str(PTBXL / "records500" / "00000" / f"{ecg_id:05d}_hr"))
    names = [n.upper() for n in rec.sig_name]
    return rec.p_signal[:, [names.index(lead.upper()) for lead in MIMIC]]


def reference_normalise(signal: np.ndarray) -> torch.Tensor:
    """The release loader: NaN -> lead mean (float64), then float32, one mean and one unbiased std per record."""
    x = signal.astype(float).copy()
    for lead in range(x.shape[-1]):
        if np.isnan(x[:, lead]).any():
            x[:, lead] = np.nan_to_num(x[:, lead], nan=np.nanmean(x[:, lead]))
    t = torch.tensor(x, dtype=torch.float32)
    return (t - t.mean()) / (t.std() + 1e-6)


def _time_norm(x, w, b):
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6) * w + b


def _block(x, sd, p):
    c = x.shape[1]
    y = F.conv1d(x, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=3, groups=c).permute(0, 2, 1)
    y = F.gelu(F.linear(F.layer_norm(y, (c,), sd[p + "norm.weight"], sd[p + "norm.bias"], 1e-6), sd[p + "pwconv1.weight"], sd[p + "pwconv1.bias"]))
    gx = torch.norm(y, p=2, dim=1, keepdim=True)
    y = sd[p + "grn.gamma"] * (y * gx / (gx.mean(-1, keepdim=True) + 1e-6)) + sd[p + "grn.beta"] + y
    return x + F.linear(y, sd[p + "pwconv2.weight"], sd[p + "pwconv2.bias"]).permute(0, 2, 1)


@torch.no_grad()
def reference_embedding(sd, signals: torch.Tensor) -> torch.Tensor:
    """(B, 5000, 12) normalised -> the release's L2-normalised image latent."""
    x, e = signals.permute(0, 2, 1), "img_encoder."
    for i in range(4):
        p = f"{e}downsample_layers.{i}."
        if i == 0:
            x = _time_norm(F.conv1d(x, sd[p + "0.weight"], sd[p + "0.bias"], stride=4), sd[p + "1.weight"], sd[p + "1.bias"])
        else:
            x = F.conv1d(_time_norm(x, sd[p + "0.weight"], sd[p + "0.bias"]), sd[p + "1.weight"], sd[p + "1.bias"], stride=2)
        for b in range(len({k.split(".")[3] for k in sd if k.startswith(f"{e}stages.{i}.")})):
            x = _block(x, sd, f"{e}stages.{i}.{b}.")
    feat = F.layer_norm(x.mean(-1), (x.shape[1],), sd[e + "norm.weight"], sd[e + "norm.bias"], 1e-6)
    z = F.linear(feat, sd["img_token_head.weight"], sd["img_token_head.bias"])
    z = F.layer_norm(z, (z.shape[-1],), sd["img_attn_pool_norm.gamma"], sd["img_attn_pool_norm.beta"])  # eps 1e-5
    return F.normalize(F.linear(z, sd["img_to_latents.to_latents.weight"]), dim=-1)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 64-wide random BERT on the all-MiniLM-L6-v2 WordPiece vocabulary (30,522), built offline."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from esi_tools.model.text_encoder import resolve_text_model

    out = tmp_path_factory.mktemp("tinybert")
    tok = AutoTokenizer.from_pretrained(resolve_text_model("sentence-transformers/all-MiniLM-L6-v2"))
    tok.save_pretrained(out)
    config = BertConfig(vocab_size=len(tok), hidden_size=DIM, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512)
    config.save_pretrained(out)  # config + tokenizer only: the weights come from the checkpoint
    torch.manual_seed(0)
    return out, BertModel(config).eval()


@pytest.fixture(scope="module")
def release_ckpt(tiny_bert, tmp_path_factory):
    """Accelerate-style model.safetensors (the text tower's second name removed as safetensors saving does)."""
    from safetensors.torch import save_file

    sd = release_state_dict(*ATTO, bert=tiny_bert[1])
    path = tmp_path_factory.mktemp("release") / "model.safetensors"
    save_file(sd, path)
    return path, sd


@pytest.fixture(scope="module")
def ptbxl500(tmp_path_factory):
    from esi_tools.ingest.run import IngestConfig, ingest

    return ingest(IngestConfig(kind="ptbxl", fs=500, workers=1, limit=N_RECORDS), PTBXL, tmp_path_factory.mktemp("p500") / "ds")


@pytest.fixture(scope="module")
def imported(release_ckpt, tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "model"
    result = run_esi("import-release", release_ckpt[0], "--tokenizer", tiny_bert[0], "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return out


# ---------------------------------------------------------------- tests


def test_import_writes_a_model_artifact(imported, release_ckpt):
    art = open_artifact(imported, "model")
    assert art.parameters["source_sha256"] == sha256_file(release_ckpt[0]) and art.parameters["origin"] == "release-import"
    assert {"config.json", "encoder.safetensors", "model.safetensors", "text/config.json"} <= set(art.manifest["files"])
    config = json.loads((imported / "config.json").read_text())
    assert config["variant"] == "esi-release" and config["ecg"]["size"] == "atto" and config["fs"] == 500.0
    assert config["input"]["leads"][3:6] == ["aVR", "aVF", "aVL"]
    s = art.summary
    assert s["ecg_size"] == "atto" and s["embed_dim"] == DIM and s["text_tower"] is True
    assert s["source_keys"] == len(release_ckpt[1]) and abs(s["logit_scale"] - np.exp(2.0)) < 1e-4
    assert s["ignored_keys"]["img_encoder.head"] == 2 and s["ignored_keys"]["text pooler"] == 2 and s["ignored_keys"]["img_attn_pool"] == 7


def test_embeddings_equal_the_reference_on_real_500hz_records(imported, release_ckpt, ptbxl500, tmp_path):
    result = run_esi("embed", ptbxl500, "--checkpoint", imported, "--pooling", "embedding", "--out", tmp_path / "e")
    assert result.exit_code == 0, result.stderr
    art = open_artifact(tmp_path / "e", "embeddings")
    ids = art.table("ids.parquet")["record_id"].to_list()
    ours = art.array("embeddings.npy")
    assert ours.shape == (N_RECORDS, DIM) and np.isfinite(ours).all()
    rows = [0, 1, 57, N_RECORDS - 1]
    signals = torch.stack([reference_normalise(reference_input(int(ids[r]))) for r in rows])
    ref = reference_embedding(release_ckpt[1], signals).numpy()
    assert np.abs(ours[rows] - ref).max() < 1e-5
    assert np.abs(ref[0] - ref[1]).max() > 1e-2  # the records differ, so the comparison says something
    # our own lead order fed without the reordering would not match: the aVL/aVF swap matters
    swapped = torch.stack([reference_normalise(reference_input(int(ids[r]))[:, [0, 1, 2, 3, 5, 4, *range(6, 12)]]) for r in rows])
    assert np.abs(reference_embedding(release_ckpt[1], swapped).numpy() - ours[rows]).max() > 1e-4


def test_text_side_and_nan_handling_follow_the_release(imported, release_ckpt, tiny_bert):
    from transformers import AutoTokenizer, BertModel

    from esi_tools.model import load_esi

    model = load_esi(imported)
    texts = ["Sinus rhythm. Normal ECG.", "Atrial fibrillation with rapid ventricular response."]
    sd = release_ckpt[1]
    bert = BertModel(tiny_bert[1].config).eval()
    bert.load_state_dict({k[len("pretrained_text_encoder."):]: v for k, v in sd.items() if k.startswith("pretrained_text_encoder.")})
    enc = AutoTokenizer.from_pretrained(tiny_bert[0])(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        cls = bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[:, 0]
    ref = F.normalize(F.linear(cls, sd["text_to_latents.to_latents.weight"]), dim=-1)
    assert torch.allclose(model.encode_text(texts), ref, atol=1e-5)
    assert float(model.log_scale.detach()) == 2.0
    # NaN samples become their lead's mean, in our lead order as in theirs
    x = reference_input(1)
    x[100:400, 4] = np.nan  # aVF in MIMIC order
    ours = np.ascontiguousarray(x[:, [0, 1, 2, 3, 5, 4, *range(6, 12)]].T[None])  # our order: aVL, then aVF
    assert torch.allclose(model.encode_ecg(model.preprocess(ours)), reference_embedding(sd, reference_normalise(x)[None]), atol=1e-5)


def test_import_embed_probe_identify_chain(imported, ptbxl500, tmp_path):
    result = run_esi("embed", ptbxl500, "--checkpoint", imported, "--out", tmp_path / "stages")
    assert result.exit_code == 0, result.stderr
    assert open_artifact(tmp_path / "stages", "embeddings").summary["dim"] == sum(ATTO[1])
    result = run_esi("probe", ptbxl500, "-e", tmp_path / "stages", "--zero-shot", imported, "--task", "superdiagnostic",
                     "--min-positives", "3", "--bootstrap", "50", "--out", tmp_path / "p")
    assert result.exit_code == 0, result.stderr
    results = open_artifact(tmp_path / "p", "probe").table("results.parquet")
    assert sorted(results["method"].to_list()) == ["linear", "zero-shot"] and results["macro_auroc"].is_between(0, 1).all()
    result = run_esi("identify", ptbxl500, "-e", tmp_path / "stages", "--bootstrap", "50", "--out", tmp_path / "i")
    assert result.exit_code == 0, result.stderr
    assert open_artifact(tmp_path / "i", "identification").summary


def test_pickled_bin_with_both_text_names_and_ecg_only(release_ckpt, tiny_bert, tmp_path):
    sd = dict(release_ckpt[1])
    sd.update({"unimodal_layers." + k[len("pretrained_text_encoder."):]: v for k, v in sd.items() if k.startswith("pretrained_text_encoder.")})
    sd["pretrained_text_encoder.embeddings.position_ids"] = torch.arange(512)[None]  # saved by transformers < 4.31
    torch.save(sd, tmp_path / "pytorch_model.bin")
    result = run_esi("import-release", tmp_path, "--tokenizer", tiny_bert[0], "--out", tmp_path / "m")
    assert result.exit_code == 0, result.stderr
    ignored = open_artifact(tmp_path / "m", "model").summary["ignored_keys"]
    assert ignored["unimodal_layers"] == len(tiny_bert[1].state_dict()) and ignored["position_ids"] == 1
    result = run_esi("import-release", release_ckpt[0], "--ecg-only", "--out", tmp_path / "ecg")
    assert result.exit_code == 0, result.stderr
    art = open_artifact(tmp_path / "ecg", "model")
    assert art.summary["text_tower"] is False and "model.safetensors" not in art.manifest["files"]
    from esi_tools.model import load_ecg_encoder, load_esi

    a, b = load_ecg_encoder(tmp_path / "ecg").state_dict(), load_ecg_encoder(tmp_path / "m").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(Exception, match="without a text tower"):
        load_esi(tmp_path / "ecg")


def _fails(tmp_path, sd, *args, name="model.safetensors"):
    from safetensors.torch import save_file

    path = tmp_path / name
    save_file(sd, path)
    result = run_esi("import-release", path, "--ecg-only", "--out", tmp_path / "out", *args)
    assert result.exit_code != 0 and not (tmp_path / "out").exists()
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    return result.stderr


def test_bad_checkpoints_are_one_clear_line(tmp_path):
    sd = release_state_dict(*ATTO)
    assert "1 missing keys: img_encoder.stages.2.5.grn.gamma" in _fails(tmp_path, {k: v for k, v in sd.items() if k != "img_encoder.stages.2.5.grn.gamma"})
    assert "unexpected keys: img_encoder.stages.3.2.dwconv.weight" in _fails(tmp_path, sd | {"img_encoder.stages.3.2.dwconv.weight": torch.zeros(320, 1, 7)})
    msg = _fails(tmp_path, sd | {"img_token_head.weight": torch.zeros(DIM, 321)})
    assert "shape mismatch: img_token_head.weight expected [64, 320], found [64, 321]" in msg
    bigger = release_state_dict((2, 2, 6, 2), (56, 112, 224, 448))
    assert "unknown size: the stem has 56 channels" in _fails(tmp_path, bigger)
    assert "not a ConvNeXt-V2" in _fails(tmp_path, {"img_encoder.layers.0.weight": torch.zeros(3)})
    (tmp_path / "junk.safetensors").write_text("not weights")
    result = run_esi("import-release", tmp_path / "junk.safetensors", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not a safetensors checkpoint" in result.stderr
    (tmp_path / "notes.txt").write_text("hello")
    result = run_esi("import-release", tmp_path / "notes.txt", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not a checkpoint (expected .safetensors, .bin, .pt, .pth)" in result.stderr


class _Payload:
    pass


def test_pickled_objects_are_refused_and_tokenizer_errors_are_clear(release_ckpt, tmp_path):
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"img_encoder.x": _Payload()}, f)
    torch.save({"weights": _Payload()}, tmp_path / "obj.pt")
    (tmp_path / "junk.bin").write_bytes(b"garbage, not a zip nor a pickle")
    for name, message in (("evil.pt", "not a PyTorch checkpoint of plain tensors"), ("junk.bin", "not a PyTorch checkpoint"),
                          ("obj.pt", "holds objects other than tensors; refused")):
        result = run_esi("import-release", tmp_path / name, "--out", tmp_path / "out")
        assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (tmp_path / "out").exists()
    result = run_esi("import-release", release_ckpt[0], "--tokenizer", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "--ecg-only" in result.stderr and not (tmp_path / "out").exists()


def test_release_configs_are_not_pretrained():
    from esi_tools.errors import InputError
    from esi_tools.model.factory import model_config, model_config_names
    from esi_tools.model.release import RELEASE_SIZES, ReleaseConfig

    assert not any(n.startswith("esi-release") for n in model_config_names())
    with pytest.raises(InputError, match="import-release"):
        model_config("esi-release-base")
    from esi_tools.model.release import release_config_path

    for size in RELEASE_SIZES:
        assert ReleaseConfig.from_dict(json.loads(release_config_path(size).read_text())) == ReleaseConfig(size=size)
    from esi_tools.model.release import ReleaseECGEncoder

    with torch.device("meta"):  # shapes only
        backbone = ReleaseECGEncoder(ReleaseConfig(size="base")).backbone
    # the release's base img_encoder: 380 keys = these 378 + the unused 5-class head; 85.6 M parameters
    assert len(backbone.state_dict()) == 378 and sum(p.numel() for p in backbone.parameters()) == 85_558_528
