"""Sparse k-reciprocal Jaccard distance against a dense, loop-by-loop reading of METHOD §5.

Both backends (scipy on the host, torch on the features' device) are checked against the reference
and against each other; the torch backend runs here on CPU tensors.
"""

import math

import numpy as np
import pytest
import torch

from vireid.clustering.jaccard import _uses_torch, jaccard_distance, jaccard_from_knn
from vireid.clustering.knn import knn_search
from vireid.errors import ConfigError


def ranked_lists(feats: np.ndarray) -> tuple[np.ndarray, list[list[int]]]:
    """d(i, j) = 2 - 2<f_i, f_j> (float64) and every sample's full ranking, itself first."""
    d = 2.0 - 2.0 * feats.astype(np.float64) @ feats.astype(np.float64).T
    ranking = [[i] + [j for j in np.argsort(d[i], kind="stable") if j != i] for i in range(len(d))]
    return d, ranking


def jaccard_reference(feats, k1, k2, modalities=None):
    """Dense Jaccard distance, shared-support mask, E(i) and R(i) sets, straight from the definition."""
    n = len(feats)
    d, ranking = ranked_lists(feats)
    R = [ranking[i][:k1] for i in range(n)]
    h = round(k1 / 2)
    Rh = [ranking[i][: h + 1] for i in range(n)]
    N = [{j for j in R[i] if i in R[j]} for i in range(n)]
    Nh = [{j for j in Rh[i] if i in Rh[j]} for i in range(n)]
    V = np.zeros((n, n))
    E = []
    for i in range(n):
        e = set(N[i])
        for c in N[i]:
            if len(Nh[c] & N[i]) > 2 / 3 * len(Nh[c]):
                e |= Nh[c]
        e = sorted(e)
        E.append(e)
        w = np.exp(-d[i, e])
        V[i, e] = w / w.sum()
    Vq = np.zeros((n, n))
    for i in range(n):
        heads = R[i][:k2]
        vis = [j for j in heads if modalities is None or not modalities[j]]
        ir = [j for j in heads if modalities is not None and modalities[j]]
        if vis and ir:
            Vq[i] = 0.5 * (V[vis].mean(axis=0) + V[ir].mean(axis=0))
        else:
            Vq[i] = V[heads].mean(axis=0)
    J = np.ones((n, n))
    support = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for l in range(n):
            support[i, l] = ((Vq[i] > 0) & (Vq[l] > 0)).any()
            if support[i, l]:
                s = np.minimum(Vq[i], Vq[l]).sum()
                J[i, l] = max(1.0 - s / (2.0 - s), 0.0)
    return J, support, E, R


def assert_no_ambiguous_cut(feats, cuts):
    """Test-input guard: no near-tie straddles a cut, so the ranked sets are well defined."""
    d, ranking = ranked_lists(feats)
    for i, order in enumerate(ranking):
        for p in cuts:
            if 2 <= p < len(order):  # the tie between i and a copy of i at p = 1 is resolved by "i first"
                assert abs(d[i, order[p]] - d[i, order[p - 1]]) > 3e-6, f"ambiguous cut {p} in row {i}"


