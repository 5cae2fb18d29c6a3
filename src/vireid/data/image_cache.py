"""Decode every image once into a uint8 memory-mapped array on disk (METHOD §2: resize once, cache).

Layout: `<cache_dir>/<key>-<h>x<w>-<fingerprint>.u8` holds N×H×W×3 bytes (row i = samples[i]) and
a `.json` sidecar describes it. The fingerprint hashes every (path, size, mtime_ns) plus the size,
so editing, adding or removing an image gives a new cache. Both files are written to temporary
names and renamed into place, data first and sidecar last: a cache is valid only when its sidecar
exists, so an interrupted build never leaves a valid-looking cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from vireid.data.records import Sample
from vireid.errors import ImageReadError

CACHE_VERSION = 1


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


def cache_fingerprint(paths: Sequence[str], height: int, width: int) -> str:
    """Hash of (path, size, mtime_ns) of every file, the output size and the cache format version."""
    h = hashlib.sha256(f"v{CACHE_VERSION}:{height}x{width}:{len(paths)}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ImageReadError(f"cannot read image {path}: {exc}") from exc
        h.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _decode_into(out: np.ndarray, paths: Sequence[str], height: int, width: int, progress: bool, desc: str) -> None:
    """Fill out[i] with decode_image(paths[i]) using a thread pool (PIL decoding releases the GIL)."""

    def work(i: int) -> None:
        out[i] = decode_image(paths[i], height, width)

    workers = max(1, min(16, (os.cpu_count() or 1) * 2))
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        bar = tqdm(pool.map(work, range(len(paths))), total=len(paths), desc=desc, disable=not progress,
                   unit="img", leave=False)
        for _ in bar:
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def load_images(
    samples: Sequence[Sample],
    height: int,
    width: int,
    cache_dir: str | Path,
    key: str,
    progress: bool = True,
) -> np.ndarray:
    """All images of `samples` as a uint8 memmap (N, height, width, 3), decoding only on a cache miss.

    The map is copy-on-write: writes stay in memory and never reach the cache file.

    `key` names the image set (e.g. "sysu-train") so several sets share one cache folder; older
    caches of the same key and size are removed after a rebuild.
    """
    paths = [s.path for s in samples]
    if not paths:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = cache_fingerprint(paths, height, width)
    stem = f"{key}-{height}x{width}"
    data_path = cache_dir / f"{stem}-{fingerprint}.u8"
    meta_path = data_path.with_suffix(".json")
    shape = (len(paths), height, width, 3)
    meta = {"version": CACHE_VERSION, "key": key, "count": len(paths), "height": height, "width": width,
            "fingerprint": fingerprint, "first": paths[0], "last": paths[-1]}
    if _valid(data_path, meta_path, meta, shape):
        return np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape)

    tmp_data = data_path.with_name(f"{data_path.name}.tmp{os.getpid()}")
    tmp_meta = meta_path.with_name(f"{meta_path.name}.tmp{os.getpid()}")
    try:
        out = np.memmap(tmp_data, dtype=np.uint8, mode="w+", shape=shape)
        _decode_into(out, paths, height, width, progress, f"decoding {key} images")
        out.flush()
        del out
        os.replace(tmp_data, data_path)
        tmp_meta.write_text(json.dumps(meta, indent=1))
        os.replace(tmp_meta, meta_path)
    finally:
        for tmp in (tmp_data, tmp_meta):
            tmp.unlink(missing_ok=True)
    for stale in cache_dir.glob(f"{stem}-*"):
        if stale.suffix in (".u8", ".json") and stale.stem != data_path.stem and stale.stem.count("-") == data_path.stem.count("-"):
            stale.unlink(missing_ok=True)
    return np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape)


def _valid(data_path: Path, meta_path: Path, meta: dict, shape: tuple[int, ...]) -> bool:
    if not (meta_path.is_file() and data_path.is_file()):
        return False
    try:
        stored = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return stored == meta and data_path.stat().st_size == int(np.prod(shape))
