"""The demo's stand-in for ImageNet weights: supervised pre-training on a separate synthetic source.

Real users start from ImageNet weights, which cannot be downloaded everywhere (and not on the CPU
machines the demo targets). From random weights, DBSCAN on the initial features finds no identities,
so unsupervised training never starts. The stand-in trains the network with identity labels on a
**separate, visible-only** synthetic set: other people (another generator seed), no infrared image and
no label of the target set is ever seen. Colour views (channel exchange, grey) of those visible
images teach the network not to lean on colour alone, as ImageNet training with colour augmentation
does. The weights are built once per (architecture, image size, recipe) and cached.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vireid.config import Config
from vireid.data.image_cache import load_images
from vireid.data.loaders import make_batch
from vireid.data.records import VISIBLE, Sample
from vireid.data.samplers import pk_batches
from vireid.data.synthetic import generate_synthetic
from vireid.data.sysu import SYSUMM01
from vireid.data.transforms import (TrainTransform, build_train_transforms, imagenet_denormalize,
                                    imagenet_normalize, luminance, paper_pad)
from vireid.fileio import atomic_write
from vireid.losses import batch_hard_triplet
from vireid.models.factory import create_model
from vireid.progress import progress as progress_bar

# Source people: another generator seed than any target (the demo's is 0), so nobody is shared.
SOURCE_SEED = 1000
VERSION = 4  # bump whenever the same recipe would give other weights


@dataclass(frozen=True)
class PretrainRecipe:
    """How the source set is drawn and how long the network trains on it."""

    ids: int = 200  # source identities (visible images only are used)
    images_per_camera: int = 4
    epochs: int = 25  # one epoch = every source identity once, `per_id` images each
    ids_per_batch: int = 16
    per_id: int = 4
    lr: float = 1e-3
    views: str = "colour+exchange+grey+remapnoise"  # training views, cycled per batch ("+"-separated)
    seed: int = SOURCE_SEED


def _grey_sensor(grey: torch.Tensor, blur: bool, noise: float, generator: torch.Generator | None) -> torch.Tensor:
    """(H, W) grey levels in [0, 1] -> ImageNet-normalised (3, H, W), after an optional soft lens
    (3x3 box filter) and sensor noise."""
    if blur:
        grey = F.avg_pool2d(grey[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    if noise > 0:
        grey = grey + noise * torch.randn(grey.shape, generator=generator)
    return imagenet_normalize(grey.unsqueeze(0).expand(3, -1, -1).clone())


class RandomGreyRemap(torch.nn.Module):
    """Grey image whose grey levels go through a random piecewise-linear curve (not monotone).

    Acts on an ImageNet-normalised (3, H, W) tensor. Regions keep their edges but get unrelated
    brightness, so the network must recognise people by shape and texture, not by how bright a
    garment is: the invariance a thermal camera asks for (its brightness ignores the dye).
    """

    def __init__(self, knots: int = 5, noise: float = 0.0, blur: bool = False,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.knots, self.noise, self.blur, self.generator = knots, noise, blur, generator

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        grey = luminance(imagenet_denormalize(img)).clamp(0, 1)  # (H, W) in [0, 1]
        levels = torch.rand(self.knots, generator=self.generator)
        pos = grey * (self.knots - 1)
        low = pos.floor().long().clamp(max=self.knots - 2)
        frac = pos - low
        remapped = levels[low] * (1 - frac) + levels[low + 1] * frac
        return _grey_sensor(remapped, self.blur, self.noise, self.generator)


class RandomThermalPalette(torch.nn.Module):
    """Grey image whose level is a random smooth function of the pixel's RGB colour.

    A random 3-D lookup table (`grid` control points per axis, trilinear interpolation) gives
    each garment colour its own, unrelated grey level, including colours of equal brightness,
    which a curve over grey levels cannot separate: how a thermal camera sees dyed cloth.
    Acts on an ImageNet-normalised (3, H, W) tensor.
    """

    def __init__(self, grid: int = 4, noise: float = 0.04, blur: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.grid, self.noise, self.blur, self.generator = grid, noise, blur, generator

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        rgb = imagenet_denormalize(img).clamp(0, 1)
        table = torch.rand((1, 1, self.grid, self.grid, self.grid), generator=self.generator)
        coords = (rgb.permute(1, 2, 0) * 2 - 1)[None, None]  # (1, 1, H, W, 3)
        grey = F.grid_sample(table, coords, mode="bilinear", align_corners=True)[0, 0, 0]  # (H, W)
        return _grey_sensor(grey, self.blur, self.noise, self.generator)


def source_visible_samples(root: str | Path) -> list[Sample]:
    """The visible training samples of a synthetic SYSU-layout source root (infrared ones dropped)."""
    return [s for s in SYSUMM01(root).train if s.modality == VISIBLE]


def generate_source(cache: Path, recipe: PretrainRecipe, height: int, width: int, progress: bool = True) -> Path:
    """The source set's root (generated once): SYSU layout, almost every id a training id."""
    return Path(generate_synthetic(cache / f"pretrain-source-{height}x{width}", layout="sysu", ids=recipe.ids,
                                   images_per_camera=recipe.images_per_camera, height=height, width=width,
                                   seed=recipe.seed, test_fraction=0.01, progress=progress,
                                   overwrite=True))  # a cache folder: a new recipe replaces it