def clustered(seed, n, dim, clusters, noise, duplicates=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, dim))
    if duplicates:
        x[rng.choice(n, duplicates, replace=False)] = x[rng.choice(n, duplicates, replace=False)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def dense(jac):
    out = np.ones(jac.shape)
    coo = jac.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


def assert_same_matrix(jac, other):
    """Same CSR layout (pattern, order, dtypes) and values equal to float32 rounding."""
    assert jac.dtype == other.dtype == np.float32
    assert jac.indices.dtype == other.indices.dtype and jac.indptr.dtype == other.indptr.dtype
    assert jac.has_sorted_indices and other.has_sorted_indices
    np.testing.assert_array_equal(jac.indptr, other.indptr)
    np.testing.assert_array_equal(jac.indices, other.indices)
    np.testing.assert_allclose(jac.data, other.data, atol=1e-6, rtol=0)


def check_against_reference(feats, k1, k2, modalities=None):
    """Both backends against the reference, and against each other; returns the scipy result."""
    assert_no_ambiguous_cut(feats, {k1, round(k1 / 2) + 1, k2})
    ref, support, E, R = jaccard_reference(feats, k1, k2, modalities)
    results = []
    for backend in ("scipy", "torch"):
        jac = jaccard_distance(torch.from_numpy(feats), k1, k2, modalities=modalities, block_size=64, backend=backend)
        assert_matches_reference(jac, ref, support)
        results.append(jac)
    assert_same_matrix(*results)
    return results[0], E, R


def assert_matches_reference(jac, ref, support):
    np.testing.assert_allclose(dense(jac), ref, atol=1e-5, rtol=0)
    # exactly the pairs with shared support are stored
    stored = np.zeros(jac.shape, dtype=bool)
    coo = jac.tocoo()
    stored[coo.row, coo.col] = True
    np.testing.assert_array_equal(stored, support)


@pytest.mark.parametrize(
    "seed, n, dim, clusters, noise, k1, k2",
    [
        (0, 240, 16, 12, 0.5, 20, 6),
        (1, 180, 8, 9, 0.6, 10, 4),
        (2, 120, 24, 6, 0.9, 7, 3),
        (3, 90, 4, 3, 0.3, 30, 6),
        (12, 100, 8, 5, 0.5, 8, 2),
    ],
)
def test_matches_dense_reference(seed, n, dim, clusters, noise, k1, k2):
    feats = clustered(seed, n, dim, clusters, noise)
    jac, E, R = check_against_reference(feats, k1, k2)
    # the inputs exercise the expansion: some E(i) reach beyond R(i)
    assert any(set(e) - set(r) for e, r in zip(E, R))


def test_duplicate_points():
    # every point twice: each ranking is [i, copy of i, pair, pair, ...], so even cut positions
    # (k1 = 10, h + 1 = 6, k2 = 4) never split a tie and the sets stay well defined
    distinct = clustered(4, 100, 12, 8, 0.5)
    feats = np.concatenate([distinct, distinct])
    jac, _, _ = check_against_reference(feats, 10, 4)
    # a point and its copy have identical V' rows: distance 0, stored explicitly
    for i in (0, 37, 99):
        row = jac.getrow(i)
        assert i + 100 in row.indices and row.toarray()[0, i + 100] == pytest.approx(0.0, abs=1e-6)


def test_k2_one_means_no_query_expansion():
    feats = clustered(5, 150, 10, 8, 0.6)
    check_against_reference(feats, 14, 1)


def test_modality_balanced_query_expansion():
    feats = clustered(6, 200, 12, 10, 0.6)
    rng = np.random.default_rng(6)
    modalities = rng.random(200) < 0.4
    jac, _, R = check_against_reference(feats, 16, 6, modalities)
    heads = np.array([r[:6] for r in R])
    mixed = modalities[heads].any(1) & (~modalities[heads]).any(1)
    assert mixed.any() and not mixed.all()  # both branches of the balanced mean are used
    plain = jaccard_distance(torch.from_numpy(feats), 16, 6)
    assert abs(plain - jac).max() > 1e-3  # and balancing changes the result


def test_modality_pure_neighbourhoods_fall_back_to_the_plain_mean():
    # three separated groups of 50: all visible, all infrared, mixed; no kNN list leaves its group
    rng = np.random.default_rng(8)
    groups = np.repeat(np.arange(3), 50)
    x = 3 * rng.normal(size=(3, 10))[groups] + 0.5 * rng.normal(size=(150, 10))
    feats = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    modalities = (groups == 1) | ((groups == 2) & (rng.random(150) < 0.5))
    jac, _, R = check_against_reference(feats, 12, 5, modalities)
    assert all(groups[j] == groups[i] for i in range(150) for j in R[i])
    plain = dense(jaccard_distance(torch.from_numpy(feats), 12, 5))
    balanced = dense(jac)
    # pure groups: the balanced mean is the plain mean; the mixed group differs
    pure = groups < 2
    np.testing.assert_allclose(balanced[pure], plain[pure], atol=1e-6)
    assert np.abs(balanced[~pure] - plain[~pure]).max() > 1e-3


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_distances_outside_the_searched_lists_are_computed(backend):
    # pass exactly k1 neighbours, so every pair of E(i) outside R(i) is computed from the features
    feats = clustered(8, 160, 8, 8, 0.6)
    assert_no_ambiguous_cut(feats, {12, 7, 4})
    ref, _, E, R = jaccard_reference(feats, 12, 4)
    assert any(set(e) - set(r) for e, r in zip(E, R))
    dist, index = knn_search(torch.from_numpy(feats), 12)
    jac = jaccard_from_knn(torch.from_numpy(feats), dist, index, k2=4, backend=backend)
    np.testing.assert_allclose(dense(jac), ref, atol=1e-5, rtol=0)


def test_tiny_working_blocks_give_the_same_result(monkeypatch):
    # force many blocks in every bounded-memory loop: min-sum terms, expansion rows, query expansion,
    # pair distances; in both backends
    import vireid.clustering.jaccard as module
    import vireid.clustering.jaccard_torch as torch_module

    feats = clustered(13, 160, 8, 8, 0.6)
    modalities = np.random.default_rng(13).random(160) < 0.5
    assert_no_ambiguous_cut(feats, {12, 7, 4})
    ref, _, _, _ = jaccard_reference(feats, 12, 4, modalities)
    monkeypatch.setattr(module, "_TERMS_PER_BLOCK", 97)
    monkeypatch.setattr(module, "_ROWS_PER_PRODUCT", 7)
    monkeypatch.setattr(module, "_DOT_FLOATS", 40)
    monkeypatch.setattr(torch_module, "_ENTRIES_PER_BLOCK", 97)
    monkeypatch.setattr(torch_module, "_DOT_FLOATS", 40)
    dist, index = knn_search(torch.from_numpy(feats), 12)
    for backend in ("scipy", "torch"):
        jac = jaccard_from_knn(torch.from_numpy(feats), dist, index, k2=4, modalities=modalities, backend=backend)
        np.testing.assert_allclose(dense(jac), ref, atol=1e-5, rtol=0)


def both_backends(feats, k1, k2, modalities=None):
    """The two backends' results for the same kNN search (so ties are broken the same way)."""
    x = torch.from_numpy(feats)
    dist, index = knn_search(x, min(len(feats), 2 * k1))
    return [
        jaccard_from_knn(x, dist, index, k1=k1, k2=k2, modalities=modalities, backend=backend)
        for backend in ("scipy", "torch")
    ]


@pytest.mark.parametrize(
    "seed, n, dim, clusters, noise, k1, k2, balanced",
    [
        (20, 400, 16, 20, 0.7, 20, 6, False),
        (21, 400, 16, 20, 0.7, 20, 6, True),
        (22, 300, 8, 6, 1.0, 30, 1, True),  # k2 = 1: no query expansion, modalities ignored
        (23, 200, 4, 10, 0.5, 1, 1, False),  # k1 = 1: every set is {i}
        (24, 200, 4, 10, 0.5, 2, 2, True),
        (25, 3, 4, 1, 0.5, 3, 2, True),  # tiny N: every sample a neighbour of every other
        (26, 2, 4, 2, 0.5, 1, 1, False),
        (27, 1, 4, 1, 0.5, 1, 1, False),
    ],
)
def test_torch_backend_equals_scipy_backend(seed, n, dim, clusters, noise, k1, k2, balanced):
    feats = clustered(seed, n, dim, clusters, noise)
    modalities = np.random.default_rng(seed).random(n) < 0.5 if balanced else None
    assert_same_matrix(*both_backends(feats, k1, k2, modalities))


def test_torch_backend_equals_scipy_backend_with_ties():
    # every point four times over and 2-D features on a small grid: kNN lists full of exact ties,
    # broken by the search; both backends must build the same sets from the same lists
    grid = np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(-1, 2) + 1.0
    grid = np.concatenate([grid, -grid])
    feats = np.repeat(grid / np.linalg.norm(grid, axis=1, keepdims=True), 4, axis=0).astype(np.float32)
    modalities = np.tile([True, False, False, True], len(grid))
    scipy_jac, torch_jac = both_backends(feats, 10, 4, modalities)
    assert_same_matrix(scipy_jac, torch_jac)
    assert (scipy_jac.data == 0).sum() > len(feats)  # copies at distance 0, stored explicitly


def test_backend_choice(monkeypatch):
    # "auto" keeps CPU features on scipy and sends CUDA features to torch; no GPU is needed to decide
    assert not _uses_torch("auto", torch.device("cpu"))
    assert _uses_torch("auto", torch.device("cuda", 0))
    assert _uses_torch("torch", torch.device("cpu")) and not _uses_torch("scipy", torch.device("cuda"))
    import vireid.clustering.jaccard as module

    def refuse(*args, **kwargs):
        raise AssertionError("the torch backend ran on CPU features with backend='auto'")

    monkeypatch.setattr(module, "jaccard_from_knn_torch", refuse)
    jaccard_distance(torch.from_numpy(clustered(14, 40, 4, 4, 0.5)), 5, 2)


def test_two_pairs_by_hand():
    # A, A' close together, B, B' close together and opposite; k1 = 2, k2 = 1
    theta = 0.3
    feats = np.array(
        [[1, 0], [math.cos(theta), math.sin(theta)], [-1, 0], [-math.cos(theta), -math.sin(theta)]], dtype=np.float32
    )
    jac = jaccard_distance(torch.from_numpy(feats), k1=2, k2=1)
    # V[A] = softmax(-[0, delta]) over {A, A'}, V[A'] its mirror: s = 2 min(p, 1 - p) = 2 (1 - p)
    delta = 2 - 2 * math.cos(theta)
    p = 1 / (1 + math.exp(-delta))
    s = 2 * (1 - p)
    expected = 1 - s / (2 - s)
    assert jac.nnz == 8  # two 2x2 blocks; A and B share nothing
    assert jac[0, 1] == pytest.approx(expected, abs=1e-6)
    assert jac[2, 3] == pytest.approx(expected, abs=1e-6)
    assert dense(jac)[0, 2] == 1.0


def test_explicit_zeros_are_stored():
    # exact duplicates: J(A, A') = 0 must be stored, as must every diagonal entry
    feats = np.array([[1, 0], [1, 0], [-1, 0], [-1, 0]], dtype=np.float32)
    jac = jaccard_distance(torch.from_numpy(feats), k1=2, k2=1)
    assert jac.nnz == 8
    assert (jac.data == 0).all()
    rows = np.repeat(np.arange(4), np.diff(jac.indptr))
    pairs = set(zip(rows.tolist(), jac.indices.tolist()))
    assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 3), (3, 2), (3, 3)}


