"""`vireid extract`: a checkpoint's features written as the .npz files other commands read.

Two formats (docs/features.md):

* ``--split test`` — what `vireid evaluate --features` scores: ``query_features`` (Q, D),
  ``query_pids``/``query_camids`` (Q,), ``gallery_features`` (G, D), ``gallery_pids``/
  ``gallery_camids`` (G,), plus ``query_paths``/``gallery_paths`` and ``protocol`` for people.
  Query and gallery are those of one evaluation protocol (default: the dataset's first, e.g.
  SYSU-MM01 ``all-single``) and its first gallery draw, so evaluating the file repeats
  `vireid evaluate --checkpoint ... --trials 1` for that protocol.
* ``--split train`` — what `vireid match --features` matches: the flip-averaged clustering
  features of the training images, ``features_visible`` (Nv, D) / ``features_infrared`` (Nr, D),
  their DBSCAN pseudo-labels under the checkpoint's cluster settings ``labels_visible`` /
  ``labels_infrared`` (-1 = outlier), and the true ids ``pids_visible`` / ``pids_infrared``
  (used only to score the matching) — the arrays of a run's ``mmlm/matching.npz``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vireid.config import Config, resolve_cache_dir
from vireid.data.registry import DatasetReader, open_dataset
from vireid.engine.context import RunContext
from vireid.engine.device import select_device
from vireid.engine.evaluate import check_finite_features, sample_embedder
from vireid.engine.features import cluster_train_set
from vireid.engine.trainset import build_train_set
from vireid.errors import ConfigError
from vireid.fileio import atomic_write, check_writable_file, check_writable_folder
from vireid.models.factory import load_model

SPLITS = ("test", "train")
CACHE_WHAT = "the image cache folder (data.cache_dir, else $VIREID_CACHE_DIR)"


def extract_feature_file(checkpoint: str | Path, dataset: str, root: str | Path, out: str | Path,
                         split: str = "test", protocol: str | None = None, trial: int | None = None,
                         device: str = "auto", batch_size: int | None = None) -> dict[str, Any]:
    """Write the features of `split` to `out` (.npz) and return what was written (path, array shapes)."""
    if split not in SPLITS:
        raise ConfigError(f"extract --split must be one of {'|'.join(SPLITS)}, got {split!r}")
    out = check_writable_file(out, "extract --out")
    model, cfg = load_model(checkpoint)
    dev = select_device(device)
    model = model.to(dev)
    reader = open_dataset(dataset, root, trial=trial if trial is not None else cfg.data.trial)
    check_writable_folder(resolve_cache_dir(cfg), CACHE_WHAT)
    if batch_size is not None:
        cfg.data.eval_batch_size = batch_size
    source = f"checkpoint {checkpoint}"
    if split == "test":
        arrays = test_arrays(model, cfg, reader, dev, protocol, source)
    else:
        arrays = train_arrays(model, cfg, reader, dev, source)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(out, buffer.getvalue())
    return {"path": str(out), "split": split, "arrays": {k: tuple(v.shape) for k, v in arrays.items()}}


def _context(cfg: Config, device: torch.device) -> RunContext:
    return RunContext.from_config(cfg, None, device)


def test_arrays(model: torch.nn.Module, cfg: Config, reader: DatasetReader, device: torch.device,
                protocol: str | None, source: str) -> dict[str, np.ndarray]:
    """Query and first-draw gallery features of one protocol, in `vireid evaluate --features` format."""
    splits = reader.evaluation_splits(1)
    name = protocol or next(iter(splits))
    if name not in splits:
        raise ConfigError(f"extract --protocol {name!r} is not a protocol of {reader.name}; expected one of "
                          f"{', '.join(splits)}")
    query, gallery = splits[name][0]
    ctx = _context(cfg, device)
    embed = sample_embedder(model, ctx.image_size, ctx.cache_dir, ctx.extract_options(),
                            key=f"{reader.name}-test", source=source)
    feats = embed(list(query) + list(gallery)).numpy().astype(np.float32)
    arrays: dict[str, np.ndarray] = {"protocol": np.array(name)}
    for side, samples, rows in (("query", query, feats[:len(query)]), ("gallery", gallery, feats[len(query):])):
        arrays[f"{side}_features"] = rows
        arrays[f"{side}_pids"] = np.array([s.pid for s in samples], dtype=np.int64)
        arrays[f"{side}_camids"] = np.array([s.camid for s in samples], dtype=np.int64)
        arrays[f"{side}_paths"] = np.array([str(s.path) for s in samples])
    return arrays


def train_arrays(model: torch.nn.Module, cfg: Config, reader: DatasetReader, device: torch.device,
                 source: str) -> dict[str, np.ndarray]:
    """Clustering features, pseudo-labels and true ids of the training images, in `vireid match` format."""
    ctx = _context(cfg, device)
    train = build_train_set(reader, cfg.data.height, cfg.data.width, ctx.cache_dir)
    clustering = cluster_train_set(model, train, cfg.cluster, ctx, mixed=False)
    for feats, mset in ((clustering.features_v, train.visible), (clustering.features_r, train.infrared)):
        check_finite_features(feats, [s.path for s in mset.samples], source)
    return {"features_visible": clustering.features_v.numpy().astype(np.float32),
            "labels_visible": clustering.labels_v.astype(np.int64),
            "features_infrared": clustering.features_r.numpy().astype(np.float32),
            "labels_infrared": clustering.labels_r.astype(np.int64),
            "pids_visible": train.visible.pids, "pids_infrared": train.infrared.pids}
