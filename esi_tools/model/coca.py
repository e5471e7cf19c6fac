"""The ESI model (CoCa-style): ECG encoder x text encoder for contrast, plus a causal captioning decoder.

Unlike the released ESI code, the captioning decoder never reads the text encoder's (bidirectional)
hidden states: it has its own token embedding and causal self-attention, so the prediction of token t
depends only on tokens < t and on the ECG tokens it cross-attends to. The ECG side gives the decoder
`n_caption_tokens` pooled temporal tokens, not one repeated vector.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import nn

from ..losses import INIT_TEMPERATURE
from . import bounds
from .ecg_encoder import ECGEncoder, ECGEncoderConfig
from .text_encoder import TextEncoder, load_tokenizer


@dataclass(frozen=True)
class ESIConfig:
    """Architecture of a whole ESI model; `config.json` of a model artifact is this, as a dict."""

    ecg: ECGEncoderConfig = field(default_factory=ECGEncoderConfig)
    text_model: str = "michiyasunaga/BioLinkBERT-base"  # the paper's text tower
    text_pooling: str = "cls"  # BERT's [CLS] summary token, as in the paper
    max_text_tokens: int = 256  # template captions (p95: 256 BERT-uncased tokens) fit: <= 5 % are cut
    decoder_layers: int = 2  # CoCa uses few multimodal layers relative to the encoders
    decoder_heads: int = 8  # head width 32-64 for the widths below
    decoder_width: int = 256  # small: the decoder is a training signal, not a product
    decoder_dropout: float = 0.1  # the usual transformer default
    fs: float = 100.0  # sampling rate the model was trained at (Hz); inputs must match
    seconds: float = 10.0  # length of the training crops (s); any length works at inference

    def to_dict(self) -> dict:
        return asdict(self)

    def __post_init__(self):
        for name, hi in (("max_text_tokens", bounds.MAX_TOKENS), ("decoder_layers", bounds.MAX_DEPTH),
                         ("decoder_heads", bounds.MAX_WIDTH), ("decoder_width", bounds.MAX_WIDTH)):
            bounds.whole(name, getattr(self, name), 0 if name == "decoder_layers" else 1, hi)
        bounds.real("fs", self.fs, bounds.MIN_FS, bounds.MAX_FS)
        bounds.real("seconds", self.seconds, 0.01, 86_400.0)
        bounds.real("decoder_dropout", self.decoder_dropout, 0.0, 1.0)

    @classmethod
    def from_dict(cls, data: dict) -> ESIConfig:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        ecg = ECGEncoderConfig.from_dict(data.pop("ecg", {}))
        return cls(ecg=ecg, **data)

    def with_text_model(self, text_model: str) -> ESIConfig:
        return replace(self, text_model=str(text_model))


class CaptionDecoder(nn.Module):
    """Causal transformer decoder over caption tokens with cross-attention to the ECG tokens.

    `layers` is an nn.TransformerDecoder (pre-norm, GELU) kept as the holder of the parameters, so the
    state-dict keys are those of torch's modules; the forward is written out on (B, T, C) with one fused
    `scaled_dot_product_attention` per attention (causal by flag, no mask tensor) and no layout round trips.
    """

    NO_WEIGHT_DECAY = ("position",)  # a position table, like an embedding

    def __init__(self, *, vocab_size: int, width: int, layers: int, heads: int, memory_dim: int, max_len: int, dropout: float):
        super().__init__()
        self.token = nn.Embedding(vocab_size, width)
        nn.init.normal_(self.token.weight, std=0.02)  # GPT-2 init: the tied head starts near uniform (loss ~ ln V)
        self.position = nn.Parameter(torch.randn(max_len, width) * 0.01)
        self.memory_proj = nn.Linear(memory_dim, width)
        layer = nn.TransformerDecoderLayer(
            width, heads, 4 * width, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(width))
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.token.weight  # tied (as in GPT-2): halves the vocab-sized parameters
        self.checkpointing = False

    def forward(self, input_ids: torch.Tensor, memory: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, T), memory (B, N, C) -> logits (B, T, V); position t sees tokens <= t only.

        keep (B, T) bool: logits of those positions only, (K, V). The vocabulary head is most of a small
        model's step, and a padded batch's pad positions would otherwise pay for it too.
        """
        x = self.token(input_ids) + self.position[: input_ids.shape[1]]
        memory = self.memory_proj(memory)
        for layer in self.layers.layers:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(self._layer, layer, x, memory, use_reentrant=False)
            else:
                x = self._layer(layer, x, memory)
        x = self.layers.norm(x)
        return self.head(x if keep is None else x[keep])

    def _layer(self, layer: nn.TransformerDecoderLayer, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """What nn.TransformerDecoderLayer(norm_first=True) computes: self-attention, cross-attention, MLP."""
        x = x + layer.dropout1(self._attend(layer.self_attn, layer.norm1(x), None))
        x = x + layer.dropout2(self._attend(layer.multihead_attn, layer.norm2(x), memory))
        return x + layer.dropout3(layer.linear2(layer.dropout(F.gelu(layer.linear1(layer.norm3(x))))))

    def _attend(self, mha: nn.MultiheadAttention, x: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
        """Causal self-attention (memory None) or cross-attention to memory, with mha's weights."""
        heads, width = mha.num_heads, mha.embed_dim
        if memory is None:
            q, k, v = rearrange(F.linear(x, mha.in_proj_weight, mha.in_proj_bias), "b t (n h d) -> n b h t d", n=3, h=heads)
        else:
            w_q, w_kv = mha.in_proj_weight.split([width, 2 * width])
            b_q, b_kv = mha.in_proj_bias.split([width, 2 * width])
            q = rearrange(F.linear(x, w_q, b_q), "b t (h d) -> b h t d", h=heads)
            k, v = rearrange(F.linear(memory, w_kv, b_kv), "b s (n h d) -> n b h s d", n=2, h=heads)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=mha.dropout if self.training else 0.0, is_causal=memory is None)
        return mha.out_proj(rearrange(out, "b h t d -> b t (h d)"))


class ESIModel(nn.Module):
    """ECG encoder, text encoder, caption decoder and the learnable temperature, plus the inference API."""

    NO_WEIGHT_DECAY = ("log_scale",)  # the temperature: decay would pull it towards 1

    def __init__(self, config: ESIConfig, *, text: TextEncoder, tokenizer):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.ecg = ECGEncoder(config.ecg)
        self.text = text
        self.decoder = CaptionDecoder(
            vocab_size=len(tokenizer), width=config.decoder_width, layers=config.decoder_layers,
            heads=config.decoder_heads, memory_dim=self.ecg.width, max_len=config.max_text_tokens,
            dropout=config.decoder_dropout,
        )
        # shape (1,), not a scalar: DeepSpeed broadcasts parameters through a byte view, which 0-d tensors lack
        self.log_scale = nn.Parameter(torch.full((1,), math.log(1 / INIT_TEMPERATURE)))

    @classmethod
    def create(cls, config: ESIConfig) -> ESIModel:
        """Fresh ECG side and decoder; the text tower starts from its pretrained weights."""
        text = TextEncoder.pretrained(config.text_model, pooling=config.text_pooling, embed_dim=config.ecg.embed_dim)
        return cls(config, text=text, tokenizer=load_tokenizer(config.text_model))

    @classmethod
    def from_saved(cls, config: ESIConfig, text_dir: Path) -> ESIModel:
        """Architecture from a model artifact's `text/` folder; weights are loaded by the caller."""
        text = TextEncoder.from_hf_config(text_dir, pooling=config.text_pooling, embed_dim=config.ecg.embed_dim)
        return cls(config, text=text, tokenizer=load_tokenizer(text_dir))

    # ------------------------------------------------------------ training

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Captions -> padded input_ids/attention_mask (B, T), truncated at max_text_tokens."""
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.config.max_text_tokens, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def caption_logits(self, input_ids: torch.Tensor, ecg_tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T-1, V) predicting input_ids[:, 1:] from input_ids[:, :-1] and the ECG tokens."""
        return self.decoder(input_ids[:, :-1], ecg_tokens)

    def forward(self, ecg: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything the loss needs: normalised embeddings, caption logits/targets/mask, log scale."""
        ecg_embed, ecg_tokens = self.ecg(ecg)
        text_embed = self.text(input_ids, attention_mask)
        keep = attention_mask[:, 1:].bool()
        return {
            "ecg_embed": F.normalize(ecg_embed, dim=-1),
            "text_embed": F.normalize(text_embed, dim=-1),
            # logits only where a real next token is predicted: (K, V), targets (K,); the loss is the same
            "caption_logits": self.decoder(input_ids[:, :-1], ecg_tokens, keep=keep),
            "caption_targets": input_ids[:, 1:][keep],
            "caption_mask": torch.ones_like(keep[keep]),
            "log_scale": self.log_scale,
        }

    # ------------------------------------------------------------ inference API (eval mode, no grad)

    @torch.no_grad()
    def encode_ecg(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 12, L) standardised ECG (see `preprocess`) at config.fs -> (B, D) L2-normalised."""
        return self.ecg.embed(x.float())

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Strings -> (B, D) L2-normalised text embeddings in the same space as encode_ecg."""
        enc = self.tokenize(texts)
        return self.text.embed(enc["input_ids"], enc["attention_mask"])

    @torch.no_grad()
    def generate(self, x: torch.Tensor, *, max_tokens: int = 48) -> list[str]:
        """Greedy captions for (B, 12, L) standardised ECGs (a quick look at what the decoder learnt).

        A caption ends at its first end token ([SEP]): it is padded from there on while the others continue,
        and nothing after the end token is decoded.
        """
        _, ecg_tokens = self.ecg(x.float())
        tok = self.tokenizer
        start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        stop = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else stop
        ids = torch.full((x.shape[0], 1), start, dtype=torch.long, device=ecg_tokens.device)
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=ecg_tokens.device)
        for _ in range(min(max_tokens, self.config.max_text_tokens - 1)):
            nxt = self.decoder(ids, ecg_tokens)[:, -1].argmax(-1)
            if stop is not None:
                nxt = nxt.masked_fill(done, pad)
                done |= nxt == stop
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            if bool(done.all()):
                break
        return tok.batch_decode([_until(row[1:], stop) for row in ids.tolist()], skip_special_tokens=True)

    # ------------------------------------------------------------ speed options

    def configure(self, *, grad_checkpointing: bool = False, compile: bool = False) -> None:
        """Activation checkpointing (ECG blocks, decoder layers, HF text layers) and per-block torch.compile."""
        self.ecg.backbone.configure(checkpointing=grad_checkpointing, compile=compile)
        self.decoder.checkpointing = grad_checkpointing
        if grad_checkpointing:
            self.text.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _until(row: list[int], stop: int | None) -> list[int]:
    """Token ids up to (not including) the first `stop`."""
    return row[: row.index(stop)] if stop is not None and stop in row else row
