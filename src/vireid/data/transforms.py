"""Training and test transforms on cached uint8 images, with MMM's channel augmentations (docs/method.md §4).

Images arrive from the image cache as uint8 (H, W, 3) arrays already resized to the model input
size. T_base = pad 10 → random crop back to h×w → horizontal flip → float /255 → ImageNet
normalisation → ChannelRandomErasing. The channel operation (ChannelExchange for the second
visible view, ChannelAdapGray for infrared) comes after T_base, i.e. **after** the erasing, as in
docs/method.md §4 and the reference code: the erased box is therefore copied/greyed with the image.

All randomness comes from torch (a given `torch.Generator`, else the global RNG), so a
`torch.manual_seed` makes every transform reproducible; DataLoader workers get distinct seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ERASE_FILL = (0.4914, 0.4822, 0.4465)
LUMINANCE = (0.2989, 0.5870, 0.1140)


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high] (both inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator).item())


def luminance(img: torch.Tensor) -> torch.Tensor:
    """0.2989 R + 0.5870 G + 0.1140 B of a (3, H, W) tensor, as (H, W)."""
    return LUMINANCE[0] * img[0] + LUMINANCE[1] * img[1] + LUMINANCE[2] * img[2]


class ChannelRandomErasing(nn.Module):
    """With probability p, fill a random box with per-channel constants (random erasing, Zhong et al.).

    Box area is uniform in [sl, sh] of the image, aspect ratio uniform in [r1, 1/r1]; up to 100
    tries to find a box that fits strictly inside, else the image is unchanged. (3, H, W) -> same.
    """

    def __init__(
        self,
        probability: float = 0.5,
        sl: float = 0.02,
        sh: float = 0.4,
        r1: float = 0.3,
        mean: Sequence[float] = ERASE_FILL,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.probability, self.sl, self.sh, self.r1 = probability, sl, sh, r1
        self.mean = tuple(float(m) for m in mean)
        self.generator = generator

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        gen = self.generator
        if _uniform(0.0, 1.0, gen) >= self.probability:
            return img
        _, height, width = img.shape
        for _ in range(100):
            target_area = _uniform(self.sl, self.sh, gen) * height * width
            aspect = _uniform(self.r1, 1.0 / self.r1, gen)
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if h < height and w < width:
                top = _randint(0, height - h, gen)
                left = _randint(0, width - w, gen)
                img = img.clone()
                fill = torch.tensor(self.mean, dtype=img.dtype, device=img.device)
                img[:, top:top + h, left:left + w] = fill[:, None, None]
                return img
        return img


class ChannelExchange(nn.Module):
    """Pick k uniformly in {0, ..., gray}; k < 3 copies channel k to all channels, k >= 3 uses the luminance."""

    def __init__(self, gray: int = 2, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.gray = gray
        self.generator = generator

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        k = _randint(0, self.gray, self.generator)
        plane = img[k] if k < 3 else luminance(img)
        return plane.unsqueeze(0).expand_as(img).clone()


class ChannelAdapGray(nn.Module):
    """Pick k in {0, 1, 2, 3}: k < 3 copies channel k; k = 3 greys with probability p, else keeps the image."""

    def __init__(self, probability: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.probability = probability
        self.generator = generator

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        k = _randint(0, 3, self.generator)
        if k < 3:
            return img[k].unsqueeze(0).expand_as(img).clone()
        if _uniform(0.0, 1.0, self.generator) < self.probability:
            return luminance(img).unsqueeze(0).expand_as(img).clone()
        return img


def resize_uint8(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased (Lanczos) resize of a uint8 (H, W, 3) image to (height, width, 3); no-op when sized."""
    if img.shape[0] == height and img.shape[1] == width:
        return img
    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.LANCZOS))


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] with channels at dim -3, (…, 3, H, W) -> ImageNet-normalised, in place.

    The one ImageNet normalisation of the project: training views, feature extraction, inference
    and ONNX inputs all go through it, so they can never disagree.
    """
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return x.sub_(mean).div_(std)


def imagenet_denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `imagenet_normalize` (a new tensor): normalised (…, 3, H, W) -> [0, 1] scale."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return x * std + mean


def to_normalized_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> ImageNet-normalised float32 (3, H, W)."""
    if not (img.flags.writeable and img.flags.c_contiguous):
        img = np.array(img)                          # PIL / read-only cache rows: torch wants writable
    return imagenet_normalize(torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0))


