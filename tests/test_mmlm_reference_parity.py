"""MMLM under `profile: reference` transfers the labels of the released matching (`released_mmlm.py`).

Planted clusters are made of 4 tight, well separated modes, so that any K-means (vireid's seeded
k-means++ + Lloyd, scikit-learn's 10 restarts) finds the same memories: the mode means. The infrared
clusters reuse modes of several visible clusters, so the cost direction and the assignment rule
decide the labels (the paper's settings give other labels on the same data).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import released_mmlm as released

MODES, PER_MODE, DIM = 4, 5, 16


def reference_match(feat_v, labels_v, feat_r, labels_r, *overrides):
    """The one call into the code under test: the MMLM stage's matching of a clustering round."""
    from vireid.config import load_config
    from vireid.engine.features import ClusteringRound
    from vireid.engine.mmlm import match_round

    cfg = load_config(overrides=["profile=reference", *overrides])
    result, _ = match_round(ClusteringRound(feat_v, feat_r, labels_v, labels_r), cfg.mmlm, torch.device("cpu"))
    return result


def _planted(seed=0, visible=8, infrared=6):
    """Unit-norm features of clusters of MODES tight modes; infrared cluster q mixes modes of a few
    visible clusters, shifted. Labels are contiguous ids with a few outliers (-1)."""
    gen = torch.Generator().manual_seed(seed)
    modes_v = F.normalize(torch.randn(visible, MODES, DIM, generator=gen), dim=2)
    pick_cluster = torch.randint(0, visible, (infrared, MODES), generator=gen)
    pick_mode = torch.randint(0, MODES, (infrared, MODES), generator=gen)
    jitter = 0.35 * torch.randn(infrared, MODES, DIM, generator=gen)
    modes_r = F.normalize(modes_v[pick_cluster, pick_mode] + jitter, dim=2)

    def samples(modes):
        count = modes.shape[0]
        centres = modes.repeat_interleave(PER_MODE, dim=1).reshape(count * MODES * PER_MODE, DIM)
        feats = F.normalize(centres + 0.003 * torch.randn(centres.shape, generator=gen), dim=1)
        labels = np.arange(count).repeat(MODES * PER_MODE)
        order = torch.randperm(len(labels), generator=gen).numpy()
        return feats[order], labels[order]

    feat_v, labels_v = samples(modes_v)
    feat_r, labels_r = samples(modes_r)
    outliers_v, outliers_r = 0.5 * F.normalize(torch.randn(3, DIM, generator=gen), dim=1), torch.zeros(2, DIM)
    return (torch.cat([feat_v, outliers_v]), np.r_[labels_v, [-1] * 3],
            torch.cat([feat_r, outliers_r + 0.1]), np.r_[labels_r, [-1] * 2])


@pytest.mark.parametrize("seed", [0, 1])
def test_reference_profile_transfers_the_released_labels(seed):
    feat_v, labels_v, feat_r, labels_r = _planted(seed)
    want, cost = released.transfer_labels(feat_v.double().numpy(), labels_v, feat_r.double().numpy(), labels_r,
                                          drop_last_cluster=False)
    result = reference_match(feat_v, labels_v, feat_r, labels_r)
    np.testing.assert_allclose(result.cost, cost, rtol=1e-4)
    assert np.array_equal(result.labels_v_transferred, want)
    # the planted data tells the settings apart: either of the paper's choices gives other labels
    for change in (["mmlm.cost_sum_over=visible"], ["mmlm.assignment=hungarian"]):
        other = reference_match(feat_v, labels_v, feat_r, labels_r, *change)
        assert not np.array_equal(other.labels_v_transferred, want), change


def test_released_dropped_cluster_is_the_only_difference():
    """With its loops one short (mmlm.py:28-34), the released code leaves the last visible cluster with
    its own id and never offers the last infrared cluster; vireid matches every cluster. Elsewhere the
    labels agree."""
    feat_v, labels_v, feat_r, labels_r = _planted(0)
    full, _ = released.transfer_labels(feat_v.double().numpy(), labels_v, feat_r.double().numpy(), labels_r,
                                       drop_last_cluster=False)
    dropped, _ = released.transfer_labels(feat_v.double().numpy(), labels_v, feat_r.double().numpy(), labels_r)
    ours = reference_match(feat_v, labels_v, feat_r, labels_r).labels_v_transferred
    last_v, last_r = labels_v.max(), labels_r.max()
    untouched = (labels_v != last_v) & (full != last_r)
    assert np.array_equal(ours[untouched], dropped[untouched])
    assert np.array_equal(dropped[labels_v == last_v], labels_v[labels_v == last_v])
