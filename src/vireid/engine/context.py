"""The small run context every stage takes besides its own config sections.

A stage needs to know where it computes (device, AMP, memory format), how it feeds the model
(image size, augmentation workers, extraction batch size), where it writes (the run folder), its
seed, and whom to tell after each epoch (the hooks). Everything else comes from its own config
section, so a stage never reads settings that belong to another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

import torch

from vireid.config import Config, resolve_cache_dir
from vireid.data.transforms import TrainTransforms, build_train_transforms, paper_pad
from vireid.engine.device import autocast, grad_scaler
from vireid.engine.distributed import world
from vireid.engine.extract import ExtractOptions
from vireid.engine.run import RunFolder
from vireid.engine.seeds import derive_seed

if TYPE_CHECKING:
    from vireid.engine.hooks import EpochEnd, Hook


@dataclass
class RunContext:
    """Device, precision, data feeding, run folder, seed and hooks of one run."""

    device: torch.device
    run: RunFolder | None  # None for measurements outside a run (evaluation, the demo's summaries)
    seed: int = 0
    amp: bool = True  # autocast on CUDA (bfloat16 where supported, else float16)
    channels_last: bool = True  # CUDA only
    image_size: tuple[int, int] = (288, 144)  # (height, width) of every model input
    workers: int = 0  # processes that augment training batches ahead of the model
    eval_batch_size: int = 128  # batch size of feature extraction
    channel_augment: bool = True  # ChannelExchange / ChannelAdapGray in the training views
    cache_dir: Path = Path(".")
    hooks: list["Hook"] = field(default_factory=list)
    _transforms: TrainTransforms | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, cfg: Config, run: RunFolder | None, device: torch.device) -> "RunContext":
        return cls(device=device, run=run, seed=cfg.seed, amp=cfg.model.amp, channels_last=cfg.model.channels_last,
                   image_size=(cfg.data.height, cfg.data.width), workers=cfg.data.workers,
                   eval_batch_size=cfg.data.eval_batch_size, channel_augment=cfg.data.channel_augment,
                   cache_dir=resolve_cache_dir(cfg))

    @property
    def rank(self) -> int:
        return world()[0]

    @property
    def world_size(self) -> int:
        return world()[1]

    def seed_for(self, stage: str, epoch: int, stream: str, per_rank: bool = False) -> int:
        """The seed of one random stream (see engine/seeds.py); `per_rank` adds this rank to it."""
        keys: tuple = (stage, epoch, stream) + ((self.rank,) if per_rank else ())
        return derive_seed(self.seed, *keys)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for float16 autocast; a pass-through otherwise (see engine/device.py)."""
        return grad_scaler(self.device, self.amp)

    def autocast(self) -> ContextManager:
        """Mixed precision for a forward pass on this run's device (a no-op on CPU or with amp off)."""
        return autocast(self.device, self.amp)

    def extract_options(self) -> ExtractOptions:
        """The `extract_features` settings that follow from this context."""
        return ExtractOptions(batch_size=self.eval_batch_size, device=self.device, amp=self.amp,
                              channels_last=self.channels_last)

    def train_transforms(self) -> TrainTransforms:
        """The paper's three training views at this run's image size, padding scaled (built once)."""
        if self._transforms is None:
            height, width = self.image_size
            self._transforms = build_train_transforms(height, width, pad=paper_pad(height),
                                                      channel_ops=self.channel_augment)
        return self._transforms

    def after_epoch(self, end: "EpochEnd") -> None:
        """Tell every hook that a stage finished an epoch (in order: log, evaluate, checkpoint)."""
        for hook in self.hooks:
            hook.after_epoch(end)

    def after_stage(self, stage: str, model: torch.nn.Module) -> None:
        """Tell every hook that a stage is over and `model` is its result."""
        for hook in self.hooks:
            hook.after_stage(stage, model)
