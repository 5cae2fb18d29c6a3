"""Image cache: decode once, reuse, rebuild on change, fail loudly and atomically on bad files."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from PIL import Image

from vireid.data import image_cache
from vireid.data.image_cache import load_images
from vireid.data.records import INFRARED, VISIBLE, Sample
from vireid.errors import ConfigError, ImageReadError

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


def cache_files(folder):
    """Names of the cache files in `folder` (the lock file is not a cache)."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock")


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
    assert [os.path.splitext(n)[1] for n in cache_files(tmp_path / "cache")] == [".json", ".u8"]


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
    old = set(cache_files(cache))
    path = samples[2].path
    Image.fromarray(np.full((25, 11, 3), 200, dtype=np.uint8)).save(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    calls = count_decodes(monkeypatch)
    images = load_images(samples, H, W, cache, key="toy", progress=False)
    assert len(calls) == 5
    np.testing.assert_array_equal(images[2], expected(path))
    assert not old & set(cache_files(cache))


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
    assert cache_files(cache) == []


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
    assert cache_files(tmp_path / "cache") == []
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
    with Image.open(path) as written:   # the mode under test reaches the decoder (older Pillow reads 16-bit PNG as "I")
        assert written.mode in (raw, "I")
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


# ---------------------------------------------------------------- cache identity, sharing and errors
def test_two_sample_lists_under_one_key_keep_their_caches(tmp_path, monkeypatch):
    # RegDB's trials: the same key ("regdb-train-visible") for different sample lists
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src", count=6)
    trial_1, trial_2 = samples[:4], samples[2:]
    cache = tmp_path / "cache"
    calls = count_decodes(monkeypatch)
    load_images(trial_1, H, W, cache, key="regdb-train-visible", progress=False)
    load_images(trial_2, H, W, cache, key="regdb-train-visible", progress=False)
    assert len(calls) == 8
    again = load_images(trial_1, H, W, cache, key="regdb-train-visible", progress=False)
    assert len(calls) == 8, "trial 1's cache must survive trial 2's build"
    np.testing.assert_array_equal(again[3], expected(trial_1[3].path))
    assert len([n for n in cache_files(cache) if n.endswith(".u8")]) == 2


def test_the_same_samples_under_another_key_or_none_reuse_the_cache(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src")
    cache = tmp_path / "cache"
    calls = count_decodes(monkeypatch)
    first = np.array(load_images(samples, H, W, cache, key="sysu-train-visible", progress=False))
    np.testing.assert_array_equal(load_images(samples, H, W, cache, key="demo/train", progress=False), first)
    np.testing.assert_array_equal(load_images(samples, H, W, cache, progress=False), first)
    assert len(calls) == 5
    assert len(cache_files(cache)) == 2


def test_a_stale_cache_is_not_deleted_while_another_process_may_be_opening_it(tmp_path):
    import fcntl
    import threading
    import time

    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src")
    cache = tmp_path / "cache"
    load_images(samples, H, W, cache, key="toy", progress=False)
    (old_data,) = [cache / n for n in cache_files(cache) if n.endswith(".u8")]
    path = samples[2].path
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))  # the cache is now stale

    reader = os.open(cache / ".lock", os.O_RDWR)           # another process between checking and mapping
    fcntl.flock(reader, fcntl.LOCK_SH)
    built = []
    builder = threading.Thread(target=lambda: built.append(load_images(samples, H, W, cache, key="toy",
                                                                       progress=False)))
    builder.start()
    try:
        deadline = time.monotonic() + 20
        while not any(".json.partial-" in n for n in os.listdir(cache)):   # decoded, about to publish
            assert time.monotonic() < deadline, "the builder never finished decoding"
            time.sleep(0.01)
        time.sleep(0.3)
        assert builder.is_alive() and old_data.exists(), "the stale cache went while a reader held the lock"
    finally:
        os.close(reader)
        builder.join(20)
    assert not builder.is_alive() and not old_data.exists()
    np.testing.assert_array_equal(built[0][2], expected(path))


