"""The k-reciprocal Jaccard pass of `jaccard.py` (docs/method.md §5) in torch, on the features' device.

Same computation, same result as the scipy path, but nothing leaves the device until the finished
matrix is copied to the host as scipy CSR (for DBSCAN). A sparse N x N matrix here is a set of flat
arrays in row-major order: sorted keys `row * N + col`, or rows, cols and values with CSR row
pointers. Every step is an array operation over all samples at once:

- membership in a set of pairs (reciprocal test, expansion test, known kNN distances) is a binary
  search (`searchsorted`) of the pair's key in the set's sorted keys;
- sums over duplicate pairs (query expansion, min-sum accumulation) sort the keys and add the values
  of equal keys (`unique_consecutive` + `index_add_`);
- per-row softmax uses segment reductions over the row ids (`scatter_reduce_` / `index_add_`).

Steps whose working set can exceed O(N k) entries (expansion test, query expansion, min-sum terms)
run in blocks of rows holding at most `_ENTRIES_PER_BLOCK` entries, plus one row's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from vireid.progress import progress as progress_bar

__all__ = ["jaccard_from_knn_torch"]

_ENTRIES_PER_BLOCK = 1 << 22  # working entries of one block (expansion pairs, spread terms, min-sum terms)
_DOT_FLOATS = 1 << 24  # gathered feature floats per chunk when computing distances outside R(i)


class _SparseRows(NamedTuple):
    """An N x N sparse matrix in row-major order: entry e is (rows[e], cols[e]) = vals[e]; `ptr` (N+1,)
    are the CSR row pointers. All int64 / float64 tensors on one device."""

    ptr: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    vals: torch.Tensor


def jaccard_from_knn_torch(
    feats: torch.Tensor,
    knn_distances: torch.Tensor,
    knn_indices: torch.Tensor,
    k1: int,
    k2: int,
    infrared: np.ndarray | None,
    progress: bool = False,
) -> sp.csr_matrix:
    """`jaccard_from_knn` on `feats.device`; inputs already validated by the caller.

    `feats` (N, D) float32, `knn_distances` / `knn_indices` (N, K >= k1) squared distances and
    indices, `infrared` (N,) bool or None (plain query expansion). Returns the N x N float32 CSR matrix.
    """
    dev = feats.device
    n = feats.shape[0]
    searched = knn_indices.detach().to(dev, torch.int64)
    sq_norms = (feats * feats).sum(dim=1).double()
    # d(i, j) = 2 - 2<f_i, f_j> = ||f_i - f_j||^2 + 2 - ||f_i||^2 - ||f_j||^2 for j in R(i)
    knn_d = knn_distances.detach().to(dev, torch.float64) + (2.0 - sq_norms[:, None] - sq_norms[searched])
    knn = searched[:, :k1]
    half = round(k1 / 2) + 1  # N½ uses the first h+1 entries, h = round(k1 / 2) (half to even)
    recip = _reciprocal_keys(knn, n)
    expanded = _expanded_keys(recip, _reciprocal_keys(knn[:, :half], n), knn[:, :half], n)
    weights = _softmax_weights(expanded, searched, knn_d, feats)
    modalities = None if infrared is None else torch.as_tensor(infrared, device=dev)
    spread = _query_expansion(weights, knn[:, :k2], modalities)
    keys, sums = _upper_min_sums(spread, progress)
    return _to_scipy(*_mirror_upper(keys, _jaccard_from_sums(sums), n), n)


def _contains(sorted_keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Bool mask, shaped like `queries`: which queries occur in `sorted_keys` (1-D, ascending, non-empty)."""
    pos = torch.searchsorted(sorted_keys, queries).clamp_(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == queries


def _row_pointers(keys: torch.Tensor, n: int) -> torch.Tensor:
    """CSR row pointers (N+1,) of row-major sorted keys `row * N + col`."""
    return torch.searchsorted(keys, torch.arange(n + 1, device=keys.device) * n)


def _segments(starts: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions of the segments [starts[s], starts[s] + lengths[s]) one after the other, and for
    each position the segment s it belongs to; both (sum(lengths),) int64."""
    total = int(lengths.sum())
    owner = torch.repeat_interleave(torch.arange(lengths.numel(), device=starts.device), lengths, output_size=total)
    offsets = torch.cumsum(lengths, 0) - lengths  # where each segment begins in the output
    return (starts - offsets)[owner] + torch.arange(total, device=starts.device), owner


def _sum_duplicates(keys: torch.Tensor, vals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct keys, ascending, and the sum of the values of each; (M,) -> (U,), (U,)."""
    keys, order = torch.sort(keys)
    distinct, slot = torch.unique_consecutive(keys, return_inverse=True)
    sums = torch.zeros(distinct.numel(), dtype=vals.dtype, device=vals.device)
    return distinct, sums.index_add_(0, slot, vals[order])


def _row_blocks(per_row: torch.Tensor, budget: int) -> list[int]:
    """Row boundaries [0, ..., N] such that a block holds at most `budget` entries plus one row's."""
    n = per_row.numel()
    cum = torch.cat([per_row.new_zeros(1), torch.cumsum(per_row, 0)])
    total = int(cum[-1])
    if total <= budget:
        return [0, n]
    marks = torch.arange(budget, total, budget, device=cum.device)
    cuts = torch.searchsorted(cum, marks, side="left").clamp_(1, n).tolist()
    return sorted(set([0, *cuts, n]))


def _reciprocal_keys(lists: torch.Tensor, n: int) -> torch.Tensor:
    """Sorted keys of {(i, j): j in lists[i] and i in lists[j]}; `lists` (N, k) of distinct indices."""
    rows = torch.arange(n, device=lists.device).unsqueeze(1)
    ranked = torch.sort(rows * n + lists, dim=1).values.flatten()  # row-major: already ascending
    rows, cols = ranked // n, ranked % n
    return ranked[_contains(ranked, cols * n + rows)]


def _expanded_keys(recip: torch.Tensor, half_recip: torch.Tensor, half_lists: torch.Tensor, n: int) -> torch.Tensor:
    """Sorted keys of E(i): N(i) plus every N½(c), c in N(i), with |N½(c) ∩ N(i)| > 2/3 |N½(c)|.

    `recip`, `half_recip` are the sorted keys of N and N½; `half_lists` (N, h+1) the lists N½ comes from.
    """
    dev = recip.device
    width = half_lists.shape[1]
    rows = torch.arange(n, device=dev).unsqueeze(1)
    in_half = _contains(half_recip, rows * n + half_lists)  # (N, h+1): half_lists[c, t] in N½(c)
    half_size = in_half.sum(dim=1)
    per_row = torch.diff(_row_pointers(recip, n))
    bounds = _row_blocks(per_row * width, _ENTRIES_PER_BLOCK)
    starts = torch.searchsorted(recip, torch.tensor(bounds, device=dev) * n).tolist()
    parts = []
    for e0, e1 in zip(starts[:-1], starts[1:]):
        pairs = recip[e0:e1]  # (P,) pairs (i, c), c in N(i)
        owner, centre = pairs // n, pairs % n
        candidates = owner.unsqueeze(1) * n + half_lists[centre]  # (P, h+1) keys (i, j), j in half list of c
        member = in_half[centre]
        shared = (member & _contains(recip, candidates)).sum(dim=1)
        # integer form of |..| > 2/3 |N½(c)|; c = i always passes and adds nothing, as N½(i) ⊆ N(i)
        accepted = 3 * shared > 2 * half_size[centre]
        parts.append(torch.unique(torch.cat([pairs, candidates[member & accepted.unsqueeze(1)]])))
    return torch.cat(parts)


def _softmax_weights(
    expanded: torch.Tensor, knn: torch.Tensor, knn_d: torch.Tensor, feats: torch.Tensor
) -> _SparseRows:
    """V: row i is the softmax of -d(i, j) over j in E(i), 0 elsewhere (float64, rows sum to 1).

    `expanded` are the sorted keys of E; `knn`, `knn_d` (N, K) give d(i, j) for the searched
    neighbours; other pairs are computed from the features.
    """
    n = knn.shape[0]
    order = torch.argsort(knn, dim=1)
    rows_k = torch.arange(n, device=knn.device).unsqueeze(1)
    knn_keys = (rows_k * n + knn.gather(1, order)).flatten()
    knn_vals = knn_d.gather(1, order).flatten()
    rows, cols = expanded // n, expanded % n
    pos = torch.searchsorted(knn_keys, expanded).clamp_(max=knn_keys.numel() - 1)
    in_knn = knn_keys[pos] == expanded
    dist = torch.where(in_knn, knn_vals[pos], 0.0)
    outside = torch.nonzero(~in_knn).squeeze(1)
    dist[outside] = _pair_distances(feats, rows[outside], cols[outside])
    lowest = torch.full((n,), float("inf"), dtype=dist.dtype, device=dist.device)
    lowest.scatter_reduce_(0, rows, dist, reduce="amin")  # every row holds at least i itself
    weight = torch.exp(-(dist - lowest[rows]))
    total = torch.zeros(n, dtype=weight.dtype, device=weight.device).index_add_(0, rows, weight)
    return _SparseRows(_row_pointers(expanded, n), rows, cols, weight / total[rows])


def _pair_distances(feats: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """2 - 2<f_r, f_c> (float64) for the given (M,) pairs, in chunks that bound the gathered memory."""
    step = max(1, _DOT_FLOATS // max(1, feats.shape[1]))
    dots = [(feats[rows[s : s + step]] * feats[cols[s : s + step]]).sum(dim=1) for s in range(0, rows.numel(), step)]
    if not dots:
        return torch.empty(0, dtype=torch.float64, device=feats.device)
    return 2.0 - 2.0 * torch.cat(dots).double()


def _query_expansion(weights: _SparseRows, heads: torch.Tensor, infrared: torch.Tensor | None) -> _SparseRows:
    """V': row i is the mean of the V rows of its first k2 neighbours (`heads`, (N, k2)).

    With `infrared` (N,) bool, the visible and infrared neighbours are averaged separately and the two
    means averaged, when both modalities occur among the k2.
    """
    n, k2 = heads.shape
    if k2 == 1:
        return weights
    coef = _expansion_coefficients(heads, infrared).flatten()  # (N k2,)
    lengths = (weights.ptr[heads + 1] - weights.ptr[heads]).flatten()  # entries each head row brings
    keys, vals = [], []
    bounds = _row_blocks(lengths.view(n, k2).sum(dim=1), _ENTRIES_PER_BLOCK)
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        picked = slice(r0 * k2, r1 * k2)
        at, head = _segments(weights.ptr[heads.flatten()[picked]], lengths[picked])
        head += r0 * k2
        local = (head // k2 - r0) * n + weights.cols[at]
        block_keys, block_vals = _sum_duplicates(local, coef[head] * weights.vals[at])
        keys.append(block_keys + r0 * n)
        vals.append(block_vals)
    keys = torch.cat(keys)
    return _SparseRows(_row_pointers(keys, n), keys // n, keys % n, torch.cat(vals))


def _expansion_coefficients(heads: torch.Tensor, infrared: torch.Tensor | None) -> torch.Tensor:
    """(N, k2) float64 weight of each head in the mean: 1/k2, or the modality-balanced shares."""
    k2 = heads.shape[1]
    coef = torch.full(heads.shape, 1.0 / k2, dtype=torch.float64, device=heads.device)
    if infrared is None:
        return coef
    is_ir = infrared[heads]
    n_ir = is_ir.sum(dim=1, keepdim=True)
    mixed = ((n_ir > 0) & (n_ir < k2)).squeeze(1)
    share = torch.where(is_ir, 0.5 / n_ir.clamp(min=1).double(), 0.5 / (k2 - n_ir).clamp(min=1).double())
    coef[mixed] = share[mixed]
    return coef


def _upper_min_sums(spread: _SparseRows, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted keys (i, l), l >= i, with shared support and s(i, l) = sum_j min(V'[i, j], V'[l, j]).

    Through the inverted index V'^T: entry (i, j) meets every (l, j) with l >= i in column j's list,
    which is sorted by l, so its terms are one contiguous run of that list.
    """
    n = spread.ptr.numel() - 1
    col_order = torch.sort(spread.cols, stable=True).indices  # column-major, rows ascending in a column
    col_rows, col_vals = spread.rows[col_order], spread.vals[col_order]
    col_ptr = torch.searchsorted(spread.cols[col_order], torch.arange(n + 1, device=col_order.device))
    first = torch.empty_like(col_order)
    first[col_order] = torch.arange(col_order.numel(), device=col_order.device)  # where (i, j) sits in column j
    count = col_ptr[spread.cols + 1] - first  # terms of entry (i, j): l from i to the column's end
    cum = torch.cat([count.new_zeros(1), torch.cumsum(count, 0)])
    bounds = _row_blocks(cum[spread.ptr[1:]] - cum[spread.ptr[:-1]], _ENTRIES_PER_BLOCK)
    entry_bounds = spread.ptr[torch.tensor(bounds, device=col_order.device)].tolist()
    keys, sums = [], []
    blocks = list(zip(bounds[:-1], bounds[1:], entry_bounds[:-1], entry_bounds[1:]))
    for r0, r1, e0, e1 in progress_bar(blocks, desc="Jaccard", enabled=progress):
        at, entry = _segments(first[e0:e1], count[e0:e1])
        entry += e0
        mins = torch.minimum(spread.vals[entry], col_vals[at])
        local = (spread.rows[entry] - r0) * n + col_rows[at]
        if (r1 - r0) * n < np.iinfo(np.int32).max:
            local = local.int()  # a 32-bit sort is about twice as fast on a GPU
        block_keys, block_sums = _sum_duplicates(local, mins)
        keys.append(block_keys.long() + r0 * n)
        sums.append(block_sums)
    return torch.cat(keys), torch.cat(sums)


def _jaccard_from_sums(s: torch.Tensor) -> torch.Tensor:
    """J = 1 - s / (2 - s), clipped at 0, as float32 (same operations as the scipy path)."""
    return ((1.0 - s) / (2.0 - s) * 2.0).clamp_(min=0.0).float()


def _mirror_upper(keys: torch.Tensor, jac: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted keys and values of the symmetric matrix whose entries on and above the diagonal are
    (`keys`, `jac`); the diagonal is set to 0 (s(i, i) = 1) and stored."""
    rows, cols = keys // n, keys % n
    diagonal = rows == cols
    jac = jac.masked_fill(diagonal, 0.0)
    strict = ~diagonal
    both = torch.cat([keys, cols[strict] * n + rows[strict]])
    both, order = torch.sort(both)
    return both, torch.cat([jac, jac[strict]])[order]


def _to_scipy(keys: torch.Tensor, vals: torch.Tensor, n: int) -> sp.csr_matrix:
    """Host CSR matrix (float32, sorted indices) from sorted keys and their values."""
    itype = torch.int32 if max(n, keys.numel()) < np.iinfo(np.int32).max else torch.int64
    indptr = _row_pointers(keys, n).to(itype).cpu().numpy()
    indices = (keys % n).to(itype).cpu().numpy()
    out = sp.csr_matrix((vals.cpu().numpy(), indices, indptr), shape=(n, n))
    out.has_sorted_indices = True
    return out
