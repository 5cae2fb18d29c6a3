"""Batch samplers for the CMC stage (clusters × instances) and the SCA stage (identities × modalities).

All samplers are deterministic functions of (seed, epoch): call `set_epoch(e)` before iterating.
Under DDP every rank builds the same global batch and keeps its own contiguous share of its samples
(`rank_share`), so the union over ranks is exactly the single-process batch and the shares are
disjoint. No batch size has to divide by the number of ranks: shares differ by at most one sample.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from vireid.errors import NoClustersError


def rank_share(size: int, rank: int, world_size: int) -> slice:
    """The contiguous part of a global batch of `size` items that `rank` keeps: [r·size/W, (r+1)·size/W)
    rounded down, so the shares cover the batch and differ by at most one item (size // W each when
    W divides size)."""
    return slice(rank * size // world_size, (rank + 1) * size // world_size)


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def _distinct_draws(rng: np.random.Generator, n: np.ndarray, k: int) -> np.ndarray:
    """For every row r, k distinct integers in [0, n[r]) (requires n >= k): (R, k), Floyd's algorithm.

    Floyd's algorithm vectorised over rows: step t draws v in [0, n-k+t]; if v was already taken,
    take n-k+t itself. Uniform over k-subsets; k steps of array work whatever the cluster sizes.
    """
    rows = len(n)
    out = np.empty((rows, k), dtype=np.int64)
    for t in range(k):
        top = n - k + t                                      # (R,) inclusive upper bound
        v = np.floor(rng.random(rows) * (top + 1)).astype(np.int64)
        v = np.minimum(v, top)
        taken = (out[:, :t] == v[:, None]).any(axis=1)
        out[:, t] = np.where(taken, top, v)
    return out


class ClusterSampler:
    """CMC batches: clusters in random order, each giving an anchor plus K-1 instances (docs/method.md §6.1).

    `labels` (N,) pseudo-labels (-1 = outlier, never drawn), `camids` (N,). For each cluster: one
    anchor uniformly; the K-1 others come from the cluster's samples whose camera differs from the
    anchor's, or, when the cluster has one camera, from its other samples; drawn without
    replacement when that set has >= K-1 members, else with replacement (a singleton cluster
    repeats its sample). The groups are concatenated in cluster order (a new random order each pass
    over the clusters) and cut into `iterations` batches of `batch_size`. Yields lists of indices;
    with world_size > 1 each rank gets its `rank_share` of each batch.
    """

    def __init__(
        self,
        labels: np.ndarray,
        camids: np.ndarray,
        batch_size: int = 128,
        num_instances: int = 16,
        iterations: int = 200,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check_rank(rank, world_size)
        labels = np.asarray(labels, dtype=np.int64)
        camids = np.asarray(camids, dtype=np.int64)
        if labels.shape != camids.shape:
            raise ValueError(f"labels {labels.shape} and camids {camids.shape} differ in shape")
        members = np.flatnonzero(labels >= 0)
        if len(members) == 0:
            raise NoClustersError("no clusters to sample from: every sample is an outlier "
                                  "(try a larger cluster.eps or a smaller cluster.min_samples)")
        # Sort members by (cluster, camera): a cluster is a contiguous run, and inside it each camera.
        order = members[np.lexsort((camids[members], labels[members]))]
        self.order = order
        self.cluster_of = labels[order]
        self.cam_of = camids[order]
        clusters, self.start, self.size = np.unique(self.cluster_of, return_index=True, return_counts=True)
        self.clusters = clusters
        # For every sorted position, the run of equal (cluster, camera) it belongs to.
        new_run = np.ones(len(order), dtype=bool)
        new_run[1:] = (np.diff(self.cluster_of) != 0) | (np.diff(self.cam_of) != 0)
        run_id = np.cumsum(new_run) - 1
        run_start = np.flatnonzero(new_run)
        run_len = np.diff(np.append(run_start, len(order)))
        self.run_start = run_start[run_id]
        self.run_len = run_len[run_id]
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.iterations = iterations
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    @property
    def num_clusters(self) -> int:
        return len(self.clusters)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.iterations

    def global_batches(self) -> np.ndarray:
        """All indices of this epoch's batches before the DDP split: (iterations, batch_size)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        k = self.num_instances
        total = self.iterations * self.batch_size
        draws = -(-total // k)
        passes = -(-draws // self.num_clusters)
        cluster_seq = np.concatenate([rng.permutation(self.num_clusters) for _ in range(passes)])[:draws]
        groups = self._groups(rng, cluster_seq)             # (draws, K) positions in self.order
        return self.order[groups.reshape(-1)[:total]].reshape(self.iterations, self.batch_size)

    def _groups(self, rng: np.random.Generator, cluster_seq: np.ndarray) -> np.ndarray:
        """Anchor + K-1 instances for each drawn cluster, as sorted positions: (D, K)."""
        k = self.num_instances
        start, size = self.start[cluster_seq], self.size[cluster_seq]
        anchor = start + np.minimum(np.floor(rng.random(len(cluster_seq)) * size).astype(np.int64), size - 1)
        run_start, run_len = self.run_start[anchor], self.run_len[anchor]
        n_other_cam = size - run_len
        multi_cam = n_other_cam > 0
        # Candidate set: other cameras when there are any, else the cluster without the anchor.
        n_cand = np.where(multi_cam, n_other_cam, size - 1)
        gap_at = np.where(multi_cam, run_start, anchor) - start   # candidates skip [gap_at, gap_at + gap)
        gap = np.where(multi_cam, run_len, 1)
        picks = np.zeros((len(cluster_seq), max(k - 1, 0)), dtype=np.int64)
        if k > 1:
            enough = n_cand >= k - 1
            if enough.any():
                picks[enough] = _distinct_draws(rng, n_cand[enough], k - 1)
            few = ~enough & (n_cand > 0)
            if few.any():
                u = rng.random((int(few.sum()), k - 1))
                picks[few] = np.minimum(np.floor(u * n_cand[few, None]).astype(np.int64), n_cand[few, None] - 1)
        offsets = picks + np.where(picks >= gap_at[:, None], gap[:, None], 0)
        others = start[:, None] + offsets
        others = np.where((n_cand > 0)[:, None], others, anchor[:, None])   # singleton: repeat the anchor
        return np.concatenate([anchor[:, None], others], axis=1)

    def __iter__(self) -> Iterator[list[int]]:
        share = rank_share(self.batch_size, self.rank, self.world_size)
        for batch in self.global_batches():
            yield batch[share].tolist()


def _members_by_label(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices sorted by label, and for each label in `keep` its start and count in that order."""
    valid = np.flatnonzero(labels >= 0)
    order = valid[np.argsort(labels[valid], kind="stable")]
    sorted_labels = labels[order]
    start = np.searchsorted(sorted_labels, keep, side="left")
    count = np.searchsorted(sorted_labels, keep, side="right") - start
    return order, start, count


class IdentitySampler:
    """SCA batches: P identities × K visible + K infrared samples (docs/method.md §6.3).

    Only labels with >= K samples in each modality are used; the P labels of a batch are distinct
    (all of them when fewer than P qualify), and each label's K samples per modality are drawn with
    replacement. Yields `(visible_indices, infrared_indices)`, int64 arrays of length P·K ordered
    by identity (K consecutive entries per identity, same identity order in both). Default
    `iterations`: ceil(number of non-outlier visible samples / (P·K)), i.e. about one pass over the
    visible samples. With world_size > 1 each rank keeps its `rank_share` of the P·K samples per
    modality (the same positions in both), so P need not divide by the number of ranks: with P=6,
    K=4 on 4 ranks each rank trains on 6 visible and 6 infrared samples, the first one holding four
    samples of identity 1 and two of identity 2. `batch_size` is the global P·K per modality.
    """

    def __init__(
        self,
        labels_visible: np.ndarray,
        labels_infrared: np.ndarray,
        num_ids: int = 8,
        num_instances: int = 4,
        iterations: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check_rank(rank, world_size)
        labels_v = np.asarray(labels_visible, dtype=np.int64)
        labels_r = np.asarray(labels_infrared, dtype=np.int64)
        ids_v, cnt_v = np.unique(labels_v[labels_v >= 0], return_counts=True)
        ids_r, cnt_r = np.unique(labels_r[labels_r >= 0], return_counts=True)
        common = np.intersect1d(ids_v[cnt_v >= num_instances], ids_r[cnt_r >= num_instances])
        if len(common) == 0:
            raise NoClustersError(f"no identity has >= {num_instances} samples in both modalities; "
                              "the SCA stage has nothing to train on (check the matched pseudo-labels)")
        self.identities = common
        self.order_v, self.start_v, self.count_v = _members_by_label(labels_v, common)
        self.order_r, self.start_r, self.count_r = _members_by_label(labels_r, common)
        self.num_ids = min(num_ids, len(common))
        self.num_instances = num_instances
        if self.num_ids * num_instances < world_size:
            raise NoClustersError(f"only {len(common)} identities have >= {num_instances} samples in both "
                                  f"modalities: {self.num_ids * num_instances} samples per SCA batch cannot "
                                  f"feed {world_size} processes (at least one each)")
        self.iterations = iterations if iterations is not None else -(-int((labels_v >= 0).sum()) // (self.num_ids * num_instances))
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.iterations

    @property
    def batch_size(self) -> int:
        """Samples per modality in a global batch: P·K."""
        return self.num_ids * self.num_instances

    def global_batches(self) -> tuple[np.ndarray, np.ndarray]:
        """(visible, infrared) indices of this epoch, each (iterations, P·K), before the DDP split."""
        rng = np.random.default_rng([self.seed, self.epoch])
        b, p, k = self.iterations, self.num_ids, self.num_instances
        chosen = np.argsort(rng.random((b, len(self.identities))), axis=1)[:, :p]     # (B, P) distinct
        return (self._draw(rng, chosen, self.order_v, self.start_v, self.count_v).reshape(b, p * k),
                self._draw(rng, chosen, self.order_r, self.start_r, self.count_r).reshape(b, p * k))

    def _draw(self, rng: np.random.Generator, chosen: np.ndarray, order: np.ndarray,
              start: np.ndarray, count: np.ndarray) -> np.ndarray:
        """K samples with replacement from each chosen identity: (B, P, K) dataset indices."""
        n = count[chosen][..., None]                                             # (B, P, 1)
        offset = np.minimum(np.floor(rng.random(chosen.shape + (self.num_instances,)) * n).astype(np.int64), n - 1)
        return order[start[chosen][..., None] + offset]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        part = rank_share(self.batch_size, self.rank, self.world_size)
        vis, ir = self.global_batches()
        for v, r in zip(vis, ir):
            yield v[part], r[part]


def warmup_batches(labels_visible: np.ndarray, labels_infrared: np.ndarray, batch_size: int,
                   rng: np.random.Generator, rank: int = 0, world_size: int = 1
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """SCA warm-up batches: every non-outlier sample of the larger modality once per epoch.

    Both modalities are shuffled; batch b pairs `batch_size` visible with `batch_size` infrared
    samples, the shorter list being cycled. Yields `(visible_indices, infrared_indices)`; with
    world_size > 1 each rank keeps its contiguous batch_size // world_size of both.
    """
    _check_rank(rank, world_size)
    rows_v = rng.permutation(np.flatnonzero(np.asarray(labels_visible) >= 0))
    rows_r = rng.permutation(np.flatnonzero(np.asarray(labels_infrared) >= 0))
    n = max(1, -(-max(len(rows_v), len(rows_r)) // batch_size))
    take_v = np.resize(rows_v, n * batch_size).reshape(n, batch_size)
    take_r = np.resize(rows_r, n * batch_size).reshape(n, batch_size)
    share = rank_share(batch_size, rank, world_size)
    for b in range(n):
        yield take_v[b, share], take_r[b, share]


def pk_batches(labels: np.ndarray, ids_per_batch: int, per_id: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of P×K batches over labelled data: every identity once, `per_id` of its rows
    (with replacement only when it has fewer). Returns row-index arrays of length ids_per_batch·per_id;
    identities left over after the last full batch are dropped."""
    num_ids = int(labels.max() + 1)
    order = np.argsort(labels, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(labels, minlength=num_ids))]
    counts = np.diff(starts)
    ids = rng.permutation(num_ids)
    # K random positions per id: a random permutation's first K ranks when the id has >= K rows
    keys = rng.random((num_ids, counts.max()))
    keys[np.arange(counts.max())[None, :] >= counts[:, None]] = np.inf
    pick = np.argsort(keys, axis=1)[:, :per_id]
    short = counts < per_id
    pick[short] = (rng.random((int(short.sum()), per_id)) * counts[short, None]).astype(np.int64)
    rows = order[starts[:-1, None] + pick]  # (P_all, K)
    batches = len(ids) // ids_per_batch
    return [rows[ids[b * ids_per_batch:(b + 1) * ids_per_batch]].reshape(-1) for b in range(batches)]


class EndlessBatches:
    """Batches of a sampler without end: when one pass is exhausted, the next epoch's pass starts
    (`set_epoch(epoch + 1)`), so CMC can draw a fixed number of iterations from any cluster count."""

    def __init__(self, sampler: "ClusterSampler") -> None:
        self.sampler, self.epoch, self.it = sampler, 0, iter(sampler)

    def __iter__(self) -> "EndlessBatches":
        return self

    def __next__(self) -> list[int]:
        try:
            return next(self.it)
        except StopIteration:
            self.epoch += 1
            self.sampler.set_epoch(self.epoch)
            self.it = iter(self.sampler)
            return next(self.it)