def _source_images(cfg: Config, cache: Path, recipe: PretrainRecipe, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, 3) of the visible source samples and their labels (N,) in 0..P-1."""
    root = generate_source(cache, recipe, cfg.data.height, cfg.data.width, progress)
    visible = source_visible_samples(root)
    images = load_images(visible, cfg.data.height, cfg.data.width, cache, key="pretrain-source-visible",
                         progress=progress)
    _, labels = np.unique([s.pid for s in visible], return_inverse=True)
    return images, labels.astype(np.int64)


def weights_file(cfg: Config, cache: Path, recipe: PretrainRecipe) -> Path:
    """Where the weights of this architecture, image size and recipe are cached."""
    m = cfg.model
    tag = "-".join(str(v) for v in asdict(recipe).values())
    return (cache / "pretrained" / f"synthetic-{m.arch}-ls{m.last_stride}-nl{int(m.nonlocal_blocks)}"
            f"-{m.nonlocal_channels}-gem{m.gem_p:g}-{cfg.data.height}x{cfg.data.width}-{tag}-v{VERSION}.pt")


def pretrain_on_source(cfg: Config, images: np.ndarray, labels: np.ndarray, recipe: PretrainRecipe,
                       progress: bool = True) -> dict[str, torch.Tensor]:
    """Train `cfg.model` from random weights with identity labels (CE + batch-hard triplet) on
    visible images, cycling the colour views; returns the state_dict without the classifier and
    with the infrared stem a copy of the visible one (as ImageNet weights load both stems)."""
    num_ids = int(labels.max() + 1)
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    model = create_model(cfg.model, num_classes=num_ids, pretrained=False).train()
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=5e-4)
    steps = recipe.epochs * (num_ids // recipe.ids_per_batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=max(steps, 1), pct_start=0.15)
    tf = build_train_transforms(cfg.data.height, cfg.data.width, pad=paper_pad(cfg.data.height))
    known = {"colour": tf.visible, "exchange": tf.visible_exchange, "grey": tf.infrared,
             "remap": TrainTransform(tf.visible.geometry, tf.visible.erasing, RandomGreyRemap()),
             "remapnoise": TrainTransform(tf.visible.geometry, tf.visible.erasing,
                                          RandomGreyRemap(noise=0.04, blur=True)),
             "thermal": TrainTransform(tf.visible.geometry, tf.visible.erasing, RandomThermalPalette())}
    views = [known[v] for v in recipe.views.split("+")]
    step = 0
    for epoch in progress_bar(range(recipe.epochs), desc="pre-training on the synthetic source (once)",
                              enabled=progress, leave=True):
        for rows in pk_batches(labels, recipe.ids_per_batch, recipe.per_id, rng):
            x = make_batch(images, rows, views[step % len(views)])
            y = torch.from_numpy(labels[rows])
            out = model(x, modality="visible")
            loss = F.cross_entropy(out.logits, y, label_smoothing=0.1) + batch_hard_triplet(out.pooled, y, margin=0.3)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier")}
    for k in list(state):
        if k.startswith("visible_stem."):
            state["infrared_stem." + k[len("visible_stem."):]] = state[k].clone()
    return state


def synthetic_pretrained_weights(cfg: Config, cache: Path, recipe: PretrainRecipe | None = None,
                                 progress: bool = True) -> Path:
    """Path of cached source-pretrained weights for `cfg.model` at `cfg.data`'s size, training them
    first if needed (a few minutes on CPU; the demo pays this once)."""
    recipe = recipe or PretrainRecipe()
    out = weights_file(cfg, cache, recipe)
    if out.exists():
        return out
    images, labels = _source_images(cfg, cache, recipe, progress)
    t0 = time.time()
    state = pretrain_on_source(cfg, images, labels, recipe, progress)
    atomic_write(out, lambda handle: torch.save(state, handle))
    print(f"source pre-training ({int(labels.max() + 1)} visible-only identities, {len(labels)} images, "
          f"{recipe.epochs} epochs) took {time.time() - t0:.0f}s; weights cached at {out}", file=sys.stderr)
    return out
