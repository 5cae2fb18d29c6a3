"""A synthetic visible-infrared person dataset written in the raw SYSU-MM01 or RegDB layout.

The demo and the tests read it with the same readers as the real data, so every code path from
folder parsing to evaluation runs without downloading anything. People are drawn procedurally
(see `synthetic_people`): shape, garments, patterns and accessories belong to an identity; SYSU's
near-infrared cameras see a brightness that follows the colours only loosely and RegDB's thermal
camera an emissivity unrelated to them, so colour alone never matches across modalities: shape and
texture have to, as with real cameras.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageDraw

from vireid.fileio import partial_name, remove_abandoned
from vireid.data.synthetic_people import CAMERAS, draw_image
from vireid.errors import ConfigError, DatasetLayoutError
from vireid.progress import progress as progress_bar

GENERATOR_VERSION = 2  # bump whenever the same parameters would give different files
INFO_FILE = "synthetic.json"
LAYOUTS = ("sysu", "regdb")
SYSU_VISIBLE_CAMERAS = ("cam1", "cam2", "cam4", "cam5")
SYSU_INFRARED_CAMERAS = ("cam3", "cam6")
INFRARED_KINDS = ("near", "thermal")  # what SYSU-layout infrared cameras see (generate_synthetic's `infrared`)
REGDB_TRIALS = 10
DEFAULT_IMAGES = {"sysu": 6, "regdb": 10}
_TAG_CAMERAS, _TAG_SPLIT = 23, 29

# One image to write: (relative path, pid, camera name, index within that camera).
Job = tuple[str, int, str, int]


def _split_counts(n_ids: int, test_fraction: float) -> int:
    """Number of test ids: at least one id on each side of the split."""
    return int(min(max(round(n_ids * test_fraction), 1), n_ids - 1))


def _sysu_cameras(seed: int, pid: int) -> list[str]:
    """The cameras that saw `pid`: like SYSU-MM01, some people miss some cameras.

    Each visible camera is dropped with probability 0.25 and each infrared one with 0.2, always
    keeping at least one camera per modality.
    """
    rng = np.random.default_rng([seed, _TAG_CAMERAS, pid])
    keep_v = rng.random(len(SYSU_VISIBLE_CAMERAS)) >= 0.25
    keep_r = rng.random(len(SYSU_INFRARED_CAMERAS)) >= 0.2
    if not keep_v.any():
        keep_v[rng.integers(len(keep_v))] = True
    if not keep_r.any():
        keep_r[rng.integers(len(keep_r))] = True
    cams = [c for c, k in zip(SYSU_VISIBLE_CAMERAS, keep_v) if k]
    cams += [c for c, k in zip(SYSU_INFRARED_CAMERAS, keep_r) if k]
    return sorted(cams)


def _sysu_split(ids: int, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (train, val, test) pids of a SYSU-MM01-style root, each sorted."""
    pids = np.arange(1, ids + 1)
    order = np.random.default_rng([seed, _TAG_SPLIT, 0]).permutation(pids)
    n_test = _split_counts(ids, test_fraction)
    test, rest = np.sort(order[:n_test]), order[n_test:]
    n_val = max(1, len(rest) // 8) if len(rest) >= 2 else 0
    return np.sort(rest[n_val:]), np.sort(rest[:n_val]), test


def sysu_camera_pairs(ids: int, seed: int = 0, test_fraction: float = 0.5) -> dict[str, tuple[int, int]]:
    """How many (person, visible camera) and (person, infrared camera) pairs the training ids
    (train ∪ val, as the reader trains on) and the test ids of `generate_synthetic(layout="sysu")`
    get; each pair holds `images_per_camera` images. Draws nothing: for choosing parameters that
    match a real dataset's size."""
    train, val, test = _sysu_split(ids, seed, test_fraction)
    out = {}
    for name, pids in (("train", np.r_[train, val]), ("test", test)):
        cams = [c for pid in pids for c in _sysu_cameras(seed, int(pid))]
        visible = sum(c in SYSU_VISIBLE_CAMERAS for c in cams)
        out[name] = (visible, len(cams) - visible)
    return out


def _sysu_plan(root: Path, ids: int, per_camera: int, seed: int, test_fraction: float) -> list[Job]:
    """Write the exp/ id lists and return the images of a SYSU-MM01-style root."""
    pids = np.arange(1, ids + 1)
    train, val, test = _sysu_split(ids, seed, test_fraction)
    (root / "exp").mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("val", val), ("test", test)):
        (root / "exp" / f"{name}_id.txt").write_text(",".join(str(int(p)) for p in part) + "\n")
    return [(f"{cam}/{pid:04d}/{i + 1:04d}.jpg", int(pid), cam, i)
            for pid in pids for cam in _sysu_cameras(seed, int(pid)) for i in range(per_camera)]


