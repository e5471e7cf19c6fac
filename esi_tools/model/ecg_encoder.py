"""1D ConvNeXt-V2 ECG encoder with an attentional pooler.

The backbone turns a (B, 12, L) standardised ECG into a sequence of temporal tokens (stem stride 4, then
three stride-2 downsamplings: L/32 tokens). An attentional pooler with learned queries reads those tokens
and returns one contrastive embedding (query 0, projected to `embed_dim`) plus `n_caption_tokens` tokens
for the captioning decoder, so the decoder sees time-resolved ECG content rather than one repeated vector.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import nn

from . import bounds

# ConvNeXt-V2 family (Woo et al. 2023), depths x widths per stage; the issue names atto/tiny/base explicitly.
SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}


@dataclass(frozen=True)
class ECGEncoderConfig:
    """Everything needed to rebuild the encoder; stored in a model's config.json."""

    size: str = "atto"  # smallest member: trains on a laptop CPU
    in_leads: int = 12  # standard 12-lead order I, II, III, aVR, aVL, aVF, V1..V6
    depths: tuple[int, ...] = field(default=())  # empty = take from SIZES[size]
    dims: tuple[int, ...] = field(default=())  # empty = take from SIZES[size]
    kernel_size: int = 7  # ConvNeXt's depthwise kernel
    drop_path: float = 0.1  # stochastic depth rate at the last block (linear ramp), ConvNeXt-V2 fine-tune default
    embed_dim: int = 256  # shared ECG/text embedding width (CLIP-like models use 256-768)
    n_caption_tokens: int = 32  # decoder memory length: ~1 token per 0.3 s of a 10 s ECG
    pool_heads: int = 8  # divides every width in SIZES

    def resolved(self) -> ECGEncoderConfig:
        if self.size not in SIZES and not (self.depths and self.dims):
            raise ValueError(f"unknown ECG encoder size '{self.size}' (known: {', '.join(SIZES)})")
        depths, dims = SIZES.get(self.size, (self.depths, self.dims))
        out = ECGEncoderConfig(**{**asdict(self), "depths": tuple(self.depths or depths), "dims": tuple(self.dims or dims)})
        bounds.stages(out.depths, out.dims)  # before anything is built: a config may come from anywhere
        bounds.whole("in_leads", out.in_leads, 1, 64)
        bounds.whole("kernel_size", out.kernel_size, 1, 63)
        bounds.whole("embed_dim", out.embed_dim, 1, bounds.MAX_WIDTH)
        bounds.whole("n_caption_tokens", out.n_caption_tokens, 1, bounds.MAX_TOKENS)
        bounds.whole("pool_heads", out.pool_heads, 1, bounds.MAX_WIDTH)
        bounds.real("drop_path", out.drop_path, 0.0, 1.0)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ECGEncoderConfig:
        data = dict(data)
        for key in ("depths", "dims"):
            data[key] = tuple(data.get(key) or ())
        return cls(**data).resolved()


# ---------------------------------------------------------------- building blocks
#
# Layout: the stages keep tokens as contiguous (B, T, C) ("channels last"), so LayerNorm, the pointwise
# Linears and GRN read memory in place. The depthwise conv runs as a 2-D conv on a (B, C, 1, T) view of the
# same memory, which is channels_last for conv2d: no permute/contiguous copies. Parameter names and shapes
# are those of the original (B, C, T) layout, so saved encoders and released weights load unchanged.


