"""docs/datasets.md's "add a dataset" steps are true: a reader written outside vireid, registered
by name, is found by the config, the CLI (`vireid info`) and the whole training pipeline."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from vireid.cli import main
from vireid.config import load_config
from vireid.data.records import INFRARED, VISIBLE, Sample
from vireid.data.registry import READERS, check_trials, format_statistics, register_reader, split_statistics
from vireid.data.synthetic import generate_synthetic
from vireid.engine.pipeline import train
from vireid.errors import DatasetLayoutError

pytestmark = pytest.mark.slow


class FlatFolders:
    """A layout no built-in reader knows: <root>/{visible,infrared}/<pid>_<cam>_<n>.png, with the
    test identities listed one per line in <root>/test_ids.txt; infrared queries, visible gallery."""

    name = "flatfolders"
    metric_protocol = "regdb"  # no same-camera exclusion: the two modalities never share a camera

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        ids_file = self.root / "test_ids.txt"
        if not ids_file.is_file():
            raise DatasetLayoutError(f"{ids_file} is missing")
        test_ids = {int(line) for line in ids_file.read_text().split()}
        self._samples = {(split, m): [] for split in ("train", "test") for m in (VISIBLE, INFRARED)}
        for modality in (VISIBLE, INFRARED):
            for path in sorted((self.root / modality).glob("*.png")):
                pid, cam, _ = (int(part) for part in path.stem.split("_"))
                split = "test" if pid in test_ids else "train"
                self._samples[split, modality].append(Sample(str(path), pid, cam, modality))

    @property
    def train(self) -> list[Sample]:
        return self._samples["train", VISIBLE] + self._samples["train", INFRARED]

    def describe(self) -> str:
        stats = {"train": split_statistics(self.train),
                 "test": split_statistics(self._samples["test", VISIBLE] + self._samples["test", INFRARED])}
        return format_statistics(f"flat folders at {self.root}", stats)

    def evaluation_splits(self, trials: int = 10):
        check_trials(trials)
        splits = []
        for trial in range(trials):  # one random visible image per identity and camera, as a gallery
            rng = random.Random(trial)
            by_key: dict[tuple[int, int], list[Sample]] = {}
            for s in self._samples["test", VISIBLE]:
                by_key.setdefault((s.pid, s.camid), []).append(s)
            gallery = [rng.choice(group) for _, group in sorted(by_key.items())]
            splits.append((self._samples["test", INFRARED], gallery))
        return {"ir-to-visible": splits}


@pytest.fixture(scope="module")
def flat_root(tmp_path_factory):
    """Synthetic people written by `generate_synthetic`, re-filed into the flat layout."""
    base = tmp_path_factory.mktemp("flat")
    sysu = Path(generate_synthetic(base / "sysu", ids=16, height=64, width=32, seed=3, progress=False))
    flat = base / "flat"
    for modality, cams in ((VISIBLE, (1, 2, 4, 5)), (INFRARED, (3, 6))):
        (flat / modality).mkdir(parents=True)
        for cam in cams:
            for person in sorted((sysu / f"cam{cam}").iterdir()):
                for n, image in enumerate(sorted(person.glob("*.jpg"))):
                    shutil.copy(image, flat / modality / f"{int(person.name)}_{cam}_{n}.png")
    test_ids = (sysu / "exp" / "test_id.txt").read_text().replace(",", "\n")
    (flat / "test_ids.txt").write_text(test_ids)
    return flat


@pytest.fixture()
def registered():
    register_reader("flatfolders", FlatFolders)
    yield
    READERS.pop("flatfolders")


def test_info_reads_a_registered_dataset(registered, flat_root, capsys):
    assert main(["info", "--dataset", "flatfolders", "--data-root", str(flat_root)]) == 0
    out = capsys.readouterr().out
    assert f"flat folders at {flat_root}" in out and "visible" in out and "infrared" in out


def test_a_registered_dataset_is_refused_once_unregistered(flat_root):
    with pytest.raises(Exception, match="flatfolders"):
        load_config("smoke", [f"data.dataset=flatfolders", f"data.root={flat_root}"])


def test_the_smoke_pipeline_trains_and_evaluates_on_a_registered_dataset(registered, flat_root, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("VIREID_CACHE_DIR", str(tmp_path / "cache"))
    cfg = load_config("smoke", ["data.dataset=flatfolders", f"data.root={flat_root}",
                                f"output={tmp_path / 'run'}"])
    result = train(cfg)
    metrics = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
    assert set(metrics) >= {"ir-to-visible"} and 0.0 <= metrics["ir-to-visible"]["rank1"] <= 1.0
    assert result.run_dir == tmp_path / "run"
