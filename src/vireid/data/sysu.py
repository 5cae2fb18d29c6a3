"""SYSU-MM01 reader: training samples and the standard infrared -> visible test protocol.

Raw layout (docs/method.md §2): `cam1 … cam6/<pid>/*.jpg` and `exp/{train,val,test}_id.txt`, each one line
of comma-separated integer ids. Visible cameras 1, 2 (indoor), 4, 5 (outdoor); infrared 3 (indoor),
6 (outdoor). pid = the person folder's name as an integer, camid = the camera digit.
"""

from __future__ import annotations

import random
from pathlib import Path

from vireid.data.records import INFRARED, VISIBLE, Sample
from vireid.data.registry import (Splits, check_disjoint, check_trials, dataset_root, describe_ids_without_images,
                                  format_statistics, image_files, person_folders, read_id_list,
                                  report_ids_without_images, split_statistics)
from vireid.errors import ConfigError, DatasetLayoutError

CAMERAS = (1, 2, 3, 4, 5, 6)
INFRARED_CAMERAS = (3, 6)
# Gallery cameras per search mode, in the order the standard protocol visits them.
GALLERY_CAMERAS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
SHOTS = {"single": 1, "multi": 10}
LAYOUT = "cam1..cam6/<pid>/*.jpg and exp/train_id.txt, exp/val_id.txt, exp/test_id.txt"
ID_FILES = ("exp/train_id.txt", "exp/val_id.txt", "exp/test_id.txt")


def camera_modality(camid: int) -> str:
    """SYSU-MM01 cameras 3 and 6 are infrared, the others visible."""
    return INFRARED if camid in INFRARED_CAMERAS else VISIBLE