class LayerNorm1d(nn.Module):
    """LayerNorm over channels of a (B, C, T) tensor (the backbone itself calls `.norm` on (B, T, C) tokens)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.norm(rearrange(x, "b c t -> b t c")), "b t c -> b c t")


class GRN(nn.Module):
    """Global Response Normalization (ConvNeXt-V2) on (B, T, C): per-channel L2 over time, divided by the mean."""

    NO_WEIGHT_DECAY = ("gamma", "beta")  # gains, like a norm's (read by train.engine.no_decay_names)

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        # gamma * (x * nx) + beta + x in one pass over x: x * (gamma * nx + 1) + beta; the factor is only (B, 1, C)
        return torch.addcmul(self.beta, x, self.gamma * nx + 1.0)


class Block(nn.Module):
    """dwconv k=7 -> LayerNorm -> Linear 4x -> GELU -> GRN -> Linear, residual with stochastic depth.

    `tokens` is the fast path on (B, T, C); `forward` takes (B, C, T) for callers that hold channel-first
    tensors (stage pooling in `esi embed`, the release backbone).
    """

    def __init__(self, dim: int, *, kernel_size: int, drop_path: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = drop_path

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        """The depthwise conv on (B, T, C) tokens without moving them: conv2d on a channels_last (B, C, 1, T) view."""
        conv = self.dwconv
        y = F.conv2d(x.transpose(1, 2).unsqueeze(2), conv.weight.unsqueeze(2), conv.bias,
                     padding=(0, conv.padding[0]), groups=conv.groups)
        return y.squeeze(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x.transpose(1, 2)).transpose(1, 2)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch on (B, T, C) tokens (what `torch.compile` fuses: one graph per stage's shape)."""
        return self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(self.depthwise(x))))))

    def tokens(self, x: torch.Tensor, branch=None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); `branch` is a compiled `Block.branch` taking (block, x), if any."""
        y = branch(self, x) if branch is not None else self.branch(x)
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep).div_(keep)
            return torch.addcmul(x, y, mask)  # x + y * mask in one pass
        return x + y


class ConvNeXtV2_1D(nn.Module):
    """The backbone: (B, leads, L) -> temporal tokens (B, L/32, C_last).

    The stride-4 stem and the stride-2 downsamplings are patch embeddings: a Linear over non-overlapping
    patches, which on (B, T, C) tokens is a free reshape. Their weights keep the Conv1d shapes.
    """

    def __init__(self, *, in_leads: int, depths: tuple[int, ...], dims: tuple[int, ...], kernel_size: int, drop_path: float):
        super().__init__()
        self.downsample = nn.ModuleList(
            [nn.Sequential(nn.Conv1d(in_leads, dims[0], kernel_size=4, stride=4), LayerNorm1d(dims[0]))]
            + [
                nn.Sequential(LayerNorm1d(dims[i]), nn.Conv1d(dims[i], dims[i + 1], kernel_size=2, stride=2))
                for i in range(len(dims) - 1)
            ]
        )
        rates = torch.linspace(0, drop_path, sum(depths), device="cpu").tolist()  # numbers, also when built on meta
        self.stages, start = nn.ModuleList(), 0
        for depth, dim in zip(depths, dims, strict=True):
            self.stages.append(nn.Sequential(*[Block(dim, kernel_size=kernel_size, drop_path=rates[start + j]) for j in range(depth)]))
            start += depth
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.apply(_init_weights)
        self.checkpointing, self.compiled_branch = False, None

    @staticmethod
    def stem(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
        """(B, leads, L) -> (B, L // 4, C): the one copy of the (small) input into patches, then one matmul."""
        k = conv.kernel_size[0]
        patches = rearrange(x[..., : x.shape[-1] // k * k], "b c (t k) -> b t (c k)", k=k)
        return F.linear(patches, conv.weight.flatten(1), conv.bias)

    @staticmethod
    def merge(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
        """(B, T, C) -> (B, T // 2, C'): neighbouring tokens side by side (a view), one matmul; weight (C', k*C)."""
        k = conv.kernel_size[0]
        patches = rearrange(x[:, : x.shape[1] // k * k], "b (t k) c -> b t (k c)", k=k)
        return F.linear(patches, rearrange(conv.weight, "o c k -> o (k c)"), conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (down, stage) in enumerate(zip(self.downsample, self.stages, strict=True)):
            x = down[1].norm(self.stem(x, down[0])) if i == 0 else self.merge(down[0].norm(x), down[1])
            for block in stage:
                x = self._run(block, x)
        return self.norm(x)

    def _run(self, block: Block, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            # recompute the block in backward: activations of ~1 block per stage instead of all of them
            return torch.utils.checkpoint.checkpoint(block.tokens, x, self.compiled_branch, use_reentrant=False)
        return block.tokens(x, self.compiled_branch)

    def configure(self, *, checkpointing: bool = False, compile: bool = False) -> None:
        """Activation checkpointing per block; torch.compile of the block's branch (static shapes: fixed crop length).

        One compiled function serves every block: the block is an argument, so its weights are graph inputs and
        only each stage's shape compiles (4 graphs, not one per block; stochastic depth stays outside the graph).
        """
        self.checkpointing = checkpointing
        self.compiled_branch = torch.compile(Block.branch, dynamic=False) if compile else None


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class AttentionalPooler(nn.Module):
    """Learned queries cross-attend to the tokens (CoCa): (B, T, C) -> (B, n_queries, C).

    `attn` keeps nn.MultiheadAttention's parameters (in_proj_weight/bias, out_proj); the forward is written
    out so the queries are projected once (not once per sample) and attention is one fused SDPA call.
    """

    NO_WEIGHT_DECAY = ("queries",)  # learned inputs, not weights: decay would shrink them towards one another

    def __init__(self, dim: int, *, n_queries: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_queries, dim) * 0.02)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        attn, heads = self.attn, self.attn.num_heads
        kv = self.norm_kv(tokens)
        w_q, w_kv = attn.in_proj_weight.split([attn.embed_dim, 2 * attn.embed_dim])
        b_q, b_kv = attn.in_proj_bias.split([attn.embed_dim, 2 * attn.embed_dim])
        q = rearrange(F.linear(self.queries, w_q, b_q), "n (h d) -> h n d", h=heads)
        k, v = rearrange(F.linear(kv, w_kv, b_kv), "b t (two h d) -> two b h t d", two=2, h=heads)
        out = F.scaled_dot_product_attention(q.expand(tokens.shape[0], -1, -1, -1), k, v)
        return self.norm_out(attn.out_proj(rearrange(out, "b h n d -> b n (h d)")))


# ---------------------------------------------------------------- the encoder


class ECGEncoder(nn.Module):
    """Backbone + pooler + projection: what `encoder.safetensors` holds."""

    def __init__(self, config: ECGEncoderConfig):
        super().__init__()
        self.config = config = config.resolved()
        self.backbone = ConvNeXtV2_1D(
            in_leads=config.in_leads, depths=config.depths, dims=config.dims,
            kernel_size=config.kernel_size, drop_path=config.drop_path,
        )
        width = config.dims[-1]
        self.pooler = AttentionalPooler(width, n_queries=1 + config.n_caption_tokens, heads=config.pool_heads)
        self.proj = nn.Linear(width, config.embed_dim, bias=False)

    @property
    def width(self) -> int:
        """Channel width of the caption tokens."""
        return self.config.dims[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, leads, L) -> (unnormalised contrastive embedding (B, D), caption tokens (B, N, C))."""
        pooled = self.pooler(self.backbone(x))
        return self.proj(pooled[:, 0]), pooled[:, 1:]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, leads, L) -> (B, D) L2-normalised embedding."""
        return F.normalize(self.forward(x)[0], dim=-1)
