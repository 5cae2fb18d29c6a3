"""`vireid match`: recompute MMLM's matching from saved clustering features and labels, and report it.

Lets a user try other matching settings (memories, assignment) on a finished run without retraining.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from vireid.config import Config, load_config
from vireid.engine.device import select_device
from vireid.engine.features import ClusteringRound
from vireid.engine.mmlm import match_round
from vireid.errors import FeatureFileError, NonFiniteError, VireidError

REQUIRED = ("features_visible", "labels_visible", "features_infrared", "labels_infrared")


def read_matching_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a matching feature file, checked: features (N, D) finite and labels (N,) integers
    per modality, with at least one cluster (label >= 0) in each."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = dict(z)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise FeatureFileError(f"{path} is not a readable .npz file ({err})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise FeatureFileError(f"{path} lacks {', '.join(missing)} (expected arrays {', '.join(REQUIRED)})")
    for modality in ("visible", "infrared"):
        feats, labels = arrays[f"features_{modality}"], arrays[f"labels_{modality}"]
        if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.number):
            raise FeatureFileError(f"{path}: features_{modality} must be a 2-D numeric array (N, D), got shape "
                                   f"{feats.shape} of {feats.dtype}")
        if labels.shape != (feats.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise FeatureFileError(f"{path}: labels_{modality} must be integers of shape ({feats.shape[0]},), got "
                                   f"shape {labels.shape} of {labels.dtype}")
        bad = np.flatnonzero(~np.isfinite(feats.astype(np.float32)).all(axis=1))
        if len(bad):
            raise NonFiniteError(f"{path}: features_{modality} has NaN or infinite values in {len(bad)} of "
                                 f"{feats.shape[0]} rows (first: row {bad[0]}); re-extract the features")
        if not (labels >= 0).any():
            raise FeatureFileError(f"{path}: labels_{modality} holds no cluster (every label is -1), so there "
                                   "is nothing to match")
    if arrays["features_visible"].shape[1] != arrays["features_infrared"].shape[1]:
        raise FeatureFileError(f"{path}: features_visible {arrays['features_visible'].shape} and features_infrared "
                               f"{arrays['features_infrared'].shape} differ in feature size")
    return arrays


def recompute_matching(run_dir: str | None = None, features: str | None = None, n_memories: int | None = None,
                       assignment: str | None = None, device: str = "auto") -> str:
    """The matching report (lines for people, then one JSON line of the summary)."""
    cfg = Config()
    if run_dir is not None:
        path = Path(run_dir) / "mmlm" / "matching.npz"
        if not Path(run_dir).is_dir():
            raise VireidError(f"run folder {run_dir} does not exist (give a folder that `vireid train` wrote)")
        if not path.exists():
            raise VireidError(f"{run_dir} has no mmlm/matching.npz (run the mmlm stage first)")
        if (Path(run_dir) / "config.yaml").exists():
            cfg = load_config(file=Path(run_dir) / "config.yaml")
    else:
        path = Path(features)
        if not path.is_file():
            raise FeatureFileError(f"feature file {path} does not exist (expected an .npz from `vireid extract "
                                   "--split train` or a run's mmlm/matching.npz)")
    arrays = read_matching_arrays(path)
    if n_memories is not None:
        cfg.mmlm.n_memories = n_memories
    if assignment is not None:
        cfg.mmlm.assignment = assignment
    clustering = ClusteringRound(torch.from_numpy(arrays["features_visible"]).float(),
                          torch.from_numpy(arrays["features_infrared"]).float(),
                          arrays["labels_visible"].astype(np.int64), arrays["labels_infrared"].astype(np.int64))
    truth = (arrays.get("pids_visible"), arrays.get("pids_infrared"))
    result, summary = match_round(clustering, cfg.mmlm, select_device(device), truth)
    lines = [f"MMLM matching of {path} (n_memories={cfg.mmlm.n_memories}, assignment={cfg.mmlm.assignment}, "
             f"cost summed over {cfg.mmlm.cost_sum_over} memories)"]
    lines += [f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in summary.items()]
    lines.append("  first pairs (visible -> infrared, cost, round): " + ", ".join(
        f"{p}->{q} ({result.cost[p, q]:.3f}, r{result.rounds[p]})" for p, q in result.pairs[:8]))
    return "\n".join(lines) + "\n" + json.dumps(summary)
