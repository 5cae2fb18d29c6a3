"""Use a trained model: embed images of either modality and search a gallery by cosine similarity.

    embedder = Embedder.from_checkpoint("runs/sysu/final.pt")
    q = embedder.embed(["query.jpg"], modality="infrared")           # (1, D)
    g = embedder.embed(gallery_paths, modality="visible")             # (G, D)
    scores, indices = search(q, g, topk=10)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vireid.config import Config
from vireid.data.image_cache import as_rgb8
from vireid.data.records import MODALITIES
from vireid.data.transforms import normalize_images
from vireid.engine.device import autocast, select_device
from vireid.errors import ImageReadError, VireidError
from vireid.models.factory import load_model

ImageLike = Any  # str | Path | PIL.Image.Image | np.ndarray (H, W[, 3]) uint8 | torch.Tensor (3, H, W) in [0, 1]


def _as_float_chw(item: ImageLike, height: int, width: int) -> torch.Tensor:
    """One image -> float (3, height, width) in [0, 1]; PIL Lanczos resize, as the image cache does."""
    if isinstance(item, (str, Path)):
        try:
            with Image.open(item) as img:
                item = as_rgb8(img)
                item.load()
        except (OSError, ValueError) as err:
            raise ImageReadError(f"cannot read image {item}: {err}") from None
    if isinstance(item, Image.Image):
        item = np.array(as_rgb8(item))  # a writable copy
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise VireidError(f"image arrays must be uint8 (H, W, 3) or (H, W), got {item.dtype} {item.shape}")
        if item.ndim == 2:
            item = np.repeat(item[:, :, None], 3, axis=2)
        if item.shape[:2] != (height, width):
            item = np.array(Image.fromarray(item).resize((width, height), Image.Resampling.LANCZOS))
        return torch.from_numpy(np.require(item, requirements=["C", "W"])).permute(2, 0, 1).float().div_(255.0)
    if isinstance(item, torch.Tensor):
        if item.ndim != 3 or item.shape[0] not in (1, 3) or not item.is_floating_point():
            raise VireidError(f"image tensors must be float (3, H, W) in [0, 1], got {item.dtype} {tuple(item.shape)}")
        item = item.detach().float().cpu().expand(3, -1, -1)
        if item.shape[1:] != (height, width):
            item = F.interpolate(item[None], size=(height, width), mode="bilinear", antialias=True,
                                 align_corners=False)[0]
        return item
    raise VireidError(f"cannot embed an object of type {type(item).__name__}: expected a path, PIL image, "
                      "uint8 array or float tensor")


def _as_list(images: Any) -> list[ImageLike]:
    """Accept one image, a sequence, a uint8 (N, H, W, 3) array or a float (N, 3, H, W) tensor."""
    if isinstance(images, (str, Path, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, torch.Tensor):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, np.ndarray):
        return [images]
    return list(images)


class Embedder:
    """A model in eval mode plus the preprocessing it was trained with (size, ImageNet normalisation)."""

    def __init__(self, model: nn.Module, height: int, width: int, device: str | torch.device = "auto",
                 amp: bool = False, channels_last: bool = True) -> None:
        self.device = select_device(device)
        self.model = model.to(self.device).eval()
        self.height, self.width = height, width
        self.amp = amp
        self.config: Config | None = None
        self.memory_format = (torch.channels_last if channels_last and self.device.type == "cuda"
                              else torch.contiguous_format)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto") -> "Embedder":
        """Load a vireid checkpoint; size and model come from the config stored inside it."""
        model, cfg = load_model(path)
        embedder = cls(model, cfg.data.height, cfg.data.width, device=device, amp=cfg.model.amp,
                       channels_last=cfg.model.channels_last)
        embedder.config = cfg
        return embedder

    @torch.no_grad()
    def embed(self, images: Any, modality: str, batch_size: int = 64) -> torch.Tensor:
        """L2-normalised features (N, D) float32 on CPU of images of one modality.

        `images`: paths, PIL images, uint8 arrays (H, W, 3), float tensors (3, H, W) in [0, 1]
        (not yet normalised), or a stack of either; other sizes are resized to the model's.
        """
        if modality not in MODALITIES:
            raise VireidError(f"modality must be one of {'|'.join(MODALITIES)}, got {modality!r}")
        items = _as_list(images)
        out = []
        for start in range(0, len(items), batch_size):
            chunk = torch.stack([_as_float_chw(x, self.height, self.width) for x in items[start:start + batch_size]])
            x = normalize_images(chunk.to(self.device)).contiguous(memory_format=self.memory_format)
            with autocast(self.device, self.amp):
                feats = self.model(x, modality=modality)
            out.append(F.normalize(feats.float(), dim=1).cpu())
        if not out:
            return torch.empty(0, getattr(self.model, "feature_dim", 0))
        return torch.cat(out)


@torch.no_grad()
def search(query_features: torch.Tensor, gallery_features: torch.Tensor, topk: int = 10,
           block_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k gallery rows by cosine similarity: scores (Q, k) descending and indices (Q, k).

    k = min(topk, G). Queries are processed in blocks so memory stays O(block_size · G).
    """
    k = min(topk, gallery_features.shape[0])
    gallery = F.normalize(gallery_features.float(), dim=1).to(query_features.device)
    scores, indices = [], []
    for start in range(0, query_features.shape[0], block_size):
        sims = F.normalize(query_features[start:start + block_size].float(), dim=1) @ gallery.T  # (B, G)
        top = sims.topk(k, dim=1)
        scores.append(top.values)
        indices.append(top.indices)
    if not scores:
        return torch.empty(0, k), torch.empty(0, k, dtype=torch.long)
    return torch.cat(scores), torch.cat(indices)
