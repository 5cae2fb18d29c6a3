"""k-reciprocal Jaccard distance (Zhong et al. 2017; docs/method.md §5) as a sparse matrix in O(N·k) memory.

The usual implementation builds several dense N x N matrices and loops over samples in Python. Here
every step is a sparse-matrix or flat-array operation over all samples at once:

- reciprocal sets: elementwise product of the kNN indicator matrix with its transpose;
- expansion: `|N½(c) ∩ N(i)|` for every reciprocal pair (i, c) is one sparse product, the accepted
  half sets are merged by a second one;
- softmax weights over each E(i) with segment reductions; d(i, j) comes from the kNN search (which
  searches 2 k1 neighbours when that is cheaper, see `_search_width`) or, for the few pairs beyond
  it, from the features;
- query expansion: a sparse product with the (N x N, k2 entries per row) averaging matrix;
- `s(i, l) = sum_j min(V'[i, j], V'[l, j])`: through the inverted index V'^T, every (i, j, l) with
  l >= i sharing column j yields one term; the terms of a block of rows are summed per (i, l) by a
  sparse product with a 0/1 row-indicator matrix (no sort); blocks are sized so that at most
  `_TERMS_PER_BLOCK` terms exist at once.

That is the "scipy" backend, on the host. The "torch" backend (`jaccard_torch.py`) computes the same
result with torch sorts, binary searches and segment sums on the features' device, so CUDA features
stay on the GPU until the finished matrix is copied back; "auto" (the default) picks it for CUDA
features only, as on a CPU scipy's sparse products are the faster of the two.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from vireid.clustering.jaccard_torch import jaccard_from_knn_torch
from vireid.clustering.knn import knn_search
from vireid.errors import ConfigError
from vireid.progress import progress as progress_bar

__all__ = ["jaccard_distance", "jaccard_from_knn"]

_TERMS_PER_BLOCK = 1 << 21  # (i, j, l) terms summed at once: bounds the min-sum working memory
_ROWS_PER_PRODUCT = 1 << 15  # rows per chunk of the expansion-test product
_DOT_FLOATS = 1 << 24  # gathered feature floats per chunk when computing distances outside R(i)
_BACKENDS = ("auto", "scipy", "torch")


def jaccard_distance(
    features: torch.Tensor | np.ndarray,
    k1: int = 30,
    k2: int = 6,
    modalities: np.ndarray | None = None,
    block_size: int = 4096,
    progress: bool = False,
    backend: str = "auto",
) -> sp.csr_matrix:
    """Sparse k-reciprocal Jaccard distances between all rows of `features` (N, D), L2-normalised.

    Returns an N x N float32 CSR matrix with sorted indices. A missing entry means distance 1.0; every
    stored entry is the distance itself, explicit zeros included (the diagonal is always stored as 0),
    because DBSCAN counts stored entries as neighbours: never call `eliminate_zeros` on it. Only pairs
    sharing support in the expanded neighbourhoods are stored. `modalities` (N,) bool (True =
    infrared) selects the modality-balanced query expansion. The exact kNN search runs where the
    features live (GPU for CUDA tensors) in blocks of `block_size` rows; the rest runs there too with
    `backend="torch"`, on the CPU with "scipy"; "auto" = torch for CUDA features, else scipy.
    """
    feats = _as_features(features)
    n = feats.shape[0]
    _check_neighbourhood(n, k1, k2)
    width = _search_width(n, feats.shape[1], k1)
    knn_dist, knn_index = knn_search(feats, width, block_size=block_size, progress=progress)
    return jaccard_from_knn(
        feats, knn_dist, knn_index, k1=k1, k2=k2, modalities=modalities, progress=progress, backend=backend
    )


def jaccard_from_knn(
    features: torch.Tensor | np.ndarray,
    knn_distances: torch.Tensor,
    knn_indices: torch.Tensor,
    k1: int | None = None,
    k2: int = 6,
    modalities: np.ndarray | None = None,
    progress: bool = False,
    backend: str = "auto",
) -> sp.csr_matrix:
    """`jaccard_distance` from a precomputed kNN search, so callers can reuse or time the search.

    `knn_distances`, `knn_indices` are (N, K) as returned by `knn_search`, K >= k1 (default k1 = K):
    R(i) is the first k1 entries of row i; the others only serve as known distances. `backend` as in
    `jaccard_distance`, decided by where `features` live.
    """
    feats = _as_features(features)
    n, width = knn_indices.shape
    k1 = width if k1 is None else k1
    if k1 > width:
        raise ValueError(f"jaccard_from_knn: k1={k1} but only {width} neighbours per row were searched")
    _check_neighbourhood(n, k1, k2)
    balanced = _check_modalities(modalities, n)
    if _uses_torch(backend, feats.device):
        return jaccard_from_knn_torch(feats, knn_distances, knn_indices, k1, k2, balanced, progress)
    searched = knn_indices.detach().cpu().numpy().astype(np.int64, copy=False)
    sq_norms = (feats * feats).sum(dim=1).cpu().numpy().astype(np.float64)
    # d(i, j) = 2 - 2<f_i, f_j> = ||f_i - f_j||^2 + 2 - ||f_i||^2 - ||f_j||^2 for j in R(i)
    knn_d = knn_distances.detach().cpu().numpy().astype(np.float64)
    knn_d += 2.0 - sq_norms[:, None] - sq_norms[searched]
    knn = searched[:, :k1]

    half = round(k1 / 2) + 1  # N½ uses the first h+1 entries, h = round(k1 / 2) (half to even)
    recip = _reciprocal_sets(knn, n)
    half_recip = _reciprocal_sets(knn[:, :half], n)
    expanded = _expanded_sets(recip, half_recip)
    weights = _softmax_weights(expanded, searched, knn_d, feats)
    spread = _query_expansion(weights, knn[:, :k2], balanced)
    return _jaccard_from_weights(spread, progress)


def _search_width(n: int, dim: int, k1: int) -> int:
    """How many neighbours to search: k1, or 2 k1 so that the search also yields d(i, j) for nearly
    every j in E(i) outside R(i) (about a fifth of E(i) on clustered data).

    A wider top-k costs about N more element scans per row; computing the outside pairs instead
    gathers about 2 D floats for each of ~k1/5 pairs per row, a gathered float costing roughly 6
    scanned elements (measured on CPU). So widen when 2 k1 D > N: 20,000 x 2048 widens,
    200,000 x 128 does not.
    """
    return min(n, 2 * k1) if 2 * k1 * dim > n else k1


def _uses_torch(backend: str, device: torch.device) -> bool:
    """Whether the Jaccard pass runs in torch on `device` ("auto": only for CUDA features)."""
    if backend not in _BACKENDS:
        raise ConfigError(f"jaccard_distance: backend={backend!r}; expected one of {', '.join(_BACKENDS)}")
    return backend == "torch" or (backend == "auto" and device.type == "cuda")


def _as_features(features: torch.Tensor | np.ndarray) -> torch.Tensor:
    feats = torch.as_tensor(features).detach()
    if feats.dim() != 2:
        raise ValueError(f"jaccard_distance expects features of shape (N, D), got {tuple(feats.shape)}")
    return feats.float()


def _check_neighbourhood(n: int, k1: int, k2: int) -> None:
    if not 1 <= k1 <= n:
        raise ConfigError(f"jaccard_distance: k1={k1} for {n} samples; expected 1 <= k1 <= {n} (cluster k1)")
    if not 1 <= k2 <= k1:
        raise ConfigError(f"jaccard_distance: k2={k2} with k1={k1}; expected 1 <= k2 <= k1 (cluster k2)")


def _check_modalities(modalities: np.ndarray | None, n: int) -> np.ndarray | None:
    if modalities is None:
        return None
    mods = np.asarray(modalities)
    if mods.shape != (n,) or mods.dtype != np.bool_:
        raise ValueError(
            f"modalities must be a bool array of shape ({n},) (True = infrared), got {mods.dtype} {mods.shape}"
        )
    return mods


def _index_dtype(n: int, nnz: int) -> type:
    return np.int32 if max(n, nnz) < np.iinfo(np.int32).max else np.int64


def _lists_matrix(lists: np.ndarray, n: int, data: np.ndarray | None = None) -> sp.csr_matrix:
    """CSR matrix with row i holding `data[i]` (default 1) at columns `lists[i]`; (N, k) -> N x N."""
    rows, width = lists.shape
    itype = _index_dtype(n, rows * width)
    values = np.ones(rows * width, dtype=np.int32) if data is None else data.ravel()
    indptr = np.arange(0, rows * width + 1, width, dtype=itype)
    mat = sp.csr_matrix((values, lists.ravel().astype(itype), indptr), shape=(n, n))
    mat.sort_indices()
    return mat


def _reciprocal_sets(lists: np.ndarray, n: int) -> sp.csr_matrix:
    """0/1 matrix of {(i, j): j in lists[i] and i in lists[j]}; `lists` (N, k) starts with i."""
    ranked = _lists_matrix(lists, n)
    return ranked.multiply(ranked.T.tocsr()).tocsr()


def _expanded_sets(recip: sp.csr_matrix, half: sp.csr_matrix) -> sp.csr_matrix:
    """0/1 matrix of E(i): N(i) plus every N½(c), c in N(i), with |N½(c) ∩ N(i)| > 2/3 |N½(c)|."""
    half_t = half.T.tocsr()
    half_size = np.diff(half.indptr)
    accepted = []
    for start in range(0, recip.shape[0], _ROWS_PER_PRODUCT):
        block = recip[start : start + _ROWS_PER_PRODUCT]
        shared = (block @ half_t).multiply(block).tocsr()  # (i, c) -> |N(i) ∩ N½(c)|, c in N(i)
        shared.sort_indices()
        # integer form of |..| > 2/3 |N½(c)|; c = i always passes and adds nothing, as N½(i) ⊆ N(i)
        shared.data = (3 * shared.data > 2 * half_size[shared.indices]).astype(np.int32)
        shared.eliminate_zeros()
        accepted.append(shared)
    expanded = (recip + sp.vstack(accepted, format="csr") @ half).tocsr()
    expanded.sort_indices()
    expanded.data = np.ones_like(expanded.data)
    return expanded


def _softmax_weights(
    expanded: sp.csr_matrix, knn: np.ndarray, knn_d: np.ndarray, feats: torch.Tensor
) -> sp.csr_matrix:
    """V: row i is the softmax of -d(i, j) over j in E(i), 0 elsewhere (float64 CSR, rows sum to 1).

    `knn`, `knn_d` (N, K) give d(i, j) for the searched neighbours; other pairs are computed.
    """
    n = knn.shape[0]
    order = np.argsort(knn, axis=1)
    knn_keys = (np.arange(n, dtype=np.int64)[:, None] * n + np.take_along_axis(knn, order, axis=1)).ravel()
    knn_vals = np.take_along_axis(knn_d, order, axis=1).ravel()
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(expanded.indptr))
    cols = expanded.indices.astype(np.int64)
    keys = rows * n + cols  # sorted, as `expanded` is canonical
    pos = np.minimum(np.searchsorted(knn_keys, keys), knn_keys.size - 1)
    in_knn = knn_keys[pos] == keys
    dist = np.where(in_knn, knn_vals[pos], 0.0)
    outside = np.flatnonzero(~in_knn)
    dist[outside] = _pair_distances(feats, rows[outside], cols[outside])
    starts = expanded.indptr[:-1]  # every row holds at least i itself
    dist -= np.repeat(np.minimum.reduceat(dist, starts), np.diff(expanded.indptr))
    weight = np.exp(-dist)
    weight /= np.repeat(np.add.reduceat(weight, starts), np.diff(expanded.indptr))
    return sp.csr_matrix((weight, expanded.indices, expanded.indptr), shape=expanded.shape)


def _pair_distances(feats: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """2 - 2<f_r, f_c> for the given (M,) pairs, in chunks that bound the gathered memory."""
    out = np.empty(rows.size, dtype=np.float64)
    step = max(1, _DOT_FLOATS // max(1, feats.shape[1]))
    dev = feats.device
    for start in range(0, rows.size, step):
        r = torch.as_tensor(rows[start : start + step], device=dev)
        c = torch.as_tensor(cols[start : start + step], device=dev)
        dots = (feats[r] * feats[c]).sum(dim=1)
        out[start : start + step] = 2.0 - 2.0 * dots.double().cpu().numpy()
    return out


def _query_expansion(weights: sp.csr_matrix, heads: np.ndarray, balanced: np.ndarray | None) -> sp.csr_matrix:
    """V': row i is the mean of the V rows of its first k2 neighbours (`heads`, (N, k2)).

    With `balanced` (N,) bool (True = infrared), the visible and infrared neighbours are averaged
    separately and the two means averaged, when both modalities occur among the k2.
    """
    n, k2 = heads.shape
    if k2 == 1:
        return weights
    coef = np.full(heads.shape, 1.0 / k2)
    if balanced is not None:
        infrared = balanced[heads]
        n_ir = infrared.sum(axis=1, keepdims=True)
        mixed = ((n_ir > 0) & (n_ir < k2)).ravel()
        share = np.where(infrared, 0.5 / np.maximum(n_ir, 1), 0.5 / np.maximum(k2 - n_ir, 1))
        coef[mixed] = share[mixed]
    averaging = _lists_matrix(heads, n, coef)
    spread = (averaging @ weights).tocsr()
    spread.sort_indices()
    return spread


def _jaccard_from_weights(spread: sp.csr_matrix, progress: bool) -> sp.csr_matrix:
    """J = 1 - s / (2 - s), s(i, l) = sum_j min(V'[i, j], V'[l, j]), for pairs with shared support."""
    upper = _upper_min_sums(spread, progress)
    s = upper.data
    jac = np.subtract(1.0, s)
    jac /= np.subtract(2.0, s, out=s)  # J = (1 - s) / (2 - s) * 2 = 1 - s / (2 - s)
    jac *= 2.0
    upper.data = np.maximum(jac, 0.0, out=jac).astype(np.float32)
    return _mirror_upper(upper)


def _mirror_upper(upper: sp.csr_matrix) -> sp.csr_matrix:
    """The symmetric CSR matrix (sorted indices) whose entries on and above the diagonal are `upper`'s.

    Every row of `upper` must hold its diagonal entry; that entry is set to 0. Built from transposes
    and a row-wise concatenation, so explicit zeros survive (scipy's sparse addition would drop them)
    and nothing is sorted: row i = [columns <= i of the transpose, columns > i of `upper`].
    """
    n = upper.shape[0]
    lower = upper.T.tocsr()  # row l: columns i <= l ascending; its last entry is the diagonal
    lower.data[lower.indptr[1:] - 1] = 0.0  # J(i, i) = 0 exactly (s(i, i) = 1); stored, never dropped
    ordered = lower.T.tocsr()  # `upper` with rows ascending; each row starts with the diagonal
    keep = np.ones(ordered.nnz, dtype=bool)
    keep[ordered.indptr[:-1]] = False
    strict = sp.csr_matrix(
        (ordered.data[keep], ordered.indices[keep], ordered.indptr - np.arange(n + 1, dtype=ordered.indptr.dtype)),
        shape=(n, n),
    )
    both = sp.hstack([lower, strict], format="csr")  # (N, 2N): strict part in columns N..2N-1
    indices = both.indices
    indices[indices >= n] -= n
    out = sp.csr_matrix((both.data, indices, both.indptr), shape=(n, n))
    out.has_sorted_indices = True
    return out


def _upper_min_sums(spread: sp.csr_matrix, progress: bool) -> sp.csr_matrix:
    """s(i, l) for l >= i as CSR; built blockwise over rows through the inverted index V'^T."""
    n = spread.shape[0]
    # transpose entry ids instead of values, to know where each entry (i, j) of V' sits in row j of V'^T
    ids = sp.csr_matrix((np.arange(spread.nnz), spread.indices, spread.indptr), shape=spread.shape)
    ids_t = ids.T.tocsr()  # rows of the transpose come out in ascending order of i
    inverted = sp.csr_matrix((spread.data[ids_t.data], ids_t.indices, ids_t.indptr), shape=spread.shape)
    first = np.empty(spread.nnz, dtype=np.int64)
    first[ids_t.data] = np.arange(spread.nnz)
    entry_cols = spread.indices.astype(np.int64)
    # terms (i, j, l) for entry (i, j) run over row j of V'^T from l = i (where i sits) to its end
    count = inverted.indptr[entry_cols + 1] - first
    row_terms = np.add.reduceat(count, spread.indptr[:-1])  # every row of V' is non-empty
    cum_terms = np.concatenate(([0], np.cumsum(row_terms)))
    bounds = _row_blocks(cum_terms, _TERMS_PER_BLOCK)
    largest = int(np.diff(cum_terms[bounds]).max())
    steps = np.arange(largest + 1, dtype=_index_dtype(n, largest + 1))  # 0..T, shared by all blocks
    blocks = []
    for r0, r1 in progress_bar(list(zip(bounds[:-1], bounds[1:])), desc="Jaccard", enabled=progress):
        e0, e1 = spread.indptr[r0], spread.indptr[r1]
        cnt = count[e0:e1]
        total = int(cnt.sum())
        shift = first[e0:e1] - (np.cumsum(cnt) - cnt)
        where = np.repeat(shift, cnt)
        where += steps[:total]
        mins = np.minimum(np.repeat(spread.data[e0:e1], cnt), inverted.data[where])
        # sum the terms per (i, l): (B x T) 0/1 row indicator @ (T x N) one term per row
        term_ptr = (cum_terms[r0 : r1 + 1] - cum_terms[r0]).astype(steps.dtype)
        by_row = sp.csr_matrix((np.ones(total), steps[:total], term_ptr), shape=(r1 - r0, total))
        terms = sp.csr_matrix((mins, inverted.indices[where], steps[: total + 1]), shape=(total, n))
        blocks.append((by_row @ terms).tocsr())
    return sp.vstack(blocks, format="csr")


def _row_blocks(cum_terms: np.ndarray, budget: int) -> np.ndarray:
    """Row boundaries [0, ..., N] such that a block holds at most `budget` terms plus one row's.

    `cum_terms` (N + 1,) is the running number of terms before each row.
    """
    n = cum_terms.size - 1
    cuts = np.searchsorted(cum_terms, np.arange(budget, int(cum_terms[-1]), budget), side="left")
    return np.unique(np.concatenate(([0], np.clip(cuts, 1, n), [n])))