def _regdb_plan(root: Path, ids: int, per_modality: int, seed: int, test_fraction: float) -> list[Job]:
    """Write the idx/ trial files and return the images of a RegDB-style root.

    Person `pid` lives in `Visible/<pid>/` and `Thermal/<pid>/` with label `pid - 1`, as in RegDB;
    each trial splits the people at random into train and test.
    """
    pids = np.arange(1, ids + 1)
    names = {
        "visible": [f"Visible/{p}/v_{p:04d}_{i + 1:02d}.jpg" for p in pids for i in range(per_modality)],
        "thermal": [f"Thermal/{p}/t_{p:04d}_{i + 1:02d}.jpg" for p in pids for i in range(per_modality)],
    }
    owner = np.repeat(pids, per_modality)
    n_test = _split_counts(ids, test_fraction)
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for trial in range(1, REGDB_TRIALS + 1):
        order = np.random.default_rng([seed, _TAG_SPLIT, trial]).permutation(pids)
        test = np.isin(owner, order[:n_test])
        for split, rows in (("train", ~test), ("test", test)):
            for modality, paths in names.items():
                lines = [f"{paths[j]} {owner[j] - 1}\n" for j in np.flatnonzero(rows)]
                (root / "idx" / f"{split}_{modality}_{trial}.txt").write_text("".join(lines))
    return [(path, int(owner[j]), cam, j % per_modality)
            for cam, paths in (("Visible", names["visible"]), ("Thermal", names["thermal"]))
            for j, path in enumerate(paths)]


def _write_images(root: str, jobs: list[Job], seed: int, height: int, width: int, thermal: bool = False) -> int:
    """Draw and save a batch of images; runs in worker processes, so takes only plain values."""
    base = Path(root)
    made: set[Path] = set()
    for rel, pid, cam, index in jobs:
        path = base / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        draw_image(seed, pid, cam, index, height, width, thermal).save(path, "JPEG", quality=CAMERAS[cam].quality)
    return len(jobs)


