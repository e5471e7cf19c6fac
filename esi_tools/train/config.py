"""PretrainConfig: every knob of `esi pretrain`, with profiles. Precedence: defaults, profile, --config, flags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..errors import InputError, UsageError


@dataclass(frozen=True)
class PretrainConfig:
    # ---- model
    model: str = "esi-atto"  # architecture config (esi_tools/model/configs) or a JSON path
    size: str | None = None  # override the ECG encoder size of `model` (atto..large)
    text_model: str | None = None  # override the text tower (hub id or local dir)
    fs: float = 100.0  # the dataset must be at this rate (Hz); checked, never resampled silently
    # ---- data
    text_source: str | None = None  # captions | statements | <records column>; None = captions if given, else statements for PTB-XL, else report
    exclude_folds: tuple[int, ...] = (9, 10)  # PTB-XL validation (9) and test (10) folds never enter pretraining
    crop_seconds: float = 10.0  # random crop length; 10 s = the whole record for PTB-XL/MIMIC
    augment: bool = True  # amplitude scale, noise, baseline wander, lead dropout, crop
    workers: int = 2  # DataLoader processes reading the memmap; 2 keeps the loader ahead of an atto step on CPU
    # ---- optimisation
    epochs: int = 10  # cpu-demo: enough to see both losses fall on the PTB-XL subset
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    batch_size: int = 32  # per rank per micro-step; contrastive negatives come from batch x world size
    grad_accum: int = 1  # micro-steps per optimizer step
    lr: float = 1e-4  # AdamW peak learning rate (CLIP-style towers with a pretrained text encoder)
    weight_decay: float = 0.05  # ConvNeXt's AdamW default
    warmup_epochs: float = 1.0  # linear warm-up before the schedule below
    schedule: str = "cosine"  # cosine | step (paper: x0.1 every decay_epochs)
    decay_epochs: float = 10.0  # step schedule: multiply lr by 0.1 every this many epochs (paper)
    clip_grad: float = 1.0  # global grad-norm clip: keeps early contrastive steps stable
    contrastive_weight: float = 1.0  # CoCa weights both losses; contrast is the main signal
    caption_weight: float = 1.0  # CoCa default (2.0 in the paper's LAION runs; 1.0 keeps the ECG side dominant)
    seed: int = 0  # model init, shuffling, augmentations
    # ---- engine
    deepspeed: str | None = None  # DeepSpeed JSON (ZeRO 1/2/3); None = plain PyTorch (DDP when launched with >1 ranks)
    bf16: bool = False  # GPU only: bf16 is ~12x slower than fp32 on this kind of CPU
    grad_checkpointing: bool = False  # recompute activations in backward: ~1/3 slower, much less memory (bigger batches)
    compile: bool = False  # torch.compile each ECG block (static shapes); costs minutes of compile time up front
    # ---- checkpoints
    checkpoint_every: int = 500  # optimizer steps between checkpoints (also saved on interrupt)
    checkpoint_dir: str | None = None  # None = <out>.checkpoints next to the artifact
    stop_after: int | None = None  # checkpoint and stop at this step, as on an interrupt (time-limited jobs)
    resume: str | None = None  # checkpoint dir to continue from (model, optimizer, scheduler, RNG, data position)
    log_every: int = 1  # steps between log rows (one row per step keeps curves exact on small runs)

    def to_dict(self) -> dict:
        return asdict(self)

    def updated(self, **changes) -> PretrainConfig:
        """Apply non-None overrides, checking names (a typo in --config must not pass silently)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UsageError(f"unknown pretrain settings: {', '.join(unknown)}")
        clean = {k: (tuple(v) if k == "exclude_folds" else v) for k, v in changes.items() if v is not None}
        return replace(self, **clean)

    def check(self) -> PretrainConfig:
        if self.schedule not in ("cosine", "step"):
            raise UsageError(f"--schedule must be cosine or step, not '{self.schedule}'")
        for name in ("batch_size", "grad_accum", "epochs", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("max_steps", "stop_after"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
        return self


# Profiles (the issue): cpu-demo trains on a laptop CPU in minutes; paper follows the ESI paper's recipe.
PROFILES: dict[str, dict] = {
    "cpu-demo": {"model": "esi-atto", "fs": 100.0, "batch_size": 32, "epochs": 10, "lr": 3e-4, "schedule": "cosine"},
    "paper": {
        "model": "esi-base",
        "fs": 500.0,
        "batch_size": 64,
        "epochs": 40,
        "lr": 1e-4,
        "warmup_epochs": 5.0,
        "schedule": "step",
        "decay_epochs": 10.0,
        "bf16": True,
        "workers": 8,
    },
}


def build_config(profile: str | None, config_file: Path | None, flags: dict) -> PretrainConfig:
    """defaults -> profile -> --config JSON -> command-line flags (None = not given)."""
    cfg = PretrainConfig()
    if profile is not None:
        if profile not in PROFILES:
            raise UsageError(f"unknown --profile '{profile}' (known: {', '.join(PROFILES)})")
        cfg = cfg.updated(**PROFILES[profile])
    if config_file is not None:
        try:
            data = json.loads(Path(config_file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"--config {config_file}: {exc}") from None
        cfg = cfg.updated(**data)
    return cfg.updated(**flags).check()
