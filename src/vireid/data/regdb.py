"""RegDB reader: one of the ten fixed train/test splits, and both test directions.

Raw layout (docs/method.md §2): `Visible/` and `Thermal/` image folders and `idx/` holding
`{train,test}_{visible,thermal}_{t}.txt` for trials t = 1..10, each line `relative/path label` with
paths relative to the root. pid = the label; camid = 1 for visible and 2 for thermal (RegDB has one
camera per modality). Thermal images are the "infrared" modality.
"""

from __future__ import annotations

import os
from pathlib import Path

from vireid.data.records import INFRARED, VISIBLE, Sample
from vireid.data.registry import (Splits, check_disjoint, check_trials, dataset_root, format_statistics,
                                  read_index_file, split_statistics)
from vireid.errors import ConfigError, DatasetLayoutError

TRIALS = range(1, 11)
CAMERA = {VISIBLE: 1, INFRARED: 2}
_FILE_MODALITY = {VISIBLE: "visible", INFRARED: "thermal"}
DIRECTIONS = ("visible-to-thermal", "thermal-to-visible")
LAYOUT = "Visible/, Thermal/ and idx/{train,test}_{visible,thermal}_<trial>.txt with 'relative/path label' lines"


class RegDB:
    """RegDB on its raw folder `root` for split `trial` (1..10); validates files on construction.

    - `train`: the trial's training images, visible then thermal, each in its index-file order.
    - `query(direction)` / `gallery(direction)`: the trial's test images of the query / the other
      modality, in index-file order. There is no random gallery draw.
    A person folder (`Visible/<n>/`, `Thermal/<n>/`) or image listed for both training and test is
    an error (train/test leakage). Labels are not compared: index files may number the people of
    each split from 0.
    """

    name = "regdb"
    title = "RegDB"
    metric_protocol = "regdb"
    layout_markers = ("Visible", "Thermal", "idx")  # what tells this layout apart (registry.detect_layouts)
    random_gallery = False  # the gallery is the split's test set: evaluation draws nothing

    def __init__(self, root: str | Path, trial: int = 1) -> None:
        if isinstance(trial, bool) or not isinstance(trial, int) or trial not in TRIALS:
            raise ConfigError(f"RegDB trial must be an integer in 1..10 (the idx/*_<trial>.txt split), got {trial!r}")
        self.root = dataset_root(root, "RegDB", LAYOUT)
        self.trial = trial
        files = {(split, m): Path("idx") / f"{split}_{_FILE_MODALITY[m]}_{trial}.txt"
                 for split in ("train", "test") for m in (VISIBLE, INFRARED)}
        expected = ["Visible", "Thermal"] + [str(f) for f in files.values()]
        missing = [p for p in expected if not (self.root / p).exists()]
        if missing:
            raise DatasetLayoutError(f"{self.root} is not a RegDB root for trial {trial}: missing "
                                     f"{', '.join(missing)} (expected {LAYOUT})")
        self._split = {key: [Sample(p, label, CAMERA[key[1]], key[1])
                             for p, label in read_index_file(self.root / rel, self.root)]
                       for key, rel in files.items()}
        people = {key: {_person(s.path, self.root) for s in samples} for key, samples in self._split.items()}
        check_disjoint(f"RegDB at {self.root}", {str(files[k]): people[k] for k in files if k[0] == "train"},
                       {str(files[k]): people[k] for k in files if k[0] == "test"}, what="person folder/image")

    @property
    def train(self) -> list[Sample]:
        """Training samples of this trial (labels present for reporting only)."""
        return self._split["train", VISIBLE] + self._split["train", INFRARED]

    def query(self, direction: str = "visible-to-thermal") -> list[Sample]:
        """Test images of the query modality: visible for visible-to-thermal, thermal otherwise."""
        return list(self._split["test", _modalities(direction)[0]])

    def gallery(self, direction: str = "visible-to-thermal") -> list[Sample]:
        """Test images of the other modality (the whole test set of that modality)."""
        return list(self._split["test", _modalities(direction)[1]])

    def evaluation_splits(self, trials: int = 10) -> Splits:
        """One (query, gallery) pair per direction for this reader's own trial.

        RegDB models are trained per split, so a model is only tested on its own split; `trials`
        is accepted for a common interface and checked, and the 10-trial mean is taken over runs.
        """
        check_trials(trials)
        return {d: [(self.query(d), self.gallery(d))] for d in DIRECTIONS}

    def statistics(self) -> dict:
        """Ids, images and images per camera for each modality of the train and test splits."""
        return {"train": split_statistics(self.train),
                "test": split_statistics(self._split["test", VISIBLE] + self._split["test", INFRARED])}

    def describe(self) -> str:
        """Human-readable counts per split and modality."""
        return format_statistics(f"RegDB at {self.root}, trial {self.trial}", self.statistics())

    def __repr__(self) -> str:
        return f"RegDB(root={str(self.root)!r}, trial={self.trial})"


def _person(path: str, root: Path) -> str:
    """Who an image shows, as far as the layout tells: its numbered person folder relative to the
    root ("Visible/12"), else the image itself."""
    folder = os.path.dirname(path)
    return os.path.relpath(folder if os.path.basename(folder).isdigit() else path, root)


def _modalities(direction: str) -> tuple[str, str]:
    """(query modality, gallery modality) of a test direction."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"RegDB direction {direction!r} is unknown; expected one of {', '.join(DIRECTIONS)}")
    return (VISIBLE, INFRARED) if direction == DIRECTIONS[0] else (INFRARED, VISIBLE)
