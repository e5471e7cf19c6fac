"""Training losses: symmetric InfoNCE over negatives gathered from every rank, and captioning cross-entropy.

Each function takes `rank` and `world_size` explicitly and sizes its labels from the gathered batch
(CoCa-pytorch issue #20 shows what goes wrong otherwise). Losses return named `*_loss` terms.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

# CLIP's clamp: the logit scale (1/temperature) never exceeds 100, so training cannot collapse to argmax.
MAX_LOGIT_SCALE = 100.0
# CLIP's initial temperature.
INIT_TEMPERATURE = 0.07
IGNORE_INDEX = -100  # F.cross_entropy's default ignore value, used for padding targets


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice.

    Written out (all_reduce, then slice) because the gloo backend has no reduce_scatter.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.n = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n], None, None


def gather_features(x: torch.Tensor, *, rank: int, world_size: int) -> torch.Tensor:
    """(B_local, D) on every rank -> (world_size * B_local, D) in rank order, differentiable."""
    if world_size == 1:
        return x
    return _GatherWithGrad.apply(x, rank, world_size)


def logit_scale_value(log_scale: torch.Tensor) -> torch.Tensor:
    """exp of the learnable log scale, clamped to MAX_LOGIT_SCALE (temperature >= 0.01)."""
    return log_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()


def contrastive_loss(
    ecg: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor, *, rank: int = 0, world_size: int = 1
) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE of this rank's rows against the whole gathered batch.

    ecg, text: (B_local, D) L2-normalised. Averaged over ranks, the loss and (after the usual
    gradient averaging of DDP/DeepSpeed) the gradients equal those of one process holding the whole batch.
    """
    ecg, text = ecg.float(), text.float()  # bf16 logits would round away the small differences that matter
    all_ecg = gather_features(ecg, rank=rank, world_size=world_size)
    all_text = gather_features(text, rank=rank, world_size=world_size)
    scale = logit_scale_value(log_scale)
    labels = torch.arange(ecg.shape[0], device=ecg.device) + rank * ecg.shape[0]
    loss_e2t = F.cross_entropy(scale * ecg @ all_text.T, labels)
    loss_t2e = F.cross_entropy(scale * text @ all_ecg.T, labels)
    return {"contrastive_loss": (loss_e2t + loss_t2e) / 2, "logit_scale": scale.detach()}


def caption_loss(logits: torch.Tensor, targets: torch.Tensor, target_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Next-token cross-entropy; logits (..., V) predict targets (...), e.g. (B, T) or the kept (K,); mask 0 is ignored."""
    targets = targets.masked_fill(~target_mask.bool(), IGNORE_INDEX)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    return {"caption_loss": loss}


def esi_loss(
    outputs: dict[str, torch.Tensor], *, contrastive_weight: float, caption_weight: float, rank: int, world_size: int
) -> dict[str, torch.Tensor]:
    """The ESI objective: weighted contrastive + captioning terms, plus their sum as `loss`."""
    terms = contrastive_loss(outputs["ecg_embed"], outputs["text_embed"], outputs["log_scale"], rank=rank, world_size=world_size)
    if caption_weight > 0:
        terms |= caption_loss(outputs["caption_logits"], outputs["caption_targets"], outputs["caption_mask"])
    else:
        terms["caption_loss"] = torch.zeros((), device=outputs["ecg_embed"].device)
    terms["loss"] = contrastive_weight * terms["contrastive_loss"] + caption_weight * terms["caption_loss"]
    return terms
