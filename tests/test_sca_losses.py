"""SCA losses against loop implementations of METHOD §6.3: triplet, MMD, alignment, weighted CE, GMM."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vireid.errors import ConfigError
from vireid.losses import (
    batch_hard_triplet,
    class_prototypes,
    gmm_confidence,
    inter_modality_loss,
    intra_alignment_loss,
    minmax_normalize,
    mmd2,
    per_identity_mmd2,
    weighted_cross_entropy,
)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _mmd2_loop(x, y, kernels=5, mul=2.0):
    """Biased MMD² written from the definition, one pair at a time."""
    joint = list(x) + list(y)
    sq = [[float(((a - b) ** 2).sum()) for b in joint] for a in joint]
    count = len(joint)
    sigma = sum(sq[i][j] for i in range(count) for j in range(count) if i != j) / (count * count - count) / 4.0
    k = [[sum(math.exp(-sq[i][j] / (sigma * mul ** q)) for q in range(kernels)) for j in range(count)]
         for i in range(count)]
    n, m = len(x), len(y)
    xx = sum(k[i][j] for i in range(n) for j in range(n)) / n ** 2
    yy = sum(k[i][j] for i in range(n, count) for j in range(n, count)) / m ** 2
    xy = sum(k[i][j] for i in range(n) for j in range(n, count)) / (n * m)
    return xx + yy - 2 * xy


def test_batch_hard_triplet_equals_loop():
    feats = _rand(10, 4, seed=1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0, 2])  # identity 3 has no other positive
    expected = 0.0
    for a in range(10):
        d = [float((feats[a] - feats[b]).norm()) for b in range(10)]
        pos = max([d[b] for b in range(10) if labels[b] == labels[a] and b != a], default=0.0)
        neg = min(d[b] for b in range(10) if labels[b] != labels[a])
        expected += max(0.0, pos - neg + 0.3)
    assert batch_hard_triplet(feats, labels, margin=0.3).item() == pytest.approx(expected / 10)


def test_batch_hard_triplet_is_zero_for_separated_identities_and_has_finite_gradients():
    feats = torch.tensor([[0.0, 0.0], [0.0, 0.1], [5.0, 0.0], [5.0, 0.1]], requires_grad=True)
    loss = batch_hard_triplet(feats, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(feats.grad).all()


def test_mmd2_equals_loop_definition():
    x, y = _rand(5, 3, seed=2), _rand(7, 3, seed=3) + 0.5
    assert mmd2(x, y).item() == pytest.approx(_mmd2_loop(x, y), rel=1e-9)


def test_mmd2_is_zero_for_identical_sets_and_grows_with_a_shift():
    x = _rand(6, 4, seed=4)
    assert abs(mmd2(x, x.clone()).item()) < 1e-12
    values = [mmd2(x, x + shift).item() for shift in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(values, values[1:])) and values[0] > 0


def test_per_identity_mmd2_equals_loop_over_shared_identities():
    x, y = _rand(12, 3, seed=5), _rand(9, 3, seed=6)
    lx = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 5, 5, 0, 2])  # 5 only visible
    ly = torch.tensor([2, 2, 1, 0, 0, 7, 1, 2, 0])  # 7 only infrared
    values, ids = per_identity_mmd2(x, lx, y, ly)
    assert ids.tolist() == [0, 1, 2]
    expected = [_mmd2_loop(x[lx == c], y[ly == c]) for c in (0, 1, 2)]
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-9)


def test_stop_gradient_side_receives_no_gradient():
    x = _rand(6, 3, seed=7).requires_grad_()
    y = _rand(6, 3, seed=8).requires_grad_()
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    values, _ = per_identity_mmd2(x, labels, y.detach(), labels)
    values.sum().backward()
    assert y.grad is None and x.grad.abs().sum() > 0


def _inter_inputs():
    views = [_rand(8, 3, seed=9).requires_grad_(), _rand(8, 3, seed=10).requires_grad_()]
    feat_r = (_rand(8, 3, seed=11) + 0.7).requires_grad_()
    labels_v = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])  # identity 3 has no infrared sample
    labels_r = torch.tensor([0, 1, 2, 0, 1, 2, 4, 4])  # identity 4 has no visible sample
    return views, labels_v, feat_r, labels_r


def _mmd2_autograd_loop(x, y):
    """The loop definition again, with torch scalars so that gradients can be compared."""
    joint = list(x) + list(y)
    count, n, m = len(joint), len(x), len(y)
    sq = [[((a - b) ** 2).sum() for b in joint] for a in joint]
    sigma = sum(sq[i][j].detach() for i in range(count) for j in range(count) if i != j) / (count * count - count) / 4
    k = [[sum(torch.exp(-sq[i][j] / (sigma * 2.0 ** q)) for q in range(5)) for j in range(count)] for i in range(count)]
    xx = sum(k[i][j] for i in range(n) for j in range(n)) / n ** 2
    yy = sum(k[i][j] for i in range(n, count) for j in range(n, count)) / m ** 2
    xy = sum(k[i][j] for i in range(n) for j in range(n, count)) / (n * m)
    return xx + yy - 2 * xy


def _inter_loop(views, labels_v, feat_r, labels_r):
    """(1/P) Σ_c mean_views D(F_V(c), F_R(c)) without any stop-gradient, per identity in both."""
    ids = [0, 1, 2]
    total = 0.0
    for c in ids:
        total = total + sum(_mmd2_autograd_loop(v[labels_v == c], feat_r[labels_r == c]) for v in views) / len(views)
    return total / len(ids)


@pytest.mark.parametrize("form, value_scale, grad_scale", [("paper", 1.0, 0.5), ("reference", 4.0, 2.0)])
def test_inter_modality_loss_value_and_stop_gradient_halves(form, value_scale, grad_scale):
    # D(a, sg b) + D(sg a, b) has value 2D but gradient ∇D (each term moves one side only), so
    # paper ½·mean_views: value D̄, gradient ½∇D̄; reference Σ_views (2 views): value 4D̄, gradient 2∇D̄.
    # Without the stop-gradients the gradient would be twice as large.
    views, labels_v, feat_r, labels_r = _inter_inputs()
    loss = inter_modality_loss(views, labels_v, feat_r, labels_r, form=form)
    got = torch.autograd.grad(loss, views + [feat_r])
    reference = _inter_loop(views, labels_v, feat_r, labels_r)
    expected = torch.autograd.grad(reference, views + [feat_r])
    assert loss.item() == pytest.approx(value_scale * reference.item(), rel=1e-9)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, grad_scale * e)


def test_inter_modality_loss_without_shared_identities_is_zero_and_bad_form_raises():
    views, labels_v, feat_r, _ = _inter_inputs()
    assert inter_modality_loss(views, labels_v, feat_r, torch.full((8,), 9)).item() == 0.0
    with pytest.raises(ConfigError):
        inter_modality_loss(views, labels_v, feat_r, labels_v, form="both")


def test_class_prototypes_are_weighted_sums_over_class_counts():
    feats, weights = _rand(7, 3, seed=12), torch.rand(7, dtype=torch.float64)
    labels = torch.tensor([0, 2, 2, 0, 2, 0, 0])
    got = class_prototypes(feats, labels, weights, num_classes=4)
    for c in range(4):
        rows = [i for i in range(7) if labels[i] == c]
        expected = sum((weights[i] * feats[i] for i in rows), torch.zeros(3, dtype=torch.float64))
        torch.testing.assert_close(got[c], expected / max(len(rows), 1))
    assert torch.all(got[1] == 0)


@pytest.mark.parametrize("distance", ["l2sq_unit", "l2sq", "mse", "l1"])
def test_intra_alignment_loss_equals_loop_and_leaves_prototypes_alone(distance):
    feats = _rand(5, 4, seed=13).requires_grad_()
    protos = _rand(5, 4, seed=14).requires_grad_()
    weights = torch.tensor([1.0, 0.5, 0.0, 0.2, 0.9], dtype=torch.float64)
    loss = intra_alignment_loss(feats, protos, weights, distance)
    expected = 0.0
    for f, p, w in zip(feats.tolist(), protos.tolist(), weights.tolist()):
        if distance == "l2sq_unit":  # both vectors scaled to length 1 first
            f = [a / sum(x * x for x in f) ** 0.5 for a in f]
            p = [b / sum(x * x for x in p) ** 0.5 for b in p]
        diffs = [a - b for a, b in zip(f, p)]
        if distance in ("l2sq", "l2sq_unit"):
            dist = sum(d * d for d in diffs)
        elif distance == "mse":
            dist = sum(d * d for d in diffs) / len(diffs)
        else:
            dist = sum(abs(d) for d in diffs) / len(diffs)
        expected += w * dist
    assert loss.item() == pytest.approx(expected / 5)
    loss.backward()
    assert protos.grad is None and feats.grad.abs().sum() > 0


def test_unit_intra_distance_is_bounded_and_ignores_the_features_scale():
    feats, protos = _rand(6, 8, seed=21), _rand(6, 8, seed=22)
    ones = torch.ones(6, dtype=torch.float64)
    small = intra_alignment_loss(feats, protos, ones, "l2sq_unit")
    large = intra_alignment_loss(1e4 * feats, 3.0 * protos, ones, "l2sq_unit")
    assert small.item() == pytest.approx(large.item()) and 0.0 <= small.item() <= 4.0
    assert intra_alignment_loss(1e4 * feats, protos, ones, "l2sq").item() > 1e6  # the literal sum is unbounded


def test_intra_alignment_rejects_unknown_distance():
    with pytest.raises(ConfigError, match="sca.intra_distance"):
        intra_alignment_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.ones(2), "cosine")


def test_weighted_cross_entropy_equals_loop():
    logits, targets = _rand(6, 4, seed=15), torch.tensor([0, 3, 1, 1, 2, 0])
    weights = torch.tensor([1.0, 0.0, 0.3, 0.9, 0.5, 0.1], dtype=torch.float64)
    expected = 0.0
    for row, y, w in zip(logits.tolist(), targets.tolist(), weights.tolist()):
        expected += w * (math.log(sum(math.exp(v) for v in row)) - row[y])
    assert weighted_cross_entropy(logits, targets, weights).item() == pytest.approx(expected / 6)
    torch.testing.assert_close(weighted_cross_entropy(logits, targets, torch.ones(6)), F.cross_entropy(logits, targets))


def test_gmm_gives_planted_noisy_labels_low_confidence():
    rng = np.random.default_rng(0)
    clean = rng.normal(0.15, 0.04, 900)
    noisy = rng.normal(0.8, 0.06, 100)
    conf = gmm_confidence(minmax_normalize(np.concatenate([clean, noisy])))
    assert conf.shape == (1000,) and conf.min() >= 0.0 and conf.max() <= 1.0
    assert np.mean(conf[:900] > 0.9) > 0.98 and np.mean(conf[900:] < 0.1) > 0.98
    assert np.array_equal(conf, gmm_confidence(minmax_normalize(np.concatenate([clean, noisy]))))


def test_gmm_of_constant_losses_trusts_every_sample():
    assert gmm_confidence(np.full(10, 0.3)).tolist() == [1.0] * 10
    assert gmm_confidence(np.array([0.5])).tolist() == [1.0]


def test_minmax_normalize_maps_to_unit_interval_for_arrays_and_tensors():
    np.testing.assert_allclose(minmax_normalize(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    torch.testing.assert_close(minmax_normalize(torch.tensor([1.0, 3.0])), torch.tensor([0.0, 1.0]))
    assert minmax_normalize(np.full(3, 7.0)).tolist() == [0.0, 0.0, 0.0]
