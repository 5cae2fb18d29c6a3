"""Pseudo-labels: DBSCAN on the sparse Jaccard distance, and the whole features -> labels step."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from vireid.clustering.jaccard import jaccard_distance
from vireid.errors import ConfigError

__all__ = ["ClusteringResult", "cluster", "dbscan_labels"]


@dataclass
class ClusteringResult:
    """Pseudo-labels of one clustering and how good they are.

    `labels` (N,) int64, -1 = outlier, clusters numbered from 0 by first occurrence; `sizes` (C,)
    samples per cluster. With ground truth: `ari` and `nmi` over all N samples, each outlier counted
    as its own singleton cluster (so dropping samples is not rewarded); `purity` = fraction of the
    clustered samples whose true label is their cluster's majority label.
    """

    labels: np.ndarray
    num_clusters: int
    num_outliers: int
    sizes: np.ndarray
    seconds: float
    ari: float | None = None
    nmi: float | None = None
    purity: float | None = None


def dbscan_labels(distance: sp.spmatrix, eps: float, min_samples: int = 4) -> np.ndarray:
    """DBSCAN (sklearn, metric="precomputed") on a sparse N x N distance matrix.

    Stored entries are the neighbours candidates, explicit zeros included; a missing entry means
    distance 1.0, i.e. never a neighbour, which is why `eps` must be below 1. Returns (N,) int64
    labels, -1 = outlier, clusters renumbered 0..C-1 in order of their first sample (sklearn numbers
    them by their first core sample, which a lower-indexed border sample may precede).
    """
    if not sp.issparse(distance) or distance.ndim != 2 or distance.shape[0] != distance.shape[1]:
        raise ValueError(f"dbscan_labels expects a square sparse distance matrix, got {type(distance).__name__}")
    if not 0.0 < eps < 1.0:
        raise ConfigError(
            f"DBSCAN eps={eps}: expected 0 < eps < 1 (cluster eps), because a pair missing from the sparse "
            "Jaccard matrix has distance 1.0 and is never counted as a neighbour"
        )
    if min_samples < 1:
        raise ConfigError(f"DBSCAN min_samples={min_samples}: expected a positive integer (cluster min_samples)")
    graph = _sorted_by_distance(sp.csr_matrix(distance))
    raw = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(graph).labels_
    return _number_by_first_occurrence(raw)


def cluster(
    features: torch.Tensor,
    k1: int,
    k2: int,
    eps: float,
    min_samples: int = 4,
    modalities: np.ndarray | None = None,
    true_labels: np.ndarray | None = None,
    *,
    block_size: int = 4096,
    progress: bool = False,
) -> ClusteringResult:
    """Pseudo-labels for `features` (N, D): k-reciprocal Jaccard distance (k1, k2) then DBSCAN.

    `modalities` (N,) bool selects the modality-balanced query expansion (mixed sets);
    `true_labels` (N,), when given, adds ARI, NMI and purity to the result.
    """
    start = time.perf_counter()
    distance = jaccard_distance(features, k1, k2, modalities=modalities, block_size=block_size, progress=progress)
    labels = dbscan_labels(distance, eps, min_samples)
    seconds = time.perf_counter() - start
    clustered = labels >= 0
    sizes = np.bincount(labels[clustered], minlength=int(labels.max()) + 1 if clustered.any() else 0)
    result = ClusteringResult(
        labels=labels,
        num_clusters=int(sizes.size),
        num_outliers=int((~clustered).sum()),
        sizes=sizes.astype(np.int64),
        seconds=seconds,
    )
    if true_labels is not None:
        truth = np.asarray(true_labels)
        if truth.shape != labels.shape:
            raise ValueError(f"true_labels has shape {truth.shape}, expected {labels.shape}")
        singletons = np.where(clustered, labels, labels.max(initial=-1) + 1 + np.arange(labels.size))
        result.ari = float(adjusted_rand_score(truth, singletons))
        result.nmi = float(normalized_mutual_info_score(truth, singletons))
        result.purity = _purity(labels, truth)
    return result


def _sorted_by_distance(graph: sp.csr_matrix) -> sp.csr_matrix:
    """Each row's entries ordered by increasing distance, as sklearn wants its precomputed graphs.

    sklearn would otherwise sort them itself with a Python loop over rows. Non-negative float32 values
    order like their bit patterns, so one integer sort of (row, distance bits) orders all rows at once
    (float64 input is ordered by its float32 rounding; sklearn fixes any rare leftover tie itself).
    """
    if graph.nnz == 0:
        return graph
    if graph.data.min() < 0:
        raise ValueError("dbscan_labels: distances must be non-negative")
    rows = np.repeat(np.arange(graph.shape[0], dtype=np.int64), np.diff(graph.indptr))
    bits = np.abs(graph.data.astype(np.float32)).view(np.int32).astype(np.int64)  # abs: -0.0 -> +0.0
    keys = (rows << 32) | bits
    order = np.argsort(keys)
    return sp.csr_matrix((graph.data[order], graph.indices[order], graph.indptr), shape=graph.shape)


def _number_by_first_occurrence(raw: np.ndarray) -> np.ndarray:
    labels = np.asarray(raw, dtype=np.int64).copy()
    clustered = labels >= 0
    if not clustered.any():
        return labels
    ids, first, inverse = np.unique(labels[clustered], return_index=True, return_inverse=True)
    rank = np.empty(ids.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(ids.size)
    labels[clustered] = rank[inverse]
    return labels


def _purity(labels: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of clustered samples carrying their cluster's majority true label (0.0 if none)."""
    clustered = labels >= 0
    if not clustered.any():
        return 0.0
    _, truth_ids = np.unique(truth[clustered], return_inverse=True)
    counts = sp.coo_matrix(
        (np.ones(int(clustered.sum())), (labels[clustered], truth_ids.ravel())),
    ).tocsr()  # (C, T) samples of true label t in cluster c
    return float(counts.max(axis=1).toarray().sum() / clustered.sum())
