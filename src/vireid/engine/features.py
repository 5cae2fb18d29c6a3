"""Clustering features of the training set and one round of pseudo-labelling (docs/method.md §5)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from vireid.clustering.dbscan import cluster
from vireid.clustering.quality import associate_rate, cross_modal_nn_accuracy, majority_agreement, modality_presence
from vireid.config import ClusterConfig
from vireid.engine.context import RunContext
from vireid.engine.distributed import broadcast_arrays, gather_rows, is_main, share
from vireid.engine.extract import extract_features
from vireid.engine.trainset import TrainSet
from vireid.models.factory import unwrap_model


def clustering_features(model: nn.Module, train: TrainSet, cluster_cfg: ClusterConfig, ctx: RunContext
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip-averaged test-mode features of every training image: (Nv, D) and (Nr, D).

    Under DDP each rank extracts a contiguous share and the shares are gathered in sample order.
    """
    out = []
    for mset, infrared in ((train.visible, False), (train.infrared, True)):
        start, stop = share(len(mset))
        part = extract_features(unwrap_model(model), mset.images[start:stop], np.full(stop - start, infrared),
                                ctx.extract_options(), flip_average=cluster_cfg.flip_average,
                                renormalize=cluster_cfg.renormalize,
                                desc=f"features {'infrared' if infrared else 'visible'}")
        out.append(gather_rows(part, len(mset)))
    return out[0], out[1]


@dataclass
class ClusteringRound:
    """Features and pseudo-labels of one epoch; `labels_m_*` are the mixed clustering's (phase 2)."""

    features_v: torch.Tensor
    features_r: torch.Tensor
    labels_v: np.ndarray
    labels_r: np.ndarray
    labels_m_v: np.ndarray | None = None
    labels_m_r: np.ndarray | None = None
    metrics: dict = field(default_factory=dict)  # rank 0 only: counts, ARI, timings

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

    def arrays(self) -> dict:
        """What pseudo_labels/*.npz holds: every label array and the metrics."""
        out = {"labels_visible": self.labels_v, "labels_infrared": self.labels_r}
        if self.labels_m_v is not None:
            out["labels_mixed_visible"] = self.labels_m_v
            out["labels_mixed_infrared"] = self.labels_m_r
        out.update({k: np.asarray(v) for k, v in self.metrics.items()})
        return out


def cluster_train_set(model: nn.Module, train: TrainSet, cluster_cfg: ClusterConfig, ctx: RunContext,
                      mixed: bool = False) -> ClusteringRound:
    """Extract clustering features, cluster each modality (and the mixed set), and measure quality
    against the true identities. Under DDP every rank extracts its share; rank 0 clusters and
    broadcasts the labels."""
    feat_v, feat_r = clustering_features(model, train, cluster_cfg, ctx)
    c = cluster_cfg
    metrics: dict = {}
    labels = None
    if is_main():
        truth_v, truth_r = train.visible.pids, train.infrared.pids
        res_v = cluster(feat_v, *_fit_k(c.k1, c.k2, len(feat_v)), c.eps_visible or c.eps, c.min_samples,
                        true_labels=truth_v,
                        block_size=c.knn_block)
        res_r = cluster(feat_r, *_fit_k(c.k1, c.k2, len(feat_r)), c.eps_infrared or c.eps, c.min_samples,
                        true_labels=truth_r,
                        block_size=c.knn_block)
        labels = [res_v.labels, res_r.labels]
        for name, res in (("visible", res_v), ("infrared", res_r)):
            metrics[f"clusters_{name}"] = int(res.num_clusters)
            metrics[f"outliers_{name}"] = int(res.num_outliers)
            metrics[f"seconds_cluster_{name}"] = float(res.seconds)
            metrics[f"ari_{name}"] = float(res.ari)
        metrics["nn_infrared_to_visible"] = cross_modal_nn_accuracy(feat_r, feat_v, truth_r, truth_v, c.knn_block)
        if mixed:
            feats = torch.cat([feat_v, feat_r])
            modal = np.r_[np.zeros(len(feat_v), bool), np.ones(len(feat_r), bool)]
            res_m = cluster(feats, *_fit_k(c.mixed_k1, c.mixed_k2, len(feats)), c.eps_mixed or c.eps, c.min_samples,
                            modalities=modal, true_labels=np.r_[truth_v, truth_r], block_size=c.knn_block)
            lm_v, lm_r = res_m.labels[: len(feat_v)], res_m.labels[len(feat_v):]
            labels += [lm_v, lm_r]
            metrics["clusters_mixed"] = int(res_m.num_clusters)
            metrics["outliers_mixed"] = int(res_m.num_outliers)
            metrics["ari_mixed"] = float(res_m.ari)
            metrics.update(cross_modal_quality(lm_v, lm_r, truth_v, truth_r))
    labels = broadcast_arrays(labels, 4 if mixed else 2)
    clustering = ClusteringRound(feat_v, feat_r, labels[0], labels[1], metrics=metrics)
    if mixed:
        clustering.labels_m_v, clustering.labels_m_r = labels[2], labels[3]
    return clustering


def _fit_k(k1: int, k2: int, n: int) -> tuple[int, int]:
    """k1/k2 capped at the set's size, so a preset made for a large dataset still runs on a small
    one (a k-reciprocal list cannot be longer than the set)."""
    k1 = max(1, min(k1, n))
    return k1, max(1, min(k2, k1))


def cross_modal_quality(lm_v: np.ndarray, lm_r: np.ndarray, truth_v: np.ndarray, truth_r: np.ndarray) -> dict:
    """How many mixed clusters hold both modalities (the released code's "associate rate" counts
    them), the share of samples inside them, and how many of those clusters are truly one identity
    across modalities (majority visible pid == majority infrared pid)."""
    n = int(max(lm_v.max(initial=-1), lm_r.max(initial=-1)) + 1)
    has_v, has_r = modality_presence(lm_v, lm_r, n)
    both = np.flatnonzero(has_v & has_r)
    out = {"mixed_cross_modal_clusters": int(len(both)), "mixed_associate_rate": associate_rate(lm_v, lm_r, n)}
    if len(both):
        out["mixed_cross_modal_correct"] = majority_agreement(lm_v, truth_v, lm_r, truth_r, np.stack([both, both], 1))
    return out
