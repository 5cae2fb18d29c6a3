"""Feature extraction: per-modality routing, sample order, flip averaging, mode restore."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vireid.engine.extract import extract_features

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class StandIn(nn.Module):
    """The model interface with a different linear map per modality; not flip invariant."""

    def __init__(self, h: int, w: int, dim: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.visible = nn.Linear(3 * h * w, dim)
        self.infrared = nn.Linear(3 * h * w, dim)
        self.calls: list[tuple[str, int]] = []

    def forward(self, x: torch.Tensor, modality: str = "visible") -> torch.Tensor:
        self.calls.append((modality, x.shape[0]))
        head = self.visible if modality == "visible" else self.infrared
        return F.normalize(head(x.flatten(1)), dim=1)


def reference(model: StandIn, image: np.ndarray, infrared: bool) -> torch.Tensor:
    """One image at a time, straight from the definition."""
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - MEAN) / STD
    head = model.infrared if infrared else model.visible
    return F.normalize(head(x.flatten(1)), dim=1)[0]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(11, 6, 4, 3), dtype=np.uint8)
    infrared = np.array([0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1], dtype=bool)
    return images, infrared


def test_rows_follow_sample_order_and_each_goes_through_its_stem(data):
    images, infrared = data
    model = StandIn(6, 4)
    got = extract_features(model, images, infrared, batch_size=3, progress=False)
    expected = torch.stack([reference(model, img, ir) for img, ir in zip(images, infrared)])
    assert got.dtype == torch.float32 and got.shape == (11, 5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert {m for m, _ in model.calls} == {"visible", "infrared"}
    assert max(b for _, b in model.calls) <= 3


def test_flip_average_is_half_the_sum_then_renormalised(data):
    images, infrared = data
    model = StandIn(6, 4)
    flipped = images[:, :, ::-1, :].copy()
    plain = torch.stack([reference(model, img, ir) for img, ir in zip(images, infrared)])
    mirror = torch.stack([reference(model, img, ir) for img, ir in zip(flipped, infrared)])
    average = 0.5 * (plain + mirror)
    kept = extract_features(model, images, infrared, flip_average=True, renormalize=False, progress=False)
    torch.testing.assert_close(kept, average, rtol=1e-5, atol=1e-6)
    assert (kept.norm(dim=1) < 1 - 1e-4).all()  # the reference's shorter average
    renormed = extract_features(model, images, infrared, flip_average=True, progress=False)
    torch.testing.assert_close(renormed, F.normalize(average, dim=1), rtol=1e-5, atol=1e-6)


def test_training_mode_is_restored(data):
    images, infrared = data
    model = StandIn(6, 4).train()
    seen = []
    model.register_forward_pre_hook(lambda m, _: seen.append(m.training))
    extract_features(model, images, infrared, progress=False)
    assert seen and not any(seen)
    assert model.training


def test_single_modality_and_empty_inputs(data):
    images, _ = data
    model = StandIn(6, 4)
    only_ir = extract_features(model, images, np.ones(11, bool), progress=False)
    torch.testing.assert_close(only_ir[4], reference(model, images[4], True), rtol=1e-5, atol=1e-6)
    empty = extract_features(model, images[:0], np.zeros(0, bool), progress=False)
    assert empty.shape == (0, 5)


def test_real_model_matches_one_image_at_a_time():
    from model_helpers import model_for_tests

    torch.manual_seed(0)
    model = model_for_tests("resnet18", pretrained="none")
    with torch.no_grad():  # make the two stems differ, so routing matters
        model.infrared_stem.conv1.weight.mul_(-1.0)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(5, 32, 16, 3), dtype=np.uint8)
    infrared = np.array([1, 0, 1, 0, 0], dtype=bool)
    got = extract_features(model, images, infrared, batch_size=2, progress=False)
    model.eval()
    with torch.no_grad():
        for i in range(5):
            x = (torch.from_numpy(images[i]).permute(2, 0, 1)[None].float() / 255 - MEAN) / STD
            one = model(x, modality="infrared" if infrared[i] else "visible")[0]
            torch.testing.assert_close(got[i], one, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(5))


def test_read_only_memmap_cache_gives_the_same_features(data, tmp_path):
    images, infrared = data
    images.tofile(tmp_path / "cache.u8")
    cache = np.memmap(tmp_path / "cache.u8", dtype=np.uint8, mode="r", shape=images.shape)
    model = StandIn(6, 4)
    assert torch.equal(extract_features(model, cache, infrared, batch_size=4, progress=False),
                       extract_features(model, images, infrared, batch_size=4, progress=False))
