"""Clustering features of the training set and one round of pseudo-labelling (METHOD §5)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from vireid.config import Config
from vireid.engine.trainset import TrainSet


def clustering_features(model: torch.nn.Module, train: TrainSet, cfg: Config, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip-averaged test-mode features of every training image: (Nv, D) and (Nr, D)."""
    from vireid.engine.distributed import extract_distributed

    out = []
    for mset, infrared in ((train.visible, False), (train.infrared, True)):
        out.append(extract_distributed(model, mset.images, np.full(len(mset), infrared), cfg, device,
                                       desc=f"features {'infrared' if infrared else 'visible'}"))
    return out[0], out[1]


def majority_agreement(labels_a: np.ndarray, pids_a: np.ndarray, labels_b: np.ndarray, pids_b: np.ndarray,
                       pairs: np.ndarray) -> float:
    """Fraction of (cluster in a, cluster in b) pairs whose majority true identities agree."""
    if len(pairs) == 0:
        return float("nan")
    major_a = _majority_pid(labels_a, pids_a)
    major_b = _majority_pid(labels_b, pids_b)
    return float(np.mean(major_a[pairs[:, 0]] == major_b[pairs[:, 1]]))


def _majority_pid(labels: np.ndarray, pids: np.ndarray) -> np.ndarray:
    """(C,) most frequent true pid per cluster id (vectorised over a cluster × pid table)."""
    keep = labels >= 0
    if not keep.any():
        return np.zeros(0, dtype=np.int64)
    uniq, inv = np.unique(pids[keep], return_inverse=True)
    table = np.zeros((labels[keep].max() + 1, len(uniq)), dtype=np.int64)
    np.add.at(table, (labels[keep], inv), 1)
    return uniq[table.argmax(axis=1)]


@dataclass
class ClusteringRound:
    """Features and pseudo-labels of one epoch; `labels_m_*` are the mixed clustering's (phase 2)."""

    features_v: torch.Tensor
    features_r: torch.Tensor
    labels_v: np.ndarray
    labels_r: np.ndarray
    labels_m_v: np.ndarray | None = None
    labels_m_r: np.ndarray | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def num_v(self) -> int:
        return int(self.labels_v.max() + 1) if len(self.labels_v) else 0

    @property
    def num_r(self) -> int:
        return int(self.labels_r.max() + 1) if len(self.labels_r) else 0

    @property
    def num_m(self) -> int:
        if self.labels_m_v is None:
            return 0
        return int(max(self.labels_m_v.max(initial=-1), self.labels_m_r.max(initial=-1)) + 1)

    def summary(self) -> dict:
        return dict(self.metrics)

    def arrays(self) -> dict:
        out = {"labels_visible": self.labels_v, "labels_infrared": self.labels_r}
        if self.labels_m_v is not None:
            out["labels_mixed_visible"] = self.labels_m_v
            out["labels_mixed_infrared"] = self.labels_m_r
        out.update({k: np.asarray(v) for k, v in self.metrics.items()})
        return out


def cluster_train_set(model, train: TrainSet, cfg: Config, device, mixed: bool = False) -> ClusteringRound:
    """Extract clustering features, cluster each modality (and the mixed set), and measure quality.

    In DDP every rank extracts its share; rank 0 clusters and broadcasts the labels.
    """
    from vireid.clustering import cluster
    from vireid.engine.distributed import broadcast_arrays, is_main

    feat_v, feat_r = clustering_features(model, train, cfg, device)
    c = cfg.cluster
    metrics: dict = {}
    labels = None
    if is_main():
        truth_v = train.visible.pids if train.has_ground_truth else None
        truth_r = train.infrared.pids if train.has_ground_truth else None
        res_v = cluster(feat_v, *_fit_k(c.k1, c.k2, len(feat_v)), c.eps, c.min_samples, true_labels=truth_v)
        res_r = cluster(feat_r, *_fit_k(c.k1, c.k2, len(feat_r)), c.eps, c.min_samples, true_labels=truth_r)
        labels = [res_v.labels, res_r.labels]
        for name, res in (("visible", res_v), ("infrared", res_r)):
            metrics[f"clusters_{name}"] = int(res.num_clusters)
            metrics[f"outliers_{name}"] = int(res.num_outliers)
            metrics[f"seconds_cluster_{name}"] = float(res.seconds)
            if res.ari is not None:
                metrics[f"ari_{name}"] = float(res.ari)
        if mixed:
            feats = torch.cat([feat_v, feat_r])
            modal = np.r_[np.zeros(len(feat_v), bool), np.ones(len(feat_r), bool)]
            truth = np.r_[truth_v, truth_r] if truth_v is not None else None
            res_m = cluster(feats, *_fit_k(c.mixed_k1, c.mixed_k2, len(feats)), c.eps, c.min_samples, modalities=modal,
                            true_labels=truth)
            lm_v, lm_r = res_m.labels[: len(feat_v)], res_m.labels[len(feat_v):]
            labels += [lm_v, lm_r]
            metrics["clusters_mixed"] = int(res_m.num_clusters)
            metrics["outliers_mixed"] = int(res_m.num_outliers)
            if res_m.ari is not None:
                metrics["ari_mixed"] = float(res_m.ari)
            metrics.update(_cross_modal_quality(lm_v, lm_r, truth_v, truth_r))
    labels = broadcast_arrays(labels, 4 if mixed else 2)
    rnd = ClusteringRound(feat_v, feat_r, labels[0], labels[1], metrics=metrics)
    if mixed:
        rnd.labels_m_v, rnd.labels_m_r = labels[2], labels[3]
    return rnd


def _fit_k(k1: int, k2: int, n: int) -> tuple[int, int]:
    """k1/k2 capped at the set's size, so a preset made for a large dataset still runs on a small
    one (a k-reciprocal list cannot be longer than the set)."""
    k1 = max(1, min(k1, n))
    return k1, max(1, min(k2, k1))


def _cross_modal_quality(lm_v: np.ndarray, lm_r: np.ndarray, truth_v, truth_r) -> dict:
    """How many mixed clusters hold both modalities, and how many of those are truly one identity
    across modalities (majority visible pid == majority infrared pid)."""
    n = int(max(lm_v.max(initial=-1), lm_r.max(initial=-1)) + 1)
    has_v = np.bincount(lm_v[lm_v >= 0], minlength=n) > 0
    has_r = np.bincount(lm_r[lm_r >= 0], minlength=n) > 0
    both = np.flatnonzero(has_v & has_r)
    out = {"mixed_cross_modal_clusters": int(len(both))}
    if truth_v is not None and len(both):
        pairs = np.stack([both, both], axis=1)
        out["mixed_cross_modal_correct"] = majority_agreement(lm_v, truth_v, lm_r, truth_r, pairs)
    return out


def transferred_label_ari(labels_v: np.ndarray, labels_r: np.ndarray, truth_v: np.ndarray, truth_r: np.ndarray) -> float:
    """ARI of the shared (cross-modality) label space against the true identities, non-outliers."""
    labels = np.r_[labels_v, labels_r]
    truth = np.r_[truth_v, truth_r]
    keep = labels >= 0
    return float(adjusted_rand_score(truth[keep], labels[keep])) if keep.any() else 0.0
