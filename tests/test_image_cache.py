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


# ---------------------------------------------------------------- decoding of every image mode
def _ramp16(low: int = 0, high: int = 65535) -> np.ndarray:
    """(H, W) uint16 values spread over [low, high], both ends included."""
    return np.linspace(low, high, H * W).round().astype(np.uint16).reshape(H, W)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2).astype(np.uint8)


def _decoded(path) -> np.ndarray:
    """What both entry points give: decode_image and a cache build (native size, so no resize)."""
    direct = image_cache.decode_image(str(path), H, W)
    cached = load_images([Sample(str(path), 0, 3, INFRARED)], H, W, path.parent / "cache", key="modes",
                         progress=False)[0]
    np.testing.assert_array_equal(direct, cached)
    return direct


@pytest.mark.parametrize("fmt, raw", [("png", "I;16"), ("tiff", "I;16"), ("tiff", "I;16B")])
def test_sixteen_bit_grey_is_scaled_by_its_bit_depth_not_clipped(tmp_path, fmt, raw):
    grey = _ramp16()
    image = Image.frombytes(raw, (W, H), grey.astype(">u2" if raw.endswith("B") else "<u2").tobytes())
    path = tmp_path / f"thermal.{fmt}"
    image.save(path)
    with Image.open(path) as written:
        assert written.mode == raw                                 # the mode under test reached the decoder
    expected = np.round(grey / 65535 * 255)
    got = _decoded(path)
    np.testing.assert_array_equal(got, _grey_to_rgb(expected))
    assert got.min() == 0 and got.max() == 255 and abs(got.mean() - 127.5) < 1.5


def test_thirty_two_bit_grey_holding_sixteen_bit_values_is_scaled_like_sixteen_bit(tmp_path):
    grey = _ramp16(0, 60000).astype(np.int32)
    path = tmp_path / "thermal.tiff"
    Image.fromarray(grey).save(path)
    with Image.open(path) as written:
        assert written.mode == "I"
    np.testing.assert_array_equal(_decoded(path), _grey_to_rgb(np.round(grey / 65535 * 255)))


def test_thirty_two_bit_grey_beyond_sixteen_bits_is_scaled_by_the_31_bit_range_and_negatives_are_black(tmp_path):
    grey = np.linspace(-1000, 2**31 - 1, H * W).round().astype(np.int64).reshape(H, W).astype(np.int32)
    path = tmp_path / "wide.tiff"
    Image.fromarray(grey).save(path)
    expected = np.round(np.clip(grey.astype(np.float64), 0, None) / (2**31 - 1) * 255)
    np.testing.assert_array_equal(_decoded(path), _grey_to_rgb(expected))


def test_rgba_is_composited_over_black(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (H, W, 4), dtype=np.uint8)
    rgba[0, :, 3] = 0                                              # fully transparent row: black
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba).save(path)
    expected = np.round(rgba[..., :3].astype(np.float64) * rgba[..., 3:] / 255)
    got = _decoded(path)
    np.testing.assert_array_equal(got, expected.astype(np.uint8))
    assert not got[0].any()


def test_grey_with_alpha_is_composited_over_black(tmp_path):
    la = np.random.default_rng(2).integers(0, 256, (H, W, 2), dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la).save(path)
    with Image.open(path) as written:
        assert written.mode == "LA"
    expected = np.round(la[..., 0].astype(np.float64) * la[..., 1] / 255)
    np.testing.assert_array_equal(_decoded(path), _grey_to_rgb(expected))


@pytest.mark.parametrize("transparent", [None, 3])
def test_palette_images_look_up_their_colours_and_a_transparent_index_is_black(tmp_path, transparent):
    rng = np.random.default_rng(3)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    index = rng.integers(0, 16, (H, W), dtype=np.uint8)
    index[0, 0] = 3
    image = Image.fromarray(index).convert("P")
    image.putpalette(palette.ravel().tolist())
    path = tmp_path / "palette.png"
    image.save(path, **({} if transparent is None else {"transparency": transparent}))
    expected = palette[index]
    if transparent is not None:
        expected[index == transparent] = 0
    np.testing.assert_array_equal(_decoded(path), expected)


def test_cmyk_uses_the_subtractive_formula(tmp_path):
    cmyk = np.random.default_rng(4).integers(0, 256, (H, W, 4), dtype=np.uint8)
    path = tmp_path / "print.tiff"
    Image.frombytes("CMYK", (W, H), cmyk.tobytes()).save(path)
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    np.testing.assert_array_equal(_decoded(path), np.round((255 - c) * (255 - k) / 255).astype(np.uint8))


def test_bilevel_images_are_black_and_white(tmp_path):
    bits = np.random.default_rng(5).integers(0, 2, (H, W)).astype(bool)
    path = tmp_path / "mask.png"
    Image.fromarray(bits).save(path)
    with Image.open(path) as written:
        assert written.mode == "1"
    np.testing.assert_array_equal(_decoded(path), _grey_to_rgb(bits * 255))
