"""The training images of both modalities, decoded once, with the arrays every stage needs, and the
loader every training stage (CMC, SCA) draws its augmented batches from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid.data.image_cache import load_images
from vireid.data.loaders import BatchLoader, TrainingViews
from vireid.data.records import INFRARED, VISIBLE, Sample
from vireid.data.registry import DatasetReader
from vireid.engine.context import RunContext


@dataclass
class ModalitySet:
    """One modality's training samples and their cached pixels (row i = samples[i])."""

    samples: list[Sample]
    images: np.ndarray  # (N, H, W, 3) uint8, memory-mapped
    camids: np.ndarray  # (N,) int64
    pids: np.ndarray  # (N,) int64 ground truth, used only to report clustering quality

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class TrainSet:
    """The training samples split by modality; labels are never used for training, only for reports."""

    visible: ModalitySet
    infrared: ModalitySet

    def modality(self, name: str) -> ModalitySet:
        return self.visible if name == VISIBLE else self.infrared


def build_modality_set(samples: list[Sample], height: int, width: int, cache_dir: Path, key: str) -> ModalitySet:
    images = load_images(samples, height, width, cache_dir, key=key)
    return ModalitySet(samples=samples, images=images,
                       camids=np.array([s.camid for s in samples], dtype=np.int64),
                       pids=np.array([s.pid for s in samples], dtype=np.int64))


def build_train_set(dataset: DatasetReader, height: int, width: int, cache_dir: Path) -> TrainSet:
    """Split the reader's training samples by modality and decode them into the image cache."""
    visible = [s for s in dataset.train if s.modality == VISIBLE]
    infrared = [s for s in dataset.train if s.modality == INFRARED]
    name = getattr(dataset, "name", "dataset")
    return TrainSet(visible=build_modality_set(visible, height, width, cache_dir, f"{name}-train-visible"),
                    infrared=build_modality_set(infrared, height, width, cache_dir, f"{name}-train-infrared"))


def training_loader(steps: list, train: TrainSet, ctx: RunContext, seed: int) -> BatchLoader:
    """The augmented images of `steps` (each a (visible, infrared) index pair, or a list of such
    pairs / None), built in `ctx.workers` processes (0: in this one), in order; batch i is built
    under its own seed derived from `seed`, so the images are the same for any number of workers."""
    return BatchLoader(steps, TrainingViews(train.visible.images, train.infrared.images, ctx.train_transforms()),
                       num_workers=ctx.workers, pin_memory=ctx.device.type == "cuda", seed=seed)
