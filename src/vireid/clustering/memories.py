"""Cluster memories: one centroid per cluster (CMC stage) or n K-means centres per cluster (MMLM).

Both work on all clusters at once. The K-means runs Lloyd's algorithm on each cluster's Gram
matrix (a cluster's centres always lie in the span of its own samples): after one batched `X Xᵀ`
per group of similar-sized clusters, an iteration costs O(S²·n) per cluster instead of O(S·n·D),
so the run time hardly depends on the number of iterations.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["cluster_means", "cluster_centroids", "kmeans_submemories"]

# Padded values (rows × D) held at once by one K-means group: bounds peak memory.
_GROUP_ELEMENTS = 1 << 22
# Largest ratio between cluster sizes in one group: padding costs at most this squared in Gram work.
_GROUP_RATIO = 1.25


def _labels_on(labels: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Labels as an int64 tensor on `device` (accepts numpy arrays and tensors)."""
    return torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels,
                           device=device).long().reshape(-1)


def _num_clusters(labels: torch.Tensor, num_clusters: int | None) -> int:
    if num_clusters is not None:
        return int(num_clusters)
    return int(labels.max()) + 1 if labels.numel() and bool((labels >= 0).any()) else 0


def cluster_means(features: torch.Tensor, labels: np.ndarray | torch.Tensor,
                  num_clusters: int | None = None) -> torch.Tensor:
    """Mean feature of every cluster, (C, D), not normalised; a cluster without samples gets zeros.

    features (N, D), labels (N,) with -1 = outlier (ignored); C = `num_clusters` or max label + 1.
    """
    lab = _labels_on(labels, features.device)
    count = _num_clusters(lab, num_clusters)
    valid = lab >= 0
    sums = features.new_zeros(count, features.shape[1])
    sums.index_add_(0, lab[valid], features[valid])
    sizes = torch.bincount(lab[valid], minlength=count).to(features.dtype)
    return sums / sizes.clamp_min(1)[:, None]


def cluster_centroids(features: torch.Tensor, labels: np.ndarray | torch.Tensor,
                      num_clusters: int | None = None) -> torch.Tensor:
    """L2-normalised mean feature of every cluster: the ClusterNCE memory, (C, D).

    A cluster without samples gets a zero row (see `cluster_means`).
    """
    lab = _labels_on(labels, features.device)
    count = _num_clusters(lab, num_clusters)
    valid = lab >= 0
    sums = features.new_zeros(count, features.shape[1])
    sums.index_add_(0, lab[valid], features[valid])
    return F.normalize(sums, dim=1)


def kmeans_submemories(features: torch.Tensor, labels: np.ndarray | torch.Tensor, n: int = 4,
                       seed: int = 0, iterations: int = 50,
                       num_clusters: int | None = None, restarts: int = 1) -> torch.Tensor:
    """n K-means centres per cluster, the multi-memories K(p) of MMLM (docs/method.md §6.2).

    features (N, D) (normalised, as produced by extraction), labels (N,) with -1 ignored
    → (C, n, D) on the features' device. Each cluster with at least n samples runs k-means++
    (seeded `torch.Generator`) then Lloyd iterations until no assignment changes or
    `iterations` updates; a centre that loses all its samples keeps its position. A cluster
    with fewer than n samples takes its samples (in input order) padded with its mean; an
    empty cluster gets zeros. As in the reference, K-means runs on the normalised features
    and the centres (means) are *not* re-normalised. With `restarts` > 1 each cluster runs that
    many seedings and keeps the one of lowest inertia (the released code's scikit-learn K-means
    uses 10). Deterministic for a given seed and device.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    device = features.device
    lab = _labels_on(labels, device)
    count = _num_clusters(lab, num_clusters)
    dim = features.shape[1]
    out = features.new_zeros(count, n, dim)
    if count == 0:
        return out
    valid = torch.nonzero(lab >= 0).squeeze(1)
    order = valid[torch.argsort(lab[valid], stable=True)]  # samples grouped by cluster, input order kept
    sizes = torch.bincount(lab[valid], minlength=count)
    starts = torch.cumsum(sizes, 0) - sizes
    generator = torch.Generator(device=device).manual_seed(int(seed))

    sizes_np = sizes.cpu().numpy()
    small = np.nonzero((sizes_np > 0) & (sizes_np < n))[0]
    if small.size:
        ids = torch.as_tensor(small, device=device)
        points, mask = _gather_padded(features, order, starts[ids], sizes[ids], n)
        mean = points.sum(1) / sizes[ids, None].to(points.dtype)
        out[ids] = torch.where(mask[..., None], points, mean[:, None, :])
    for ids_np, width in _size_groups(sizes_np, n, dim):
        ids = torch.as_tensor(ids_np, device=device)
        points, mask = _gather_padded(features, order, starts[ids], sizes[ids], width)
        out[ids] = _kmeans_padded(points, mask, n, generator, iterations, restarts)
    return out


def _size_groups(sizes: np.ndarray, n: int, dim: int) -> list[tuple[np.ndarray, int]]:
    """Clusters with >= n samples grouped by size, each group with its padded width.

    Sizes within a group differ by less than `_GROUP_RATIO`, which bounds the padding (and the
    wasted Gram work, ∝ width²); groups are split so that one holds at most `_GROUP_ELEMENTS`
    padded values (small blocks also let the allocator reuse memory instead of faulting in pages).
    """
    ids = np.nonzero(sizes >= n)[0]
    if ids.size == 0:
        return []
    ids = ids[np.argsort(sizes[ids], kind="stable")]
    keys = np.floor(np.log(sizes[ids]) / np.log(_GROUP_RATIO)).astype(np.int64)
    groups = []
    for key in np.unique(keys):
        members = ids[keys == key]
        width = int(sizes[members].max())
        per_chunk = max(1, _GROUP_ELEMENTS // (width * dim))
        groups.extend((members[i:i + per_chunk], width) for i in range(0, members.size, per_chunk))
    return groups


def _gather_padded(features: torch.Tensor, order: torch.Tensor, starts: torch.Tensor,
                   sizes: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples of B clusters as a zero-padded (B, width, D) block and its (B, width) mask."""
    offsets = torch.arange(width, device=features.device)
    mask = offsets[None, :] < sizes[:, None]
    rows = torch.where(mask, starts[:, None] + offsets[None, :], starts[:, None])
    points = features.index_select(0, order[rows].reshape(-1)).view(*rows.shape, features.shape[1])
    points[torch.nonzero(~mask, as_tuple=True)] = 0.0  # integer indices: touches padding rows only
    return points, mask


