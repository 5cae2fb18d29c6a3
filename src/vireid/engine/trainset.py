"""The training images of both modalities, decoded once, with the arrays every stage needs, and the
augmented views and loaders every training stage (pre-training, CMC, SCA) draws its batches from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vireid.config import Config, resolve_cache_dir
from vireid.data.records import INFRARED, VISIBLE, Sample


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
    visible: ModalitySet
    infrared: ModalitySet
    has_ground_truth: bool = True

    def modality(self, name: str) -> ModalitySet:
        return self.visible if name == VISIBLE else self.infrared


def build_modality_set(samples: list[Sample], height: int, width: int, cache_dir: Path, key: str) -> ModalitySet:
    from vireid.data.image_cache import load_images

    images = load_images(samples, height, width, cache_dir, key=key)
    return ModalitySet(samples=samples, images=images,
                       camids=np.array([s.camid for s in samples], dtype=np.int64),
                       pids=np.array([s.pid for s in samples], dtype=np.int64))


def build_train_set(dataset, cfg: Config) -> TrainSet:
    """Split the reader's training samples by modality and decode them into the image cache."""
    height, width, cache_dir = cfg.data.height, cfg.data.width, resolve_cache_dir(cfg)
    visible = [s for s in dataset.train if s.modality == VISIBLE]
    infrared = [s for s in dataset.train if s.modality == INFRARED]
    name = getattr(dataset, "name", "dataset")
    return TrainSet(visible=build_modality_set(visible, height, width, cache_dir, f"{name}-train-visible"),
                    infrared=build_modality_set(infrared, height, width, cache_dir, f"{name}-train-infrared"))


def sample_embedder(model: torch.nn.Module, cfg: Config, device: torch.device, key: str) -> Callable[[list[Sample]], torch.Tensor]:
    """A function mapping test samples to L2-normalised features, for the protocol runner."""
    from vireid.data.image_cache import load_images
    from vireid.engine.extract import extract_features

    def embed(samples: list[Sample]) -> torch.Tensor:
        images = load_images(samples, cfg.data.height, cfg.data.width, resolve_cache_dir(cfg), key=key)
        infrared = np.array([s.modality == INFRARED for s in samples])
        module = model.module if hasattr(model, "module") else model
        return extract_features(module, images, infrared, batch_size=cfg.data.eval_batch_size, device=device,
                                amp=cfg.model.amp, channels_last=cfg.model.channels_last, desc="test features")

    return embed


def train_transforms(cfg: Config):
    """The paper's training views at `cfg.data`'s size, with the padding scaled to that size.

    METHOD §4 pads 10 pixels at 288×144; at the demo's small sizes a fixed 10 pixels would shift a
    64×32 person by a third of its width, so the pad keeps the paper's proportion (10 at 288 rows).
    """
    from vireid.data.transforms import build_train_transforms

    pad = max(1, round(10 * cfg.data.height / 288))
    return build_train_transforms(cfg.data.height, cfg.data.width, pad=pad)


def training_loader(steps: list, train: TrainSet, transforms, cfg: Config, device: torch.device, seed: int):
    """The augmented images of `steps` (each a (visible, infrared) index pair, or a list of such
    pairs / None), built in `cfg.data.workers` processes (0: in this one), in order."""
    from vireid.data.loaders import BatchLoader, TrainingViews

    return BatchLoader(steps, TrainingViews(train.visible.images, train.infrared.images, transforms),
                       num_workers=cfg.data.workers, pin_memory=device.type == "cuda", seed=seed)
