"""Evaluate features saved by any tool: an .npz with query and gallery features, pids and cameras.

Lets results of other implementations be scored with exactly the same metric code as ours.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vireid.errors import FeatureFileError
from vireid.evaluation.metrics import evaluate_ranking

ARRAYS = ("query_features", "query_pids", "query_camids", "gallery_features", "gallery_pids", "gallery_camids")


def load_feature_file(path: str | Path) -> dict[str, np.ndarray]:
    """The six arrays of a feature file, checked.

    Expected: `{query,gallery}_features` (N, D) finite numbers with the same D and N >= 1, and
    `{query,gallery}_{pids,camids}` (N,) integers, N matching the features of the same side.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: no such feature file (expected an .npz holding {', '.join(ARRAYS)})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise FeatureFileError(f"{path} is not a readable .npz file ({err})") from None
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise FeatureFileError(f"{path} misses array(s) {', '.join(missing)} "
                               f"(it holds: {', '.join(sorted(arrays)) or 'nothing'})")
    for side in ("query", "gallery"):
        feats = arrays[f"{side}_features"]
        if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.number):
            raise FeatureFileError(f"{path}: {side}_features must be a 2-D numeric array (N, D), "
                                   f"got shape {feats.shape} of {feats.dtype}")
        for kind in ("pids", "camids"):
            ids = arrays[f"{side}_{kind}"]
            if ids.shape != (feats.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
                raise FeatureFileError(
                    f"{path}: {side}_{kind} must be integers of shape ({feats.shape[0]},) to match "
                    f"{side}_features {feats.shape}, got shape {ids.shape} of {ids.dtype}")
    q_dim, g_dim = arrays["query_features"].shape[1], arrays["gallery_features"].shape[1]
    if q_dim != g_dim:
        raise FeatureFileError(f"{path}: query_features {arrays['query_features'].shape} and gallery_features "
                               f"{arrays['gallery_features'].shape} differ in feature size")
    for side in ("query", "gallery"):
        _check_rankable(path, side, arrays[f"{side}_features"])
    return {name: arrays[name] for name in ARRAYS}


def _check_rankable(path: Path, side: str, feats: np.ndarray) -> None:
    """Refuse a side without rows, or with NaN or infinite values (also after the float32 cast the
    metrics use), which would rank arbitrarily instead of failing."""
    if feats.shape[0] == 0:
        raise FeatureFileError(f"{path}: {side}_features has no rows {feats.shape}; expected at least one "
                               f"{side} feature")
    with np.errstate(over="ignore", invalid="ignore"):
        bad = np.flatnonzero(~np.isfinite(feats.astype(np.float32)).all(axis=1))
    if len(bad):
        raise FeatureFileError(f"{path}: {side}_features has NaN or infinite values in {len(bad)} of "
                               f"{feats.shape[0]} rows (first: row {bad[0]}); re-extract the features")


def _check_some_query_matches(path: Path, arrays: dict[str, np.ndarray], protocol: str) -> None:
    """Refuse a file where no query has a gallery feature of its pid (under the protocol's camera
    rule), since every metric would then be undefined."""
    q_pids, g_pids = arrays["query_pids"], arrays["gallery_pids"]
    matched = np.isin(q_pids, g_pids)
    rule = ""
    if protocol == "sysu":  # cam3 queries do not count cam2 gallery images
        cam3 = arrays["query_camids"] == 3
        matched[cam3] = np.isin(q_pids[cam3], g_pids[arrays["gallery_camids"] != 2])
        rule = " (protocol 'sysu': cam3 queries do not count cam2 gallery images)"
    if not matched.any():
        raise FeatureFileError(f"{path}: none of the {len(q_pids)} queries has a gallery feature with its pid{rule}; "
                               "check that query and gallery pids number the same people")


def evaluate_feature_file(path: str | Path, protocol: str) -> dict[str, float]:
    """rank1/5/10/20, mAP and mINP (fractions) of a feature file under `protocol` ("sysu", "regdb"
    or "llcm"), with cosine distance between the (re-normalised) features."""
    arrays = load_feature_file(path)
    _check_some_query_matches(Path(path), arrays, protocol)
    query = F.normalize(torch.as_tensor(arrays["query_features"]).float(), dim=1)
    gallery = F.normalize(torch.as_tensor(arrays["gallery_features"]).float(), dim=1)
    result = evaluate_ranking(1.0 - query @ gallery.T, arrays["query_pids"], arrays["gallery_pids"],
                              arrays["query_camids"], arrays["gallery_camids"], protocol=protocol)
    return {**result.as_dict(), "cmc": result.cmc.tolist()}
