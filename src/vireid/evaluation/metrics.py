"""Ranking metrics for cross-modality retrieval (docs/method.md §7): CMC, mAP and mINP.

The per-query definitions are the standard ones; what is particular here is how they are computed.
A per-query loop sorts every gallery row, O(G log G) per query, and that dominates its time. We
never sort a row. Only a query's own matches (a few per identity) are sorted; AP, INP and the CMC
need nothing but the position of each match, i.e. how many other entries rank before it. Entries
ranked after the last match change none of the metrics, so one pass over the distances keeps the
others up to the last match's distance, and a monotone binning against the sorted matches places
each of them exactly (see `_bucket_slots`). All of it runs on blocks of queries at once, on the
device of `distmat` (CPU or CUDA). Speed: `benchmarks/evaluation.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vireid.errors import ConfigError

PROTOCOLS = ("sysu", "regdb", "llcm")
# Queries are processed in blocks of about this many (query, gallery) pairs, to bound memory.
_BLOCK_PAIRS = 1 << 19


@dataclass
class RankingResult:
    """Metrics over the valid queries (those with at least one match left in the gallery).

    `cmc` (max_rank,) float64: fraction of valid queries whose first match is within rank k+1.
    `mAP`, `mINP`: means of AP and INP over valid queries, in [0, 1].
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid: int

    def as_dict(self) -> dict[str, float]:
        """Rank-1/5/10/20 (those within `max_rank`), mAP and mINP as plain fractions."""
        out = {f"rank{k}": float(self.cmc[k - 1]) for k in (1, 5, 10, 20) if k <= len(self.cmc)}
        out["mAP"] = float(self.mAP)
        out["mINP"] = float(self.mINP)
        return out


