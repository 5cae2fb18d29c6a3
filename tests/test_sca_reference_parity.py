"""`profile: reference` against the released MMM code, term by term, on one fixed SCA batch.

The expected values and gradients come from `released_sca.py`, a loop transcription of the released
`main.py`/`loss.py` written without vireid's code. Agreement is required to 1e-4 relative (values;
gradients by the norm of their difference). The batch is laid out as the released sampler gives it:
P = 6 identities x (4 visible images in two views + 4 infrared images), at the first SCA epoch, when
the released code already applies all four terms (main.py:418, 440; train() runs from epoch 5 on).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import released_sca as released

IDS, INSTANCES, DIM, CLASSES = 6, 4, 2048, 20
RTOL = 1e-4


def reference_config():
    from vireid.config import load_config

    return load_config(overrides=["profile=reference"])


def vireid_terms(out, y_v, y_r, w, conf, epoch):
    """The one call into the code under test: the SCA terms of the reference profile for a batch."""
    from vireid.engine.sca import sca_losses

    return sca_losses(out, y_v, y_r, w, conf, reference_config(), epoch)


def first_sca_epoch() -> int:
    return reference_config().sca.warmup_epochs


def _batch(seed=0):
    """Identities, weights, prototypes and leaf features/logits of one fixed batch (float32, as the
    model's output)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randperm(CLASSES, generator=gen)[:IDS]
    y_v = ids.repeat_interleave(INSTANCES)
    y_r = ids.repeat_interleave(INSTANCES)
    # pre-BN GeM features are non-negative; identities overlap, so the triplet's margin is violated
    centre = torch.rand(DIM, generator=gen) + 0.12 * torch.randn(CLASSES, DIM, generator=gen)
    shift = 0.3 * torch.rand(DIM, generator=gen)  # an infrared offset
    noise = lambda n: 0.25 * torch.randn(n, DIM, generator=gen)  # noqa: E731
    n = len(y_v)
    feat = torch.cat([centre[y_v] + noise(n), centre[y_v] + noise(n), centre[y_r] + shift + noise(n)])
    protos = [centre + 0.2 * torch.randn(CLASSES, DIM, generator=gen) for _ in range(3)]
    prob = torch.rand(3 * n, generator=gen)
    logits = torch.randn(3 * n, CLASSES, generator=gen)
    return feat, logits, y_v, y_r, prob, protos


def _vireid(feat, logits, y_v, y_r, prob, protos, epoch):
    from vireid.engine.sca import Confidence
    from vireid.models.agw import ModelOutput

    n = len(y_v)
    conf = Confidence(prob[:n], prob[n:2 * n], prob[2 * n:], *protos, summary={})
    return vireid_terms(ModelOutput(feat, feat.detach().clone(), logits), y_v, y_r, prob, conf, epoch)


def _released(name, feat, logits, y_v, y_r, prob, protos):
    f, lg, w = feat.double(), logits.double(), prob.double()
    p1, p2, pr = (p.double() for p in protos)
    y = torch.cat([y_v, y_v, y_r])
    if name == "wce":
        return released.weighted_ce(lg, y, w)
    if name == "triplet":
        return released.triplet(f, y, margin=0.2)
    if name == "intra":
        return released.intra(f, y_v, y_r, w, p1, p2, pr, sm_w=0.5)
    return released.inter(f, y_v, y_r, md_w=0.05)


def _value_and_grad(term_of, leaf):
    value = term_of()
    (grad,) = torch.autograd.grad(value, leaf)
    return float(value.detach()), grad.double()


@pytest.mark.parametrize("name", ["wce", "triplet", "intra", "inter"])
def test_reference_term_and_gradient_equal_the_released_formula(name):
    feat, logits, y_v, y_r, prob, protos = _batch()
    feat.requires_grad_(True)
    logits.requires_grad_(True)
    leaf = logits if name == "wce" else feat
    epoch = first_sca_epoch()

    def ours():
        terms = _vireid(feat, logits, y_v, y_r, prob, protos, epoch)
        assert name in terms, f"the reference profile has no {name!r} term at the first SCA epoch ({epoch})"
        return terms[name]

    got, got_grad = _value_and_grad(ours, leaf)
    want, want_grad = _value_and_grad(lambda: _released(name, feat, logits, y_v, y_r, prob, protos), leaf)
    assert want != 0.0 and float(want_grad.norm()) > 0.0  # the batch exercises the term
    assert got == pytest.approx(want, rel=RTOL), \
        f"{name}: vireid {got:.6g}, released {want:.6g} (ratio {got / want:.4f})"
    error = float((got_grad - want_grad).norm() / want_grad.norm())
    assert error <= RTOL, f"{name}: gradient differs by {error:.3g} relative (norm ratio " \
                          f"{float(got_grad.norm() / want_grad.norm()):.4f})"


def test_reference_warmup_is_the_plain_cross_entropy():
    """Released warm-up epochs (main.py:299-319): nn.CrossEntropyLoss on the three parts, nothing else."""
    feat, logits, y_v, y_r, _, _ = _batch(seed=1)
    ones = torch.ones(logits.shape[0])
    terms = vireid_terms(_model_output(feat, logits), y_v, y_r, ones, None, 0)
    assert sorted(terms) == ["wce"]
    expected = F.cross_entropy(logits.double(), torch.cat([y_v, y_v, y_r]))
    assert float(terms["wce"]) == pytest.approx(float(expected), rel=RTOL)


def _model_output(feat, logits):
    from vireid.models.agw import ModelOutput

    return ModelOutput(feat, feat.clone(), logits)


def test_class_prototypes_equal_the_released_update_for_drawn_classes():
    """main.py:491-532: Σ p·f over a class's draws divided by the number of draws (vireid gives a class
    without samples zeros; the released code keeps its previous prototype, so only drawn classes compare)."""
    from vireid.losses import class_prototypes

    feat, _, y_v, _, prob, protos = _batch(seed=2)
    n = len(y_v)
    views, weights = [feat[:n].double(), feat[n:2 * n].double()], [prob[:n].double(), prob[n:2 * n].double()]
    want = released.prototypes(views, y_v, weights, [protos[0].double(), protos[1].double()])
    drawn = torch.unique(y_v)
    for view, weight, expected in zip(views, weights, want):
        got = class_prototypes(view, y_v, weight, CLASSES)
        torch.testing.assert_close(got[drawn], expected[drawn], rtol=RTOL, atol=1e-9)


def test_gmm_confidence_equals_the_released_normalisation_and_fit():
    """main.py:348-367 against vireid's pieces composed as the SCA confidence pass composes them."""
    from vireid.losses import gmm_confidence, minmax_normalize

    rng = np.random.default_rng(3)
    clean = lambda n: rng.gamma(2.0, 0.3, n)  # noqa: E731
    noisy = lambda n: 3.0 + rng.gamma(2.0, 0.5, n)  # noqa: E731
    loss_v1, loss_v2 = np.r_[clean(80), noisy(20)], np.r_[clean(70), noisy(30)]
    loss_r = np.r_[clean(60), noisy(15)]
    want_v, want_r = released.confidence(loss_v1, loss_v2, loss_r, random_state=5)
    got_v = gmm_confidence(np.r_[minmax_normalize(loss_v1), minmax_normalize(loss_v2)], seed=5)
    got_r = gmm_confidence(minmax_normalize(loss_r), seed=5)
    np.testing.assert_allclose(got_v, want_v, rtol=RTOL, atol=1e-8)
    np.testing.assert_allclose(got_r, want_r, rtol=RTOL, atol=1e-8)


def mixed_centroids(feat_v, feat_r, labels_v, labels_r, num_clusters):
    """The one call into the code under test for the CMC phase-2 (mixed) memory."""
    from vireid.engine.cmc import mixed_memory_centroids

    return mixed_memory_centroids(feat_v, feat_r, labels_v, labels_r, num_clusters, reference_config().cmc.mixed_memory)


def test_mixed_memory_averages_raw_modality_means_then_normalises():
    """Baseline.py:922-969: the released entry is normalise(½(raw visible mean + raw infrared mean)).

    The clustering features are flip averages of unit vectors (not re-normalised in the reference),
    so their norms differ per sample and per modality; the test gives the modalities different norms.
    """
    gen = torch.Generator().manual_seed(4)
    clusters, dim = 7, 16
    labels_v = np.array([0, 0, 1, 1, 2, 3, 3, 3, -1, 5, 5, 6])  # cluster 4: infrared only
    labels_r = np.array([0, 1, 1, 2, 2, 4, 4, -1, 6, 6])  # clusters 3, 5: visible only
    feat_v = F.normalize(torch.randn(len(labels_v), dim, generator=gen), dim=1)
    feat_v = feat_v * (0.6 + 0.4 * torch.rand(len(labels_v), 1, generator=gen))
    feat_r = 0.5 * F.normalize(torch.randn(len(labels_r), dim, generator=gen), dim=1)
    want = released.mixed_memory(feat_v.double(), labels_v, feat_r.double(), labels_r, clusters)
    got = mixed_centroids(feat_v, feat_r, labels_v, labels_r, clusters)
    torch.testing.assert_close(got.double(), want, rtol=RTOL, atol=1e-6)
