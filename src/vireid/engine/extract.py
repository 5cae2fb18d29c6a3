"""Test-mode features of many images: the input of clustering (docs/method.md §5) and evaluation (§7)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vireid.data.records import INFRARED, VISIBLE
from vireid.data.transforms import normalize_images
from vireid.engine.device import autocast
from vireid.progress import progress as progress_bar


def _take(images: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows of `images`; a slice when the rows are consecutive (cheap on a memmap)."""
    if index[-1] - index[0] == len(index) - 1:
        return images[index[0] : index[-1] + 1]
    return images[index]


def _batches(infrared: np.ndarray, batch_size: int) -> Iterator[tuple[str, np.ndarray]]:
    """(modality, sorted sample indices) for batches that each hold a single modality."""
    for modality, mask in ((VISIBLE, ~infrared), (INFRARED, infrared)):
        index = np.flatnonzero(mask)
        for start in range(0, len(index), batch_size):
            yield modality, index[start : start + batch_size]


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@dataclass(frozen=True)
class ExtractOptions:
    """How `extract_features` runs. `device` None = where the model is; AMP and channels_last apply
    on CUDA only; with `flip_average` a row is ½(f(x) + f(flip x)), re-normalised when `renormalize`
    (the reference keeps the shorter average, docs/method.md §5)."""

    batch_size: int = 128
    device: str | torch.device | None = None
    flip_average: bool = False
    renormalize: bool = True
    amp: bool = True
    channels_last: bool = True
    progress: bool = True
    desc: str = "extract"


@torch.no_grad()
def extract_features(model: nn.Module, images: np.ndarray, infrared: np.ndarray,
                     options: ExtractOptions | None = None, **changes: Any) -> torch.Tensor:
    """Features (N, D) float32 on CPU, row i = images[i], each image through its modality's stem.

    `images` is uint8 (N, H, W, 3) (an image-cache memmap is fine), `infrared` bool (N,). `options`
    (default `ExtractOptions()`) with any of its fields replaced by `changes`, e.g. `batch_size=64`.
    The model's train/eval mode is restored afterwards.
    """
    o = replace(options or ExtractOptions(), **changes)
    batch_size, flip_average, renormalize = o.batch_size, o.flip_average, o.renormalize
    amp, channels_last, progress, desc = o.amp, o.channels_last, o.progress, o.desc
    device = o.device
    infrared = np.asarray(infrared, dtype=bool)
    if len(images) != len(infrared):
        raise ValueError(f"{len(images)} images but {len(infrared)} modality flags")
    device = _model_device(model) if device is None else torch.device(device)
    on_cuda = device.type == "cuda"
    memory_format = torch.channels_last if (channels_last and on_cuda) else torch.contiguous_format
    was_training = model.training
    model.eval()
    out: torch.Tensor | None = None
    try:
        with progress_bar(total=len(images), desc=desc, enabled=progress, unit="img") as bar:
            for modality, index in _batches(infrared, batch_size):
                batch = torch.from_numpy(np.require(_take(images, index), requirements=["C", "W"]))
                if on_cuda:
                    batch = batch.pin_memory()
                x = normalize_images(batch.to(device, non_blocking=True))
                x = x.contiguous(memory_format=memory_format)
                with autocast(device, amp):
                    feats = model(x, modality=modality).float()
                    if flip_average:
                        flipped = model(x.flip(3).contiguous(memory_format=memory_format), modality=modality)
                        feats = 0.5 * (feats + flipped.float())
                if flip_average and renormalize:
                    feats = F.normalize(feats, dim=1)
                if out is None:
                    out = torch.empty(len(images), feats.shape[1], dtype=torch.float32)
                out[torch.from_numpy(index)] = feats.cpu()
                bar.update(len(index))
    finally:
        model.train(was_training)
    if out is None:  # no images (e.g. an empty DDP share): (0, D), D from one blank image
        return torch.empty(0, _feature_dim(model, images.shape[1:3], device), dtype=torch.float32)
    return out


@torch.no_grad()
def _feature_dim(model: nn.Module, size: tuple[int, ...], device: torch.device) -> int:
    was_training = model.training
    model.eval()
    try:
        return int(model(torch.zeros(1, 3, *size, device=device), modality=VISIBLE).shape[1])
    finally:
        model.train(was_training)
