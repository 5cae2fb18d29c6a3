"""How pseudo-labels relate to the truth and to the two modalities; for reporting, never for training.

Shared by CMC's logs, MMLM's reliability measures and the demo's summary, so each measure has one
definition: the majority identity of a cluster, which clusters hold which modality, the share of
cluster pairs whose majority identities agree, and the ARI of a shared label space.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
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


def reachable_agreement(labels_a: np.ndarray, truth_a: np.ndarray, labels_b: np.ndarray, truth_b: np.ndarray) -> float:
    """The most any pairing of a's clusters with b's can reach in `majority_agreement`: the share of a's
    clusters whose majority identity is also the majority of some cluster of b (NaN without clusters)."""
    num_a, num_b = int(labels_a.max(initial=-1)) + 1, int(labels_b.max(initial=-1)) + 1
    if num_a == 0 or num_b == 0:
        return float("nan")
    major_a, major_b = cluster_majority(labels_a, truth_a, num_a), cluster_majority(labels_b, truth_b, num_b)
    return float(np.mean(np.isin(major_a, major_b[major_b != EMPTY]) & (major_a != EMPTY)))


def label_ari(labels: np.ndarray, truth: np.ndarray) -> float:
    """ARI of pseudo-labels against the true identities over the non-outliers; 0.0 without any."""
    keep = labels >= 0
    return float(adjusted_rand_score(truth[keep], labels[keep])) if keep.any() else 0.0


def shared_label_ari(labels_v: np.ndarray, labels_r: np.ndarray, truth_v: np.ndarray, truth_r: np.ndarray) -> float:
    """ARI of a label space shared by both modalities against the true identities (non-outliers)."""
    return label_ari(np.r_[labels_v, labels_r], np.r_[truth_v, truth_r])


def cross_modal_nn_accuracy(query: torch.Tensor, gallery: torch.Tensor, truth_q: np.ndarray, truth_g: np.ndarray,
                            block_size: int = 4096) -> float:
    """Share of `query` rows (Nq, D) whose nearest `gallery` row (Ng, D) has the same true identity:
    a cheap measure of how much cross-modal signal features hold (infrared -> visible on a training
    set needs no clustering). Features are compared by inner product (L2-normalised rows); blocks of
    `block_size` queries keep memory at block_size x Ng. NaN for an empty side."""
    if len(query) == 0 or len(gallery) == 0:
        return float("nan")
    gallery_t = gallery.T
    nearest = torch.cat([(block @ gallery_t).argmax(dim=1) for block in query.split(block_size)]).cpu().numpy()
    return float(np.mean(np.asarray(truth_g)[nearest] == np.asarray(truth_q)))


def associate_rate(labels_v: np.ndarray, labels_r: np.ndarray, num_clusters: int) -> float:
    """Share of all samples of a mixed clustering that lie in a cluster holding both modalities (the
    released code's "associate rate" counts such clusters; this is the samples' share)."""
    total = len(labels_v) + len(labels_r)
    if total == 0:
        return float("nan")
    has_v, has_r = modality_presence(labels_v, labels_r, num_clusters)
    both = has_v & has_r
    inside = sum(int(both[lab[lab >= 0]].sum()) for lab in (labels_v, labels_r))
    return inside / total
