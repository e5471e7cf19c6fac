# ruff: noqa: F811
"""The lean ECG encoder, pooler and decoder (issue 12) against the plain reference they replaced.

The reference below is the implementation as it was before the layout/SDPA work, copied verbatim: (B, C, T)
ConvNeXt blocks with rearrange round trips, nn.MultiheadAttention in the pooler, nn.TransformerDecoder.
Real PTB-XL records; fp32 outputs within 1e-4, 20 training steps with the same losses within 1e-4 relative,
and state dicts interchangeable both ways (saved models and imported release weights keep loading).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from test_pretrain import _arch, _batch, tiny_text  # noqa: F401  (a fixture: test arguments named tiny_text use it)

torch = pytest.importorskip("torch")
F = torch.nn.functional
nn = torch.nn
from einops import rearrange  # noqa: E402

# ------------------------------------------------------------------ the reference (pre-issue-12 code)


class RefLayerNorm1d(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x):
        return rearrange(self.norm(rearrange(x, "b c t -> b t c")), "b t c -> b c t")


class RefGRN(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x):
        gx = torch.norm(x, p=2, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class RefBlock(nn.Module):
    def __init__(self, dim: int, *, kernel_size: int, drop_path: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = RefGRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = drop_path

    def forward(self, x):
        y = rearrange(self.dwconv(x), "b c t -> b t c")
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        y = rearrange(y, "b t c -> b c t")
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep) / keep
            y = y * mask
        return x + y


class RefBackbone(nn.Module):
    def __init__(self, *, in_leads, depths, dims, kernel_size, drop_path):
        super().__init__()
        self.downsample = nn.ModuleList(
            [nn.Sequential(nn.Conv1d(in_leads, dims[0], kernel_size=4, stride=4), RefLayerNorm1d(dims[0]))]
            + [nn.Sequential(RefLayerNorm1d(dims[i]), nn.Conv1d(dims[i], dims[i + 1], kernel_size=2, stride=2)) for i in range(len(dims) - 1)]
        )
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        self.stages, start = nn.ModuleList(), 0
        for depth, dim in zip(depths, dims, strict=True):
            self.stages.append(nn.Sequential(*[RefBlock(dim, kernel_size=kernel_size, drop_path=rates[start + j]) for j in range(depth)]))
            start += depth
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)

    def forward(self, x):
        for down, stage in zip(self.downsample, self.stages, strict=True):
            x = stage(down(x))
        return self.norm(rearrange(x, "b c t -> b t c"))


class RefPooler(nn.Module):
    def __init__(self, dim: int, *, n_queries: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_queries, dim) * 0.02)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, tokens):
        kv = self.norm_kv(tokens)
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        out, _ = self.attn(q, kv, kv, need_weights=False)
        return self.norm_out(out)


class RefECGEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config = config.resolved()
        self.backbone = RefBackbone(in_leads=config.in_leads, depths=config.depths, dims=config.dims,
                                    kernel_size=config.kernel_size, drop_path=config.drop_path)
        self.pooler = RefPooler(config.dims[-1], n_queries=1 + config.n_caption_tokens, heads=config.pool_heads)
        self.proj = nn.Linear(config.dims[-1], config.embed_dim, bias=False)

    def forward(self, x):
        pooled = self.pooler(self.backbone(x))
        return self.proj(pooled[:, 0]), pooled[:, 1:]


class RefCaptionDecoder(nn.Module):
    def __init__(self, *, vocab_size, width, layers, heads, memory_dim, max_len, dropout):
        super().__init__()
        self.token = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.randn(max_len, width) * 0.01)
        self.memory_proj = nn.Linear(memory_dim, width)
        layer = nn.TransformerDecoderLayer(width, heads, 4 * width, dropout=dropout, activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(width))
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.token.weight

    def forward(self, input_ids, memory, keep=None):
        length = input_ids.shape[1]
        x = self.token(input_ids) + self.position[:length]
        causal = torch.triu(torch.full((length, length), float("-inf"), device=x.device), diagonal=1)
        x = self.layers(x, self.memory_proj(memory), tgt_mask=causal, tgt_is_causal=True)
        logits = self.head(x)  # every position, as before; the kept ones are picked afterwards
        return logits if keep is None else logits[keep]


def reference_of(model):
    """A copy of an ESI model whose ECG encoder and decoder are the reference modules, with the same weights."""
    ref = copy.deepcopy(model)
    cfg = model.config
    ref.ecg = RefECGEncoder(cfg.ecg)
    ref.ecg.load_state_dict(model.ecg.state_dict())  # strict: the lean encoder kept every key and shape
    ref.decoder = RefCaptionDecoder(vocab_size=len(model.tokenizer), width=cfg.decoder_width, layers=cfg.decoder_layers,
                                    heads=cfg.decoder_heads, memory_dim=model.ecg.width, max_len=cfg.max_text_tokens,
                                    dropout=cfg.decoder_dropout)
    ref.decoder.load_state_dict(model.decoder.state_dict())
    return ref


def _close(a, b, tol=1e-4) -> float:
    err = float((a - b).abs().max())
    assert err < tol, err
    return err


# ------------------------------------------------------------------ equivalence


def test_state_dicts_are_interchangeable_both_ways(tiny_text):
    from esi_tools.model import create_model
    from esi_tools.model.ecg_encoder import ECGEncoder, ECGEncoderConfig

    model = create_model(_arch(tiny_text), seed=0)
    ref = reference_of(model)
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    # an "old" saved encoder (the reference's own random init) loads strictly into the lean one, base size too
    old = RefECGEncoder(ECGEncoderConfig(size="atto"))
    ECGEncoder(ECGEncoderConfig(size="atto")).load_state_dict(old.state_dict())
    with torch.device("meta"):
        new_base, old_base = ECGEncoder(ECGEncoderConfig(size="base")), RefECGEncoder(ECGEncoderConfig(size="base"))
    assert {k: v.shape for k, v in new_base.state_dict().items()} == {k: v.shape for k, v in old_base.state_dict().items()}
    assert "backbone.stages.2.26.grn.gamma" in new_base.state_dict() and "backbone.downsample.3.1.weight" in new_base.state_dict()


def test_encoder_matches_reference_on_real_records(ptbxl_dataset):
    """Eval embeddings and caption tokens within 1e-4 on full 10 s records; train-mode outputs and gradients too."""
    from esi_tools.dataset import Dataset
    from esi_tools.model import standardise
    from esi_tools.model.ecg_encoder import ECGEncoder, ECGEncoderConfig

    x = torch.from_numpy(standardise(Dataset.open(ptbxl_dataset).millivolts(np.arange(6))))  # (6, 12, 1000)
    torch.manual_seed(3)
    new = ECGEncoder(ECGEncoderConfig(size="atto", drop_path=0.3))
    for p in new.parameters():  # GRN gamma/beta start at 0: give every parameter a value that matters
        p.data += 0.05 * torch.randn_like(p)
    ref = RefECGEncoder(ECGEncoderConfig(size="atto", drop_path=0.3))
    ref.load_state_dict(new.state_dict())
    new.eval(), ref.eval()
    with torch.no_grad():
        (e1, t1), (e0, t0) = new(x), ref(x)
    _close(F.normalize(e1, dim=-1), F.normalize(e0, dim=-1))
    _close(t1, t0)
    assert float((e1 - e0).abs().max()) < 1e-4 * float(e0.abs().max())
    assert not torch.allclose(e0[0], e0[1])  # different records, different embeddings: the check has teeth
    # an odd length (not a multiple of 32) is cropped the way the strided convs crop it
    with torch.no_grad():
        _close(new(x[:2, :, :987])[1], ref(x[:2, :, :987])[1])
    # training mode: the same drop-path masks from the same RNG stream, the same gradients
    new.train(), ref.train()
    grads = []
    for module in (new, ref):
        torch.manual_seed(11)
        emb, tokens = module(x)
        (emb.square().sum() + tokens.sum()).backward()
        grads.append({n: p.grad for n, p in module.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        scale = float(grads[1][name].abs().max()) + 1e-6
        assert float((grads[0][name] - grads[1][name]).abs().max()) < 1e-4 * max(1.0, scale), name


# The decoder's attention/residual dropout draws the same number of Bernoulli values from the same RNG stream,
# but torch's MultiheadAttention lays them over a (T, B, C) buffer and ours over (B, T, C): the same
# distribution, another mask per element. Exact train-mode comparisons therefore run with decoder dropout 0
# (drop-path in the ECG encoder and the text tower's dropout stay on and must match draw for draw).
def _train_arch(text_dir):
    return _arch(text_dir, drop=0.1) | {"decoder_dropout": 0.0}


def test_twenty_training_steps_give_the_same_losses(ptbxl_dataset, tiny_text):
    """The whole ESI model (drop-path 0.1, text dropout 0.1) trained 20 steps on real pairs: same losses as the reference."""
    from esi_tools.losses import esi_loss
    from esi_tools.model import create_model
    from esi_tools.train.config import PretrainConfig
    from esi_tools.train.engine import make_optimizer

    model = create_model(_train_arch(tiny_text), seed=0).train()
    ref = reference_of(model).train()
    x, texts = _batch(ptbxl_dataset, range(40, 56))
    enc = model.tokenize(texts)
    cfg = PretrainConfig(lr=1e-3)
    histories = []
    for module in (model, ref):
        optimizer = make_optimizer(module, cfg)
        torch.manual_seed(5)
        losses = []
        for step in range(20):
            part = slice(8 * (step % 2), 8 * (step % 2) + 8)
            terms = esi_loss(module(x[part], enc["input_ids"][part], enc["attention_mask"][part]),
                             contrastive_weight=1.0, caption_weight=1.0, rank=0, world_size=1)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(terms["loss"].detach()))
        histories.append(losses)
    new, old = histories
    assert new[-1] < new[0] - 0.1  # it trains
    for a, b in zip(new, old, strict=True):
        assert math.isclose(a, b, rel_tol=1e-4), (new, old)


def test_decoder_matches_reference_and_stays_causal(ptbxl_dataset, tiny_text):
    from esi_tools.model import create_model

    model = create_model(_arch(tiny_text, drop=0.1), seed=0)
    ref = reference_of(model)
    x, texts = _batch(ptbxl_dataset, [0, 1, 2])
    ids = model.tokenize(texts)["input_ids"]
    memory = torch.randn(3, 8, model.ecg.width)
    model.eval(), ref.eval()
    with torch.no_grad():
        _close(model.decoder(ids, memory), ref.decoder(ids, memory), tol=1e-5)
    # train mode with dropout: the same RNG draws (see _train_arch), so the same fraction of logits moves
    model.train(), ref.train()
    torch.manual_seed(2)
    a = model.decoder(ids, memory)
    torch.manual_seed(2)
    b = ref.decoder(ids, memory)
    with torch.no_grad():
        plain = ref.eval().decoder(ids, memory)
    assert abs(float((a - plain).abs().mean()) - float((b - plain).abs().mean())) < 0.2 * float((b - plain).abs().mean())


def test_text_tower_uses_sdpa(tiny_text):
    from esi_tools.model import create_model

    model = create_model(_arch(tiny_text), seed=0)
    assert model.text.model.config._attn_implementation == "sdpa"


def test_grad_checkpointing_gives_the_same_gradients(ptbxl_dataset, tiny_text):
    from esi_tools.losses import esi_loss
    from esi_tools.model import create_model

    x, texts = _batch(ptbxl_dataset, range(4))
    grads = []
    for checkpointing in (False, True):
        model = create_model(_train_arch(tiny_text), seed=0).train()
        model.configure(grad_checkpointing=checkpointing)
        enc = model.tokenize(texts)
        torch.manual_seed(9)
        esi_loss(model(x, enc["input_ids"], enc["attention_mask"]), contrastive_weight=1, caption_weight=1, rank=0, world_size=1)["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4), name


# ------------------------------------------------------------------ issue 16.1 and 16.2


def test_weight_decay_spares_gains_tables_and_embeddings_by_name(tiny_text):
    from esi_tools.model import create_model
    from esi_tools.train.config import PretrainConfig
    from esi_tools.train.engine import make_optimizer, no_decay_names

    model = create_model(_arch(tiny_text), seed=0)
    skip = no_decay_names(model)
    names = dict(model.named_parameters())
    expected_skip = {
        "log_scale", "ecg.pooler.queries", "decoder.position", "decoder.token.weight",  # the tied head is this tensor
        "ecg.backbone.stages.0.0.grn.gamma", "ecg.backbone.stages.3.1.grn.beta", "ecg.backbone.stages.1.0.norm.weight",
        "ecg.backbone.downsample.0.1.norm.weight", "ecg.backbone.norm.bias", "ecg.backbone.stages.2.5.dwconv.bias",
        "ecg.pooler.attn.in_proj_bias", "ecg.pooler.norm_kv.weight", "decoder.layers.norm.weight",
        "decoder.layers.layers.0.self_attn.in_proj_bias", "decoder.layers.layers.0.norm3.weight",
        "text.model.embeddings.word_embeddings.weight", "text.model.embeddings.position_embeddings.weight",
        "text.model.embeddings.token_type_embeddings.weight", "text.model.embeddings.LayerNorm.weight",
        "text.model.encoder.layer.0.attention.self.query.bias",
    }
    expected_decay = {
        "ecg.backbone.stages.0.0.dwconv.weight", "ecg.backbone.stages.2.5.pwconv1.weight", "ecg.backbone.downsample.0.0.weight",
        "ecg.backbone.downsample.2.1.weight", "ecg.pooler.attn.in_proj_weight", "ecg.pooler.attn.out_proj.weight", "ecg.proj.weight",
        "decoder.memory_proj.weight", "decoder.layers.layers.0.self_attn.in_proj_weight", "decoder.layers.layers.0.linear1.weight",
        "text.model.encoder.layer.0.attention.self.query.weight", "text.proj.weight",
    }
    assert expected_skip <= set(names) and expected_decay <= set(names)
    assert expected_skip <= skip
    assert not expected_decay & skip
    # everything else decayed is a matrix or conv kernel of a Linear/Conv layer
    for name in set(names) - skip:
        assert name.endswith("weight") and names[name].ndim >= 2, name
    groups = make_optimizer(model, PretrainConfig(weight_decay=0.05)).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert {n for n, p in names.items() if id(p) in decayed} == set(names) - skip


def test_generate_stops_a_caption_at_its_end_token(ptbxl_dataset, tiny_text):
    from esi_tools.model import create_model

    model = create_model(_arch(tiny_text), seed=0).eval()
    tok = model.tokenizer
    x, _ = _batch(ptbxl_dataset, [0, 1])
    vocab = {w: tok.convert_tokens_to_ids(w) for w in ("sinus", "rhythm", "left", "ventricular")}
    assert tok.unk_token_id not in vocab.values()
    # caption 0 emits "sinus [SEP] left ventricular", caption 1 "sinus rhythm left ventricular": the decoder's choices, forced
    script = [[vocab["sinus"], tok.sep_token_id, vocab["left"], vocab["ventricular"]],
              [vocab["sinus"], vocab["rhythm"], vocab["left"], vocab["ventricular"]]]
    calls = []

    def scripted(ids, memory):
        step = ids.shape[1] - 1
        calls.append(ids.clone())
        logits = torch.zeros(ids.shape[0], ids.shape[1], len(tok))
        for row in range(ids.shape[0]):
            logits[row, -1, script[row][min(step, 3)]] = 1.0
        return logits

    model.decoder.forward = scripted
    texts = model.generate(x, max_tokens=4)
    assert texts == ["sinus", "sinus rhythm left ventricular"]
    # after [SEP] the finished caption is padded, not extended
    last = calls[-1]
    assert last[0, 3].item() == tok.pad_token_id and last[1, 3].item() == vocab["left"]
    # all finished: generation stops early
    script[1][1] = tok.sep_token_id
    calls.clear()
    assert model.generate(x, max_tokens=10) == ["sinus", "sinus"]
    assert len(calls) == 2


# ------------------------------------------------------------------ issue 16.4 and the ZeRO-3 parameter count


def test_cut_fraction_counts_captions_longer_than_the_limit(tiny_text):
    from esi_tools.model.text_encoder import load_tokenizer
    from esi_tools.train.loop import cut_fraction

    tok = load_tokenizer(tiny_text)
    texts = ["sinus rhythm", "sinus rhythm " * 20, "left ventricular hypertrophy", "sinus rhythm " * 40]
    lengths = [len(tok(t)["input_ids"]) for t in texts]  # [CLS] ... [SEP]
    assert lengths[0] == 4 and lengths[1] == 42 and lengths[3] == 82
    assert cut_fraction(tok, texts, 64) == 0.25
    assert cut_fraction(tok, texts, 41) == 0.5
    assert cut_fraction(tok, texts, 82) == 0.0


def test_parameter_count_reads_zero3_partitioned_sizes(tiny_text):
    from esi_tools.model import create_model
    from esi_tools.train.loop import count_parameters

    model = create_model(_arch(tiny_text), seed=0)
    full = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == full
    for p in model.parameters():  # what ZeRO-3 leaves on a rank: empty local tensors, the full size in ds_numel
        p.ds_numel = p.numel()
        p.data = torch.empty(0)
    assert sum(p.numel() for p in model.parameters()) == 0
    assert count_parameters(model) == full


def test_compile_builds_one_graph_per_stage_and_matches_eager(ptbxl_dataset):
    """`--compile`: one compiled branch serves every block (weights are graph inputs), so a stage's blocks share
    a graph instead of hitting dynamo's recompile limit (falling back to eager) after 8 blocks; same numbers."""
    import torch._dynamo

    from esi_tools.dataset import Dataset
    from esi_tools.model import standardise
    from esi_tools.model.ecg_encoder import ConvNeXtV2_1D

    x = torch.from_numpy(standardise(Dataset.open(ptbxl_dataset).millivolts(np.arange(2))))[:, :, :512]
    torch.manual_seed(0)
    net = ConvNeXtV2_1D(in_leads=12, depths=(3, 3), dims=(16, 32), kernel_size=7, drop_path=0.2).train()
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)
    runs = []
    for compiled in (False, True):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        net.configure(compile=compiled)
        net.zero_grad()
        torch.manual_seed(5)  # the same drop-path draws (outside the graph)
        out = net(x)
        out.square().sum().backward()
        runs.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2  # two stages, six blocks
    _close(runs[1][0], runs[0][0])
    for g1, g0 in zip(runs[1][1], runs[0][1], strict=True):
        assert float((g1 - g0).abs().max()) < 1e-4 * max(1.0, float(g0.abs().max()))
    net.configure()
