"""Inference API: checkpoint -> Embedder; every input type gives the same features; cosine search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vireid.config import config_to_dict, load_config
from vireid.engine.checkpoint import save_checkpoint
from vireid.errors import CheckpointError, ImageReadError
from vireid.inference import Embedder, search

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from model_helpers import model_for_tests

    cfg = load_config("smoke")
    torch.manual_seed(0)
    model = model_for_tests("resnet18", pretrained="none", num_classes=7)
    with torch.no_grad():
        model.infrared_stem.conv1.weight.mul_(-1.0)
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "final.pt", model=model, stage="sca", epoch=1,
                           config=config_to_dict(cfg))
    return model.eval(), path


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(3, 64, 32, 3), dtype=np.uint8)


def test_checkpoint_embedder_reproduces_the_trained_model(trained, images):
    model, path = trained
    embedder = Embedder.from_checkpoint(path, device="cpu")
    assert (embedder.height, embedder.width) == (64, 32)
    got = embedder.embed(images, modality="infrared")
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD
    with torch.no_grad():
        expected = model(x, modality="infrared")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(3))


def test_paths_pil_arrays_and_tensors_give_the_same_features(trained, images, tmp_path):
    embedder = Embedder(trained[0], 64, 32, device="cpu")
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    from_paths = embedder.embed([str(p) for p in paths], "visible", batch_size=2)
    from_pil = embedder.embed([Image.open(p) for p in paths], "visible")
    from_arrays = embedder.embed(list(images), "visible")
    from_tensors = embedder.embed(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, "visible")
    for other in (from_pil, from_arrays, from_tensors):
        torch.testing.assert_close(from_paths, other, rtol=0, atol=1e-6)
    assert not torch.allclose(from_paths, embedder.embed(images, "infrared"), atol=1e-3)


def test_other_sizes_and_grey_images_are_accepted(trained, tmp_path):
    embedder = Embedder(trained[0], 64, 32, device="cpu")
    grey = np.random.default_rng(1).integers(0, 256, size=(100, 50), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")  # lossless, so the file holds `grey` exactly
    feats = embedder.embed(tmp_path / "grey.png", "infrared")
    assert feats.shape == (1, 512)
    resized = np.asarray(Image.fromarray(grey).convert("RGB").resize((32, 64), Image.Resampling.LANCZOS))
    torch.testing.assert_close(feats, embedder.embed(resized, "infrared"), rtol=0, atol=1e-6)


def test_unreadable_images_and_foreign_checkpoints_are_named(trained, tmp_path):
    embedder = Embedder(trained[0], 64, 32, device="cpu")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        embedder.embed([tmp_path / "broken.jpg"], "visible")
    with pytest.raises(CheckpointError, match="absent.pt"):
        Embedder.from_checkpoint(tmp_path / "absent.pt")


def test_search_returns_the_cosine_top_k():
    gen = torch.Generator().manual_seed(0)
    query, gallery = torch.randn(4, 6, generator=gen), torch.randn(9, 6, generator=gen) * 3
    scores, indices = search(query, gallery, topk=3)
    assert scores.shape == indices.shape == (4, 3)
    for q in range(4):
        cos = [float(query[q] @ g / (query[q].norm() * g.norm())) for g in gallery]
        order = sorted(range(9), key=lambda j: -cos[j])[:3]
        assert indices[q].tolist() == order
        np.testing.assert_allclose(scores[q].numpy(), [cos[j] for j in order], rtol=1e-5)
    assert search(query, gallery, topk=50)[1].shape == (4, 9)
