"""Samplers: batch composition, camera preference, replacement rules, determinism, DDP shares."""

from __future__ import annotations

import numpy as np
import pytest

from vireid.data.samplers import ClusterSampler, IdentitySampler, pk_batches, warmup_batches
from vireid.errors import VireidError


def toy_clusters():
    """Cluster 0: cams 1,1,1,2,2,2,2,2,2 (anchor on cam1 → 6 others, enough for K-1=3).
    Cluster 1: cams 1,1,1,1,2 (anchor cam1 → 1 other-camera sample: replacement).
    Cluster 2: one camera, 3 samples (no other cam: the other 2, with replacement).
    Cluster 3: a singleton. Plus outliers (-1)."""
    labels = [0] * 9 + [1] * 5 + [2] * 3 + [3] + [-1] * 4
    cams = [1, 1, 1, 2, 2, 2, 2, 2, 2] + [1, 1, 1, 1, 2] + [5, 5, 5] + [4] + [1, 2, 3, 4]
    perm = np.random.default_rng(0).permutation(len(labels))          # scramble dataset order
    return np.array(labels)[perm], np.array(cams)[perm]


def check_group(group, labels, cams, k):
    """The definition of one anchor + K-1 group, written plainly."""
    anchor, others = group[0], group[1:]
    c = labels[anchor]
    assert c >= 0 and all(labels[o] == c for o in others)
    members = [i for i in range(len(labels)) if labels[i] == c]
    diff = [i for i in members if cams[i] != cams[anchor]]
    candidates = diff if diff else [i for i in members if i != anchor]
    if not candidates:
        assert all(o == anchor for o in others)
        return
    assert all(o in candidates for o in others)
    if len(candidates) >= k - 1:
        assert len(set(others)) == k - 1                                 # without replacement


