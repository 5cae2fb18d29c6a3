"""evaluate_ranking against a plain per-query loop written from METHOD §7, and hand-made cases."""

import numpy as np
import pytest
import torch

from vireid.errors import ConfigError
from vireid.evaluation.metrics import evaluate_ranking


def reference_ranking(distmat, q_pids, g_pids, q_camids, g_camids, protocol, max_rank=20):
    """One query at a time, straight from the definitions: stable sort, remove, score."""
    cmc_rows, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        listed = []
        for j in order:
            if protocol == "sysu" and q_camids[i] == 3 and g_camids[j] == 2:
                continue
            if protocol == "llcm" and g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i]:
                continue
            listed.append(j)
        match = [g_pids[j] == q_pids[i] for j in listed]
        if not any(match):
            continue
        hits, precisions = 0, []
        for pos, m in enumerate(match, start=1):
            if m:
                hits += 1
                precisions.append(hits / pos)
                last = pos
        aps.append(sum(precisions) / hits)
        inps.append(hits / last)
        if protocol in ("sysu", "llcm"):
            seen, ranked_pids = set(), []
            for j in listed:
                if g_pids[j] not in seen:
                    seen.add(g_pids[j])
                    ranked_pids.append(g_pids[j])
            first = ranked_pids.index(q_pids[i]) + 1
        else:
            first = match.index(True) + 1
        cmc_rows.append([1.0 if k >= first else 0.0 for k in range(1, max_rank + 1)])
    return np.mean(cmc_rows, axis=0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def assert_same(result, expected):
    cmc, m_ap, m_inp, num_valid = expected
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=1e-12)
    assert result.mAP == pytest.approx(m_ap, abs=1e-12)
    assert result.mINP == pytest.approx(m_inp, abs=1e-12)
    assert result.num_valid == num_valid


def random_case(seed, num_q, num_g, num_pids, quantise=None):
    rng = np.random.default_rng(seed)
    dist = rng.random((num_q, num_g))
    if quantise:  # few distinct values: many exact ties
        dist = np.round(dist * quantise) / quantise
    q_pids = rng.integers(0, num_pids + 2, num_q)  # some query pids absent from the gallery
    g_pids = rng.integers(0, num_pids, num_g)
    q_cams = rng.choice([3, 6], num_q)
    g_cams = rng.choice([1, 2, 4, 5], num_g)
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("protocol", ["sysu", "regdb", "llcm"])
@pytest.mark.parametrize("quantise", [None, 4])
def test_random_cases_match_per_query_loop(protocol, quantise):
    for seed in range(3):
        case = random_case(seed, num_q=37, num_g=53, num_pids=9, quantise=quantise)
        expected = reference_ranking(*case, protocol=protocol, max_rank=20)
        assert_same(evaluate_ranking(*case, protocol=protocol, max_rank=20), expected)


@pytest.mark.parametrize("quantise", [None, 4])
def test_llcm_cases_with_shared_cameras_match_per_query_loop(quantise, monkeypatch):
    import vireid.evaluation.metrics as metrics

    monkeypatch.setattr(metrics, "_BLOCK_PAIRS", 9 * 53)  # 9 queries per block
    for seed in range(3):
        dist, q_pids, g_pids, _, _ = random_case(seed, num_q=37, num_g=53, num_pids=9, quantise=quantise)
        rng = np.random.default_rng(100 + seed)
        q_cams, g_cams = rng.integers(1, 4, len(q_pids)), rng.integers(1, 4, len(g_pids))  # cameras 1-3 in both
        case = (dist, q_pids, g_pids, q_cams, g_cams)
        assert_same(metrics.evaluate_ranking(*case, protocol="llcm"), reference_ranking(*case, "llcm"))


def test_many_query_blocks_match_loop(monkeypatch):
    import vireid.evaluation.metrics as metrics

    monkeypatch.setattr(metrics, "_BLOCK_PAIRS", 7 * 40)  # 7 queries per block
    case = random_case(11, num_q=50, num_g=40, num_pids=5, quantise=3)
    assert_same(metrics.evaluate_ranking(*case, protocol="sysu"), reference_ranking(*case, "sysu"))


@pytest.mark.parametrize("shift, spread", [(-3.0, 1.0), (1e7, 1.0), (0.5, 1e-9)])
def test_shifted_and_narrow_distances_match_loop(shift, spread):
    # negative distances, a large offset (coarse bins) and a tiny spread (degenerate span)
    dist, qp, gp, qc, gc = random_case(3, 30, 45, 6)
    dist = shift + spread * dist
    for protocol in ("sysu", "regdb"):
        assert_same(evaluate_ranking(dist, qp, gp, qc, gc, protocol=protocol),
                    reference_ranking(dist, qp, gp, qc, gc, protocol))


def test_torch_inputs_and_float32_give_the_same_result():
    dist, qp, gp, qc, gc = random_case(5, 20, 30, 6)
    dist = dist.astype(np.float32)
    expected = reference_ranking(dist, qp, gp, qc, gc, "sysu")
    result = evaluate_ranking(torch.from_numpy(dist), torch.from_numpy(qp), torch.from_numpy(gp),
                              torch.from_numpy(qc), torch.from_numpy(gc), protocol="sysu")
    assert_same(result, expected)


