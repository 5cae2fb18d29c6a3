"""Cluster centroids and K-means sub-memories, checked against plain loops over clusters."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vireid.clustering import memories
from vireid.clustering.memories import cluster_centroids, kmeans_submemories


def _normalised(rows, dim, seed):
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def _planted_modes(sizes, n_modes=4, dim=16, spread=0.01, seed=0):
    """Clusters made of `n_modes` tight, well separated blobs; returns features, labels, blob means."""
    gen = torch.Generator().manual_seed(seed)
    feats, labels, means = [], [], []
    for cluster, size in enumerate(sizes):
        centres = 3.0 * torch.randn(n_modes, dim, generator=gen)
        mode = torch.arange(size) % n_modes  # every blob gets members
        points = centres[mode] + spread * torch.randn(size, dim, generator=gen)
        feats.append(points)
        labels += [cluster] * size
        means.append(torch.stack([points[mode == k].mean(0) for k in range(n_modes)]))
    order = torch.randperm(sum(sizes), generator=gen)  # interleave clusters
    return torch.cat(feats)[order], np.array(labels, dtype=np.int64)[order.numpy()], means


def _match_rows(a, b):
    """Max distance between rows of a and their nearest row of b, and whether the pairing is a bijection."""
    d = torch.cdist(a.double(), b.double())
    return d.min(1).values.max().item(), len(set(d.argmin(1).tolist())) == len(b)


def test_centroids_are_normalised_cluster_means_ignoring_outliers():
    feats = _normalised(30, 8, 0)
    labels = np.array([0, 1, 2, -1, 1] * 6)
    got = cluster_centroids(feats, labels, num_clusters=4)
    for c in range(3):
        mean = feats[torch.as_tensor(labels == c)].mean(0)
        torch.testing.assert_close(got[c], mean / mean.norm())
    assert torch.all(got[3] == 0)  # no samples → zero row
    assert cluster_centroids(feats, torch.as_tensor(labels)).shape == (3, 8)


def test_kmeans_recovers_planted_modes_in_clusters_of_many_sizes(monkeypatch):
    sizes = [4, 9, 20, 37, 70, 130]  # several size groups
    monkeypatch.setattr(memories, "_GROUP_ELEMENTS", 40 * 16)  # force groups to split into chunks
    feats, labels, means = _planted_modes(sizes)
    centres = kmeans_submemories(feats, labels, n=4, seed=0)
    assert centres.shape == (len(sizes), 4, 16)
    for c in range(len(sizes)):
        worst, bijective = _match_rows(centres[c], means[c])
        assert bijective and worst < 1e-4


def test_kmeans_centres_are_a_lloyd_fixed_point():
    # random clusters: whatever the seeds, the converged centres are the means of their cells
    feats = _normalised(300, 12, 1)
    labels = np.random.default_rng(0).integers(0, 5, 300)
    centres = kmeans_submemories(feats, labels, n=4, seed=3, iterations=200).double()
    for c in range(5):
        points = feats[torch.as_tensor(labels == c)].double()
        nearest = torch.cdist(points, centres[c]).argmin(1)
        for k in range(4):
            cell = points[nearest == k]
            assert len(cell) > 0
            torch.testing.assert_close(centres[c, k], cell.mean(0), atol=1e-5, rtol=0)


def test_clusters_smaller_than_n_use_samples_then_mean_and_empty_clusters_are_zero():
    feats = _normalised(7, 5, 2)
    labels = np.array([1, 0, -1, 1, 0, 1, 2])  # cluster 0: rows 1, 4; 1: rows 0, 3, 5; 2: row 6
    got = kmeans_submemories(feats, labels, n=4, num_clusters=4)
    for c, rows in ((0, [1, 4]), (1, [0, 3, 5]), (2, [6])):
        mean = feats[rows].mean(0)
        expected = torch.stack([feats[r] for r in rows] + [mean] * (4 - len(rows)))
        torch.testing.assert_close(got[c], expected)
    assert torch.all(got[3] == 0)


def test_cluster_of_exactly_n_distinct_samples_keeps_them():
    feats = _normalised(4, 6, 3)
    got = kmeans_submemories(feats, np.zeros(4, dtype=np.int64), n=4)
    worst, bijective = _match_rows(got[0], feats)
    assert bijective and worst < 1e-6


def test_single_memory_is_the_unnormalised_mean():
    feats = _normalised(50, 6, 4)
    labels = np.arange(50) % 3
    got = kmeans_submemories(feats, labels, n=1)
    for c in range(3):
        torch.testing.assert_close(got[c, 0], feats[torch.as_tensor(labels == c)].mean(0), atol=1e-6, rtol=0)
    assert got[:, 0].norm(dim=1).max() < 0.9  # spread random points: the mean is well inside the sphere


def test_kmeans_is_deterministic_by_seed_and_accepts_tensor_labels():
    feats = _normalised(400, 8, 5)
    labels = np.random.default_rng(1).integers(-1, 6, 400)
    a = kmeans_submemories(feats, labels, n=4, seed=7)
    b = kmeans_submemories(feats, torch.as_tensor(labels), n=4, seed=7)
    assert torch.equal(a, b)
    # structureless data has many local optima: some other seed ends elsewhere
    assert any(not torch.allclose(a, kmeans_submemories(feats, labels, n=4, seed=s)) for s in range(8, 12))


def test_all_outliers_give_no_memories():
    assert kmeans_submemories(_normalised(5, 3, 6), -np.ones(5, dtype=np.int64)).shape == (0, 4, 3)
    with pytest.raises(ValueError):
        kmeans_submemories(_normalised(5, 3, 6), np.zeros(5, dtype=np.int64), n=0)


def test_restarts_lower_the_inertia_and_one_restart_is_the_plain_run():
    from vireid.clustering.memories import kmeans_submemories

    # 60 clusters of 12 random points, n = 4 centres: single k-means++ starts often end in worse local
    # optima; keeping the best of 10 starts must lower the total inertia (computed here by brute force)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(720, 5, generator=gen)
    labels = np.repeat(np.arange(60), 12)

    def inertia(centres: torch.Tensor) -> np.ndarray:
        return np.array([float(torch.cdist(feats[labels == c], centres[c]).pow(2).min(1).values.sum())
                         for c in range(60)])

    one = kmeans_submemories(feats, labels, n=4, seed=0)
    ten = kmeans_submemories(feats, labels, n=4, seed=0, restarts=10)
    assert inertia(ten).sum() < inertia(one).sum() - 1e-3
    assert torch.equal(one, kmeans_submemories(feats, labels, n=4, seed=0, restarts=1))
