"""Evaluating a model with a dataset's protocols: during a run (logged) and from a checkpoint."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

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
from vireid.errors import NonFiniteError
from vireid.evaluation import format_table, run_protocols
from vireid.fileio import check_writable_folder
from vireid.models.factory import load_model, unwrap_model


def sample_embedder(model: nn.Module, image_size: tuple[int, int], cache_dir: Path, options: ExtractOptions,
                    key: str, source: str = "the model") -> Callable[[list[Sample]], torch.Tensor]:
    """A function mapping test samples to L2-normalised features, for the protocol runner.

    Images are decoded once into the image cache under `key`; `options` are `extract_features`'s
    batch size, device and precision settings. Non-finite features (damaged weights) raise a
    NonFiniteError naming `source` and the first image, instead of ranking at random.
    """
    def embed(samples: list[Sample]) -> torch.Tensor:
        images = load_images(samples, image_size[0], image_size[1], cache_dir, key=key)
        infrared = np.array([s.modality == INFRARED for s in samples])
        feats = extract_features(unwrap_model(model), images, infrared, options, desc="test features")
        check_finite_features(feats, [s.path for s in samples], source)
        return feats

    return embed


def check_finite_features(feats: torch.Tensor, names: Sequence[str], source: str) -> None:
    """Refuse features (N, D) with NaN or infinite values; the error names `source` and the first image."""
    bad = torch.nonzero(~torch.isfinite(feats).all(dim=1)).flatten()
    if len(bad):
        raise NonFiniteError(f"{source} gives NaN or infinite features for {len(bad)} of {len(feats)} images "
                             f"(first: {names[int(bad[0])]}); its weights are damaged or diverged")


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
                        trials: int | None = None, options: ExtractOptions | None = None) -> dict:
    """Every protocol of `dataset` for the checkpoint's model; same format as final_metrics.json.

    `trials` (gallery draws) and `trial` (RegDB split) default to the run's own settings, so the
    numbers repeat the training log's. `options` gives the device (None: auto) and batch size;
    precision and memory format follow the checkpoint's config.
    """
    options = options or ExtractOptions()
    dev = select_device(options.device if options.device is not None else "auto")
    model, cfg = load_model(checkpoint)
    model = model.to(dev)
    reader = open_dataset(dataset, root, trial=trial if trial is not None else cfg.data.trial)
    cache_dir = resolve_cache_dir(cfg)
    check_writable_folder(cache_dir, "the image cache folder (data.cache_dir, else $VIREID_CACHE_DIR)")
    options = replace(options, device=dev, amp=cfg.model.amp, channels_last=cfg.model.channels_last)
    embed = sample_embedder(model, (cfg.data.height, cfg.data.width), cache_dir, options,
                            key=f"{reader.name}-test", source=f"checkpoint {checkpoint}")
    return run_protocols(embed, reader, trials=trials if trials is not None else cfg.eval.trials)
