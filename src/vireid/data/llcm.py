"""LLCM reader (low-light cross-modality, CVPR 2023): training samples and both test directions.

Raw layout (docs/method.md §2): `idx/train_vis.txt` and `idx/train_nir.txt` with `relative/path label`
lines (paths relative to the root), `idx/test_id.txt` (comma-separated ids), and test images in
`test_vis/camK/<pid>/` and `test_nir/camK/<pid>/`. Near-infrared ("nir") is the infrared modality.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from vireid.data.records import INFRARED, VISIBLE, Sample
from vireid.data.registry import (Splits, check_disjoint, check_trials, dataset_root, describe_ids_without_images,
                                  format_statistics, image_files, person_folder_id, person_folders, read_id_list,
                                  read_index_file, report_ids_without_images, split_statistics)
from vireid.errors import ConfigError, DatasetLayoutError

DIRECTIONS = ("visible-to-infrared", "infrared-to-visible")
_TEST_DIR = {VISIBLE: "test_vis", INFRARED: "test_nir"}
_TRAIN_FILE = {VISIBLE: "idx/train_vis.txt", INFRARED: "idx/train_nir.txt"}
_TEST_ID_FILE = "idx/test_id.txt"
LAYOUT = ("idx/train_vis.txt, idx/train_nir.txt ('relative/path label' lines), idx/test_id.txt, "
          "test_vis/camK/<pid>/*.jpg and test_nir/camK/<pid>/*.jpg")
_CAMERA_IN_PATH = re.compile(r"cam(\d+)")
_CAMERA_IN_NAME = re.compile(r"_c(\d+)_")


def camera_of(path: str) -> int | None:
    """Camera number of an LLCM image path: the last `camN` in it, else `_cN_` in the file name."""
    found = _CAMERA_IN_PATH.findall(path) or _CAMERA_IN_NAME.findall(Path(path).name)
    return int(found[-1]) if found else None


class LLCM:
    """LLCM on its raw folder `root`; validates the layout on construction.

    - `train`: the images of `idx/train_vis.txt` then `idx/train_nir.txt`, in file order;
      pid = the label of the line, camid = the camera in the path.
    - `query(direction)`: every test image of the query modality, by pid, camera, file name.
    - `gallery(direction, trial)`: one random image per (test pid, camera) of the other modality,
      drawn like SYSU-MM01's single-shot gallery with a private `random.Random(trial)`.
    - `evaluation_splits(trials)`: which of these lists ranks which, per the authors' released test.
    pid and camid of test images come from their folders. Sample paths are absolute.

    A training image in a numbered person folder (`.../0012/x.jpg`) whose number is a test id is
    an error (train/test leakage); the training labels are not compared, since index files may
    number people from 0 in each split. Test ids without any test image are left out
    (`test_ids` holds the others), logged as a warning and named in `describe()`.
    """

    name = "llcm"
    title = "LLCM"
    metric_protocol = "llcm"
    layout_markers = ("test_vis", "test_nir", "idx")  # what tells this layout apart (registry.detect_layouts)

    def __init__(self, root: str | Path) -> None:
        self.root = dataset_root(root, "LLCM", LAYOUT)
        expected = [_TRAIN_FILE[VISIBLE], _TRAIN_FILE[INFRARED], _TEST_ID_FILE, *_TEST_DIR.values()]
        missing = [p for p in expected if not (self.root / p).exists()]
        if missing:
            raise DatasetLayoutError(f"{self.root} is not an LLCM root: missing {', '.join(missing)} "
                                     f"(expected {LAYOUT})")
        listed = sorted(set(read_id_list(self.root / _TEST_ID_FILE)))
        train = {m: self._read_train(m) for m in (VISIBLE, INFRARED)}
        where = f"LLCM at {self.root}"
        train_people = {_TRAIN_FILE[m]: {person_folder_id(s.path) for s in train[m]} - {None} for m in train}
        check_disjoint(where, train_people, {_TEST_ID_FILE: listed}, what="person folder")
        self._train = train[VISIBLE] + train[INFRARED]
        self._cameras = {m: _camera_folders(self.root / d) for m, d in _TEST_DIR.items()}
        self._people = {m: {c: person_folders(folder) for c, folder in cams.items()}
                        for m, cams in self._cameras.items()}
        self._listing: dict[tuple[str, int, int], list[str]] = {}
        self.ids_without_images = report_ids_without_images(
            where, {_TEST_ID_FILE: [p for p in listed if not self._has_images(p)]})
        self.test_ids = [p for p in listed if self._has_images(p)]

    def _read_train(self, modality: str) -> list[Sample]:
        index = self.root / _TRAIN_FILE[modality]
        entries = read_index_file(index, self.root)
        cams = [camera_of(p) for p, _ in entries]
        if None in cams:
            bad = entries[cams.index(None)][0]
            raise DatasetLayoutError(f"{index}: cannot tell the camera of {bad} "
                                     "(expected a 'camN' folder in the path or '_cN_' in the file name)")
        return [Sample(p, label, c, modality) for (p, label), c in zip(entries, cams)]

    def _has_images(self, pid: int) -> bool:
        """Whether any test camera of either modality holds an image of `pid`."""
        return any(self._images(m, c, pid) for m, cams in self._cameras.items() for c in cams)

    def _images(self, modality: str, camid: int, pid: int) -> list[str]:
        """Sorted absolute test image paths of `pid` in camera `camid` of `modality` ([] if none)."""
        key = (modality, camid, pid)
        if key not in self._listing:
            folder = self._people[modality][camid].get(pid)
            self._listing[key] = image_files(folder) if folder is not None else []
        return self._listing[key]

    @property
    def train(self) -> list[Sample]:
        """Training samples (labels present for reporting only)."""
        return self._train

    def query(self, direction: str = "visible-to-infrared") -> list[Sample]:
        """Every test image of the query modality: pid ascending, camera ascending, file name."""
        modality = _modalities(direction)[0]
        return [Sample(p, pid, c, modality) for pid in self.test_ids for c in self._cameras[modality]
                for p in self._images(modality, c, pid)]

    def gallery(self, direction: str = "visible-to-infrared", trial: int = 0) -> list[Sample]:
        """One image per (test pid, camera) of the gallery modality for trial `trial`.

        For each test pid (ascending) and camera (ascending) with a non-empty folder:
        `rng.sample(sorted files, 1)` with `rng = random.Random(trial)` (the draws of
        `random.seed(trial); random.choice(...)`); Python's global `random` state is untouched.
        """
        modality = _modalities(direction)[1]
        rng = random.Random(trial)
        chosen: list[Sample] = []
        for pid in self.test_ids:
            for c in self._cameras[modality]:
                files = self._images(modality, c, pid)
                if files:
                    chosen.append(Sample(rng.sample(files, 1)[0], pid, c, modality))
        return chosen

    def evaluation_splits(self, trials: int = 10) -> Splits:
        """(ranking queries, ranked list) per trial 0..trials-1 for both directions, as the LLCM
        authors' released test computes the published numbers.

        infrared-to-visible: every infrared image ranks the trial's drawn visible images.
        visible-to-infrared: the released test draws the infrared images and then ranks the visible
        images *for each drawn infrared image* (its distance matrix is gallery x query), so here
        the trial's drawn infrared images are the queries and every visible image is ranked.
        """
        check_trials(trials)
        every = {d: self.query(d) for d in DIRECTIONS}
        drawn = {d: [self.gallery(d, t) for t in range(trials)] for d in DIRECTIONS}
        return {"infrared-to-visible": [(every["infrared-to-visible"], g) for g in drawn["infrared-to-visible"]],
                "visible-to-infrared": [(g, every["visible-to-infrared"]) for g in drawn["visible-to-infrared"]]}

    def statistics(self) -> dict:
        """Ids, images and images per camera for each modality of train, test and trial-0 galleries."""
        return {
            "train": split_statistics(self.train),
            "test": split_statistics(self.query(DIRECTIONS[0]) + self.query(DIRECTIONS[1])),
            "gallery (trial 0)": split_statistics(self.gallery(DIRECTIONS[0], 0) + self.gallery(DIRECTIONS[1], 0)),
        }

    def describe(self) -> str:
        """Human-readable counts per split, modality and camera."""
        title = f"LLCM at {self.root}: {len(self.test_ids)} test ids"
        if self.ids_without_images:
            title += f"; left out: {describe_ids_without_images(self.ids_without_images)}"
        return format_statistics(title, self.statistics())

    def __repr__(self) -> str:
        return f"LLCM(root={str(self.root)!r})"


def _camera_folders(test_dir: Path) -> dict[int, Path]:
    """camid -> folder for the `camK` sub-folders of a test directory, in ascending camid."""
    found = {}
    for entry in test_dir.iterdir():
        match = re.fullmatch(r"cam(\d+)", entry.name)
        if match and entry.is_dir():
            found[int(match.group(1))] = entry
    return dict(sorted(found.items()))


def _modalities(direction: str) -> tuple[str, str]:
    """(query modality, gallery modality) of a test direction."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"LLCM direction {direction!r} is unknown; expected one of {', '.join(DIRECTIONS)}")
    return (VISIBLE, INFRARED) if direction == DIRECTIONS[0] else (INFRARED, VISIBLE)
