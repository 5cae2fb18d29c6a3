"""Exact blocked kNN search against a brute-force float64 search."""

import numpy as np
import pytest
import torch

from vireid.clustering.knn import knn_search
from vireid.errors import ConfigError


def brute_force(feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances and neighbours by a plain loop; the sample itself first."""
    x = feats.astype(np.float64)
    dists, neighbours = [], []
    for i in range(len(x)):
        d = ((x - x[i]) ** 2).sum(axis=1)
        order = [i] + [j for j in np.argsort(d, kind="stable") if j != i]
        neighbours.append(order[:k])
        dists.append(d[order[:k]])
    return np.array(dists), np.array(neighbours)


def test_matches_brute_force_across_block_boundaries():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(157, 12)).astype(np.float32)  # not normalised: plain squared Euclidean
    ref_d, ref_i = brute_force(feats, 10)
    dist, index = knn_search(torch.from_numpy(feats), 10, block_size=32)  # 4 full blocks + a partial one
    assert dist.dtype == torch.float32 and index.dtype == torch.int64
    assert dist.shape == index.shape == (157, 10)
    np.testing.assert_array_equal(index.numpy(), ref_i)
    np.testing.assert_allclose(dist.numpy(), ref_d, rtol=1e-5, atol=1e-4)


def test_rows_sorted_ascending_and_start_with_the_sample():
    rng = np.random.default_rng(1)
    feats = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(64, 8)).astype(np.float32)), dim=1)
    dist, index = knn_search(feats, 64, block_size=5)
    assert (dist[:, 1:] >= dist[:, :-1]).all()
    np.testing.assert_array_equal(index[:, 0].numpy(), np.arange(64))
    assert (dist[:, 0] == 0).all()
    # k = N: every row is a permutation of all samples
    np.testing.assert_array_equal(np.sort(index.numpy(), axis=1), np.tile(np.arange(64), (64, 1)))


def test_duplicates_still_put_the_sample_itself_first():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(5, 6)).astype(np.float32)
    feats = np.concatenate([base, base, base])  # every point three times
    dist, index = knn_search(torch.from_numpy(feats), 3, block_size=4)
    np.testing.assert_array_equal(index[:, 0].numpy(), np.arange(15))
    # the next two are the other copies, at distance 0
    copies = {i: {i % 5, i % 5 + 5, i % 5 + 10} - {i} for i in range(15)}
    for i in range(15):
        assert set(index[i, 1:].tolist()) == copies[i]
    np.testing.assert_allclose(dist.numpy(), 0.0, atol=1e-5)


def test_all_identical_points():
    feats = torch.ones(9, 4)
    _, index = knn_search(feats, 4, block_size=2)
    np.testing.assert_array_equal(index[:, 0].numpy(), np.arange(9))
    assert all(len(set(row)) == 4 for row in index.tolist())


def test_block_size_does_not_change_the_result():
    rng = np.random.default_rng(3)
    feats = torch.from_numpy(rng.normal(size=(50, 7)).astype(np.float32))
    d1, i1 = knn_search(feats, 6, block_size=1)
    d2, i2 = knn_search(feats, 6, block_size=50)
    d3, i3 = knn_search(feats, 6, block_size=4096)
    assert torch.equal(i1, i2) and torch.equal(i2, i3)
    torch.testing.assert_close(d1, d3)


def test_full_precision_matmul_is_used_and_the_global_setting_restored():
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(80, 16)).astype(np.float32)
    ref_d, ref_i = brute_force(feats, 8)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # allows bf16/TF32 matmuls where supported
    try:
        dist, index = knn_search(torch.from_numpy(feats), 8, block_size=16)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)
    np.testing.assert_array_equal(index.numpy(), ref_i)
    np.testing.assert_allclose(dist.numpy(), ref_d, rtol=1e-5, atol=1e-4)


def test_invalid_arguments():
    feats = torch.zeros(5, 3)
    with pytest.raises(ConfigError, match="k=6"):
        knn_search(feats, 6)
    with pytest.raises(ConfigError, match="k=0"):
        knn_search(feats, 0)
    with pytest.raises(ConfigError, match="block_size"):
        knn_search(feats, 2, block_size=0)
    with pytest.raises(ValueError, match="shape"):
        knn_search(torch.zeros(5), 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(4)
    feats = torch.from_numpy(rng.normal(size=(300, 32)).astype(np.float32))
    ref_d, ref_i = brute_force(feats.numpy(), 12)
    dist, index = knn_search(feats.cuda(), 12, block_size=64)
    assert dist.device.type == "cuda" and index.device.type == "cuda"
    np.testing.assert_array_equal(index.cpu().numpy(), ref_i)
    np.testing.assert_allclose(dist.cpu().numpy(), ref_d, rtol=1e-4, atol=1e-3)
    # CPU features searched on the GPU come back on the CPU
    dist2, index2 = knn_search(feats, 12, device="cuda")
    assert index2.device.type == "cpu"
    np.testing.assert_array_equal(index2.numpy(), ref_i)
