"""The ESI authors' released model (github.com/comp-well-org/ESI, GPL-3.0), re-implemented from its equations.

Loaded from a model artifact whose config.json says `"variant": "esi-release"` (written by `esi
import-release`). The ConvNeXt-V2 blocks are our `Block` (same math, same key names); what differs from
our encoder is written here:
- stem and downsampling norms normalise each channel over *time* (not over channels), with the unbiased
  std and eps added to the std, weight and bias shaped (1, C, 1);
- readout: stage-4 tokens averaged over time -> LayerNorm (eps 1e-6) -> `img_token_head` Linear ->
  LayerNorm (eps 1e-5) -> `img_to_latents` Linear without bias -> L2-normalised;
- text: the BERT [CLS] hidden state -> `text_to_latents` Linear without bias -> L2-normalised;
  exp(`temperature`) is the logit scale;
- input: 500 Hz mV in MIMIC-IV-ECG's lead order (aVF before aVL), NaN -> that lead's mean, then one mean
  and one unbiased std per record, eps 1e-6 added to the std.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..signal.leads import STANDARD_LEADS
from . import bounds
from .ecg_encoder import SIZES, Block

VARIANT = "esi-release"
# The ConvNeXt-V2 sizes the release's main.py can train: ours of the same names (depths, dims); --dim is 768.
RELEASE_SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    name: SIZES[name] for name in ("atto", "nano", "tiny", "base", "large")
}
# wfdb's p_signal channel order in MIMIC-IV-ECG headers, which the release feeds unchanged.
MIMIC_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")


@dataclass(frozen=True)
class ReleaseConfig:
    """config.json of an imported release model (everything needed to rebuild it)."""

    size: str = "base"  # the paper's encoder
    depths: tuple[int, ...] = ()  # empty = RELEASE_SIZES[size]
    dims: tuple[int, ...] = ()
    token_dim: int = 768  # the release's CoCa width (--dim): img_token_head output, BERT-base hidden size
    embed_dim: int = 768  # dim_latents defaults to dim in the release
    leads: tuple[str, ...] = MIMIC_LEADS  # lead order the weights expect; our datasets are reordered to it
    std_eps: float = 1e-6  # added to the record std (release data loader)
    text_model: str = "michiyasunaga/BioLinkBERT-base"
    text_pooling: str = "cls"  # the release reads last_hidden_state[:, 0]
    max_text_tokens: int = 500  # the release's tokenizer truncation
    fs: float = 500.0  # MIMIC-IV-ECG's rate; embed refuses datasets at another rate
    seconds: float = 10.0  # (5000, 12) inputs in training; any length works (mean pooling)

    def __post_init__(self):
        if self.size not in RELEASE_SIZES and not (self.depths and self.dims):
            raise ValueError(f"unknown release size '{self.size}' (known: {', '.join(RELEASE_SIZES)})")
        depths, dims = RELEASE_SIZES.get(self.size, (self.depths, self.dims))
        object.__setattr__(self, "depths", tuple(self.depths or depths))
        object.__setattr__(self, "dims", tuple(self.dims or dims))
        object.__setattr__(self, "leads", tuple(self.leads))
        if sorted(self.leads) != sorted(STANDARD_LEADS):
            raise ValueError(f"release lead order must be a permutation of {', '.join(STANDARD_LEADS)}")
        bounds.stages(self.depths, self.dims)  # before anything is built: a config may come from anywhere
        bounds.whole("token_dim", self.token_dim, 1, bounds.MAX_WIDTH)
        bounds.whole("embed_dim", self.embed_dim, 1, bounds.MAX_WIDTH)
        bounds.whole("max_text_tokens", self.max_text_tokens, 1, bounds.MAX_TOKENS)
        bounds.real("fs", self.fs, bounds.MIN_FS, bounds.MAX_FS)
        bounds.real("seconds", self.seconds, 0.01, 86_400.0)
        bounds.real("std_eps", self.std_eps, 0.0, 1.0)

    def to_dict(self) -> dict:
        """The config.json layout: `variant` first, the ECG side under `ecg`, input handling under `input`."""
        d = asdict(self)
        ecg = {k: d.pop(k) for k in ("size", "depths", "dims", "token_dim", "embed_dim")}
        inp = {"leads": list(d.pop("leads")), "std_eps": d.pop("std_eps"), "nan": "lead-mean", "normalise": "record"}
        return {"variant": VARIANT, "ecg": ecg, "input": inp, **d}

    @classmethod
    def from_dict(cls, data: dict) -> ReleaseConfig:
        if data.get("variant") != VARIANT:
            raise ValueError(f"not an {VARIANT} config (variant {data.get('variant')!r})")
        inp = data.get("input", {})
        flat = {**data.get("ecg", {}), "leads": inp.get("leads", MIMIC_LEADS), "std_eps": inp.get("std_eps", 1e-6)}
        flat.update({k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        for key in ("depths", "dims"):
            flat[key] = tuple(flat.get(key) or ())
        return cls(**flat)


# ---------------------------------------------------------------- input handling


def release_input(x_mv, *, eps: float = 1e-6) -> torch.Tensor:
    """(B, 12, L) mV (any lead order) -> float32 tensor: NaN -> lead mean, then (x - mean) / (std + eps) per record.

    As the release's loader: float32 statistics over all leads and samples, unbiased std. A lead that is
    entirely NaN becomes 0 (the release would have produced NaN).
    """
    x = np.array(x_mv, dtype=np.float64, copy=True)
    if np.isnan(x).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN lead: "mean of empty slice"
            lead_mean = np.nan_to_num(np.nanmean(x, axis=-1, keepdims=True))
        x = np.where(np.isnan(x), lead_mean, x)
    t = torch.from_numpy(x.astype(np.float32))
    mean = t.mean(dim=(-2, -1), keepdim=True)
    std = t.std(dim=(-2, -1), keepdim=True)
    return (t - mean) / (std + eps)


# ---------------------------------------------------------------- ECG encoder


class TimeNorm(nn.Module):
    """The release's "channels_first" LayerNorm on (B, C, T): each channel over time, unbiased std, eps on the std."""

    def __init__(self, dim: int, *, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, dim, 1))
        self.bias = nn.Parameter(torch.zeros(1, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        std = x.std(dim=-1, keepdim=True)
        return (x - mean) / (std + self.eps) * self.weight + self.bias


class Stem(nn.Sequential):
    """Conv1d k4 s4 + TimeNorm, after putting our lead order into the order the weights expect."""

    def __init__(self, *, leads: tuple[str, ...], dim: int):
        super().__init__(nn.Conv1d(len(leads), dim, kernel_size=4, stride=4), TimeNorm(dim))
        order = torch.tensor([STANDARD_LEADS.index(lead) for lead in leads])
        self.register_buffer("order", order, persistent=False)  # from config.json, not a weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x[:, self.order])


class ReleaseBackbone(nn.Module):
    """(B, 12, L) in our lead order -> stage-4 tokens; `downsample`/`stages` as our backbone has them."""

    def __init__(self, *, depths: tuple[int, ...], dims: tuple[int, ...], leads: tuple[str, ...]):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [Stem(leads=leads, dim=dims[0])]
            + [nn.Sequential(TimeNorm(dims[i]), nn.Conv1d(dims[i], dims[i + 1], kernel_size=2, stride=2)) for i in range(len(dims) - 1)]
        )
        self.stages = nn.ModuleList(
            nn.Sequential(*[Block(dim, kernel_size=7, drop_path=0.0) for _ in range(depth)]) for depth, dim in zip(depths, dims, strict=True)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)

    @property
    def downsample(self) -> nn.ModuleList:
        """Our backbone's name for the stem + downsampling layers (esi embed's stage pooling walks them)."""
        return self.downsample_layers

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 12, L) -> (B, C, L/32) stage-4 output, before any norm."""
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))
        return x

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The release's features: time mean, then LayerNorm -> (B, C)."""
        return self.norm(self.tokens(x).mean(dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) per-token normalised, like our backbone (what fine-tuning averages)."""
        return self.norm(self.tokens(x).transpose(1, 2))


class ReleaseECGEncoder(nn.Module):
    """Backbone + the release's readout: what `encoder.safetensors` of an imported model holds."""

    def __init__(self, config: ReleaseConfig):
        super().__init__()
        self.config = config
        self.backbone = ReleaseBackbone(depths=config.depths, dims=config.dims, leads=config.leads)
        self.token_head = nn.Linear(config.dims[-1], config.token_dim)  # img_token_head
        self.token_norm = nn.LayerNorm(config.token_dim)  # img_attn_pool_norm (gamma; beta a zero buffer there)
        self.proj = nn.Linear(config.token_dim, config.embed_dim, bias=False)  # img_to_latents

    @property
    def width(self) -> int:
        return self.config.dims[-1]

    def preprocess(self, x_mv) -> torch.Tensor:
        """(B, 12, L) mV in our lead order -> what `forward` expects (the release's normalisation)."""
        return release_input(x_mv, eps=self.config.std_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 12, L) preprocessed -> (B, embed_dim) unnormalised latent."""
        return self.proj(self.token_norm(self.token_head(self.backbone.pooled(x))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward(x), dim=-1)


# ---------------------------------------------------------------- ECG x text (zero-shot)


class ReleaseESI(nn.Module):
    """ECG encoder, BERT text tower with [CLS] readout, and the logit scale: the inference API of our ESIModel."""

    def __init__(self, config: ReleaseConfig, *, text, tokenizer):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.ecg = ReleaseECGEncoder(config)
        self.text = text  # our TextEncoder: proj = text_to_latents
        self.log_scale = nn.Parameter(torch.zeros(1))  # the release's `temperature`: logits = sim * exp(it)

    @classmethod
    def from_saved(cls, config: ReleaseConfig, text_dir: Path) -> ReleaseESI:
        """Architecture from a model artifact's `text/` folder; weights are loaded by the caller."""
        from .text_encoder import TextEncoder, load_tokenizer

        text = TextEncoder.from_hf_config(text_dir, pooling=config.text_pooling, embed_dim=config.embed_dim)
        return cls(config, text=text, tokenizer=load_tokenizer(text_dir))

    def preprocess(self, x_mv) -> torch.Tensor:
        return self.ecg.preprocess(x_mv)

    @torch.no_grad()
    def encode_ecg(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 12, L) preprocessed (see `preprocess`) at 500 Hz -> (B, D) L2-normalised."""
        return self.ecg.embed(x.float())

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.config.max_text_tokens, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Strings -> (B, D) L2-normalised, in the space of encode_ecg."""
        enc = self.tokenize(texts)
        return self.text.embed(enc["input_ids"], enc["attention_mask"])


def release_config_path(size: str) -> Path:
    """The shipped config of a release size (esi_tools/model/configs/esi-release-<size>.json)."""
    return Path(__file__).resolve().parent / "configs" / f"{VARIANT}-{size}.json"