def _load_repeatedly(src: str, cache: str, rounds: int) -> str:
    """Worker of the concurrency test: alternate two sample lists under one key, checking every row."""
    from pathlib import Path as P

    samples = [Sample(str(p), i, 1, VISIBLE) for i, p in enumerate(sorted(P(src).glob("*.jpg")))]
    lists = (samples[:4], samples[1:])
    for r in range(rounds):
        chosen = lists[r % 2]
        images = load_images(chosen, H, W, cache, key="shared", progress=False)
        for row, s in zip(images, chosen):
            if not np.array_equal(row, expected(s.path)):
                return f"round {r}: wrong pixels for {s.path}"
    return "ok"


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork")
def test_concurrent_processes_share_one_cache_folder(tmp_path):
    import multiprocessing

    (tmp_path / "src").mkdir()
    write_images(tmp_path / "src", count=6)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        results = pool.starmap(_load_repeatedly, [(str(tmp_path / "src"), str(tmp_path / "cache"), 6)] * 3)
    assert results == ["ok"] * 3
    names = cache_files(tmp_path / "cache")
    assert len([n for n in names if n.endswith(".u8")]) == 2 and not [n for n in names if ".partial-" in n]


def test_a_cache_folder_that_cannot_be_created_names_it_and_the_setting(tmp_path):
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src", count=1)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError) as err:
        load_images(samples, H, W, tmp_path / "file" / "cache", key="toy", progress=False)
    message = str(err.value)
    assert str(tmp_path / "file" / "cache") in message
    assert "data.cache_dir" in message and "VIREID_CACHE_DIR" in message


def _read_only_file_system(monkeypatch):
    """Make creating files fail as on a read-only mount (chmod does not stop root)."""
    real_open = os.open

    def refusing(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)


def test_a_read_only_cache_folder_is_one_clear_error_naming_the_folder_and_the_setting(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src", count=2)
    (tmp_path / "cache").mkdir()
    _read_only_file_system(monkeypatch)
    with pytest.raises(ConfigError) as err:
        load_images(samples, H, W, tmp_path / "cache", key="toy", progress=False)
    message = str(err.value)
    assert f"cannot write the image cache in {tmp_path / 'cache'}" in message
    assert "data.cache_dir" in message and "VIREID_CACHE_DIR" in message and "\n" not in message


def test_a_complete_cache_in_a_read_only_folder_is_still_read(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src", count=2)
    built = np.array(load_images(samples, H, W, tmp_path / "cache", key="toy", progress=False))
    (tmp_path / "cache" / ".lock").unlink(missing_ok=True)   # not even the lock file can be made
    _read_only_file_system(monkeypatch)
    np.testing.assert_array_equal(load_images(samples, H, W, tmp_path / "cache", key="toy", progress=False), built)


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="space is reserved with posix_fallocate")
def test_a_full_disk_is_an_error_before_decoding(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src", count=2)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    calls = count_decodes(monkeypatch)
    with pytest.raises(ConfigError, match="free space there or set data.cache_dir"):
        load_images(samples, H, W, tmp_path / "cache", key="toy", progress=False)
    assert calls == [] and cache_files(tmp_path / "cache") == []


def test_temporaries_of_ended_processes_are_removed_and_others_kept(tmp_path):
    import socket
    import subprocess
    import sys

    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src", count=1)
    cache = tmp_path / "cache"
    cache.mkdir()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True).stdout.strip()
    host = socket.gethostname()
    dead = cache / f"toy-12x6-a-b.u8.partial-{host}-{ended}-00000000"
    alive = cache / f"toy-12x6-a-b.u8.partial-{host}-{os.getpid()}-00000000"
    remote = cache / f"toy-12x6-a-b.u8.partial-another-host-{ended}-00000000"
    for path in (dead, alive, remote):
        path.write_bytes(b"half")
    load_images(samples, H, W, cache, key="toy", progress=False)
    assert not dead.exists() and alive.exists() and remote.exists()


def test_caches_of_the_previous_format_for_the_same_key_and_size_are_removed(tmp_path):
    import json

    (tmp_path / "src").mkdir()
    samples = write_images(tmp_path / "src", count=1)
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / f"toy-{H}x{W}-0123456789abcdef0123"
    other_key = cache / f"other-{H}x{W}-0123456789abcdef0123"
    for stem, key in ((old, "toy"), (other_key, "other")):
        stem.with_suffix(".u8").write_bytes(b"\0" * 10)
        stem.with_suffix(".json").write_text(json.dumps({"version": 1, "key": key}))
    load_images(samples, H, W, cache, key="toy", progress=False)
    assert not old.with_suffix(".u8").exists() and not old.with_suffix(".json").exists()
    assert other_key.with_suffix(".u8").exists()
