"""Evaluating a model with a dataset's protocols: during a run (logged) and from a checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vireid.config import resolve_cache_dir
from vireid.data.image_cache import load_images
from vireid.data.records import INFRARED, Sample
from vireid.data.registry import DatasetReader, open_dataset
from vireid.engine.context import RunContext
from vireid.engine.device import select_device
from vireid.engine.distributed import is_distributed, is_main
from vireid.engine.extract import ExtractOptions, extract_features
from vireid.evaluation import format_table, run_protocols
from vireid.models.factory import load_model, unwrap_model


def sample_embedder(model: nn.Module, image_size: tuple[int, int], cache_dir: Path, options: ExtractOptions,
                    key: str) -> Callable[[list[Sample]], torch.Tensor]:
    """A function mapping test samples to L2-normalised features, for the protocol runner.

    Images are decoded once into the image cache under `key`; `options` are `extract_features`'s
    batch size, device and precision settings.
    """
    def embed(samples: list[Sample]) -> torch.Tensor:
        images = load_images(samples, image_size[0], image_size[1], cache_dir, key=key)
        infrared = np.array([s.modality == INFRARED for s in samples])
        return extract_features(unwrap_model(model), images, infrared, options, desc="test features")

    return embed


class Evaluator:
    """Runs every protocol of a dataset on a model during training and logs the results.

    Only rank 0 evaluates; every rank waits for it, so they stay in step. `last` holds the latest
    results (rank 0) and `done` tells every rank whether an evaluation has happened.
    """

    def __init__(self, dataset: DatasetReader, ctx: RunContext, trials: int, max_rank: int = 20) -> None:
        self.dataset, self.ctx, self.trials, self.max_rank = dataset, ctx, trials, max_rank
        self.last: dict | None = None
        self.done = False

    def embedder(self, model: nn.Module) -> Callable[[list[Sample]], torch.Tensor]:
        return sample_embedder(model, self.ctx.image_size, self.ctx.cache_dir, self.ctx.extract_options(),
                               key=f"{self.dataset.name}-test")

    def __call__(self, model: nn.Module, stage: str, epoch: int | None = None) -> dict | None:
        results = None
        run = self.ctx.run
        if is_main():
            t0 = time.time()
            results = run_protocols(self.embedder(model), self.dataset, trials=self.trials, max_rank=self.max_rank)
            run.log(f"evaluation after {stage}" + (f" epoch {epoch + 1}" if epoch is not None else "")
                    + f" ({time.time() - t0:.0f}s)\n" + format_table(results))
            for name, res in results.items():
                run.log_metrics("eval", stage=stage, epoch=epoch, protocol=name,
                                **{k: v for k, v in res.items() if k not in ("trials", "cmc")})
            self.last = results
        self.done = True
        if is_distributed():
            torch.distributed.barrier()
        return results


def evaluate_checkpoint(checkpoint: str | Path, dataset: str, root: str | Path, trial: int | None = None,
                        trials: int = 10, device: str = "auto", batch_size: int = 128) -> dict:
    """Every protocol of `dataset` for the checkpoint's model; same format as final_metrics.json."""
    dev = select_device(device)
    model, cfg = load_model(checkpoint)
    model = model.to(dev)
    reader = open_dataset(dataset, root, trial=trial if trial is not None else cfg.data.trial)
    options = ExtractOptions(batch_size=batch_size, device=dev, amp=cfg.model.amp, channels_last=cfg.model.channels_last)
    embed = sample_embedder(model, (cfg.data.height, cfg.data.width), resolve_cache_dir(cfg), options,
                            key=f"{reader.name}-test")
    return run_protocols(embed, reader, trials=trials)
