"""The cross-modal signal measures CMC logs every epoch: infrared -> visible nearest-neighbour
accuracy, the associate rate of a mixed clustering, and the reachable pair precision, each against
a plain loop or a hand example."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vireid.clustering.quality import associate_rate, cross_modal_nn_accuracy, reachable_agreement
from vireid.engine.features import cross_modal_quality


def _nn_accuracy_loop(query: torch.Tensor, gallery: torch.Tensor, truth_q, truth_g) -> float:
    hits = 0
    for i in range(len(query)):
        best = max(range(len(gallery)), key=lambda j: float(query[i] @ gallery[j]))
        hits += int(truth_g[best] == truth_q[i])
    return hits / len(query)


@pytest.mark.parametrize("block_size", [1, 7, 4096])
def test_nn_accuracy_equals_a_plain_loop_for_any_block_size(block_size):
    gen = torch.Generator().manual_seed(0)
    query = F.normalize(torch.randn(23, 8, generator=gen), dim=1)
    gallery = F.normalize(torch.randn(31, 8, generator=gen), dim=1)
    truth_q = np.arange(23) % 5
    truth_g = np.arange(31) % 5
    expected = _nn_accuracy_loop(query, gallery, truth_q, truth_g)
    assert cross_modal_nn_accuracy(query, gallery, truth_q, truth_g, block_size) == pytest.approx(expected)


def test_nn_accuracy_by_hand():
    # two infrared images: the first is nearest to a visible image of its own person, the second is not
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    query = torch.tensor([[0.9, 0.1], [0.8, 0.2]])
    assert cross_modal_nn_accuracy(query, gallery, np.array([7, 8]), np.array([7, 8])) == 0.5
    assert np.isnan(cross_modal_nn_accuracy(query[:0], gallery, np.array([]), np.array([7, 8])))


def test_associate_rate_counts_the_samples_inside_clusters_with_both_modalities():
    # cluster 0: 2 visible + 1 infrared; cluster 1: visible only; cluster 2: infrared only; 2 outliers
    labels_v = np.array([0, 0, 1, 1, -1])
    labels_r = np.array([0, 2, -1])
    assert associate_rate(labels_v, labels_r, 3) == pytest.approx(3 / 8)
    assert associate_rate(labels_v, np.array([2, 2, -1]), 3) == 0.0


def test_cross_modal_quality_reports_clusters_rate_and_correct_share():
    # mixed cluster 0 joins person 5 in both modalities, cluster 1 joins visible 6 with infrared 9
    labels_v, truth_v = np.array([0, 0, 1, 1]), np.array([5, 5, 6, 6])
    labels_r, truth_r = np.array([0, 1, -1]), np.array([5, 9, 9])
    out = cross_modal_quality(labels_v, labels_r, truth_v, truth_r)
    assert out == {"mixed_cross_modal_clusters": 2, "mixed_associate_rate": pytest.approx(6 / 7),
                   "mixed_cross_modal_correct": 0.5}


def test_reachable_pair_precision_by_hand():
    # visible clusters are persons 1, 2, 3; infrared clusters persons 1 and 3: 2 of 3 can be paired right
    labels_v, truth_v = np.array([0, 0, 1, 2]), np.array([1, 1, 2, 3])
    labels_r, truth_r = np.array([0, 1, 1]), np.array([1, 3, 3])
    assert reachable_agreement(labels_v, truth_v, labels_r, truth_r) == pytest.approx(2 / 3)
    assert np.isnan(reachable_agreement(labels_v, truth_v, np.array([-1]), np.array([1])))
