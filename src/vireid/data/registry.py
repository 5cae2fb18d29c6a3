"""Dataset readers by name, and the small pieces every reader shares (id files, listings, counts).

A reader is any class with the attributes and methods of `DatasetReader`; `open_dataset` maps the
names used in configs and on the command line to the reader classes.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from vireid.data.records import INFRARED, MODALITIES, VISIBLE, Sample
from vireid.errors import ConfigError, DatasetLayoutError

# name -> "module:Class" (imported on use, so `open_dataset("regdb", ...)` stays light) or a class.
# Adding a dataset = one line here (or `register_reader` from your own code); config validation, the
# command line's --dataset choices and the evaluation protocols all read this table.
READERS: dict[str, str | type] = {
    "sysu": "vireid.data.sysu:SYSUMM01",
    "regdb": "vireid.data.regdb:RegDB",
    "llcm": "vireid.data.llcm:LLCM",
}

# Files that count as images in a person folder (compared in lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

Splits = dict[str, list[tuple[list[Sample], list[Sample]]]]

# Readers report data problems that do not stop a run (ids without images) here; a run's log gets them.
logger = logging.getLogger("vireid.data")


class DatasetReader(Protocol):
    """What the training pipeline and the protocol runner need from a dataset reader."""

    name: str
    root: Path
    metric_protocol: str

    @property
    def train(self) -> list[Sample]: ...

    def describe(self) -> str: ...

    def evaluation_splits(self, trials: int = 10) -> Splits: ...


def register_reader(name: str, reader: str | type) -> None:
    """Make dataset `name` available everywhere a dataset is named (configs, CLI, protocols)."""
    READERS[str(name).strip().lower()] = reader


def dataset_names() -> list[str]:
    """Every dataset name a config or the command line may use."""
    return list(READERS)


def reader_class(name: str) -> type:
    """The reader class registered under `name`; ConfigError naming the known datasets otherwise."""
    key = str(name).strip().lower()
    if key not in READERS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(READERS)}")
    entry = READERS[key]
    if isinstance(entry, str):
        module, cls = entry.split(":")
        entry = getattr(importlib.import_module(module), cls)
    return entry


def open_dataset(name: str, root: str | Path, trial: int = 1) -> DatasetReader:
    """The reader for dataset `name` (see `dataset_names()`) on the raw folder `root`.

    `trial` selects a train/test split for readers that have several (RegDB: 1..10); it is passed
    to every reader whose constructor takes a `trial` argument and ignored by the others (SYSU-MM01
    and LLCM have one fixed split; their gallery trials are drawn by `evaluation_splits`).
    """
    reader = reader_class(name)
    try:
        if "trial" in inspect.signature(reader).parameters:
            return reader(root, trial=trial)
        return reader(root)
    except DatasetLayoutError as err:
        hint = other_layout_hint(name, root)
        if hint is None:
            raise
        raise DatasetLayoutError(f"{err}; {hint}") from None


def detect_layouts(root: str | Path) -> list[str]:
    """The registered datasets whose folder layout `root` has: a reader class declares its layout by
    `layout_markers`, relative paths that all exist in its root (readers without them are never
    detected). Only looks at those paths; says nothing about whether the dataset is complete."""
    path = absolute_root(root) if str(root).strip() else None
    if path is None or not path.is_dir():
        return []
    found = []
    for name in READERS:
        try:
            markers = getattr(reader_class(name), "layout_markers", ())
        except (ImportError, AttributeError):  # a reader registered by a string that no longer imports
            continue
        if markers and all((path / marker).exists() for marker in markers):
            found.append(name)
    return found


def other_layout_hint(name: str, root: str | Path) -> str | None:
    """When `root` does not have dataset `name`'s layout but has another known one, the advice to
    use that one ("... looks like a RegDB root: use --dataset regdb"); else None."""
    found = detect_layouts(root)
    key = str(name).strip().lower()
    if key in found or not found:
        return None
    titles = " or ".join(getattr(reader_class(n), "title", n) for n in found)
    choices = " or ".join(f"--dataset {n}" for n in found)
    return f"it looks like a {titles} root: use {choices} (setting data.dataset)"


# ---------------------------------------------------------------- shared by the readers
def read_id_list(path: Path) -> list[int]:
    """Person ids of a file of comma-separated integers (any whitespace or newlines allowed)."""
    text = path.read_text()
    tokens = [t for t in re.split(r"[,\s]+", text) if t]
    try:
        ids = [int(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("+-").isdigit())
        raise DatasetLayoutError(f"{path}: {bad!r} is not an integer id "
                                 "(expected one line of comma-separated integer ids)") from None
    if not ids:
        raise DatasetLayoutError(f"{path} holds no ids (expected one line of comma-separated integer ids)")
    return ids


def read_index_file(path: Path, root: Path) -> list[tuple[str, int]]:
    """(absolute image path, label) for each `relative/path label` line of an index file.

    Paths are relative to `root`; every listed image must exist, so a wrong root fails here rather
    than in the middle of training. Blank lines are skipped.
    """
    entries: list[tuple[str, int]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("+-").isdigit():
            raise DatasetLayoutError(f"{path}, line {number}: {line.strip()!r} is not 'relative/path label' "
                                     "(an image path relative to the dataset root and an integer label)")
        entries.append((os.path.normpath(os.path.join(root, parts[0])), int(parts[1])))
    missing = [p for p, _ in entries if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DatasetLayoutError(f"{path} lists {len(missing)} image(s) that do not exist under {root}: {shown}")
    return entries


def person_folders(camera_dir: Path) -> dict[int, Path]:
    """Map pid -> folder for the sub-folders of `camera_dir` whose name is an integer ("0001" -> 1)."""
    if not camera_dir.is_dir():
        return {}
    with os.scandir(camera_dir) as entries:
        return {int(e.name): Path(e.path) for e in entries if e.name.isdigit() and e.is_dir()}


def image_files(folder: Path) -> list[str]:
    """Absolute paths of the image files in `folder`, sorted by file name (hidden files skipped)."""
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries
                       if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file())
    return [os.path.join(folder, n) for n in names]


def check_trials(trials: int) -> None:
    """Reject a number of evaluation trials that is not a positive integer."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"the number of evaluation trials must be a positive integer, got {trials!r}")


