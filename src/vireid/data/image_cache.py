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


def decode_image(path: str, height: int, width: int) -> np.ndarray:
    """Read one image as RGB (grey IR images get 3 equal channels), Lanczos-resized: uint8 (height, width, 3)."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
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
