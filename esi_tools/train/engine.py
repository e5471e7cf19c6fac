"""Engines: plain PyTorch (one CPU process, or DDP under torchrun) and DeepSpeed ZeRO 1/2/3.

Both expose the same small surface to the loop: forward, backward, step (at accumulation boundaries),
lr, full_state_dict (for export) and the module. DeepSpeed on CPU is set up so nothing is JIT-compiled:
the shared-memory comm op is disabled and the optimizer is a torch AdamW instance, never FusedAdam.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist

from ..console import log
from ..errors import InputError
from .config import PretrainConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_distributed(cfg: PretrainConfig) -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, created): joins the launcher's process group if there is one.

    torchrun and the deepspeed launcher set RANK/WORLD_SIZE; a plain `esi pretrain --deepspeed` gets
    single-rank values here, because DeepSpeed otherwise looks for MPI.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed crop length: autotuned conv kernels pay off after step 1
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 runs use tensor cores; bf16 runs are unaffected
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), device, False
    if cfg.deepspeed:
        for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        import deepspeed
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # else a ~70 s C++ JIT build on CPU
        deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size(), device, True
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return rank, world, device, True
    return 0, 1, device, False


def lr_lambda(cfg: PretrainConfig, steps_per_epoch: int, total_steps: int):
    """Linear warm-up, then cosine to 0 or x0.1 every decay_epochs (both in optimizer steps)."""
    warmup = max(0, round(cfg.warmup_epochs * steps_per_epoch))
    decay_every = max(1, round(cfg.decay_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "step":
            return 0.1 ** ((step - warmup) // decay_every)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


# Parameters that are never decayed, by the role their module gives them (timm's `no_weight_decay` idea):
# norms and embeddings by module type, biases by parameter name, the rest declared by our own modules.
NO_DECAY_MODULES = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._NormBase, torch.nn.Embedding)


def no_decay_names(model: torch.nn.Module) -> set[str]:
    """Names (as in named_parameters) of the parameters AdamW must not decay.

    Biases, norm gains/shifts, GRN gamma/beta, pooler queries, position tables, token embeddings (the tied
    decoder head included: it is the same tensor) and the log temperature: decaying them pulls gains and
    tables towards 0 for no regularising benefit (ConvNeXt-V2, CLIP and GPT-2 recipes).
    """
    skip: set[int] = set()
    for module in model.modules():
        declared = set(getattr(module, "NO_WEIGHT_DECAY", ()))
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, NO_DECAY_MODULES) or name == "bias" or name.endswith("_bias") or name in declared:
                skip.add(id(param))
    return {name for name, param in model.named_parameters() if id(param) in skip}


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig, *, fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW with two groups (see no_decay_names); one fused kernel for all parameters on CUDA."""
    skip = no_decay_names(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n not in skip], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in named if n in skip], "weight_decay": 0.0},
    ]
    if fused is None:
        fused = all(p.is_cuda for _, p in named)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6, fused=fused or None)  # CLIP's betas/eps


class PlainEngine:
    """Single process, or DDP when the process group has more than one rank."""

    name = "plain"

    def __init__(self, model, cfg: PretrainConfig, schedule, *, world_size: int, device: torch.device):
        self.module = model.to(device)
        self.cfg, self.device = cfg, device
        self.optimizer = make_optimizer(model, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.wrapped = model
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.dtype = torch.float32
        self.autocast = cfg.bf16 and device.type == "cuda"

    def micro_step(self, batch: dict, loss_fn, *, boundary: bool) -> dict:
        """Forward, loss, backward of one micro-batch; DDP syncs gradients only at the boundary."""
        sync = boundary or not hasattr(self.wrapped, "no_sync")
        with contextlib.nullcontext() if sync else self.wrapped.no_sync():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                outputs = self.wrapped(batch["ecg"], batch["input_ids"], batch["attention_mask"])
            terms = loss_fn(outputs)
            (terms["loss"] / self.cfg.grad_accum).backward()
        return terms

    def step(self) -> float:
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.clip_grad)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state(self) -> dict:
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def save(self, directory: Path, rank: int) -> None:
        if rank == 0:
            torch.save(self.state(), directory / "state.pt")

    def load(self, directory: Path) -> None:
        state = torch.load(directory / "state.pt", map_location=self.device, weights_only=True)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def full_state_dict(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}


class DeepSpeedEngine:
    """DeepSpeed ZeRO stage 1/2/3 from a JSON config; batch, accumulation, clipping and bf16 filled from cfg."""

    name = "deepspeed"

    def __init__(self, model, cfg: PretrainConfig, schedule, *, world_size: int, device: torch.device):
        import deepspeed

        try:
            ds_config = json.loads(Path(cfg.deepspeed).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"--deepspeed {cfg.deepspeed}: {exc}") from None
        ds_config.update(
            train_micro_batch_size_per_gpu=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            train_batch_size=cfg.batch_size * cfg.grad_accum * world_size,
            gradient_clipping=cfg.clip_grad,
        )
        ds_config["bf16"] = {"enabled": bool(cfg.bf16)}
        ds_config.setdefault("zero_allow_untested_optimizer", True)  # a torch AdamW instance (no FusedAdam JIT)
        ds_config.setdefault("steps_per_print", 10**9)  # our loop logs; keep DeepSpeed quiet
        self.stage = int(ds_config.get("zero_optimization", {}).get("stage", 0))
        optimizer = make_optimizer(model, cfg, fused=False)  # ZeRO swaps in its own flat partitions: plain foreach AdamW
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
        )
        self.module, self.cfg, self.device = self.engine.module, cfg, device
        self.dtype = torch.bfloat16 if cfg.bf16 else torch.float32
        if dist.get_rank() == 0:
            log(f"DeepSpeed ZeRO stage {self.stage}, world size {world_size}, {'bf16' if cfg.bf16 else 'fp32'}")

    def micro_step(self, batch: dict, loss_fn, *, boundary: bool) -> dict:
        """DeepSpeed scales by the accumulation steps and acts at the boundary inside engine.step()."""
        outputs = self.engine(batch["ecg"].to(self.dtype), batch["input_ids"], batch["attention_mask"])
        terms = loss_fn(outputs)
        self.engine.backward(terms["loss"])
        self.engine.step()
        return terms

    def step(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    @property
    def lr(self) -> float:
        return self.engine.get_lr()[0]

    def save(self, directory: Path, rank: int) -> None:
        self.engine.save_checkpoint(str(directory.parent), tag=directory.name, save_latest=False)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory.parent), tag=directory.name)
        if path is None:
            raise InputError(f"--resume {directory}: DeepSpeed found no checkpoint there")

    def full_state_dict(self) -> dict:
        """Whole-model weights on every rank (ZeRO-3 shards are gathered; all ranks must call this)."""
        params = list(self.module.parameters())
        if self.stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                return {k: v.detach().float().cpu().clone() for k, v in self.module.state_dict().items()}
        return {k: v.detach().float().cpu().clone() for k, v in self.module.state_dict().items()}


def make_engine(model, cfg: PretrainConfig, schedule, *, world_size: int, device: torch.device):
    if cfg.deepspeed:
        return DeepSpeedEngine(model, cfg, schedule, world_size=world_size, device=device)
    return PlainEngine(model, cfg, schedule, world_size=world_size, device=device)
