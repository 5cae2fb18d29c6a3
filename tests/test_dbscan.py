"""DBSCAN on sparse Jaccard distances, and the features -> pseudo-labels step with its quality scores."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import vireid.clustering.dbscan as dbscan_module
from vireid.clustering.dbscan import ClusteringResult, cluster, dbscan_labels
from vireid.errors import ConfigError


def sparse_distances(n, pairs, dtype=np.float32):
    """Symmetric CSR with the given {(i, j): d} stored (zeros kept) plus a stored 0 diagonal."""
    entries = {(i, i): 0.0 for i in range(n)}
    for (i, j), d in pairs.items():
        entries[i, j] = entries[j, i] = d
    rows, cols = zip(*entries)
    out = sp.csr_matrix((np.array(list(entries.values()), dtype=dtype), (rows, cols)), shape=(n, n))
    assert out.nnz == len(entries)  # explicit zeros are stored
    return out


def test_explicit_zeros_are_neighbours():
    # 0..3 are duplicates (distance 0, stored); 4 has only its diagonal
    dist = sparse_distances(5, {(i, j): 0.0 for i in range(4) for j in range(i + 1, 4)})
    labels = dbscan_labels(dist, eps=0.5, min_samples=4)
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, -1])
    assert labels.dtype == np.int64
    dist.data[dist.data == 0] = -0.0  # a negative zero is a zero too
    np.testing.assert_array_equal(dbscan_labels(dist, eps=0.5, min_samples=4), [0, 0, 0, 0, -1])


def test_missing_entries_are_not_neighbours():
    dist = sparse_distances(4, {})  # nothing but the diagonal: every pair at distance 1.0
    np.testing.assert_array_equal(dbscan_labels(dist, eps=0.9, min_samples=2), [-1, -1, -1, -1])
    np.testing.assert_array_equal(dbscan_labels(dist, eps=0.9, min_samples=1), [0, 1, 2, 3])


def test_eps_threshold_on_a_chain():
    dist = sparse_distances(4, {(0, 1): 0.3, (1, 2): 0.3, (2, 3): 0.3})
    np.testing.assert_array_equal(dbscan_labels(dist, eps=0.35, min_samples=2), [0, 0, 0, 0])
    np.testing.assert_array_equal(dbscan_labels(dist, eps=0.25, min_samples=2), [-1, -1, -1, -1])
    # ends of the chain have 2 neighbours (themselves + one), inner points 3: with 3 needed the ends
    # are border points of the cluster grown from 1 and 2
    np.testing.assert_array_equal(dbscan_labels(dist, eps=0.35, min_samples=3), [0, 0, 0, 0])


def test_clusters_numbered_by_first_occurrence():
    # {1, 2, 6} and {3, 4, 5} are core triangles; 0 is a border point of {3, 4, 5} only
    tri = {(1, 2): 0.1, (1, 6): 0.1, (2, 6): 0.1, (3, 4): 0.1, (3, 5): 0.1, (4, 5): 0.1, (0, 3): 0.1}
    labels = dbscan_labels(sparse_distances(7, tri), eps=0.2, min_samples=3)
    # sklearn numbers by first core sample (1 before 3) and would give 0 the label 1
    np.testing.assert_array_equal(labels, [0, 1, 1, 0, 0, 0, 1])


def test_row_order_and_dtype_do_not_matter():
    rng = np.random.default_rng(0)
    pairs = {(i, j): float(rng.uniform(0, 0.6)) for i in range(30) for j in range(i + 1, 30) if rng.random() < 0.2}
    dist = sparse_distances(30, pairs)
    expected = dbscan_labels(dist, eps=0.3, min_samples=3)
    assert (expected >= 0).any() and (expected < 0).any()
    # shuffle the stored entries within every row, and use float64
    shuffled = dist.copy()
    for r in range(30):
        lo, hi = shuffled.indptr[r], shuffled.indptr[r + 1]
        order = lo + rng.permutation(hi - lo)
        shuffled.indices[lo:hi], shuffled.data[lo:hi] = dist.indices[order], dist.data[order]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no EfficiencyWarning: rows are ordered before sklearn sees them
        np.testing.assert_array_equal(dbscan_labels(shuffled, eps=0.3, min_samples=3), expected)
        np.testing.assert_array_equal(dbscan_labels(shuffled.astype(np.float64), eps=0.3, min_samples=3), expected)
    np.testing.assert_array_equal(shuffled.toarray(), dist.toarray())  # the input is left untouched


def by_first_occurrence(labels):
    """Labels renamed 0, 1, ... in order of first appearance, outliers kept at -1."""
    names = {}
    return np.array([-1 if x < 0 else names.setdefault(x, len(names)) for x in labels])


def random_graph(seed, n, density, symmetric, drop_diagonal):
    """Sparse distances in [0, 0.8] on a coarse grid (ties, some exactly at eps), explicit zeros included."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n, n)) < density, rng.integers(0, 9, (n, n)) / 10, np.nan)
    if symmetric:
        dense = np.where(np.triu(np.ones((n, n), dtype=bool)), dense, dense.T)
    np.fill_diagonal(dense, np.where(rng.random(n) < drop_diagonal, np.nan, 0.0))
    rows, cols = np.nonzero(~np.isnan(dense))
    return sp.csr_matrix((dense[rows, cols].astype(np.float32), (rows, cols)), shape=(n, n))


