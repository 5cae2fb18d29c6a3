"""How pseudo-labels relate to the truth and to the two modalities; for reporting, never for training.

Shared by CMC's logs, MMLM's reliability measures and the demo's summary, so each measure has one
definition: the majority identity of a cluster, which clusters hold which modality, the share of
cluster pairs whose majority identities agree, and the ARI of a shared label space.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

EMPTY = np.iinfo(np.int64).min  # majority of a cluster without samples; equal to no identity


def cluster_majority(labels: np.ndarray, truth: np.ndarray, num_clusters: int | None = None) -> np.ndarray:
    """(C,) the most frequent true identity of each cluster (ties: the smallest id); EMPTY when a
    cluster id has no sample. Outliers (-1) are ignored."""
    labels = np.asarray(labels, dtype=np.int64)
    truth = np.asarray(truth, dtype=np.int64)
    keep = labels >= 0
    count = int(labels.max(initial=-1)) + 1 if num_clusters is None else int(num_clusters)
    out = np.full(count, EMPTY, dtype=np.int64)
    if not keep.any() or count == 0:
        return out
    ids, codes = np.unique(truth[keep], return_inverse=True)
    table = sp.coo_matrix((np.ones(int(keep.sum())), (labels[keep], codes.ravel())), shape=(count, len(ids))).tocsr()
    present = np.asarray(table.sum(axis=1)).ravel() > 0
    out[present] = ids[np.asarray(table.argmax(axis=1)).ravel()[present]]
    return out


def modality_presence(labels_v: np.ndarray, labels_r: np.ndarray, num_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """(has_visible, has_infrared), each (C,) bool: which clusters of a mixed clustering hold each modality."""
    has_v = np.bincount(labels_v[labels_v >= 0], minlength=num_clusters)[:num_clusters] > 0
    has_r = np.bincount(labels_r[labels_r >= 0], minlength=num_clusters)[:num_clusters] > 0
    return has_v, has_r


def majority_agreement(labels_a: np.ndarray, truth_a: np.ndarray, labels_b: np.ndarray, truth_b: np.ndarray,
                       pairs: np.ndarray) -> float:
    """Share of cluster pairs (a, b) (rows of `pairs`, (M, 2)) whose majority true identities agree; NaN
    without pairs. A cluster without samples agrees with nothing."""
    if len(pairs) == 0:
        return float("nan")
    major_a = cluster_majority(labels_a, truth_a, max(int(labels_a.max(initial=-1)) + 1, int(pairs[:, 0].max()) + 1))
    major_b = cluster_majority(labels_b, truth_b, max(int(labels_b.max(initial=-1)) + 1, int(pairs[:, 1].max()) + 1))
    pa, pb = major_a[pairs[:, 0]], major_b[pairs[:, 1]]
    return float(np.mean((pa == pb) & (pa != EMPTY)))


def chance_agreement(labels_a: np.ndarray, truth_a: np.ndarray, labels_b: np.ndarray, truth_b: np.ndarray) -> float:
    """The pair precision a matching reaches by chance: the expected `majority_agreement` when each
    cluster of a is paired with a uniformly drawn cluster of b (NaN without clusters)."""
    num_a, num_b = int(labels_a.max(initial=-1)) + 1, int(labels_b.max(initial=-1)) + 1
    if num_a == 0 or num_b == 0:
        return float("nan")
    major_a, major_b = cluster_majority(labels_a, truth_a, num_a), cluster_majority(labels_b, truth_b, num_b)
    ids, counts = np.unique(major_b[major_b != EMPTY], return_counts=True)
    at = np.minimum(np.searchsorted(ids, major_a), max(len(ids) - 1, 0))
    same = np.where((len(ids) > 0) & (ids[at] == major_a) & (major_a != EMPTY), counts[at] if len(ids) else 0, 0)
    return float(np.mean(same / num_b))


def label_ari(labels: np.ndarray, truth: np.ndarray) -> float:
    """ARI of pseudo-labels against the true identities over the non-outliers; 0.0 without any."""
    keep = labels >= 0
    return float(adjusted_rand_score(truth[keep], labels[keep])) if keep.any() else 0.0


def shared_label_ari(labels_v: np.ndarray, labels_r: np.ndarray, truth_v: np.ndarray, truth_r: np.ndarray) -> float:
    """ARI of a label space shared by both modalities against the true identities (non-outliers)."""
    return label_ari(np.r_[labels_v, labels_r], np.r_[truth_v, truth_r])