def evaluate_ranking(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any = None,
    g_camids: Any = None,
    protocol: str = "sysu",
    max_rank: int = 20,
) -> RankingResult:
    """CMC, mAP and mINP of ranking the gallery for every query by ascending distance.

    `distmat` (Q, G) numpy array or torch tensor (finite values); pids and camids (Q,) / (G,).
    Ties in distance are broken by gallery order (the order of a stable sort).
    Per protocol:
    - "sysu": for queries from camera 3, gallery entries from camera 2 are removed (camids needed).
      CMC is computed on the ranked list with repeated pids removed (first occurrence kept), as in
      the protocol's released code; mAP and mINP on the full list after the removal.
    - "regdb": no removal; CMC on the full ranked list.
    - "llcm": gallery entries with the query's pid *and* camera are removed (camids needed); CMC on
      the pid-deduplicated list like "sysu", mAP and mINP on the full list after the removal, as in
      the LLCM authors' released `eval_llcm` (an LLCM camera records both modalities).
    Queries without any match are skipped. If max_rank exceeds the list length, the CMC is padded
    with its last value (a query with a match counts 1 from its first match on).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    dist = _as_tensor(distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries, gallery), got shape {tuple(dist.shape)}")
    if not dist.is_floating_point() or dist.dtype in (torch.float16, torch.bfloat16):
        dist = dist.float()
    dist = dist.contiguous()
    device = dist.device
    num_q, num_g = dist.shape
    q_pid = _as_ids(q_pids, "q_pids", num_q, device)
    g_pid = _as_ids(g_pids, "g_pids", num_g, device)
    if num_q == 0 or num_g == 0:
        raise ValueError(f"no valid query: distmat has shape {tuple(dist.shape)}")
    q_cam3 = torch.zeros(num_q, dtype=torch.bool, device=device)
    g_cam2 = torch.zeros(num_g, dtype=torch.bool, device=device)
    same_camera = None
    if protocol in ("sysu", "llcm") and (q_camids is None or g_camids is None):
        rule = "cam3 queries ignore cam2 gallery" if protocol == "sysu" else "same-pid same-camera entries are removed"
        raise ValueError(f"protocol {protocol!r} needs q_camids and g_camids ({rule})")
    if protocol == "sysu":
        q_cam3 = _as_ids(q_camids, "q_camids", num_q, device) == 3
        g_cam2 = _as_ids(g_camids, "g_camids", num_g, device) == 2
    elif protocol == "llcm":
        same_camera = (_as_ids(q_camids, "q_camids", num_q, device), _as_ids(g_camids, "g_camids", num_g, device))
    with _single_threaded(device):
        if not bool(torch.isfinite(dist.sum())) and not bool(torch.isfinite(dist).all()):
            raise ValueError("distmat contains NaN or infinite distances")
        first_rank, ap, inp = _rank_all(dist, q_pid, g_pid, q_cam3, g_cam2, same_camera, dedup=protocol != "regdb")
    num_valid = len(first_rank)
    if num_valid == 0:
        raise ValueError(f"no valid query: none of the {num_q} queries has a match in the gallery "
                         f"(protocol {protocol!r})")
    hist = torch.bincount(first_rank.clamp(max=max_rank + 1), minlength=max_rank + 2)
    cmc = hist[1:max_rank + 1].cumsum(0).double().numpy() / num_valid
    return RankingResult(cmc=cmc, mAP=float(ap.mean()), mINP=float(inp.mean()), num_valid=num_valid)


def _rank_all(
    dist: torch.Tensor,
    q_pid: torch.Tensor,
    g_pid: torch.Tensor,
    q_cam3: torch.Tensor,
    g_cam2: torch.Tensor,
    same_camera: tuple[torch.Tensor, torch.Tensor] | None,
    dedup: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First-match rank, AP and INP of the valid queries (CPU tensors), by blocks of queries.

    `same_camera` = (query camids (Q,), gallery camids (G,)) removes each query's matches in its own
    camera; None keeps them.
    """
    g_unique, g_code = torch.unique(g_pid, return_inverse=True)
    spot = torch.searchsorted(g_unique, q_pid).clamp(max=len(g_unique) - 1)
    q_code = torch.where(g_unique[spot] == q_pid, spot, torch.full_like(spot, -1))
    members = _members_by_pid(g_code, len(g_unique))
    block = max(1, _BLOCK_PAIRS // dist.shape[1])
    parts = []
    for s in range(0, dist.shape[0], block):
        cameras = None if same_camera is None else (same_camera[0][s:s + block], same_camera[1])
        parts.append(_rank_block(dist[s:s + block], q_code[s:s + block], q_cam3[s:s + block], g_code, g_cam2,
                                 cameras, members, len(g_unique), dedup))
    return tuple(torch.cat([p[i] for p in parts]).cpu() for i in range(3))  # type: ignore[return-value]


@contextmanager
def _single_threaded(device: torch.device) -> Iterator[None]:
    """Run CPU work on one intra-op thread: the per-block operations are too small for threads to
    pay off, and on a busy machine their synchronisation costs several times the work itself."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.ascontiguousarray(x))


def _as_ids(x: Any, name: str, length: int, device: torch.device) -> torch.Tensor:
    t = _as_tensor(x).to(device=device).reshape(-1)
    if t.numel() != length:
        raise ValueError(f"{name} has {t.numel()} entries, but distmat has {length} along that axis")
    return t.long()


def _members_by_pid(g_code: torch.Tensor, num_pids: int) -> torch.Tensor:
    """(U, Mmax) gallery indices of each pid code in ascending order, padded with -1."""
    order = torch.argsort(g_code, stable=True)
    counts = torch.bincount(g_code, minlength=num_pids)
    starts = counts.cumsum(0) - counts
    sorted_code = g_code[order]
    slot = torch.arange(len(order), device=g_code.device) - starts[sorted_code]
    members = torch.full((num_pids, int(counts.max())), -1, dtype=torch.long, device=g_code.device)
    members[sorted_code, slot] = order
    return members


def _rank_block(
    dist: torch.Tensor,
    q_code: torch.Tensor,
    q_cam3: torch.Tensor,
    g_code: torch.Tensor,
    g_cam2: torch.Tensor,
    same_camera: tuple[torch.Tensor, torch.Tensor] | None,
    members: torch.Tensor,
    num_pids: int,
    dedup: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First-match rank, AP and INP (each (V,)) of the V valid queries of a block of B queries.

    `dist` (B, G) contiguous. A query's ranked list is the gallery sorted by (distance, index)
    without the excluded entries (cam2 for a cam3 query; with `same_camera` = (query camids (B,),
    gallery camids (G,)), the query's matches in its own camera). Only the query's matches are sorted.
    Entries ranked after the last match change nothing, so only the other entries up to the last
    match's distance are gathered; each gets its bucket, the number of matches ranked before it,
    and the position of sorted match m is m + 1 + (number of those entries with bucket <= m).
    """
    device = dist.device
    idx = members[q_code.clamp(min=0)]  # (B, M) the query's matches in gallery order, -1 padded
    member = (idx >= 0) & (q_code >= 0)[:, None]
    idx = idx.clamp(min=0)
    listed = member & ~(q_cam3[:, None] & g_cam2[idx])
    if same_camera is not None:
        listed &= same_camera[1][idx] != same_camera[0][:, None]
    n_match = listed.sum(1)
    valid = n_match > 0
    if not bool(valid.all()):
        dist, idx, member, listed, n_match, q_cam3 = (dist[valid], idx[valid], member[valid], listed[valid],
                                                      n_match[valid], q_cam3[valid])
    num, m_max = idx.shape
    if num == 0:
        empty = torch.empty(0, device=device)
        return empty.long(), empty.double(), empty.double()

    # matches sorted by (distance, gallery index): idx rows ascend, so a stable sort suffices
    t = dist.gather(1, idx).masked_fill(~listed, float("inf"))
    t, perm = torch.sort(t, dim=1, stable=True)
    tj = idx.gather(1, perm)
    listed = torch.arange(m_max, device=device)[None, :] < n_match[:, None]

    # the entries that can rank before a match: not behind the last one, not of the query's pid
    # (listed matches are placed below; removed ones are in no list), not excluded
    num_g = dist.shape[1]
    drop = torch.zeros(num, num_g + 1, dtype=torch.bool, device=device)
    drop.scatter_(1, torch.where(member, idx, num_g), True)
    (cam3,), (cam2,) = q_cam3.nonzero(as_tuple=True), g_cam2.nonzero(as_tuple=True)
    if len(cam3) and len(cam2):
        drop[cam3[:, None], cam2[None, :]] = True
    flat, rows = _near_entries(dist, t.gather(1, (n_match - 1)[:, None]), drop[:, :num_g])
    slot = _bucket_slots(flat, rows, num_g, dist.view(-1).take(flat), t, tj, listed, n_match)

    counts = torch.bincount(slot, minlength=num * (m_max + 1)).view(num, m_max + 1)
    ordinal = torch.arange(1, m_max + 1, device=device)
    position = counts[:, :m_max].cumsum(1) + ordinal  # (V, M) 1-based position of each sorted match
    ap = (ordinal.double() / position.double() * listed).sum(1) / n_match.double()
    inp = n_match.double() / position.gather(1, (n_match - 1)[:, None]).squeeze(1).double()
    if dedup:
        # the first match's rank among distinct pids: 1 + the pids with an entry before it
        ahead = _nonzero(slot == rows * (m_max + 1))
        pid = g_code.take(flat.take(ahead) % num_g)
        seen = torch.bincount(rows.take(ahead) * num_pids + pid, minlength=num * num_pids)
        first_rank = (seen.view(num, num_pids) > 0).sum(1) + 1
    else:
        first_rank = position[:, 0]
    return first_rank, ap, inp


def _near_entries(dist: torch.Tensor, last: torch.Tensor, drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-major flat indices (K,) and rows (K,) of the entries with dist <= last (V, 1), not `drop`.

    The one pass over every (query, gallery) pair; numpy does it several times faster on CPU.
    """
    if dist.device.type == "cpu":
        near = np.less_equal(dist.numpy(), last.numpy())
        np.greater(near, drop.numpy(), out=near)  # on booleans, a > b is a and not b
        flat = np.flatnonzero(near)
        return torch.from_numpy(flat), torch.from_numpy(flat // dist.shape[1])
    flat = ((dist <= last) > drop).view(-1).nonzero().squeeze(1)
    return flat, torch.div(flat, dist.shape[1], rounding_mode="floor")


def _nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the True entries of a 1-D mask (numpy's is several times faster on CPU)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.nonzero().squeeze(1)


def _bucket_slots(
    flat: torch.Tensor,
    rows: torch.Tensor,
    num_g: int,
    d: torch.Tensor,
    t: torch.Tensor,
    tj: torch.Tensor,
    listed: torch.Tensor,
    n_match: torch.Tensor,
) -> torch.Tensor:
    """(K,) int32 `row * (M + 1) + bucket` of the non-matching entries `flat` = row * G + column
    at distances `d`, where bucket = the number of the row's matches ranked before the entry.

    `t` (V, M): each row's match distances sorted by (distance, gallery index `tj`); `listed`
    marks the real ones. Instead of a binary search per entry, distances are mapped to bins
    between the first and the last match by a monotone affine map. An entry in a bin that holds no
    match is placed exactly by a table lookup (monotone: a lower bin means a smaller distance).
    Entries sharing a bin with matches, which includes every exact tie, are compared with those.
    """
    num, m_max = t.shape
    num_bins = int(min(8192, max(16, len(rows) // num)))
    lo = t[:, 0]
    span = t.gather(1, (n_match - 1)[:, None]).squeeze(1) - lo
    # bin(x) = x * scale + offset clamped to [0, num_bins + 1]: 0 below the first match, 1 at it,
    # num_bins at the last, num_bins + 1 for the +inf of unlisted slots. Rounding keeps the map
    # monotone; the floor on span only bounds offset (coarser bins, still exact).
    scale = (num_bins - 1) / span.clamp(min=1e-6 * (lo.abs() + 1.0))
    offset = 1.0 - lo * scale

    def to_bin(x: torch.Tensor, x_scale: torch.Tensor, x_offset: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(x_offset, x, x_scale).clamp_(0.0, num_bins + 1.0).long()

    width = num_bins + 2
    per_bin = torch.zeros(num, width, dtype=torch.int32, device=t.device)
    per_bin.scatter_add_(1, to_bin(t, scale[:, None], offset[:, None]), listed.int())
    first = per_bin.cumsum(1, dtype=torch.int32) - per_bin  # (V, width) first match index of a bin
    row_base = torch.arange(num, dtype=torch.int32, device=t.device)[:, None] * (m_max + 1)
    table = (first + row_base).masked_fill_(per_bin > 0, -1)  # -1: matches in this bin
    cell = rows * width + to_bin(d, scale.take(rows), offset.take(rows))
    slot = table.view(-1).take(cell)
    shared = _nonzero(slot < 0)
    if len(shared):
        r, cell, d = rows.take(shared), cell.take(shared), d.take(shared)
        col = flat.take(shared) - r * num_g
        m0, count = first.view(-1).take(cell).long(), per_bin.view(-1).take(cell)
        at = r * m_max + m0  # flat index of the bin's first match in t and tj
        bucket = m0.clone()
        for j in range(int(count.max())):  # the matches of one bin, mostly a single one
            tm, jm = t.view(-1).take(at), tj.view(-1).take(at)
            bucket += (j < count) & ((tm < d) | ((tm == d) & (jm < col)))
            at = (at + 1).clamp_(max=t.numel() - 1)
        slot[shared] = (bucket + r * (m_max + 1)).int()
    return slot