def test_cluster_sampler_groups_follow_the_definition():
    labels, cams = toy_clusters()
    k = 4
    sampler = ClusterSampler(labels, cams, batch_size=8, num_instances=k, iterations=10, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10 and all(len(b) == 8 for b in batches)
    flat = np.concatenate(batches)
    assert np.all(labels[flat] >= 0)                                     # outliers never drawn
    groups = flat.reshape(-1, k)
    for g in groups:
        check_group(list(g), labels, cams, k)
    # Clusters come in passes: every run of 4 consecutive groups from a pass start covers all clusters.
    order = labels[groups[:, 0]]
    for p in range(len(order) // 4):
        assert sorted(order[4 * p:4 * p + 4]) == [0, 1, 2, 3]
    # With replacement for the small candidate sets: cluster 1 from a cam-1 anchor repeats its cam-2 sample.
    c1 = [g for g in groups if labels[g[0]] == 1 and cams[g[0]] == 1]
    assert c1 and all(len(set(g[1:])) == 1 for g in c1)


def test_cluster_sampler_draws_all_other_camera_subsets_uniformly():
    # One cluster: anchor on cam 0 (1 sample) and 5 samples on cam 1; K-1 = 2 → 10 subsets.
    labels = np.zeros(6, dtype=int)
    cams = np.array([0, 1, 1, 1, 1, 1])
    sampler = ClusterSampler(labels, cams, batch_size=3, num_instances=3, iterations=30000, seed=0)
    groups = sampler.global_batches()
    from_cam0 = groups[groups[:, 0] == 0]
    subsets = [tuple(sorted(g[1:])) for g in from_cam0]
    counts = np.array([subsets.count(s) for s in sorted(set(subsets))])
    assert len(counts) == 10
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()
    assert 0.1 < len(from_cam0) / len(groups) < 0.25                     # anchor uniform: 1/6


def test_cluster_sampler_is_deterministic_per_seed_and_epoch():
    labels, cams = toy_clusters()
    a = ClusterSampler(labels, cams, batch_size=8, num_instances=4, iterations=6, seed=1)
    b = ClusterSampler(labels, cams, batch_size=8, num_instances=4, iterations=6, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first


def test_cluster_sampler_rank_shares_partition_the_global_batch():
    labels, cams = toy_clusters()
    kw = dict(batch_size=8, num_instances=2, iterations=5, seed=2)
    single = list(ClusterSampler(labels, cams, **kw))
    shares = [list(ClusterSampler(labels, cams, rank=r, world_size=4, **kw)) for r in range(4)]
    for i, batch in enumerate(single):
        parts = [s[i] for s in shares]
        assert all(len(p) == 2 for p in parts)
        assert sum(parts, []) == batch                                  # disjoint positions, same union


def test_cluster_sampler_refuses_all_outliers():
    with pytest.raises(VireidError, match="outlier"):
        ClusterSampler(np.full(5, -1), np.zeros(5, dtype=int))


def toy_identities():
    # id 0: 5 vis / 4 ir, id 1: 4 / 6, id 2: 3 vis (too few) / 9 ir, id 3: 8 / 2 ir (too few), id 4: 4 / 4
    lv = np.array([0] * 5 + [1] * 4 + [2] * 3 + [3] * 8 + [4] * 4 + [-1] * 3)
    lr = np.array([0] * 4 + [1] * 6 + [2] * 9 + [3] * 2 + [4] * 4 + [-1] * 2)
    rng = np.random.default_rng(1)
    return rng.permutation(lv), rng.permutation(lr)


def test_identity_sampler_composition():
    lv, lr = toy_identities()
    sampler = IdentitySampler(lv, lr, num_ids=2, num_instances=4, seed=0)
    assert len(sampler) == int(np.ceil((lv >= 0).sum() / 8))               # one pass over visible
    seen = set()
    for vis, ir in sampler:
        assert len(vis) == len(ir) == 8
        ids_v, ids_r = lv[vis].reshape(2, 4), lr[ir].reshape(2, 4)
        assert np.all(ids_v == ids_v[:, :1]) and np.all(ids_r == ids_r[:, :1])  # 4 per id, grouped
        assert np.array_equal(ids_v[:, 0], ids_r[:, 0])                       # same id order
        assert ids_v[0, 0] != ids_v[1, 0]                                     # distinct ids
        seen.update(ids_v[:, 0].tolist())
    assert seen <= {0, 1, 4} and len(seen) >= 2                              # ids 2 and 3 never drawn


def test_identity_sampler_draws_with_replacement_within_identity():
    lv = np.array([0] * 4 + [1] * 4)
    lr = np.array([0] * 4 + [1] * 4)
    sampler = IdentitySampler(lv, lr, num_ids=2, num_instances=4, iterations=200, seed=5)
    vis, _ = sampler.global_batches()
    groups = vis.reshape(-1, 4)
    repeats = np.mean([len(set(g)) < 4 for g in groups])
    assert 0.8 < repeats < 0.95                                             # 1 - 4!/4^4 ≈ 0.906


def test_identity_sampler_ranks_split_identities():
    lv, lr = toy_identities()
    kw = dict(num_ids=2, num_instances=4, iterations=3, seed=7)
    v_all, r_all = zip(*IdentitySampler(lv, lr, **kw))
    shares = [list(IdentitySampler(lv, lr, rank=r, world_size=2, **kw)) for r in range(2)]
    for i in range(3):
        np.testing.assert_array_equal(np.concatenate([shares[0][i][0], shares[1][i][0]]), v_all[i])
        np.testing.assert_array_equal(np.concatenate([shares[0][i][1], shares[1][i][1]]), r_all[i])
    s = IdentitySampler(lv, lr, **kw)
    first = [v.tolist() for v, _ in s]
    s.set_epoch(3)
    assert [v.tolist() for v, _ in s] != first


def test_warmup_batches_visit_every_labelled_sample_of_the_larger_modality_once():
    lv, lr = toy_identities()
    batches = list(warmup_batches(lv, lr, 8, np.random.default_rng(0)))
    big, small = ((lv, lr) if (lv >= 0).sum() >= (lr >= 0).sum() else (lr, lv))
    assert len(batches) == int(np.ceil((big >= 0).sum() / 8))
    vis = np.concatenate([b[0] for b in batches])
    ir = np.concatenate([b[1] for b in batches])
    first = vis if big is lv else ir
    other = ir if big is lv else vis
    np.testing.assert_array_equal(np.sort(first[: (big >= 0).sum()]), np.flatnonzero(big >= 0))
    assert set(other.tolist()) == set(np.flatnonzero(small >= 0).tolist())  # cycled, every sample seen
    ranks = [list(warmup_batches(lv, lr, 8, np.random.default_rng(0), rank=r, world_size=2)) for r in range(2)]
    for i, (v, r) in enumerate(batches):
        np.testing.assert_array_equal(np.concatenate([ranks[k][i][0] for k in range(2)]), v)
        np.testing.assert_array_equal(np.concatenate([ranks[k][i][1] for k in range(2)]), r)


@pytest.mark.parametrize("counts", [[5, 4, 9, 2, 6, 4, 7, 3], [4] * 8])
def test_pk_batches_take_every_identity_once_with_its_own_rows(counts):
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = labels[np.random.default_rng(1).permutation(len(labels))]
    batches = pk_batches(labels, ids_per_batch=2, per_id=4, rng=np.random.default_rng(0))
    assert len(batches) == len(counts) // 2
    ids_seen = []
    for rows in batches:
        assert rows.shape == (8,)
        for group in rows.reshape(2, 4):
            pid = labels[group[0]]
            assert (labels[group] == pid).all()
            if counts[pid] >= 4:
                assert len(set(group.tolist())) == 4  # no repeats when the identity has enough rows
            ids_seen.append(int(pid))
    assert sorted(ids_seen) == list(range(len(counts)))
