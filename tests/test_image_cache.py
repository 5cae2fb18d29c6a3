"""Image cache: decode once, reuse, rebuild on change, fail loudly and atomically on bad files."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from vireid.data import image_cache
from vireid.data.image_cache import load_images
from vireid.data.records import INFRARED, VISIBLE, Sample
from vireid.errors import ImageReadError

H, W = 12, 6


def write_images(folder, count=5):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        path = folder / f"img{i}.jpg"
        if i % 2:                                         # single-channel infrared JPEG
            Image.fromarray(rng.integers(0, 256, (30, 14), dtype=np.uint8), mode="L").save(path)
            samples.append(Sample(str(path), i, 3, INFRARED))
        else:
            Image.fromarray(rng.integers(0, 256, (25, 11, 3), dtype=np.uint8)).save(path)
            samples.append(Sample(str(path), i, 1, VISIBLE))
    return samples


def expected(path):
    return np.asarray(Image.open(path).convert("RGB").resize((W, H), Image.LANCZOS))


def count_decodes(monkeypatch):
    calls = []
    real = image_cache.decode_image

    def counting(path, height, width):
        calls.append(path)
        return real(path, height, width)

    monkeypatch.setattr(image_cache, "decode_image", counting)
    return calls


def test_round_trip_matches_pil_and_grey_becomes_three_channels(tmp_path):
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src")
    images = load_images(samples, H, W, tmp_path / "cache", key="toy", progress=False)
    assert images.shape == (5, H, W, 3) and images.dtype == np.uint8
    for i, s in enumerate(samples):
        np.testing.assert_array_equal(images[i], expected(s.path))
    assert np.array_equal(images[1][..., 0], images[1][..., 2])    # grey: equal channels
    files = sorted(p.suffix for p in (tmp_path / "cache").iterdir())
    assert files == [".json", ".u8"]


def test_second_load_hits_the_cache_without_decoding(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src")
    calls = count_decodes(monkeypatch)
    first = np.array(load_images(samples, H, W, tmp_path / "cache", key="toy", progress=False))
    assert len(calls) == 5
    second = load_images(samples, H, W, tmp_path / "cache", key="toy", progress=False)
    assert len(calls) == 5
    np.testing.assert_array_equal(first, second)
    # Another size is another cache.
    load_images(samples, H + 2, W, tmp_path / "cache", key="toy", progress=False)
    assert len(calls) == 10


def test_changed_source_rebuilds_and_drops_the_stale_cache(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src")
    cache = tmp_path / "cache"
    load_images(samples, H, W, cache, key="toy", progress=False)
    old = {p.name for p in cache.iterdir()}
    path = samples[2].path
    Image.fromarray(np.full((25, 11, 3), 200, dtype=np.uint8)).save(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    calls = count_decodes(monkeypatch)
    images = load_images(samples, H, W, cache, key="toy", progress=False)
    assert len(calls) == 5
    np.testing.assert_array_equal(images[2], expected(path))
    assert not old & {p.name for p in cache.iterdir()}


def test_truncated_jpeg_names_the_file_and_leaves_no_cache(tmp_path):
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src")
    bad = samples[3].path
    data = open(bad, "rb").read()
    with open(bad, "wb") as fh:
        fh.write(data[: len(data) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(ImageReadError, match="img3.jpg"):
        load_images(samples, H, W, cache, key="toy", progress=False)
    assert list(cache.iterdir()) == []


def test_missing_file_names_the_path(tmp_path):
    samples = [Sample(str(tmp_path / "gone.jpg"), 0, 1, VISIBLE)]
    with pytest.raises(ImageReadError, match="gone.jpg"):
        load_images(samples, H, W, tmp_path / "cache", key="toy", progress=False)


def test_interrupted_build_is_not_taken_for_a_cache(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src")
    real = image_cache.decode_image

    def dies_on_fourth(path, height, width):
        if path.endswith("img3.jpg"):
            raise KeyboardInterrupt
        return real(path, height, width)

    monkeypatch.setattr(image_cache, "decode_image", dies_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        load_images(samples, H, W, tmp_path / "cache", key="toy", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []
    calls = []
    monkeypatch.setattr(image_cache, "decode_image", lambda p, h, w: (calls.append(p), real(p, h, w))[1])
    images = load_images(samples, H, W, tmp_path / "cache", key="toy", progress=False)
    assert len(calls) == 5 and images.shape == (5, H, W, 3)
