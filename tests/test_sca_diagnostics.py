"""SCA's two diagnostic switches (docs/experiments/oracle-labels.md, "Why SCA on the true identities"): a classifier that starts
from the shared classes' feature directions, and confidence weights fixed at one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_helpers import model_for_tests
from vireid.config import SCAConfig, load_config
from vireid.data.records import INFRARED, VISIBLE
from vireid.data.registry import open_dataset
from vireid.data.synthetic import generate_synthetic
from vireid.data.transforms import normalize_images
from vireid.engine.confidence import clean_pass, compute_confidence, prototype_classifier
from vireid.engine.context import RunContext
from vireid.engine.mmlm import SharedLabels
from vireid.engine.sca import prepare_sca_model, sca_optimizer, sca_stage, start_classifier
from vireid.engine.trainset import build_train_set
from vireid.errors import ConfigError


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    base = tmp_path_factory.mktemp("diagnostics")
    root = generate_synthetic(base / "data", ids=6, height=64, width=32, seed=11, progress=False)
    return build_train_set(open_dataset("sysu", root), 64, 32, base / "cache")


def _ctx() -> RunContext:
    return RunContext(device=torch.device("cpu"), run=None, seed=0, amp=False, image_size=(64, 32),
                      eval_batch_size=16)


def _shared(train) -> SharedLabels:
    """True identities as labels, a few samples of each modality left out (-1), and one class that
    only the visible side has (the infrared side never sees it)."""
    labels_v = np.unique(train.visible.pids, return_inverse=True)[1].astype(np.int64)
    labels_r = np.unique(train.infrared.pids, return_inverse=True)[1].astype(np.int64)
    labels_v[::7] = -1
    labels_r[::5] = -1
    k = int(max(labels_v.max(), labels_r.max()) + 1)
    labels_v[labels_v == 0] = k  # class k: visible only; class 0: infrared only
    return SharedLabels(labels_v, labels_r, k + 2)  # class k + 1: no sample at all


def _bn_one_by_one(model, images: np.ndarray, modality: str) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(normalize_images(torch.from_numpy(np.ascontiguousarray(images[i:i + 1]))),
                                modality=modality, return_all=True).bn for i in range(len(images))])


def test_prototype_classifier_rows_are_class_mean_directions_over_the_temperature(train_set):
    torch.manual_seed(0)
    model = model_for_tests("resnet18")
    shared = _shared(train_set)
    rows = prototype_classifier(model, train_set, shared, _ctx(), temperature=0.1)

    # independently: one image at a time, a loop over classes
    feats, labels = [], []
    for images, lab, modality in ((train_set.visible.images, shared.labels_v, VISIBLE),
                                  (train_set.infrared.images, shared.labels_r, INFRARED)):
        keep = np.flatnonzero(lab >= 0)
        feats.append(_bn_one_by_one(model, images[keep], modality))
        labels.append(lab[keep])
    f, y = torch.cat(feats), np.concatenate(labels)
    scale = 1.0 / (0.1 * float(f.norm(dim=1).mean()))
    assert rows.shape == (shared.num_classes, f.shape[1])
    for c in range(shared.num_classes):
        members = f[torch.from_numpy(y == c)]
        if len(members) == 0:
            assert torch.count_nonzero(rows[c]) == 0  # a class without samples stays at zero
            continue
        direction = F.normalize(F.normalize(members, dim=1).mean(0), dim=0)
        torch.testing.assert_close(rows[c], direction * scale, rtol=1e-4, atol=1e-6)
    # the first logits are cosines over the temperature, scaled by each sample's norm over the mean norm
    logits = f @ rows.T
    cosines = F.normalize(f, dim=1) @ F.normalize(rows, dim=1).T
    torch.testing.assert_close(logits, cosines * (f.norm(dim=1, keepdim=True) * scale), rtol=1e-4, atol=1e-5)


def test_start_classifier_sets_the_prototype_rows_only_when_asked(train_set):
    shared = _shared(train_set)
    torch.manual_seed(0)
    model = prepare_sca_model(model_for_tests("resnet18"), shared, torch.device("cpu"))
    paper = model.classifier.weight.detach().clone()
    start_classifier(model, train_set, shared, SCAConfig(), _ctx())
    assert torch.equal(model.classifier.weight.detach(), paper)  # random: the paper's N(0, 0.001) stays
    assert float(paper.std()) < 0.002
    expected = prototype_classifier(model, train_set, shared, _ctx())
    start_classifier(model, train_set, shared, dataclasses.replace(SCAConfig(), classifier_init="prototypes"), _ctx())
    torch.testing.assert_close(model.classifier.weight.detach(), expected)
    assert model.training  # the pass left the model in the mode it found it in


def test_the_sca_stage_starts_from_the_prototype_rows_but_a_resumed_one_keeps_its_classifier(train_set):
    shared = _shared(train_set)
    sca = dataclasses.replace(SCAConfig(), classifier_init="prototypes", epochs=0)
    torch.manual_seed(0)
    model = prepare_sca_model(model_for_tests("resnet18"), shared, torch.device("cpu"))
    expected = prototype_classifier(model, train_set, shared, _ctx())
    sca_stage(model, train_set, shared, sca, _ctx())
    torch.testing.assert_close(model.classifier.weight.detach(), expected)
    saved = model.classifier.weight.detach().clone() * 3  # as a checkpoint restored it
    model.classifier.weight.data.copy_(saved)
    optimizer, scheduler = sca_optimizer(model, sca)
    sca_stage(model, train_set, shared, sca, _ctx(), {"epoch": -1, "optimizer": optimizer.state_dict(),
                                                      "scheduler": scheduler.state_dict()})
    assert torch.equal(model.classifier.weight.detach(), saved)


def test_uniform_confidence_weights_are_ones_and_prototypes_plain_class_means(train_set):
    torch.manual_seed(0)
    shared = _shared(train_set)
    ctx = _ctx()
    model = prepare_sca_model(model_for_tests("resnet18"), shared, ctx.device)
    sca = dataclasses.replace(SCAConfig(), confidence_weights="uniform")
    conf = compute_confidence(model, train_set, shared, sca, ctx, epoch=3)
    for w, labels in ((conf.w_v1, shared.labels_v), (conf.w_v2, shared.labels_v), (conf.w_r, shared.labels_r)):
        assert torch.equal(w, torch.from_numpy((labels >= 0).astype(np.float32)))
    # the same pass's features, averaged per class by hand
    model.eval()
    _, f_v1, _, _, _, f_r = clean_pass(model, train_set, shared, ctx, epoch=3)
    for feats, labels, protos in ((f_v1, shared.labels_v, conf.proto_v1), (f_r, shared.labels_r, conf.proto_r)):
        y = labels[labels >= 0]
        for c in range(shared.num_classes):
            mean = feats[torch.from_numpy(y == c)].mean(0) if (y == c).any() else torch.zeros(feats.shape[1])
            torch.testing.assert_close(protos[c], mean, rtol=1e-4, atol=1e-5)
    # the paper's GMM weighting trusts some samples less on the same pass
    gmm = compute_confidence(model, train_set, shared, SCAConfig(), ctx, epoch=3)
    assert float(gmm.w_v1[shared.labels_v >= 0].min()) < 1.0


def test_the_switches_are_validated_choices():
    cfg = load_config("demo", ["sca.classifier_init=prototypes", "sca.confidence_weights=uniform"])
    assert (cfg.sca.classifier_init, cfg.sca.confidence_weights) == ("prototypes", "uniform")
    default = load_config("sysu")
    assert (default.sca.classifier_init, default.sca.confidence_weights) == ("random", "gmm")
    with pytest.raises(ConfigError, match="classifier_init"):
        load_config("demo", ["sca.classifier_init=kmeans"])
