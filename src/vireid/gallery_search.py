"""Search a folder of gallery images for query images (`vireid search`), with a reusable gallery index.

Gallery features are the expensive part, so they are kept in an index cache under
`resolve_cache_dir(Config()) / "search-index"`. One index file belongs to one (checkpoint content,
gallery modality, gallery folder); inside it every image is recorded with its (relative path, size,
mtime_ns). A later search re-embeds only the images that are new or changed since (all of them when
the checkpoint changed, since its content hash names the file) and drops removed ones.

Identities: when every query and gallery image sits in a folder named by an integer (the
`.../<pid>/image.jpg` convention of SYSU-MM01, RegDB and LLCM), that integer is taken as the person id
and the picture frames correct matches green and wrong ones red. Otherwise nothing is judged: the
picture shows scores only, and the JSON has no `correct` fields.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vireid.config import Config, resolve_cache_dir
from vireid.data.image_cache import decode_image
from vireid.data.records import MODALITIES
from vireid.data.registry import IMAGE_SUFFIXES
from vireid.errors import VireidError
from vireid.engine.evaluate import check_finite_features
from vireid.fileio import atomic_write, check_writable_file, check_writable_folder, write_json
from vireid.inference import Embedder, search
from vireid.progress import progress as progress_bar
from vireid.viz.plots import plot_search_results

INDEX_VERSION = 1  # bump when the index file layout or the preprocessing changes
MAX_PICTURE_ROWS = 20  # queries drawn in the picture; the JSON always holds every query


def find_images(folder: str | Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted by relative path; hidden files and folders skipped."""
    root = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _query_images(query: str | Path) -> list[Path]:
    """One image file, or every image in a folder; errors name the path."""
    path = Path(query)
    if not path.exists():
        raise VireidError(f"query {path} does not exist (expected an image file or a folder of images)")
    if path.is_file():
        return [path]
    images = find_images(path)
    if not images:
        raise VireidError(f"no query images ({'/'.join(IMAGE_SUFFIXES)}) found under folder {path}")
    return images


def _gallery_images(gallery: str | Path) -> list[Path]:
    path = Path(gallery)
    if not path.exists():
        raise VireidError(f"gallery {path} does not exist (expected a folder of images)")
    if not path.is_dir():
        raise VireidError(f"gallery {path} is a file; expected a folder of images (searched recursively)")
    images = find_images(path)
    if not images:
        what = "is empty" if not any(path.iterdir()) else f"holds no images ({'/'.join(IMAGE_SUFFIXES)})"
        raise VireidError(f"gallery folder {path} {what}; expected images, searched recursively")
    return images


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes: names a checkpoint by content, so a copy reuses and a retrain rebuilds."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            h.update(block)
    return h.hexdigest()


def identities_from_paths(paths: Sequence[str | Path]) -> np.ndarray | None:
    """Person ids (N,) int64 from `.../<pid>/<file>` parent folder names; None unless every one is an integer."""
    names = [Path(p).parent.name for p in paths]
    if not names or not all(n.isdigit() for n in names):
        return None
    return np.array([int(n) for n in names], dtype=np.int64)


def _signatures(root: Path, paths: Sequence[Path]) -> np.ndarray:
    """(N,) strings 'relative path<TAB>size<TAB>mtime_ns': equal strings mean an unchanged file."""
    sigs = []
    for p in paths:
        st = p.stat()
        sigs.append(f"{p.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}")
    return np.array(sigs, dtype=str)


