"""The demo's stand-in for ImageNet weights: supervised pre-training on a separate synthetic source.

Real users start from ImageNet weights, which cannot be downloaded everywhere (and not on the CPU
machines the demo targets). From random weights, DBSCAN on the initial features finds no identities,
so unsupervised training never starts. The stand-in trains the network with identity labels on a
**separate, visible-only** synthetic set: other people (another generator seed), no infrared image and
no label of the target set is ever seen. The weights are built once and cached.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vireid.config import Config

# Source set: disjoint people (seed differs from the demo target's), visible cameras only.
SOURCE_DATA = dict(layout="sysu", ids=100, images_per_camera=6, seed=1000)
VERSION = 1


def _source_images(cfg: Config, cache: Path):
    from vireid.data.image_cache import load_images
    from vireid.data.sysu import SYSUMM01
    from vireid.data.synthetic import generate_synthetic

    root = generate_synthetic(cache / "pretrain-source", height=cfg.data.height, width=cfg.data.width,
                              **SOURCE_DATA)
    reader = SYSUMM01(root)
    everything = reader.train + reader.query("all") + reader.gallery("all", trial=0, shots=10)
    visible = sorted({s for s in everything if s.modality == "visible"}, key=lambda s: s.path)
    images = load_images(visible, cfg.data.height, cfg.data.width, cache, key="pretrain-source-visible")
    _, labels = np.unique([s.pid for s in visible], return_inverse=True)
    return images, labels.astype(np.int64)


def synthetic_pretrained_weights(cfg: Config, cache: Path, epochs: int = 12, batch_size: int = 64,
                                 progress: bool = True) -> Path:
    """Path of cached source-pretrained weights for `cfg.model`, training them first if needed."""
    from vireid.data.loaders import make_batch
    from vireid.data.transforms import build_train_transforms
    from vireid.engine.pipeline import model_from_config
    from vireid.losses import batch_hard_triplet

    m = cfg.model
    out = cache / "pretrained" / f"synthetic-{m.arch}-{cfg.data.height}x{cfg.data.width}-v{VERSION}.pt"
    if out.exists():
        return out
    images, labels = _source_images(cfg, cache)
    num_ids = int(labels.max() + 1)
    gen = torch.Generator().manual_seed(1000)
    model = model_from_config(cfg, pretrained="none", num_classes=num_ids).train()
    opt = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-4, fused=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    tf = build_train_transforms(cfg.data.height, cfg.data.width)
    t0 = time.time()
    per_id = 4
    for epoch in tqdm(range(epochs), desc="pre-training on the synthetic source (once)", disable=not progress):
        # P identities x 4 images per batch, every identity once per epoch
        order = torch.randperm(num_ids, generator=gen).numpy()
        for start in range(0, num_ids - batch_size // per_id + 1, batch_size // per_id):
            ids = order[start:start + batch_size // per_id]
            rows = np.concatenate([np.random.default_rng([epoch, int(i)]).choice(np.flatnonzero(labels == i), per_id)
                                   for i in ids])
            view = tf.visible_exchange if epoch % 2 else tf.visible
            x = make_batch(images, rows, view)
            y = torch.from_numpy(labels[rows])
            outp = model(x, modality="visible")
            loss = F.cross_entropy(outp.logits, y, label_smoothing=0.1) + batch_hard_triplet(outp.pooled, y, margin=0.3)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier")}
    # the infrared stem starts as a copy of the visible one, as with ImageNet weights
    for k in list(state):
        if k.startswith("visible_stem."):
            state["infrared_stem." + k[len("visible_stem."):]] = state[k].clone()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, out)
    print(f"source pre-training took {time.time() - t0:.0f}s; weights cached at {out}")
    return out
