"""MMLM matching: cost against a double loop, assignment against brute force, planted recovery."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vireid.clustering.matching import assign_clusters, memory_match_cost, multi_memory_match
from vireid.errors import ConfigError, VireidError


def _cost_loop(mem_v, mem_r, sum_over):
    mv, mr = mem_v.double().numpy(), mem_r.double().numpy()
    cost = np.zeros((len(mv), len(mr)))
    for p in range(len(mv)):
        for q in range(len(mr)):
            d = np.array([[np.linalg.norm(a - b) for b in mr[q]] for a in mv[p]])  # [i, j]
            cost[p, q] = d.min(1).sum() if sum_over == "visible" else d.min(0).sum()
    return cost


def _best_total(cost):
    """Minimum total cost of giving each of the min(Cv, Cr) columns/rows a distinct partner."""
    cv, cr = cost.shape
    if cv <= cr:
        return min(sum(cost[i, cols[i]] for i in range(cv)) for cols in itertools.permutations(range(cr), cv))
    return min(sum(cost[rows[j], j] for j in range(cr)) for rows in itertools.permutations(range(cv), cr))


def _planted(ids=6, modes=3, per_mode=(6, 4), dim=32, shift=0.6, seed=0):
    """Identities with several view modes, a shared infrared shift and permuted infrared cluster ids."""
    gen = torch.Generator().manual_seed(seed)
    centre = torch.randn(ids, dim, generator=gen)
    mode = 0.6 * torch.randn(ids, modes, dim, generator=gen)
    offset = shift * torch.randn(dim, generator=gen)
    feats, true = [], []
    for count, extra in zip(per_mode, (torch.zeros(dim), offset)):
        pid = torch.arange(ids).repeat_interleave(modes * count)
        m = torch.arange(modes).repeat_interleave(count).repeat(ids)
        raw = centre[pid] + mode[pid, m] + extra + 0.1 * torch.randn(len(pid), dim, generator=gen)
        feats.append(F.normalize(raw, dim=1))
        true.append(pid.numpy())
    perm = np.random.default_rng(seed).permutation(ids)
    return feats[0], true[0], feats[1], true[1], true[0].copy(), perm[true[1]]


@pytest.mark.parametrize("sum_over", ["visible", "infrared"])
def test_cost_equals_double_loop_over_memories(sum_over):
    gen = torch.Generator().manual_seed(0)
    mem_v, mem_r = torch.randn(5, 3, 7, generator=gen), torch.randn(4, 3, 7, generator=gen)
    got = memory_match_cost(mem_v, mem_r, sum_over, block_size=2)  # blocks of 2, 2, 1 visible clusters
    assert got.dtype == np.float64 and got.shape == (5, 4)
    np.testing.assert_allclose(got, _cost_loop(mem_v, mem_r, sum_over), rtol=1e-5)


def test_cost_sums_differ_between_sides():
    gen = torch.Generator().manual_seed(1)
    mem_v, mem_r = torch.randn(3, 4, 5, generator=gen), torch.randn(3, 4, 5, generator=gen)
    assert not np.allclose(memory_match_cost(mem_v, mem_r, "visible"), memory_match_cost(mem_v, mem_r, "infrared"))


@pytest.mark.parametrize("size", [1, 2, 4, 6])
def test_hungarian_pairs_are_optimal(size):
    rng = np.random.default_rng(size)
    for _ in range(3):
        cost = rng.random((size, size))
        pairs, rounds = assign_clusters(cost, "hungarian")
        assert np.array_equal(pairs[:, 0], np.arange(size)) and len(set(pairs[:, 1])) == size
        assert np.all(rounds == 1)
        assert cost[pairs[:, 0], pairs[:, 1]].sum() == pytest.approx(_best_total(cost))


def test_match_result_pairs_reach_the_brute_force_optimum_of_its_cost():
    fv, _, fr, _, lv, lr = _planted(ids=5, shift=2.0)  # a strong shift makes the cost non-trivial
    result = multi_memory_match(fv, lv, fr, lr, n_memories=3)
    total = result.cost[result.pairs[:, 0], result.pairs[:, 1]].sum()
    assert total == pytest.approx(_best_total(result.cost))


def test_more_visible_than_infrared_clusters_go_into_rounds():
    rng = np.random.default_rng(3)
    cost = rng.random((5, 2))
    pairs, rounds = assign_clusters(cost, "hungarian")
    assert np.array_equal(pairs[:, 0], np.arange(5)) and np.array_equal(np.sort(rounds), [1, 1, 2, 2, 3])
    for r in (1, 2, 3):
        in_round = pairs[rounds == r]
        assert len(set(in_round[:, 1])) == len(in_round)  # one-to-one within a round
    first = pairs[rounds == 1]
    assert cost[first[:, 0], first[:, 1]].sum() == pytest.approx(_best_total(cost))
    left = np.nonzero(rounds > 1)[0]
    second = pairs[rounds == 2]
    assert cost[second[:, 0], second[:, 1]].sum() == pytest.approx(_best_total(cost[left]))


def test_nearest_assignment_takes_each_rows_argmin():
    cost = np.array([[0.5, 0.1, 0.9], [0.2, 0.3, 0.4], [0.7, 0.05, 0.6]])
    pairs, rounds = assign_clusters(cost, "nearest")
    assert pairs.tolist() == [[0, 1], [1, 0], [2, 1]]  # many-to-one allowed
    assert rounds.tolist() == [1, 1, 1]


def test_planted_identities_are_recovered_across_modalities():
    fv, tv, fr, tr, lv, lr = _planted()
    lv[::7] = -1  # some visible outliers
    result = multi_memory_match(fv, lv, fr, lr, n_memories=4, seed=0)
    partner = dict(result.pairs.tolist())
    for p in range(6):  # visible cluster p is identity p; infrared cluster lr holds identity tr
        assert tr[lr == partner[p]][0] == p
    assert np.all(result.labels_v_transferred[lv == -1] == -1)
    kept = lv >= 0
    assert np.array_equal(result.labels_v_transferred[kept], [partner[p] for p in lv[kept]])
    scores = result.evaluate(tv, tr)
    assert scores == {"ari_transferred": 1.0, "ari_all": 1.0, "pair_precision": 1.0, "num_pairs": 6,
                      "pair_precision_chance": pytest.approx(1 / 6),  # one right partner among 6
                      "pair_precision_reachable": 1.0}  # every identity has an infrared cluster


def test_evaluate_counts_wrong_pairs_and_mixed_labels():
    fv, tv, fr, tr, lv, lr = _planted(ids=4)
    result = multi_memory_match(fv, lv, fr, lr, n_memories=2)
    # pretend the pairs were wrong for two visible clusters by swapping their partners
    result.pairs[[0, 1], 1] = result.pairs[[1, 0], 1]
    partner = result.pairs[:, 1]
    result.labels_v_transferred = partner[lv]
    scores = result.evaluate(tv, tr)
    assert scores["pair_precision"] == 0.5
    assert scores["ari_transferred"] == 1.0  # still a relabelling of the visible truth
    assert scores["ari_all"] < 1.0


def test_single_memory_matches_cluster_means():
    fv, _, fr, _, lv, lr = _planted(ids=4, seed=2)
    result = multi_memory_match(fv, lv, fr, lr, n_memories=1)
    means_v = np.stack([fv[torch.as_tensor(lv == c)].double().mean(0).numpy() for c in range(4)])
    means_r = np.stack([fr[torch.as_tensor(lr == c)].double().mean(0).numpy() for c in range(4)])
    expected = np.linalg.norm(means_v[:, None] - means_r[None], axis=2)
    np.testing.assert_allclose(result.cost, expected, rtol=1e-4)


def test_clusters_smaller_than_n_are_still_matched():
    fv, _, fr, tr, lv, lr = _planted(ids=4, modes=1, per_mode=(2, 3), shift=0.2, seed=4)
    result = multi_memory_match(fv, lv, fr, lr, n_memories=4)
    assert result.memories_v.shape == (4, 4, 32)
    torch.testing.assert_close(result.memories_v[0, :2], fv[torch.as_tensor(lv == 0)])
    partner = dict(result.pairs.tolist())
    assert all(tr[lr == partner[p]][0] == p for p in range(4))


def test_more_visible_clusters_get_every_visible_cluster_a_partner():
    fv, _, fr, _, lv, lr = _planted(ids=5)
    keep = lr < 3  # only 3 infrared clusters remain
    result = multi_memory_match(fv, lv, fr[torch.as_tensor(keep)], lr[keep])
    assert len(result.pairs) == 5 and result.cost.shape == (5, 3)
    assert np.array_equal(np.sort(result.rounds), [1, 1, 1, 2, 2])
    assert np.all(result.labels_v_transferred >= 0)


def test_empty_modality_and_bad_settings_raise_clear_errors():
    fv, _, fr, _, lv, lr = _planted(ids=2)
    with pytest.raises(VireidError, match="infrared clustering found no clusters"):
        multi_memory_match(fv, lv, fr, -np.ones_like(lr))
    with pytest.raises(VireidError, match="visible and infrared"):
        multi_memory_match(fv, -np.ones_like(lv), fr, -np.ones_like(lr))
    with pytest.raises(ConfigError, match="mmlm.assignment"):
        multi_memory_match(fv, lv, fr, lr, assignment="greedy")
    with pytest.raises(ConfigError, match="mmlm.cost_sum_over"):
        multi_memory_match(fv, lv, fr, lr, cost_sum_over="both")
    with pytest.raises(ConfigError, match="mmlm.n_memories"):
        multi_memory_match(fv, lv, fr, lr, n_memories=0)


def test_single_cluster_per_modality_is_matched():
    fv, _, fr, _, lv, lr = _planted(ids=1)
    result = multi_memory_match(fv, lv, fr, lr)
    assert result.pairs.tolist() == [[0, 0]] and result.rounds.tolist() == [1]


def test_matching_is_deterministic_by_seed():
    fv, _, fr, _, lv, lr = _planted(ids=5, seed=5)
    a = multi_memory_match(fv, lv, fr, lr, seed=11)
    b = multi_memory_match(fv, torch.as_tensor(lv), fr, torch.as_tensor(lr), seed=11)
    assert torch.equal(a.memories_v, b.memories_v) and torch.equal(a.memories_r, b.memories_r)
    assert np.array_equal(a.cost, b.cost) and np.array_equal(a.pairs, b.pairs)