def embed_paths(embedder: Any, paths: Sequence[Path], modality: str, batch_size: int, desc: str,
                progress: bool = True, source: str = "the model") -> torch.Tensor:
    """L2-normalised features (N, D) of image files; the next batch decodes in threads while one embeds.

    NaN or infinite features (damaged weights) raise a NonFiniteError naming `source` and the image."""
    h, w = embedder.height, embedder.width
    batches = [list(paths[i:i + batch_size]) for i in range(0, len(paths), batch_size)]
    workers = max(1, min(8, os.cpu_count() or 1))

    def decode(batch: list[Path]) -> list[Future]:
        return [pool.submit(decode_image, str(p), h, w) for p in batch]

    out = []
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            progress_bar(total=len(paths), desc=desc, unit="img", enabled=progress) as bar:
        pending = decode(batches[0]) if batches else []
        for i in range(len(batches)):
            images = np.stack([f.result() for f in pending])  # (B, H, W, 3) uint8
            pending = decode(batches[i + 1]) if i + 1 < len(batches) else []
            out.append(embedder.embed(images, modality=modality, batch_size=batch_size))
            bar.update(len(images))
    if not out:
        return torch.empty(0, 0)
    feats = torch.cat(out)
    check_finite_features(feats, [str(p) for p in paths], source)
    return feats