def absolute_root(root: str | Path) -> Path:
    """`root` as an absolute path (symbolic links kept, so sample paths stay the user's paths)."""
    return Path(os.path.abspath(os.path.expanduser(str(root))))


def dataset_root(root: str | Path, title: str, layout: str) -> Path:
    """`root` as an absolute path to an existing folder, or an error saying which of those it is not.

    An empty string is refused rather than read as the current folder.
    """
    if not str(root).strip():
        raise ConfigError(f"the {title} root is empty; set --data-root (data.root) to the folder holding {layout}")
    path = absolute_root(root)
    if not path.exists():
        raise DatasetLayoutError(f"{path} does not exist; expected the {title} root holding {layout} "
                                 "(check --data-root / data.root)")
    if not path.is_dir():
        raise DatasetLayoutError(f"{path} is not a folder; expected the {title} root holding {layout}")
    return path


def shown(items: Sequence, limit: int = 10) -> str:
    """The first `limit` items, comma-separated, and how many more there are."""
    text = ", ".join(str(i) for i in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_disjoint(where: str, training: dict[str, Iterable], test: dict[str, Iterable], what: str = "id") -> None:
    """Refuse identities that are both training and test identities (train/test leakage).

    `training` and `test` map the file each set comes from to its identities (ids, or folders
    standing for people); every shared identity is named with the two files it is in.
    """
    clashes = []
    for train_name, train_ids in training.items():
        for test_name, test_ids in test.items():
            shared = sorted(set(train_ids) & set(test_ids))
            if shared:
                clashes.append(f"{what}(s) {shown(shared)} in both {train_name} and {test_name}")
    if clashes:
        raise DatasetLayoutError(f"{where}: " + "; ".join(clashes) + " (train/test leakage: a person must be in "
                                 "the training or the test split, not both; fix the split files)")


def report_ids_without_images(where: str, missing: dict[str, list[int]]) -> dict[str, list[int]]:
    """Warn (logger "vireid.data") about listed ids without any image; returns the non-empty entries.

    Such ids are left out of every split and every count, so a reader's header and table agree.
    """
    missing = {name: ids for name, ids in missing.items() if ids}
    if missing:
        logger.warning(f"{where}: {describe_ids_without_images(missing)}; they are left out")
    return missing


def describe_ids_without_images(missing: dict[str, list[int]]) -> str:
    """One phrase naming the listed ids that have no image, per id file."""
    total = sum(len(ids) for ids in missing.values())
    parts = "; ".join(f"{name}: {shown(ids)}" for name, ids in missing.items())
    return f"{total} listed id(s) have no image ({parts})"


def person_folder_id(path: str) -> int | None:
    """The person id of an image in a numbered person folder (".../0012/x.jpg" -> 12), else None."""
    name = os.path.basename(os.path.dirname(path))
    return int(name) if name.isdigit() else None


def split_statistics(samples: Sequence[Sample]) -> dict:
    """Ids and images per modality and images per camera: {modality: {ids, images, cameras: {camid: n}}}."""
    stats = {}
    for modality in MODALITIES:
        chosen = [s for s in samples if s.modality == modality]
        cams = Counter(s.camid for s in chosen)
        stats[modality] = {"ids": len({s.pid for s in chosen}), "images": len(chosen),
                           "cameras": {c: cams[c] for c in sorted(cams)}}
    return stats


def format_statistics(title: str, splits: dict[str, dict]) -> str:
    """A small table of `split_statistics` results, one line per split and modality."""
    width = max([len("split")] + [len(k) for k in splits]) + 2
    lines = [title, f"  {'split':<{width}}{'modality':<10}{'ids':>6}{'images':>8}  images per camera"]
    for split, stats in splits.items():
        for modality in (VISIBLE, INFRARED):
            s = stats[modality]
            if s["images"] == 0:
                continue
            cams = ", ".join(f"cam{c}: {n}" for c, n in s["cameras"].items())
            lines.append(f"  {split:<{width}}{modality:<10}{s['ids']:>6}{s['images']:>8}  {cams}")
    return "\n".join(lines)