def _kmeans_padded(points: torch.Tensor, mask: torch.Tensor, n: int, generator: torch.Generator,
                   iterations: int, restarts: int = 1) -> torch.Tensor:
    """k-means++ and Lloyd on B padded clusters at once; (B, S, D), (B, S) → centres (B, n, D).

    Centres are kept as weights over the cluster's samples, A (B, n, S), centre = A·X, so
    distances come from the Gram matrix G = X Xᵀ: ‖x_i − c_k‖² = G_ii − 2(G Aᵀ)_ik + (A G Aᵀ)_kk.
    Restarts are more rows of the same batch (restart r of cluster j at row r·B + j); the one of
    lowest inertia wins (ties: the first).
    """
    batch = points.shape[0]
    gram = points @ points.transpose(1, 2)  # (B, S, S)
    if restarts > 1:
        gram, mask = gram.repeat(restarts, 1, 1), mask.repeat(restarts, 1)
    weights, inertia = _lloyd(gram, mask, n, generator, iterations)
    if restarts > 1:
        best = inertia.view(restarts, batch).argmin(0)  # (B,)
        weights = weights.view(restarts, batch, n, -1)[best, torch.arange(batch, device=points.device)]
    return weights @ points


def _lloyd(gram: torch.Tensor, mask: torch.Tensor, n: int, generator: torch.Generator,
           iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeds then Lloyd iterations on Gram matrices (B, S, S): the centre weights (B, n, S)
    and each cluster's inertia (B,), the summed squared distance of its samples to their centres."""
    sq = gram.diagonal(dim1=1, dim2=2)  # (B, S)
    maskf = mask.to(gram.dtype)
    chosen = _kmeanspp_seeds(gram, sq, maskf, n, generator)  # (B, n)
    weights = torch.zeros(gram.shape[0], n, gram.shape[1], dtype=gram.dtype, device=gram.device)
    weights.scatter_(2, chosen[..., None], 1.0)
    previous = None
    codes = torch.arange(n, device=gram.device)

    def distances(w: torch.Tensor) -> torch.Tensor:  # (B, S, n) squared distances to the centres
        cross = gram @ w.transpose(1, 2)  # (B, S, n): x_i · c_k
        centre_sq = (w * cross.transpose(1, 2)).sum(2)  # (B, n): ‖c_k‖²
        return sq[..., None] - 2.0 * cross + centre_sq[:, None, :]

    for _ in range(iterations):
        assign = torch.where(mask, distances(weights).argmin(2), -1)
        if previous is not None and torch.equal(assign, previous):
            break
        previous = assign
        onehot = (assign[..., None] == codes).to(gram.dtype)  # (B, S, n); padding matches no code
        counts = onehot.sum(1)  # (B, n)
        updated = onehot.transpose(1, 2) / counts.clamp_min(1.0)[..., None]
        weights = torch.where(counts[..., None] > 0, updated, weights)
    inertia = (distances(weights).min(2).values.clamp_min(0.0) * maskf).sum(1)
    return weights, inertia


def _kmeanspp_seeds(gram: torch.Tensor, sq: torch.Tensor, maskf: torch.Tensor, n: int,
                    generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding for B clusters: indices (B, n), each draw ∝ squared distance to the nearest seed."""
    def sq_dist_to(index: torch.Tensor) -> torch.Tensor:  # index (B, 1) → (B, S)
        column = gram.gather(2, index[:, None, :].expand(-1, gram.shape[1], 1)).squeeze(2)
        return (sq - 2.0 * column + sq.gather(1, index)).clamp_min(0.0) * maskf

    seeds = [torch.multinomial(maskf, 1, generator=generator)]
    nearest = sq_dist_to(seeds[0])
    for _ in range(1, n):
        # all remaining points coincide with a seed: any valid sample is as good as another
        prob = torch.where(nearest.sum(1, keepdim=True) > 0, nearest, maskf)
        seeds.append(torch.multinomial(prob, 1, generator=generator))
        nearest = torch.minimum(nearest, sq_dist_to(seeds[-1]))
    return torch.cat(seeds, 1)