def _read_index(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(signatures (M,), features (M, D)) of an index file, or None when it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            sigs, feats = data["signatures"], data["features"]
            version = int(data["version"])
    except (OSError, ValueError, KeyError, EOFError):  # a truncated or foreign file is just a miss
        return None
    if version != INDEX_VERSION or feats.ndim != 2 or len(sigs) != len(feats):
        return None
    return sigs.astype(str), feats.astype(np.float32, copy=False)


def _write_index(path: Path, sigs: np.ndarray, feats: np.ndarray) -> None:
    """Atomic write (temp file + rename), so a concurrent reader never sees half an index."""
    atomic_write(path, lambda handle: np.savez(handle, version=np.int64(INDEX_VERSION), signatures=sigs,
                                               features=feats))


def index_path(cache_dir: str | Path, checkpoint_digest: str, modality: str, gallery: str | Path) -> Path:
    """The index file of one (checkpoint content, gallery modality, gallery folder)."""
    key = f"v{INDEX_VERSION}\n{checkpoint_digest}\n{modality}\n{Path(gallery).resolve()}"
    return Path(cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def gallery_features(embedder: Any, gallery: str | Path, paths: Sequence[Path], modality: str,
                     index_file: Path | None, batch_size: int, progress: bool = True, source: str = "the model"
                     ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Features (G, D) of the gallery images, reusing the rows of `index_file` whose file is unchanged.

    Returns the features and cache facts: index path, how many rows were reused and embedded.
    """
    root = Path(gallery)
    sigs = _signatures(root, paths)
    cached = _read_index(index_file) if index_file is not None else None
    hit = np.zeros(len(sigs), dtype=bool)
    rows = np.zeros(len(sigs), dtype=np.int64)
    if cached is not None and len(cached[0]):
        order = np.argsort(cached[0])
        sorted_sigs = cached[0][order]
        pos = np.minimum(np.searchsorted(sorted_sigs, sigs), len(sorted_sigs) - 1)
        hit = sorted_sigs[pos] == sigs
        rows = order[pos]
    missing = np.flatnonzero(~hit)
    fresh = embed_paths(embedder, [paths[i] for i in missing], modality, batch_size,
                        desc=f"gallery ({modality})", progress=progress, source=source)
    dim = fresh.shape[1] if len(missing) else cached[1].shape[1]
    feats = np.empty((len(sigs), dim), dtype=np.float32)
    if hit.any():
        feats[hit] = cached[1][rows[hit]]
    if len(missing):
        feats[missing] = fresh.numpy()
    changed = len(missing) > 0 or cached is None or len(cached[0]) != len(sigs)
    if index_file is not None and changed:
        _write_index(index_file, sigs, feats)
    facts = {"index": str(index_file) if index_file is not None else None,
             "reused": int(hit.sum()), "embedded": int(len(missing))}
    return torch.from_numpy(feats), facts


def _rankings(query_paths: Sequence[Path], gallery_paths: Sequence[Path], indices: np.ndarray,
              scores: np.ndarray, q_pids: np.ndarray | None, correct: np.ndarray | None) -> list[dict[str, Any]]:
    """Per query: its path, the ranked gallery paths and cosine scores (and pid + correctness when known)."""
    results = []
    for q, qpath in enumerate(query_paths):
        entry: dict[str, Any] = {"query": str(qpath),
                                 "ranked": [str(gallery_paths[i]) for i in indices[q]],
                                 "scores": [float(s) for s in scores[q]]}
        if correct is not None and q_pids is not None:
            entry["query_pid"] = int(q_pids[q])
            entry["correct"] = [bool(c) for c in correct[q]]
        results.append(entry)
    return results


def search_gallery(
    checkpoint: str | Path,
    query: str | Path,
    query_modality: str,
    gallery: str | Path,
    gallery_modality: str,
    topk: int = 10,
    out: str | Path = "search.png",
    device: str = "auto",
    batch_size: int | None = None,
    cache: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Rank the gallery for every query; write the picture to `out` and the rankings to `out`.json.

    `query` is an image or a folder (recursive), `gallery` a folder (recursive). Returns what the
    JSON holds plus the written paths and the index-cache facts.
    """
    for name, value in (("query modality", query_modality), ("gallery modality", gallery_modality)):
        if value not in MODALITIES:
            raise VireidError(f"{name} must be one of {'|'.join(MODALITIES)}, got {value!r}")
    if topk < 1:
        raise VireidError(f"--topk must be at least 1, got {topk}")
    out = Path(out)
    json_path = out.with_suffix(".json")
    if json_path == out:
        raise VireidError(f"--out {out} must be a picture file (e.g. search.png); the JSON goes next to it")
    check_writable_file(out, "search --out")
    check_writable_file(json_path, "search --out (its .json)")
    query_paths = _query_images(query)
    gallery_paths = _gallery_images(gallery)
    index_dir = resolve_cache_dir(Config()) / "search-index"
    if cache:
        check_writable_folder(index_dir, "the gallery index cache ($VIREID_CACHE_DIR/search-index)")

    embedder = Embedder.from_checkpoint(checkpoint, device=device)
    if batch_size is None:
        batch_size = embedder.config.data.eval_batch_size if embedder.config is not None else 64
    source = f"checkpoint {checkpoint}"
    index_file = index_path(index_dir, file_digest(checkpoint), gallery_modality, gallery) if cache else None
    g_feats, facts = gallery_features(embedder, gallery, gallery_paths, gallery_modality, index_file,
                                      batch_size, progress, source)
    q_feats = embed_paths(embedder, query_paths, query_modality, batch_size, f"query ({query_modality})", progress,
                          source)
    scores, indices = search(q_feats.to(embedder.device), g_feats.to(embedder.device), topk=topk)
    scores, indices = scores.cpu().numpy(), indices.cpu().numpy()  # (Q, k)

    q_pids, g_pids = identities_from_paths(query_paths), identities_from_paths(gallery_paths)
    correct = None if q_pids is None or g_pids is None else g_pids[indices] == q_pids[:, None]  # (Q, k)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint), "query_modality": query_modality, "gallery": str(gallery),
        "gallery_modality": gallery_modality, "gallery_size": len(gallery_paths), "topk": int(indices.shape[1]),
        "identities": correct is not None,
        "results": _rankings(query_paths, gallery_paths, indices, scores, q_pids, correct),
    }
    write_json(json_path, report)
    rows = min(len(query_paths), MAX_PICTURE_ROWS)
    plot_search_results(query_paths[:rows], gallery_paths, indices[:rows], scores[:rows],
                        None if correct is None else correct[:rows], out)
    drawn = "" if rows == len(query_paths) else f" (picture shows the first {rows})"
    print(f"ranked {counted(len(gallery_paths), 'gallery image')} for {counted(len(query_paths), 'query', 'queries')}"
          f"{drawn}; wrote {out} and "
          f"{json_path}; gallery index: {facts['reused']} reused, {facts['embedded']} embedded")
    return dict(report, picture=str(out), json=str(json_path), cache=facts)


def counted(n: int, one: str, many: str | None = None) -> str:
    """`n` with its noun in the right number: 1 query, 2 queries, 0 gallery images."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
