"""Decode every image once into a uint8 memory-mapped array on disk (docs/method.md §2: resize once, cache).

Layout: `<cache_dir>/<prefix>-<h>x<w>-<content>-<fresh>.u8` holds N×H×W×3 bytes (row i =
samples[i]) and a `.json` sidecar describes it. `content` hashes what decides the rows: the ordered
sample paths, the image size and the cache format version; `fresh` hashes every file's (size,
mtime_ns), so editing or replacing an image gives a new cache. The prefix (e.g. "sysu-train-visible")
is for people only: two image sets with the same samples share one cache whatever their prefix,
and two with different samples (RegDB's trials) never evict each other.

Several processes may share a cache folder. A build decodes into a uniquely named temporary file
and publishes it under the folder's exclusive lock (`fileio.folder_lock`): data renamed into place
first, sidecar last, so a cache is valid only once its sidecar exists. Only then are older caches
of the same samples removed. A reader checks and opens a cache under the shared lock, so a cache
it has just checked is never deleted before it is mapped (a mapped file outlives its deletion).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from vireid.fileio import folder_lock, partial_name, remove_abandoned
from vireid.data.records import Sample
from vireid.errors import ConfigError, ImageReadError
from vireid.progress import progress as progress_bar

CACHE_VERSION = 2
# Where a user sets the cache folder, named in every error about it.
CACHE_SETTING = "data.cache_dir (or the VIREID_CACHE_DIR environment variable)"


# PIL modes of 16-bit greyscale images (PNG and TIFF thermal images); `convert` would clip them at 255.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# Modes with an alpha channel, whose colour under transparent pixels is undefined.
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def as_rgb8(im: Image.Image) -> Image.Image:
    """`im` as an 8-bit RGB image, whatever its mode.

    - 16-bit grey ("I;16", "I;16B", ...) is scaled by its bit depth (v * 255 / 65535, rounded),
      not clipped; 32-bit grey ("I", which older Pillow also gives for 16-bit PNGs) the same way,
      taken as 16-bit when no value exceeds 65535, else as 31-bit; negative values become 0.
    - Transparency (RGBA, LA, a palette or grey/RGB image with a transparent colour) is composited
      over black, so hidden colours under transparent pixels cannot leak into features.
    - Everything else (L, 1, P, CMYK, YCbCr, ...) is Pillow's own conversion.
    """
    if im.mode in SIXTEEN_BIT_MODES or im.mode == "I":
        grey = np.asarray(im).astype(np.int64)
        full = 65535 if im.mode != "I" or grey.max(initial=0) <= 65535 else 2**31 - 1
        grey = (np.clip(grey, 0, None) * 255 + full // 2) // full
        return Image.fromarray(grey.astype(np.uint8)).convert("RGB")
    if im.mode in ALPHA_MODES or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint16)
        rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
        return Image.fromarray(rgb.astype(np.uint8))
    return im.convert("RGB")


def decode_image(path: str, height: int, width: int) -> np.ndarray:
    """Read one image as 8-bit RGB (`as_rgb8`: grey IR images get 3 equal channels, 16-bit ones are
    scaled), Lanczos-resized: uint8 (height, width, 3)."""
    try:
        with Image.open(path) as im:
            im = as_rgb8(im)
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.LANCZOS)
            return np.asarray(im)
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def content_key(paths: Sequence[str], height: int, width: int) -> str:
    """Hash of what decides a cache's rows: the ordered paths, the output size, the format version."""
    h = hashlib.sha256(f"v{CACHE_VERSION}:{height}x{width}:{len(paths)}\n".encode())
    for path in paths:
        h.update(f"{path}\n".encode())
    return h.hexdigest()[:16]