@pytest.mark.parametrize(
    "seed, symmetric, drop_diagonal", [(0, True, 0.0), (1, True, 0.3), (2, False, 0.0), (3, False, 0.5)]
)
@pytest.mark.parametrize("eps, min_samples", [(0.3, 3), (0.5, 5), (0.2, 1)])
def test_same_clusters_as_the_sklearn_estimator(seed, symmetric, drop_diagonal, eps, min_samples):
    # the inner loop fed directly must give the estimator's clusters, on symmetric and asymmetric
    # graphs, with and without stored diagonals, with distance ties and distances equal to eps
    graph = random_graph(seed, 120, 0.06, symmetric, drop_diagonal)
    assert (graph.data == np.float32(eps)).any()
    expected = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(graph).labels_
    assert (expected >= 0).any()
    np.testing.assert_array_equal(dbscan_labels(graph, eps, min_samples), by_first_occurrence(expected))


def test_same_labels_without_the_private_inner_loop(monkeypatch):
    # if a scikit-learn release moves its inner loop, the estimator is used: same labels
    graph = random_graph(4, 150, 0.05, True, 0.2)
    fast = dbscan_labels(graph, 0.4, 4)
    monkeypatch.setattr(dbscan_module, "dbscan_inner", None)
    np.testing.assert_array_equal(dbscan_labels(graph, 0.4, 4), fast)


@pytest.mark.parametrize("eps", [1.0, 1.5, 0.0, -0.2])
def test_eps_must_lie_in_0_1(eps):
    with pytest.raises(ConfigError, match="eps"):
        dbscan_labels(sparse_distances(3, {}), eps=eps)


def test_min_samples_must_be_positive():
    with pytest.raises(ConfigError, match="min_samples"):
        dbscan_labels(sparse_distances(3, {}), eps=0.5, min_samples=0)


def blobs():
    """Four tight blobs of 20 on orthogonal axes and three lone points on other axes, shuffled."""
    rng = np.random.default_rng(0)
    truth = np.concatenate([np.repeat(np.arange(4), 20), [-1, -2, -3]])
    x = np.concatenate([np.eye(10)[:4][truth[:80]] + 0.1 * rng.normal(size=(80, 10)), np.eye(10)[5:8]])
    perm = rng.permutation(83)
    x = x[perm] / np.linalg.norm(x[perm], axis=1, keepdims=True)
    return torch.from_numpy(x.astype(np.float32)), truth[perm]


def test_cluster_finds_separated_blobs():
    feats, truth = blobs()
    result = cluster(feats, k1=15, k2=4, eps=0.6, min_samples=4, true_labels=truth + 100)
    assert isinstance(result, ClusteringResult)
    assert result.num_clusters == 4 and result.num_outliers == 3
    np.testing.assert_array_equal(result.labels == -1, truth < 0)
    np.testing.assert_array_equal(result.sizes, [20, 20, 20, 20])
    # one cluster per blob, numbered by first occurrence
    clustered = truth >= 0
    firsts = [int(np.flatnonzero(result.labels == c)[0]) for c in range(4)]
    assert firsts == sorted(firsts)
    for blob in range(4):
        assert len(set(result.labels[truth == blob])) == 1
    assert result.purity == 1.0
    # the three lone points: three true identities, three singleton clusters: a perfect match
    assert result.ari == pytest.approx(1.0) and result.nmi == pytest.approx(1.0)
    assert result.seconds > 0 and result.labels.dtype == np.int64
    assert clustered.sum() == result.sizes.sum()


def test_quality_scores_against_sklearn_and_by_hand():
    feats, truth = blobs()
    noisy = truth.copy()
    first_blob = np.flatnonzero(truth == 0)
    noisy[first_blob[:5]] = 1  # 5 of blob 0 carry blob 1's identity
    noisy[truth < 0] = 0  # the lone points all carry blob 0's identity
    result = cluster(feats, k1=15, k2=4, eps=0.6, true_labels=noisy)
    # purity: blob 0's majority keeps 15 of 20, the other blobs all 20; lone points do not count
    assert result.purity == pytest.approx((15 + 60) / 80)
    singletons = result.labels.copy()
    lone = np.flatnonzero(singletons < 0)
    singletons[lone] = 1000 + np.arange(lone.size)
    assert result.ari == pytest.approx(adjusted_rand_score(noisy, singletons))
    assert result.nmi == pytest.approx(normalized_mutual_info_score(noisy, singletons))
    assert result.ari < 1.0


def test_cluster_without_ground_truth_has_no_scores():
    feats, _ = blobs()
    result = cluster(feats, k1=15, k2=4, eps=0.6)
    assert result.ari is None and result.nmi is None and result.purity is None


def test_modalities_are_passed_to_the_balanced_expansion():
    feats, truth = blobs()
    modalities = np.arange(83) % 2 == 0
    result = cluster(feats, k1=15, k2=4, eps=0.6, modalities=modalities, true_labels=truth)
    assert result.num_clusters == 4
    with pytest.raises(ValueError, match="modalities"):
        cluster(feats, k1=15, k2=4, eps=0.6, modalities=modalities[:10])
