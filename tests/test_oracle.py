"""Oracle shared labels: pairs with an exact pair precision, measured as MMLM measures it."""

from __future__ import annotations

import numpy as np
import pytest

from vireid.clustering.oracle import identity_clusters, pairs_at_precision, transfer
from vireid.clustering.quality import majority_agreement
from vireid.errors import VireidError


def _clusters(rng, ids: int, per: int, split: float):
    """True pids and clusters that split some identities in two (visible) and merge none."""
    pids = np.repeat(np.arange(ids), per)
    labels = pids.copy()
    split_ids = rng.choice(ids, size=int(split * ids), replace=False)
    halves = np.isin(pids, split_ids) & (np.tile(np.arange(per), ids) % 2 == 1)
    labels[halves] = ids + np.searchsorted(np.sort(split_ids), pids[halves])
    labels = np.unique(labels, return_inverse=True)[1]
    return labels, pids


@pytest.mark.parametrize("precision", [1.0, 0.75, 0.5, 0.25, 0.0])
def test_pairs_reach_the_requested_precision_as_mmlm_counts_it(precision):
    rng = np.random.default_rng(0)
    labels_v, pids_v = _clusters(rng, 20, 6, 0.4)  # 28 visible clusters
    labels_r, pids_r = _clusters(rng, 20, 4, 0.0)
    pairs = pairs_at_precision(labels_v, pids_v, labels_r, pids_r, precision, np.random.default_rng(1))
    assert pairs.shape == (28, 2) and (pairs[:, 0] == np.arange(28)).all()
    got = majority_agreement(labels_v, pids_v, labels_r, pids_r, pairs)  # the same measure as MMLM's
    assert got == pytest.approx(round(precision * 28) / 28)


def test_precision_is_capped_by_the_clusters_that_have_a_partner_of_their_identity():
    pids_v = np.repeat(np.arange(4), 3)
    pids_r = np.repeat(np.array([0, 1]), 3)  # identities 2 and 3 have no infrared cluster
    pairs = pairs_at_precision(pids_v, pids_v, pids_r, pids_r, 1.0, np.random.default_rng(0))
    assert majority_agreement(pids_v, pids_v, pids_r, pids_r, pairs) == 0.5


def test_identity_clusters_and_transfer():
    labels_v, labels_r = identity_clusters(np.array([7, 7, 3]), np.array([3, 9]))
    assert labels_v.tolist() == [1, 1, 0] and labels_r.tolist() == [0, 2]
    assert transfer(np.array([0, 1, -1, 1]), np.array([[0, 5], [1, 2]])).tolist() == [5, 2, -1, 2]


def test_refuses_data_without_identities():
    with pytest.raises(VireidError, match="true identity"):
        pairs_at_precision(np.zeros(3, int), None, np.zeros(2, int), None, 1.0, np.random.default_rng(0))


def test_chance_agreement_is_the_mean_over_random_partners():
    from vireid.clustering.quality import chance_agreement

    # visible clusters of identities 0, 0, 1; infrared clusters of identities 0, 1, 1, 2
    labels_v, truth_v = np.array([0, 1, 2]), np.array([0, 0, 1])
    labels_r, truth_r = np.array([0, 1, 2, 3]), np.array([0, 1, 1, 2])
    # a visible cluster of id 0 meets a right partner 1 time in 4, one of id 1 2 times in 4
    assert chance_agreement(labels_v, truth_v, labels_r, truth_r) == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    rng = np.random.default_rng(0)
    draws = [majority_agreement(labels_v, truth_v, labels_r, truth_r,
                                np.stack([np.arange(3), rng.integers(0, 4, 3)], 1)) for _ in range(4000)]
    assert np.mean(draws) == pytest.approx(1 / 3, abs=0.02)
