"""Shared labels built from the true identities, for diagnosis only: what SCA would reach if MMLM's
visible→infrared pairs were right a given fraction of the time.

MMLM pairs every visible cluster with an infrared cluster and the visible samples take that label.
`pairs_at_precision` makes such pairs with an exact pair precision (the share of pairs whose two
clusters have the same majority identity, as MMLM's reliability measure counts it), so the oracle
experiment can plot final accuracy against pair precision. Refused on data without identities:
these functions need the true pids, which training never uses.
"""

from __future__ import annotations

import numpy as np

from vireid.clustering.quality import EMPTY, cluster_majority
from vireid.errors import VireidError


def identity_clusters(pids_v: np.ndarray, pids_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-modality "clusters" that are the true identities: ids contiguous over both modalities."""
    _, codes = np.unique(np.r_[pids_v, pids_r], return_inverse=True)
    return codes[: len(pids_v)].astype(np.int64), codes[len(pids_v):].astype(np.int64)


def pairs_at_precision(labels_v: np.ndarray, pids_v: np.ndarray, labels_r: np.ndarray, pids_r: np.ndarray,
                       precision: float, rng: np.random.Generator) -> np.ndarray:
    """(Cv, 2) pairs (visible cluster, infrared cluster), one per visible cluster, of which
    round(precision · Cv) join clusters with the same majority identity (fewer only when not enough
    visible clusters have an infrared cluster of their identity: the achievable maximum).

    A right pair takes the largest infrared cluster of the visible cluster's identity; a wrong pair a
    uniformly drawn infrared cluster of another identity, as a confused matching would.
    """
    if not 0.0 <= precision <= 1.0:
        raise VireidError(f"pair precision must be in [0, 1], got {precision}")
    if pids_v is None or pids_r is None or len(pids_v) != len(labels_v) or len(pids_r) != len(labels_r):
        raise VireidError("oracle labels need the true identity of every training sample (this dataset has none)")
    num_v, num_r = int(labels_v.max(initial=-1)) + 1, int(labels_r.max(initial=-1)) + 1
    if num_v == 0 or num_r == 0:
        raise VireidError("oracle labels need at least one cluster in each modality")
    major_v, major_r = cluster_majority(labels_v, pids_v, num_v), cluster_majority(labels_r, pids_r, num_r)
    sizes_r = np.bincount(labels_r[labels_r >= 0], minlength=num_r)
    # the largest infrared cluster of each identity: sort by (identity, size) and keep each identity's last
    order = np.lexsort((sizes_r, major_r))
    last = np.r_[major_r[order][1:] != major_r[order][:-1], True]
    ids, best = major_r[order][last], order[last]  # identities in increasing order, their largest cluster
    at = np.minimum(np.searchsorted(ids, major_v), len(ids) - 1)
    right = np.where((ids[at] == major_v) & (major_v != EMPTY), best[at], -1).astype(np.int64)
    matchable = np.flatnonzero(right >= 0)
    wanted = min(int(round(precision * num_v)), len(matchable))
    chosen = np.zeros(num_v, dtype=bool)
    chosen[rng.choice(matchable, size=wanted, replace=False)] = True
    partner = np.where(chosen, right, -1)
    wrong = np.flatnonzero(~chosen)  # a wrong partner: a random infrared cluster of another identity
    partner[wrong] = rng.integers(num_r, size=len(wrong))
    for _ in range(1000):  # redraw the few that hit the right identity by chance
        again = wrong[major_r[partner[wrong]] == major_v[wrong]]
        if not len(again) or (major_r == major_r[0]).all():
            break
        partner[again] = rng.integers(num_r, size=len(again))
    return np.stack([np.arange(num_v), partner], axis=1)


def transfer(labels_v: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Visible labels in the infrared label space: each sample takes its cluster's partner (-1 stays)."""
    partner = np.full(int(labels_v.max(initial=-1)) + 1, -1, dtype=np.int64)
    partner[pairs[:, 0]] = pairs[:, 1]
    return np.where(labels_v >= 0, partner[np.maximum(labels_v, 0)], -1).astype(np.int64)