def test_ties_are_broken_by_gallery_order():
    # all distances equal: the ranked list is the gallery order, so the match at index 2 is rank 3
    dist = np.zeros((1, 4))
    result = evaluate_ranking(dist, [7], [1, 2, 7, 3], protocol="regdb", max_rank=4)
    np.testing.assert_array_equal(result.cmc, [0, 0, 1, 1])
    assert result.mAP == pytest.approx(1 / 3)
    assert result.mINP == pytest.approx(1 / 3)


def test_tie_between_match_and_non_match_at_same_distance():
    # gallery 0 (pid 5, match) and gallery 1 (pid 9) share distance 0.5; index order puts the match first
    dist = np.array([[0.5, 0.5, 0.1]])
    result = evaluate_ranking(dist, [5], [5, 9, 8], protocol="regdb", max_rank=3)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1])
    dist2 = np.array([[0.5, 0.5, 0.1]])
    result2 = evaluate_ranking(dist2, [5], [9, 5, 8], protocol="regdb", max_rank=3)
    np.testing.assert_array_equal(result2.cmc, [0, 0, 1])


def test_queries_without_match_are_skipped():
    dist = np.array([[0.1, 0.2], [0.3, 0.4]])
    result = evaluate_ranking(dist, [1, 42], [2, 1], protocol="regdb", max_rank=2)
    assert result.num_valid == 1
    np.testing.assert_array_equal(result.cmc, [0, 1])
    assert result.mAP == pytest.approx(0.5)


def test_no_valid_query_raises_value_error():
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_ranking(np.zeros((2, 2)), [1, 2], [3, 4], protocol="regdb")


def test_single_gallery_item_and_max_rank_beyond_gallery_pads_with_last_value():
    result = evaluate_ranking(np.array([[0.3]]), [4], [4], protocol="regdb", max_rank=5)
    np.testing.assert_array_equal(result.cmc, [1, 1, 1, 1, 1])
    assert result.mAP == 1.0 and result.mINP == 1.0
    result = evaluate_ranking(np.array([[0.1, 0.9]]), [4], [3, 4], protocol="regdb", max_rank=5)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1, 1, 1])


def test_cam3_queries_ignore_cam2_gallery():
    # query from cam3; the only same-pid gallery image is in cam2, so the query is skipped;
    # the cam6 query with the same gallery keeps it.
    dist = np.array([[0.1, 0.5], [0.1, 0.5]])
    result = evaluate_ranking(dist, [1, 1], [1, 2], q_camids=[3, 6], g_camids=[2, 1], protocol="sysu")
    assert result.num_valid == 1
    assert result.cmc[0] == 1.0
    # a cam2 non-match ranked first no longer pushes a cam3 query's match down
    dist = np.array([[0.1, 0.5]])
    result = evaluate_ranking(dist, [1], [2, 1], q_camids=[3], g_camids=[2, 1], protocol="sysu")
    assert result.cmc[0] == 1.0 and result.mAP == 1.0
    result = evaluate_ranking(dist, [1], [2, 1], q_camids=[3], g_camids=[2, 1], protocol="llcm")
    assert result.cmc[0] == 0.0 and result.mAP == 0.5


def test_pid_dedup_changes_cmc_but_not_map():
    # ranked pids: 8, 8, 8, 1 (match): dedup list is 8, 1 -> rank 2; full list -> rank 4
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    args = (dist, [1], [8, 8, 8, 1])
    sysu = evaluate_ranking(*args, q_camids=[6], g_camids=[1, 1, 1, 1], protocol="sysu", max_rank=4)
    regdb = evaluate_ranking(*args, protocol="regdb", max_rank=4)
    np.testing.assert_array_equal(sysu.cmc, [0, 1, 1, 1])
    np.testing.assert_array_equal(regdb.cmc, [0, 0, 0, 1])
    assert sysu.mAP == regdb.mAP == pytest.approx(0.25)
    assert sysu.mINP == regdb.mINP == pytest.approx(0.25)


def test_map_and_minp_by_hand():
    # ranked matches at positions 1, 3, 4 of 5: AP = (1/1 + 2/3 + 3/4) / 3, INP = 3/4
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    result = evaluate_ranking(dist, [1], [1, 2, 1, 1, 3], protocol="regdb", max_rank=5)
    assert result.mAP == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert result.mINP == pytest.approx(3 / 4)
    assert result.as_dict() == pytest.approx({"rank1": 1.0, "rank5": 1.0, "mAP": result.mAP,
                                              "mINP": 0.75})


def test_bad_inputs_raise():
    with pytest.raises(ConfigError, match="unknown evaluation protocol"):
        evaluate_ranking(np.zeros((1, 1)), [1], [1], protocol="market")
    with pytest.raises(ValueError, match="g_pids has 2 entries"):
        evaluate_ranking(np.zeros((1, 1)), [1], [1, 2], protocol="regdb")
    with pytest.raises(ValueError, match="needs q_camids"):
        evaluate_ranking(np.zeros((1, 1)), [1], [1], protocol="sysu")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking(np.full((1, 1), np.nan), [1], [1], protocol="regdb")