def freshness_key(paths: Sequence[str]) -> str:
    """Hash of every file's (size, mtime_ns): changes when an image is edited, replaced or removed."""
    h = hashlib.sha256()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ImageReadError(f"cannot read image {path}: {exc}") from exc
        h.update(f"{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _decode_into(out: np.ndarray, paths: Sequence[str], height: int, width: int, progress: bool, desc: str) -> None:
    """Fill out[i] with decode_image(paths[i]) using a thread pool (PIL decoding releases the GIL)."""

    def work(i: int) -> None:
        out[i] = decode_image(paths[i], height, width)

    workers = max(1, min(16, (os.cpu_count() or 1) * 2))
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        bar = progress_bar(pool.map(work, range(len(paths))), total=len(paths), desc=desc, enabled=progress,
                           unit="img")
        for _ in bar:
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def load_images(
    samples: Sequence[Sample],
    height: int,
    width: int,
    cache_dir: str | Path,
    key: str = "images",
    progress: bool = True,
) -> np.ndarray:
    """All images of `samples` as a uint8 memmap (N, height, width, 3), decoding only on a cache miss.

    The map is copy-on-write: writes stay in memory and never reach the cache file. `key` is a
    readable prefix for the cache's file name (e.g. "sysu-train-visible"); the cache itself is
    found by content, so any prefix finds a cache of the same samples and size.
    """
    paths = [s.path for s in samples]
    if not paths:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    cache_dir = _cache_folder(cache_dir)
    content, fresh = content_key(paths, height, width), freshness_key(paths)
    shape = (len(paths), height, width, 3)
    meta = {"version": CACHE_VERSION, "count": len(paths), "height": height, "width": width,
            "content": content, "fresh": fresh, "first": paths[0], "last": paths[-1]}
    tail = f"{height}x{width}-{content}-{fresh}"
    name = f"{_prefix(key)}-{tail}"
    with folder_lock(cache_dir, exclusive=False):
        found = _open_valid(cache_dir, name, tail, meta, shape)
    if found is not None:
        return found

    data_path = cache_dir / f"{name}.u8"
    tmp_data = cache_dir / partial_name(data_path.name)
    tmp_meta = cache_dir / partial_name(f"{name}.json")
    try:
        _allocate(tmp_data, int(np.prod(shape)), cache_dir)
        out = np.memmap(tmp_data, dtype=np.uint8, mode="r+", shape=shape)
        _decode_into(out, paths, height, width, progress, f"decoding {key} images")
        out.flush()
        del out
        try:
            tmp_meta.write_text(json.dumps({**meta, "prefix": _prefix(key)}, indent=1))
        except OSError as err:
            raise _unwritable(cache_dir, err) from None
        with folder_lock(cache_dir, exclusive=True):
            os.replace(tmp_data, data_path)
            os.replace(tmp_meta, data_path.with_suffix(".json"))
            _remove_superseded(cache_dir, content, keep=name)
            _remove_legacy(cache_dir, _prefix(key), height, width)
            remove_abandoned(cache_dir)
            return np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape)
    finally:
        for tmp in (tmp_data, tmp_meta):
            tmp.unlink(missing_ok=True)


def _prefix(key: str) -> str:
    """`key` reduced to characters safe in a file name on every system."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip(".") or "images"


def _cache_folder(cache_dir: str | Path) -> Path:
    """The cache folder, created if needed; an error naming the folder and the setting otherwise."""
    folder = Path(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the image cache folder {folder} ({err.strerror or err}); "
                          f"set {CACHE_SETTING} to a writable folder") from None
    return folder


def _unwritable(cache_dir: Path, err: OSError) -> ConfigError:
    return ConfigError(f"cannot write the image cache in {cache_dir} ({err.strerror or err}); "
                       f"set {CACHE_SETTING} to a writable folder")


def _allocate(path: Path, nbytes: int, cache_dir: Path) -> None:
    """Create `path` with `nbytes` reserved on disk, so a full disk is an error now rather than a
    crash (SIGBUS) while decoding into the memory map."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as err:
        raise _unwritable(cache_dir, err) from None
    try:
        _reserve(fd, nbytes)
    except OSError as err:
        raise ConfigError(f"cannot reserve {nbytes / 2**20:.0f} MiB for decoded images in {cache_dir} "
                          f"({err.strerror or err}); free space there or set {CACHE_SETTING} to another "
                          "folder") from None
    finally:
        os.close(fd)


def _reserve(fd: int, nbytes: int) -> None:
    """Allocate `nbytes` for the open file `fd` (a sparse file where the file system cannot)."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, nbytes)
            return
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                raise
    os.ftruncate(fd, nbytes)


def _open_valid(cache_dir: Path, name: str, tail: str, meta: dict, shape: tuple[int, ...]) -> np.ndarray | None:
    """A copy-on-write map of a valid cache `<any prefix>-<tail>.u8`, this `name` first, or None."""
    ours = cache_dir / f"{name}.u8"
    others = sorted(p for p in cache_dir.glob(f"*-{tail}.u8") if p != ours)
    for data_path in (ours, *others):
        if _valid(data_path, data_path.with_suffix(".json"), meta, shape):
            return np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape)
    return None


def _remove_superseded(cache_dir: Path, content: str, keep: str) -> None:
    """Delete the other caches of the same samples and size (older file versions or other prefixes).

    Caller holds the exclusive lock, so no reader is between checking one of them and mapping it.
    """
    for path in cache_dir.glob(f"*-{content}-*"):
        if path.suffix in (".u8", ".json") and path.stem != keep:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # still open where open files cannot be deleted (Windows): left for a later build


def _remove_legacy(cache_dir: Path, prefix: str, height: int, width: int) -> None:
    """Delete caches of format version 1 (named by key and size only) for this prefix and size."""
    for meta_path in cache_dir.glob(f"{prefix}-{height}x{width}-*.json"):
        try:
            stored = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(stored, dict) and stored.get("version") == 1 and stored.get("key") == prefix:
            meta_path.with_suffix(".u8").unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)


def _valid(data_path: Path, meta_path: Path, meta: dict, shape: tuple[int, ...]) -> bool:
    if not (meta_path.is_file() and data_path.is_file()):
        return False
    try:
        stored = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(stored, dict):
        return False
    stored.pop("prefix", None)
    return stored == meta and data_path.stat().st_size == int(np.prod(shape))
