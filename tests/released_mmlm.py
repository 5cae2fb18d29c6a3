"""An independent transcription of the released MMM multi-memory matching (github.com/shijiangming1/MMM, mmlm.py).

Written from `mmlm.py` (HEAD 7e57d50), cluster by cluster, with none of vireid's code. The released
environment pins scikit-learn 1.2.2 (environment.yml), whose `KMeans(n_clusters=4, random_state=0)`
means k-means++ seeding, `n_init=10` restarts (the best inertia kept), Lloyd, `max_iter=300`,
`tol=1e-4`; the defaults changed later, so they are spelled out here.
"""

from __future__ import annotations

import numpy as np


def memories(features: np.ndarray, labels: np.ndarray, clusters: list[int], n: int = 4) -> list[np.ndarray]:
    """mmlm.py:37-63: the n K-means centres of each listed cluster's features (raw, not re-normalised)."""
    from sklearn.cluster import KMeans

    out = []
    for c in clusters:
        members = features[labels == c]
        kmeans = KMeans(n_clusters=n, init="k-means++", n_init=10, max_iter=300, tol=1e-4, random_state=0)
        kmeans.fit(members)
        out.append(kmeans.cluster_centers_)
    return out


def transfer_labels(feat_v: np.ndarray, labels_v: np.ndarray, feat_r: np.ndarray, labels_r: np.ndarray,
                    drop_last_cluster: bool = True, n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """mmlm.py:20-98: the visible labels after matching, and the cost table (visible x infrared).

    Clusters are the ids 0 .. (number of non-outlier ids) − 2 of each modality (mmlm.py:26-34: the
    released loops stop one short, so the last cluster of each modality takes no part; pass
    `drop_last_cluster=False` for all of them). Cost of visible p and infrared q: for each of q's
    memories the Euclidean distance to the nearest of p's, summed (mmlm.py:72-77). Each visible
    cluster takes the label of the cheapest infrared cluster whose cost is below 20, scanned in order
    with a strict `<` (the first of equal costs wins); the threshold never binds for features of norm
    <= 1 (a cost is at most 2n). The matched visible samples take the infrared label; every other
    visible sample keeps its own label.
    """
    skip = 1 if drop_last_cluster else 0
    ids_v = list(range(len(set(labels_v.tolist()) - {-1}) - skip))
    ids_r = list(range(len(set(labels_r.tolist()) - {-1}) - skip))
    mem_v, mem_r = memories(feat_v, labels_v, ids_v, n), memories(feat_r, labels_r, ids_r, n)
    cost = np.zeros((len(ids_v), len(ids_r)))
    transferred = labels_v.copy()
    for p, centres_v in enumerate(mem_v):
        best, partner = 20.0, None
        for q, centres_r in enumerate(mem_r):
            dist = np.zeros((n, n))
            for i in range(n):
                for j in range(n):
                    dist[i, j] = np.linalg.norm(centres_r[i] - centres_v[j])
            cost[p, q] = dist.min(axis=1).sum()
            if cost[p, q] < best:
                best, partner = cost[p, q], q
        transferred[labels_v == ids_v[p]] = labels_r[labels_r == ids_r[partner]][0]
    return transferred, cost