def normalize_images(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) or float [0, 1] (B, 3, H, W) -> ImageNet-normalised float32 (B, 3, H, W).

    Runs on the batch's device, so uint8 bytes cross to a GPU before they become floats. A uint8
    input gives a channels_last view (call `.contiguous()` if a consumer needs NCHW strides).
    """
    if batch.dtype == torch.uint8:
        return imagenet_normalize(batch.permute(0, 3, 1, 2).float().div_(255.0))
    return imagenet_normalize(batch.float().clone())


class RandomPadCropFlip:
    """Zero-pad by `pad`, crop a random h×w window, flip left-right with probability 0.5 (uint8 HWC)."""

    def __init__(self, height: int, width: int, pad: int = 10, generator: torch.Generator | None = None) -> None:
        self.height, self.width, self.pad = height, width, pad
        self.generator = generator

    def __call__(self, img: np.ndarray) -> np.ndarray:
        img = resize_uint8(img, self.height, self.width)
        p = self.pad
        padded = np.pad(img, ((p, p), (p, p), (0, 0))) if p else img
        top = _randint(0, padded.shape[0] - self.height, self.generator)
        left = _randint(0, padded.shape[1] - self.width, self.generator)
        out = padded[top:top + self.height, left:left + self.width]
        if _uniform(0.0, 1.0, self.generator) < 0.5:
            out = out[:, ::-1]
        return out


class TrainTransform:
    """uint8 (H, W, 3) -> float (3, h, w): pad/crop/flip, normalise, erasing, then an optional channel op."""

    def __init__(
        self,
        geometry: RandomPadCropFlip,
        erasing: ChannelRandomErasing,
        channel_op: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.geometry, self.erasing, self.channel_op = geometry, erasing, channel_op

    def __call__(self, img: np.ndarray) -> torch.Tensor:
        x = self.erasing(to_normalized_tensor(self.geometry(img)))
        return self.channel_op(x) if self.channel_op is not None else x


@dataclass
class TrainTransforms:
    """The three training views of MMM: visible (T_base), visible + ChannelExchange, infrared + ChannelAdapGray."""

    visible: TrainTransform
    visible_exchange: TrainTransform
    infrared: TrainTransform


def paper_pad(height: int) -> int:
    """Padding before the random crop: the paper's 10 pixels at 288 rows, scaled to other heights.

    At the demo's small sizes a fixed 10 pixels would shift a 64×32 person by a third of its width.
    """
    return max(1, round(10 * height / 288))


def build_train_transforms(
    height: int,
    width: int,
    pad: int = 10,
    erasing_probability: float = 0.5,
    exchange_gray: int = 2,
    adapgray_probability: float = 0.5,
    generator: torch.Generator | None = None,
    channel_ops: bool = True,
) -> TrainTransforms:
    """The paper's training views for inputs of size height×width; without `channel_ops` the second
    visible view and the infrared view skip ChannelExchange and ChannelAdapGray (an ablation)."""

    def view(channel_op: Callable[[torch.Tensor], torch.Tensor] | None) -> TrainTransform:
        return TrainTransform(
            RandomPadCropFlip(height, width, pad, generator),
            ChannelRandomErasing(erasing_probability, generator=generator),
            channel_op,
        )

    return TrainTransforms(
        visible=view(None),
        visible_exchange=view(ChannelExchange(exchange_gray, generator) if channel_ops else None),
        infrared=view(ChannelAdapGray(adapgray_probability, generator) if channel_ops else None),
    )