class SYSUMM01:
    """The SYSU-MM01 dataset on its raw folder `root`; validates the layout on construction.

    - `train`: every image of the train ∪ val ids from all six cameras, ordered by camera, then
      pid, then file name.
    - `query(mode)`: every image of the test ids from cam3 and cam6 (the same for both modes).
    - `gallery(mode, trial, shots)`: `shots` random images per (test pid, visible camera), drawn
      exactly as the standard protocol code draws them for seed `trial`.
    Sample paths are absolute. An id in both a training list and `test_id.txt` is an error; listed
    ids without any image are left out (`train_ids`, `test_ids` hold the others), logged as a
    warning and named in `describe()`.
    """

    name = "sysu"
    title = "SYSU-MM01"
    metric_protocol = "sysu"
    layout_markers = ("cam1", "cam3", "exp")  # what tells this layout apart (registry.detect_layouts)

    def __init__(self, root: str | Path) -> None:
        self.root = dataset_root(root, "SYSU-MM01", LAYOUT)
        expected = [*ID_FILES, *(f"cam{c}" for c in CAMERAS)]
        missing = [p for p in expected if not (self.root / p).exists()]
        if missing:
            raise DatasetLayoutError(f"{self.root} is not a SYSU-MM01 root: missing {', '.join(missing)} "
                                     f"(expected {LAYOUT})")
        listed = {name: sorted(set(read_id_list(self.root / name))) for name in ID_FILES}
        train_files, test_file = ID_FILES[:2], ID_FILES[2]
        where = f"SYSU-MM01 at {self.root}"
        check_disjoint(where, {n: listed[n] for n in train_files}, {test_file: listed[test_file]})
        self._people = {c: person_folders(self.root / f"cam{c}") for c in CAMERAS}
        self._listing: dict[tuple[int, int], list[str]] = {}
        self.ids_without_images = report_ids_without_images(
            where, {name: [p for p in ids if not self._has_images(p)] for name, ids in listed.items()})
        self.train_ids = sorted({p for n in train_files for p in listed[n] if self._has_images(p)})
        self.test_ids = [p for p in listed[test_file] if self._has_images(p)]
        self._train = [s for c in CAMERAS for pid in self.train_ids for s in self._samples(c, pid)]
        self._query = [s for pid in self.test_ids for c in INFRARED_CAMERAS for s in self._samples(c, pid)]

    def _has_images(self, pid: int) -> bool:
        """Whether any camera holds an image of `pid`."""
        return any(self._images(c, pid) for c in CAMERAS)

    def _images(self, camid: int, pid: int) -> list[str]:
        """Sorted absolute image paths of person `pid` in camera `camid` ([] without a folder)."""
        key = (camid, pid)
        if key not in self._listing:
            folder = self._people[camid].get(pid)
            self._listing[key] = image_files(folder) if folder is not None else []
        return self._listing[key]

    def _samples(self, camid: int, pid: int) -> list[Sample]:
        modality = camera_modality(camid)
        return [Sample(p, pid, camid, modality) for p in self._images(camid, pid)]

    @property
    def train(self) -> list[Sample]:
        """Training samples (labels present for reporting only), camera/pid/file-name order."""
        return self._train

    def query(self, mode: str = "all") -> list[Sample]:
        """Infrared queries: for each test pid (ascending), cam3 then cam6, files by name."""
        _check_mode(mode)
        return list(self._query)

    def gallery(self, mode: str = "all", trial: int = 0, shots: int = 1) -> list[Sample]:
        """Visible gallery of one trial, drawn with a private `random.Random(trial)`.

        For each test pid (ascending) and each visible camera of `mode` (all: 1, 2, 4, 5; indoor:
        1, 2) with a non-empty folder for that pid: `rng.sample(sorted files, shots)`, which draws
        exactly what `random.seed(trial); random.sample(...)` draws (and, for one shot, what the
        standard code's `random.choice` draws). A folder with fewer than `shots` images gives all
        of them, in the order `rng.sample` shuffles them to. Python's global `random` state is
        left untouched, so a training run stays resumable.
        """
        cams = _check_mode(mode)
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise ConfigError(f"SYSU-MM01 gallery shots must be a positive integer (1 or 10), got {shots!r}")
        rng = random.Random(trial)
        chosen: list[Sample] = []
        for pid in self.test_ids:
            for c in cams:
                files = self._images(c, pid)
                if files:
                    chosen.extend(Sample(p, pid, c, VISIBLE) for p in rng.sample(files, min(shots, len(files))))
        return chosen

    def evaluation_splits(self, trials: int = 10) -> Splits:
        """(query, gallery) per trial 0..trials-1 for all-single, all-multi, indoor-single, indoor-multi."""
        check_trials(trials)
        return {f"{mode}-{kind}": [(self.query(mode), self.gallery(mode, t, shots)) for t in range(trials)]
                for mode in GALLERY_CAMERAS for kind, shots in SHOTS.items()}

    def statistics(self) -> dict:
        """Ids, images and images per camera for each modality of train, query and trial-0 galleries."""
        return {
            "train": split_statistics(self.train),
            "query": split_statistics(self.query("all")),
            "gallery all-single (trial 0)": split_statistics(self.gallery("all", 0, 1)),
            "gallery indoor-single (trial 0)": split_statistics(self.gallery("indoor", 0, 1)),
        }

    def describe(self) -> str:
        """Human-readable counts per split, modality and camera."""
        title = (f"SYSU-MM01 at {self.root}: {len(self.train_ids)} training ids (train ∪ val), "
                 f"{len(self.test_ids)} test ids")
        if self.ids_without_images:
            title += f"; left out: {describe_ids_without_images(self.ids_without_images)}"
        return format_statistics(title, self.statistics())

    def __repr__(self) -> str:
        return f"SYSUMM01(root={str(self.root)!r})"


def _check_mode(mode: str) -> tuple[int, ...]:
    if mode not in GALLERY_CAMERAS:
        raise ConfigError(f"SYSU-MM01 search mode {mode!r} is unknown; expected one of {', '.join(GALLERY_CAMERAS)}")
    return GALLERY_CAMERAS[mode]