def _chunks(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    """Consecutive batches of jobs, so worker processes get work in units worth sending."""
    for start in range(0, len(jobs), size):
        yield jobs[start:start + size]


def _params(layout: str, ids: int, images_per_camera: int, height: int, width: int, seed: int,
            test_fraction: float, infrared: str = "near") -> dict[str, Any]:
    """Everything that decides the files, as stored in synthetic.json and compared on reuse (the
    infrared kind only when it is not the layout's own, so older datasets keep their parameters)."""
    params = {"generator": "vireid.data.synthetic", "version": GENERATOR_VERSION, "layout": layout, "ids": ids,
              "images_per_camera": images_per_camera, "height": height, "width": width, "seed": seed,
              "test_fraction": test_fraction}
    if layout == "sysu" and infrared == "thermal":
        params["infrared"] = "thermal"
    return params


def read_synthetic_info(root: str | Path) -> dict[str, Any] | None:
    """The parameters a synthetic root was generated with, or None if it is not (complete) synthetic data."""
    path = Path(root) / INFO_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("generator") == "vireid.data.synthetic" else None


def _validate(layout: str, ids: int, images_per_camera: int, height: int, width: int, seed: int,
              test_fraction: float, workers: int) -> None:
    """Reject settings a user can get wrong, naming each one and what was expected."""
    counts = {"ids": ids, "images_per_camera": images_per_camera, "height": height, "width": width,
              "seed": seed, "workers": workers}
    checks = [(isinstance(v, (int, np.integer)) and not isinstance(v, bool), f"{k}={v!r}: expected an integer")
              for k, v in counts.items()]
    if not all(ok for ok, _ in checks):
        raise ConfigError("synthetic data: " + "; ".join(msg for ok, msg in checks if not ok))
    checks = [
        (layout in LAYOUTS, f"layout={layout!r}: expected one of {', '.join(LAYOUTS)}"),
        (ids >= 2, f"ids={ids}: expected at least 2 identities (one for training, one for testing)"),
        (images_per_camera >= 1, f"images_per_camera={images_per_camera}: expected at least 1"),
        (height >= 32 and width >= 16, f"height={height}, width={width}: expected at least 32 x 16 pixels"),
        (seed >= 0, f"seed={seed}: expected a non-negative integer"),
        (0.0 < test_fraction < 1.0, f"test_fraction={test_fraction}: expected a value strictly between 0 and 1"),
        (workers >= 1, f"workers={workers}: expected at least 1"),
    ]
    errors = [msg for ok, msg in checks if not ok]
    if errors:
        raise ConfigError("synthetic data: " + "; ".join(errors))


def _check_replaceable(root: Path, info: dict[str, Any] | None, params: dict[str, Any], overwrite: bool) -> None:
    """Refuse to replace anything but an empty folder, the same dataset, or (with `overwrite`) another
    synthetic dataset: runs may depend on a dataset, and other data is never ours to delete."""
    if root.exists() and not root.is_dir():
        raise DatasetLayoutError(f"{root} exists and is not a folder; expected a folder for synthetic data")
    if info is None:
        if root.exists() and any(root.iterdir()):
            raise DatasetLayoutError(f"{root} is not empty and holds no {INFO_FILE}; expected an empty folder or "
                                     "an earlier synthetic dataset (refusing to overwrite other data)")
        return
    changed = _changed(info, params)
    if changed and not overwrite:
        raise DatasetLayoutError(f"{root} holds a synthetic dataset made with other parameters ({', '.join(changed)}); "
                                 "runs that read it would silently change, so it is kept: choose another folder, "
                                 "or replace it with --force (overwrite=True)")


def _same_parameters(info: dict[str, Any] | None, params: dict[str, Any]) -> bool:
    return info is not None and not _changed(info, params)


def _changed(info: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The parameters of `params` that `info` differs in; a missing infrared kind is the near one."""
    keys = [*params, *(["infrared"] if "infrared" not in params else [])]
    near = {"infrared": "near"}
    return [f"{k}: {info.get(k, near.get(k))!r} -> {params.get(k, near.get(k))!r}" for k in keys
            if info.get(k, near.get(k)) != params.get(k, near.get(k))]


def _scratch_folder(target: Path) -> Path:
    """A new, uniquely named folder beside `target` (after removing those of ended runs)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(target.parent, target.name)
        scratch = target.parent / partial_name(target.name)
        scratch.mkdir()
    except OSError as err:
        raise DatasetLayoutError(f"cannot write beside {target} ({err.strerror or err}); synthetic data is written "
                                 "to a temporary folder next to it and renamed into place, so its parent folder "
                                 "must be writable") from None
    return scratch


def _publish(scratch: Path, target: Path) -> None:
    """Move the complete dataset `scratch` to `target`, setting aside whatever `target` held."""
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.rename(scratch, target)
        return
    previous = target.parent / partial_name(target.name)
    os.rename(target, previous)
    os.rename(scratch, target)
    shutil.rmtree(previous, ignore_errors=True)


def generate_synthetic(
    out: str | Path,
    layout: str = "sysu",
    ids: int = 60,
    images_per_camera: int | None = None,
    height: int = 128,
    width: int = 64,
    seed: int = 0,
    test_fraction: float = 0.5,
    progress: bool = True,
    workers: int = 1,
    reuse: bool = True,
    overwrite: bool = False,
    infrared: str = "near",
) -> Path:
    """Write a synthetic visible-infrared dataset to `out` in the raw `layout` ("sysu" or "regdb").

    `images_per_camera` is per (person, camera) for SYSU and per (person, modality) for RegDB
    (defaults 6 and 10). `infrared` "thermal" makes SYSU's infrared cameras see emitted heat, drawn
    independently of the colours, as RegDB's thermal camera does (RegDB's is always thermal); "near"
    (default) is SYSU's near-infrared, loosely tied to the colours' brightness. The files depend only on the parameters, never on `workers`: the same
    seed gives byte-identical files. With `reuse`, an existing root generated with the same
    parameters is returned untouched. A dataset generated with other parameters is replaced only
    with `overwrite` (runs may depend on it); a folder holding anything else never is.

    The dataset is written to a temporary folder beside `out` and renamed into place when complete,
    so an interrupted run leaves `out` as it was (temporaries of ended runs are removed by the next
    one), and a replaced dataset stays whole until its replacement is. Returns the root path.
    """
    images_per_camera = DEFAULT_IMAGES.get(layout, 1) if images_per_camera is None else images_per_camera
    _validate(layout, ids, images_per_camera, height, width, seed, test_fraction, workers)
    if infrared not in INFRARED_KINDS:
        raise ConfigError(f"synthetic data: infrared={infrared!r}: expected one of {', '.join(INFRARED_KINDS)}")
    root = Path(out)
    params = _params(layout, ids, images_per_camera, height, width, seed, float(test_fraction), infrared)
    info = read_synthetic_info(root)
    if reuse and _same_parameters(info, params):
        return root
    _check_replaceable(root, info, params, overwrite)
    target = Path(os.path.realpath(root))  # through a symbolic link, to the folder it names
    scratch = _scratch_folder(target)
    try:
        _write_dataset(scratch, params, progress, workers)
        info = read_synthetic_info(target)  # another process may have written `out` meanwhile
        if not (reuse and _same_parameters(info, params)):
            _check_replaceable(target, info, params, overwrite)
            _publish(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return root


def _write_dataset(root: Path, params: dict[str, Any], progress: bool, workers: int) -> None:
    """Draw every image of the dataset `params` describes into the empty folder `root`; its
    synthetic.json is written last."""
    layout, seed, height, width = params["layout"], params["seed"], params["height"], params["width"]
    plan = _sysu_plan if layout == "sysu" else _regdb_plan
    jobs = plan(root, params["ids"], params["images_per_camera"], seed, params["test_fraction"])
    bar = progress_bar(total=len(jobs), desc=f"synthetic {layout}", unit="img", enabled=progress)
    thermal = params.get("infrared") == "thermal"
    calls = [(str(root), chunk, seed, height, width, thermal) for chunk in _chunks(jobs, 64)]
    with ProcessPoolExecutor(max_workers=workers) if workers > 1 else nullcontext() as pool:
        for n in (pool.map if pool is not None else map)(_write_images, *zip(*calls)):
            bar.update(n)
    bar.close()

    counts: dict[str, int] = {}
    for _, _, cam, _ in jobs:
        counts[cam] = counts.get(cam, 0) + 1
    info = dict(params, images=len(jobs), images_per_folder=dict(sorted(counts.items())))
    (root / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def _identity_images(root: Path, layout: str, per_modality: int) -> dict[int, tuple[list[Path], list[Path]]]:
    """For each pid of a synthetic root, up to `per_modality` (visible, infrared) image paths,
    taken in turn from each camera that saw the person."""
    folders = (SYSU_VISIBLE_CAMERAS, SYSU_INFRARED_CAMERAS) if layout == "sysu" else (("Visible",), ("Thermal",))
    pids = sorted({int(p.name) for cams in folders for cam in cams for p in (root / cam).glob("*") if p.is_dir()})
    found: dict[int, tuple[list[Path], list[Path]]] = {}
    for pid in pids:
        pair = []
        for cams in folders:
            per_cam = [sorted((root / cam / (f"{pid:04d}" if layout == "sysu" else str(pid))).glob("*.jpg"))
                       for cam in cams]
            in_turn = [f for group in itertools.zip_longest(*per_cam) for f in group if f is not None]
            pair.append(in_turn[:per_modality])
        found[pid] = (pair[0], pair[1])
    return found


def contact_sheet(root: str | Path, out_png: str | Path, ids: int = 6, per_modality: int = 4) -> Path:
    """Save a grid to `out_png`: one row per identity, visible images left, infrared images right.

    Meant for people: a glance shows whether identities are recognisable and whether infrared
    grey levels follow colour (they should not).
    """
    root = Path(root)
    info = read_synthetic_info(root)
    if info is None:
        raise DatasetLayoutError(f"{root} holds no {INFO_FILE}; expected a root written by generate_synthetic")
    people = _identity_images(root, info["layout"], per_modality)
    rows = [pid for pid in sorted(people) if people[pid][0] and people[pid][1]][:ids]
    h, w = int(info["height"]), int(info["width"])
    label_w, gap, pad = 44, 10, 2
    sheet_w = label_w + 2 * per_modality * (w + pad) + gap
    sheet = Image.new("RGB", (sheet_w, 16 + len(rows) * (h + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((label_w, 2), "visible", fill=(0, 0, 0))
    draw.text((label_w + per_modality * (w + pad) + gap, 2), "infrared", fill=(0, 0, 0))
    for r, pid in enumerate(rows):
        y = 16 + r * (h + pad)
        draw.text((2, y + h // 2 - 5), f"{pid:04d}", fill=(0, 0, 0))
        for m, paths in enumerate(people[pid]):
            x0 = label_w + m * (per_modality * (w + pad) + gap)
            for c, path in enumerate(paths[:per_modality]):
                with Image.open(path) as img:
                    sheet.paste(img.convert("RGB").resize((w, h)), (x0 + c * (w + pad), y))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png
