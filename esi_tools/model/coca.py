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
from torch import nn

from ..losses import INIT_TEMPERATURE
from .ecg_encoder import ECGEncoder, ECGEncoderConfig
from .text_encoder import TextEncoder, load_tokenizer


@dataclass(frozen=True)
class ESIConfig:
    """Architecture of a whole ESI model; `config.json` of a model artifact is this, as a dict."""

    ecg: ECGEncoderConfig = field(default_factory=ECGEncoderConfig)
    text_model: str = "michiyasunaga/BioLinkBERT-base"  # the paper's text tower
    text_pooling: str = "cls"  # BERT's [CLS] summary token, as in the paper
    max_text_tokens: int = 128  # statements + findings captions fit; longer text is truncated
    decoder_layers: int = 2  # CoCa uses few multimodal layers relative to the encoders
    decoder_heads: int = 8  # head width 32-64 for the widths below
    decoder_width: int = 256  # small: the decoder is a training signal, not a product
    decoder_dropout: float = 0.1  # the usual transformer default
    fs: float = 100.0  # sampling rate the model was trained at (Hz); inputs must match
    seconds: float = 10.0  # length of the training crops (s); any length works at inference

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ESIConfig:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        ecg = ECGEncoderConfig.from_dict(data.pop("ecg", {}))
        return cls(ecg=ecg, **data)

    def with_text_model(self, text_model: str) -> ESIConfig:
        return replace(self, text_model=str(text_model))


class CaptionDecoder(nn.Module):
    """Causal transformer decoder over caption tokens with cross-attention to the ECG tokens."""

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

    def forward(self, input_ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """input_ids (B, T), memory (B, N, C) -> logits (B, T, V); position t sees tokens <= t only."""
        length = input_ids.shape[1]
        x = self.token(input_ids) + self.position[:length]
        causal = torch.triu(torch.full((length, length), float("-inf"), device=x.device), diagonal=1)
        x = self.layers(x, self.memory_proj(memory), tgt_mask=causal, tgt_is_causal=True)
        return self.head(x)


class ESIModel(nn.Module):
    """ECG encoder, text encoder, caption decoder and the learnable temperature, plus the inference API."""

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
        return {
            "ecg_embed": F.normalize(ecg_embed, dim=-1),
            "text_embed": F.normalize(text_embed, dim=-1),
            "caption_logits": self.caption_logits(input_ids, ecg_tokens),
            "caption_targets": input_ids[:, 1:],
            "caption_mask": attention_mask[:, 1:],
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
        """Greedy captions for (B, 12, L) standardised ECGs (a quick look at what the decoder learnt)."""
        _, ecg_tokens = self.ecg(x.float())
        tok = self.tokenizer
        start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        stop = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        ids = torch.full((x.shape[0], 1), start, dtype=torch.long)
        for _ in range(min(max_tokens, self.config.max_text_tokens - 1)):
            nxt = self.decoder(ids, ecg_tokens)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
            if stop is not None and bool((ids == stop).any(1).all()):
                break
        return tok.batch_decode(ids, skip_special_tokens=True)
