"""Plots: each function writes a real PNG; ranked lists frame hits green and misses red (curves: test_curves.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vireid.viz import plot_cmc, plot_ranked_lists, plot_tsne

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    with open(path, "rb") as handle:
        if handle.read(8) != PNG:
            return False
    with Image.open(path) as img:
        return img.size[0] > 50 and img.size[1] > 50


def test_cmc_plot(tmp_path):
    path = plot_cmc({"all-search": np.linspace(0.6, 0.95, 20), "indoor": np.linspace(64, 97, 20)},
                    tmp_path / "plots" / "cmc.png")
    assert is_png(path)


def count_near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> int:
    return int((np.abs(pixels.astype(int) - np.array(rgb)).max(axis=2) < tol).sum())


@pytest.mark.parametrize("correct, want_green, want_red", [([True, True], True, False), ([False, False], False, True)])
def test_ranked_list_frames(tmp_path, correct, want_green, want_red):
    grey = np.full((64, 32, 3), 128, np.uint8)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(grey).save(paths[-1])
    out = plot_ranked_lists([paths[0]], paths[1:], np.array([[0, 1]]), np.array([correct]), tmp_path / "ranked.png")
    assert is_png(out)
    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert (count_near(pixels, (44, 160, 44)) > 50) == want_green
    assert (count_near(pixels, (214, 39, 40)) > 50) == want_red


def test_tsne_plot(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(80, 16)).astype(np.float32)
    mask = np.arange(80) % 2 == 0
    assert is_png(plot_tsne(feats, mask, tmp_path / "tsne.png", "modalities", max_points=60))