def test_structure_diagonal_and_symmetry():
    feats = clustered(9, 220, 16, 11, 0.7)
    jac = jaccard_distance(torch.from_numpy(feats), 20, 6)
    assert jac.format == "csr" and jac.dtype == np.float32 and jac.has_sorted_indices
    rows = np.repeat(np.arange(220), np.diff(jac.indptr))
    diagonal = jac.indices == rows
    assert diagonal.sum() == 220 and (jac.data[diagonal] == 0).all()
    pattern = set(zip(rows.tolist(), jac.indices.tolist()))
    assert pattern == {(j, i) for i, j in pattern}
    np.testing.assert_array_equal(jac.toarray(), jac.toarray().T)
    assert ((jac.data >= 0) & (jac.data <= 1)).all()


def test_invalid_settings():
    feats = torch.from_numpy(clustered(10, 20, 4, 2, 0.5))
    with pytest.raises(ConfigError, match="k1=21"):
        jaccard_distance(feats, k1=21)
    with pytest.raises(ConfigError, match="k2=8"):
        jaccard_distance(feats, k1=5, k2=8)
    with pytest.raises(ValueError, match="modalities"):
        jaccard_distance(feats, k1=5, k2=2, modalities=np.zeros(19, dtype=bool))
    with pytest.raises(ConfigError, match="backend='cupy'"):
        jaccard_distance(feats, k1=5, k2=2, backend="cupy")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("balanced", [False, True])
def test_cuda_features_give_the_reference_result(balanced):
    feats = clustered(14, 300, 32, 12, 0.6)
    modalities = np.random.default_rng(14).random(300) < 0.5 if balanced else None
    assert_no_ambiguous_cut(feats, {20, 11, 6})  # the GPU rounds distances differently: no near-ties at cuts
    ref, support, _, _ = jaccard_reference(feats, 20, 6, modalities)
    cpu = jaccard_distance(torch.from_numpy(feats), 20, 6, modalities=modalities)
    for backend in ("auto", "scipy"):  # "auto" = torch on the GPU
        gpu = jaccard_distance(torch.from_numpy(feats).cuda(), 20, 6, modalities=modalities, backend=backend)
        assert_matches_reference(gpu, ref, support)
        np.testing.assert_array_equal(gpu.indptr, cpu.indptr)
        np.testing.assert_array_equal(gpu.indices, cpu.indices)
        np.testing.assert_allclose(gpu.data, cpu.data, atol=1e-5, rtol=0)
