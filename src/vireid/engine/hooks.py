"""What happens after each epoch and each stage besides training: hooks, in the manner of fast-reid.

A stage body is only its training loop; after every epoch it hands an `EpochEnd` to the run
context, which calls each hook in order: the metrics logger (metrics.jsonl, TensorBoard, log line),
the periodic evaluator, the checkpointer. After a stage the pipeline calls `after_stage`, which the
demo uses to measure clustering quality without re-reading checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vireid.config import Config, config_to_dict
from vireid.engine.checkpoint import rotate_last, save_checkpoint
from vireid.engine.distributed import is_main
from vireid.engine.run import RunFolder


@dataclass
class EpochEnd:
    """One finished epoch: which stage, its 0-based index of `epochs`, and the state to save or report."""

    stage: str
    epoch: int
    epochs: int
    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    record: dict = field(default_factory=dict)  # the epoch's metrics (losses, clusters, timings)
    line: str = ""  # a line for people; empty on ranks that have no metrics to report

    @property
    def last(self) -> bool:
        return self.epoch + 1 >= self.epochs


class Hook:
    """Base class: override what you need."""

    def after_epoch(self, end: EpochEnd) -> None:
        pass

    def after_stage(self, stage: str, model: nn.Module) -> None:
        pass


class MetricsLogger(Hook):
    """Every epoch's record to metrics.jsonl and TensorBoard, and its line to the log."""

    def __init__(self, run: RunFolder) -> None:
        self.run = run

    def after_epoch(self, end: EpochEnd) -> None:
        self.run.log_metrics("epoch", stage=end.stage, epoch=end.epoch, **end.record)
        if end.line:
            self.run.log(end.line)


class PeriodicEvaluator(Hook):
    """Evaluate every `every` epochs of a stage, but not after its last: the pipeline evaluates that."""

    def __init__(self, evaluate: Callable[..., Any], every: int) -> None:
        self.evaluate, self.every = evaluate, every

    def after_epoch(self, end: EpochEnd) -> None:
        if self.every > 0 and (end.epoch + 1) % self.every == 0 and not end.last:
            self.evaluate(end.model, end.stage, end.epoch)


class Checkpointer(Hook):
    """`checkpoints/last.pt` after every epoch (the one before kept as `prev.pt`), and the named stage
    checkpoints the pipeline asks for.

    `extra` holds what a resumed run needs besides the weights (the SCA stage's shared labels); the
    pipeline fills it in once the labels exist. Only rank 0 writes.
    """

    def __init__(self, folder: Path, cfg: Config) -> None:
        self.folder, self.config = folder, config_to_dict(cfg)
        self.extra: dict[str, Any] = {}
        self.saved: dict[str, Path] = {}

    def save(self, name: str, model: nn.Module, stage: str, epoch: int, optimizer=None, scheduler=None) -> Path:
        path = self.folder / name
        if is_main():
            if name == "last.pt":
                rotate_last(path)
            extra = dict(self.extra)
            if scheduler is not None:
                extra["scheduler"] = scheduler.state_dict()
            save_checkpoint(path, model=model, optimizer=optimizer, stage=stage, epoch=epoch, config=self.config,
                            extra=extra)
        self.saved[name] = path
        return path

    def after_epoch(self, end: EpochEnd) -> None:
        self.save("last.pt", end.model, end.stage, end.epoch, end.optimizer, end.scheduler)
