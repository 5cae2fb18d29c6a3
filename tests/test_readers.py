"""Dataset readers: layouts, sample order, and the exact seeded gallery draws of each protocol."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest
from PIL import Image

from vireid.data.llcm import LLCM
from vireid.data.records import INFRARED, VISIBLE, Sample
from vireid.data.regdb import RegDB
from vireid.data.registry import open_dataset
from vireid.data.synthetic import generate_synthetic
from vireid.data.sysu import SYSUMM01
from vireid.errors import ConfigError, DatasetLayoutError, VireidError


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, format="JPEG")
    return buf.getvalue()


BLANK = _jpeg_bytes()


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(BLANK)


def _numbered(n: int, prefix: str = "") -> list[str]:
    # written in reverse so that directory order and name order differ
    return [f"{prefix}{i:04d}.jpg" for i in range(n, 0, -1)]


# ---------------------------------------------------------------- SYSU-MM01
# Hand-made tree: train ids 1, 2; val 3; test 4, 5, 6, 7 (id file with odd whitespace).
#   pid 4: every camera, 2 images each
#   pid 5: no cam2 and no cam5 folder; cam4 folder exists but is empty; cam3 only
#   pid 6: cam1 with 25 images, cam2 with 3, cam4 with 12; cam6 only on the infrared side
#   pid 7: cam5 only (outdoor) on the visible side; cam3 and cam6
SYSU_TEST_FOLDERS = {
    4: {c: 2 for c in (1, 2, 3, 4, 5, 6)},
    5: {1: 4, 3: 2, 4: 0},
    6: {1: 25, 2: 3, 4: 12, 6: 5},
    7: {5: 11, 3: 1, 6: 2},
}
SYSU_TRAIN_FOLDERS = {1: {1: 2, 3: 1}, 2: {2: 1, 4: 2, 6: 3}, 3: {5: 1, 3: 2}, 99: {1: 3}}  # 99: no split


def _make_sysu(root: Path) -> Path:
    for c in range(1, 7):
        (root / f"cam{c}").mkdir(parents=True)
    for pid, cams in {**SYSU_TEST_FOLDERS, **SYSU_TRAIN_FOLDERS}.items():
        for c, n in cams.items():
            _images(root / f"cam{c}" / f"{pid:04d}", _numbered(n))
    (root / "cam1" / "0004" / ".DS_Store").write_bytes(b"x")  # not an image: ignored
    (root / "exp").mkdir()
    (root / "exp" / "train_id.txt").write_text("1,2")
    (root / "exp" / "val_id.txt").write_text("3\n")
    (root / "exp" / "test_id.txt").write_text(" 7,4, 5,\n6\n")
    return root


@pytest.fixture
def sysu_root(tmp_path) -> Path:
    return _make_sysu(tmp_path / "SYSU-MM01")


def _sysu_reference_gallery(root: Path, test_ids: list[int], cams: tuple[int, ...], trial: int,
                            shots: int) -> list[tuple[str, int, int]]:
    """METHOD §7 with Python's global random: seed, then per pid and camera, random.sample."""
    random.seed(trial)
    out = []
    for pid in sorted(test_ids):
        for c in cams:
            folder = root / f"cam{c}" / f"{pid:04d}"
            if not folder.is_dir():
                continue
            files = sorted(str(folder / f) for f in os.listdir(folder) if f.endswith(".jpg"))
            if not files:
                continue
            for path in random.sample(files, min(shots, len(files))):
                out.append((path, pid, c))
    return out


def _triples(samples: list[Sample]) -> list[tuple[str, int, int]]:
    return [(s.path, s.pid, s.camid) for s in samples]


def test_sysu_train_is_train_and_val_ids_from_all_cameras_in_camera_pid_name_order(sysu_root):
    data = SYSUMM01(sysu_root)
    expected = []
    for c in range(1, 7):
        for pid in (1, 2, 3):
            n = SYSU_TRAIN_FOLDERS[pid].get(c)
            if n is not None:
                expected += [(str(sysu_root / f"cam{c}" / f"{pid:04d}" / f"{i:04d}.jpg"), pid, c)
                             for i in range(1, n + 1)]
    assert _triples(data.train) == expected
    assert all(s.modality == (INFRARED if s.camid in (3, 6) else VISIBLE) for s in data.train)
    assert len(data.train) == 2 + 1 + 1 + 2 + 3 + 1 + 2


def test_sysu_query_is_every_test_image_of_cam3_then_cam6_per_pid_in_both_modes(sysu_root):
    data = SYSUMM01(sysu_root)
    expected = []
    for pid in (4, 5, 6, 7):
        for c in (3, 6):
            n = SYSU_TEST_FOLDERS[pid].get(c, 0)
            expected += [(str(sysu_root / f"cam{c}" / f"{pid:04d}" / f"{i:04d}.jpg"), pid, c)
                         for i in range(1, n + 1)]
    assert _triples(data.query("all")) == expected == _triples(data.query("indoor"))
    assert {s.modality for s in data.query("all")} == {INFRARED}


@pytest.mark.parametrize("mode,cams", [("all", (1, 2, 4, 5)), ("indoor", (1, 2))])
@pytest.mark.parametrize("shots", [1, 10])
def test_sysu_gallery_equals_seeded_global_random_sample_per_pid_and_camera(sysu_root, mode, cams, shots):
    data = SYSUMM01(sysu_root)
    for trial in range(4):
        got = data.gallery(mode, trial=trial, shots=shots)
        assert _triples(got) == _sysu_reference_gallery(sysu_root, [4, 5, 6, 7], cams, trial, shots)
        assert {s.modality for s in got} == {VISIBLE}


def test_sysu_single_shot_draws_what_random_choice_draws(sysu_root):
    data = SYSUMM01(sysu_root)
    for trial in range(5):
        random.seed(trial)
        expected = []
        for pid, cams in sorted(SYSU_TEST_FOLDERS.items()):
            for c in (1, 2, 4, 5):
                if cams.get(c):
                    folder = sysu_root / f"cam{c}" / f"{pid:04d}"
                    expected.append(random.choice(sorted(str(folder / f) for f in os.listdir(folder)
                                                         if not f.startswith("."))))
        assert [s.path for s in data.gallery("all", trial, 1)] == expected


def test_sysu_gallery_leaves_global_random_state_untouched(sysu_root):
    data = SYSUMM01(sysu_root)
    random.seed(1234)
    before = random.getstate()
    data.gallery("all", trial=3, shots=10)
    data.evaluation_splits(trials=2)
    assert random.getstate() == before


def test_sysu_gallery_keys_skip_missing_and_empty_folders(sysu_root):
    data = SYSUMM01(sysu_root)
    keys = lambda samples: sorted({(s.pid, s.camid) for s in samples})  # noqa: E731
    assert keys(data.gallery("all", 0, 1)) == [(4, 1), (4, 2), (4, 4), (4, 5), (5, 1), (6, 1), (6, 2), (6, 4),
                                               (7, 5)]
    assert keys(data.gallery("indoor", 0, 1)) == [(4, 1), (4, 2), (5, 1), (6, 1), (6, 2)]
    assert len(data.gallery("all", 0, 1)) == 9


def test_sysu_multi_shot_takes_ten_or_every_image_of_smaller_folders(sysu_root):
    data = SYSUMM01(sysu_root)
    got = data.gallery("all", trial=0, shots=10)
    per_key: dict[tuple[int, int], list[str]] = {}
    for s in got:
        per_key.setdefault((s.pid, s.camid), []).append(s.path)
    sizes = {k: len(v) for k, v in per_key.items()}
    assert sizes == {(4, 1): 2, (4, 2): 2, (4, 4): 2, (4, 5): 2, (5, 1): 4, (6, 1): 10, (6, 2): 3, (6, 4): 10,
                     (7, 5): 10}
    assert all(len(set(v)) == len(v) for v in per_key.values()), "drawn without replacement"
    folder = sysu_root / "cam2" / "0006"
    assert set(per_key[6, 2]) == {str(folder / f"{i:04d}.jpg") for i in (1, 2, 3)}


def test_sysu_trials_differ_and_repeat(sysu_root):
    data = SYSUMM01(sysu_root)
    assert data.gallery("all", 1, 1) == data.gallery("all", 1, 1)
    assert any(data.gallery("all", t, 1) != data.gallery("all", 0, 1) for t in range(1, 4))


def test_sysu_evaluation_splits_hold_the_four_settings_for_every_trial(sysu_root):
    data = SYSUMM01(sysu_root)
    splits = data.evaluation_splits(trials=3)
    assert sorted(splits) == ["all-multi", "all-single", "indoor-multi", "indoor-single"]
    for name, runs in splits.items():
        mode, kind = name.split("-")
        assert len(runs) == 3
        for t, (query, gallery) in enumerate(runs):
            assert query == data.query(mode)
            assert gallery == data.gallery(mode, t, 1 if kind == "single" else 10)
    assert data.metric_protocol == "sysu" and data.name == "sysu"
    with pytest.raises(ConfigError):
        data.evaluation_splits(trials=0)


def test_sysu_missing_files_and_cameras_are_named(sysu_root):
    (sysu_root / "exp" / "test_id.txt").unlink()
    os.rename(sysu_root / "cam6", sysu_root / "cam6-old")
    with pytest.raises(DatasetLayoutError) as err:
        SYSUMM01(sysu_root)
    message = str(err.value)
    assert "exp/test_id.txt" in message and "cam6" in message and str(sysu_root) in message
    assert "exp/val_id.txt" not in message.split("(expected")[0]


def test_sysu_malformed_id_file_names_the_file(sysu_root):
    (sysu_root / "exp" / "val_id.txt").write_text("3,x4")
    with pytest.raises(DatasetLayoutError, match="val_id.txt"):
        SYSUMM01(sysu_root)


def test_sysu_bad_mode_and_shots_raise_config_errors(sysu_root):
    data = SYSUMM01(sysu_root)
    with pytest.raises(ConfigError, match="indoor"):
        data.gallery("outdoor")
    with pytest.raises(ConfigError):
        data.gallery("all", 0, shots=0)


def test_sysu_paths_are_absolute_for_a_relative_root(sysu_root, monkeypatch):
    monkeypatch.chdir(sysu_root.parent)
    data = SYSUMM01(sysu_root.name)
    samples = data.train + data.query() + data.gallery()
    assert all(os.path.isabs(s.path) and os.path.isfile(s.path) for s in samples)


def test_sysu_statistics_and_description_count_per_modality_and_camera(sysu_root):
    data = SYSUMM01(sysu_root)
    stats = data.statistics()
    assert stats["train"][VISIBLE] == {"ids": 3, "images": 2 + 1 + 2 + 1, "cameras": {1: 2, 2: 1, 4: 2, 5: 1}}
    assert stats["train"][INFRARED] == {"ids": 3, "images": 1 + 3 + 2, "cameras": {3: 3, 6: 3}}
    assert stats["query"][INFRARED]["images"] == 2 + 2 + 2 + 5 + 1 + 2
    text = data.describe()
    assert "SYSU-MM01" in text and "cam6: 3" in text and len(text.splitlines()) >= 5


def test_sysu_gallery_on_synthetic_root_matches_reference(tmp_path):
    root = generate_synthetic(tmp_path / "syn", ids=8, images_per_camera=3, height=32, width=16, progress=False)
    data = open_dataset("sysu", root)
    test_ids = [int(x) for x in (root / "exp" / "test_id.txt").read_text().split(",")]
    for shots in (1, 10):
        assert _triples(data.gallery("all", 2, shots)) == _sysu_reference_gallery(root, test_ids, (1, 2, 4, 5), 2,
                                                                                  shots)


# ---------------------------------------------------------------- RegDB
def _make_regdb(root: Path) -> Path:
    """3 people (labels 0..2); trial 1 trains on 0, 1 and tests on 2; trial 2 the other way round."""
    for p in (1, 2, 3):
        _images(root / "Visible" / str(p), [f"v{p}_{i}.bmp" for i in (1, 2)])
        _images(root / "Thermal" / str(p), [f"t{p}_{i}.bmp" for i in (1, 2)])
    (root / "idx").mkdir()
    for trial, (train, test) in {1: ((1, 2), (3,)), 2: ((3,), (1, 2))}.items():
        for split, people in (("train", train), ("test", test)):
            for name, folder, letter in (("visible", "Visible", "v"), ("thermal", "Thermal", "t")):
                lines = [f"{folder}/{p}/{letter}{p}_{i}.bmp {p - 1}" for p in people for i in (1, 2)]
                (root / "idx" / f"{split}_{name}_{trial}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def regdb_root(tmp_path) -> Path:
    return _make_regdb(tmp_path / "RegDB")


def test_regdb_train_is_visible_then_thermal_lines_with_label_pids(regdb_root):
    data = RegDB(regdb_root, trial=1)
    got = [(s.path, s.pid, s.camid, s.modality) for s in data.train]
    vis = [(str(regdb_root / "Visible" / str(p) / f"v{p}_{i}.bmp"), p - 1, 1, VISIBLE) for p in (1, 2) for i in (1, 2)]
    the = [(str(regdb_root / "Thermal" / str(p) / f"t{p}_{i}.bmp"), p - 1, 2, INFRARED) for p in (1, 2) for i in (1, 2)]
    assert got == vis + the


def test_regdb_directions_swap_query_and_gallery(regdb_root):
    data = RegDB(regdb_root, trial=2)
    v2t_q, v2t_g = data.query("visible-to-thermal"), data.gallery("visible-to-thermal")
    assert [s.path for s in v2t_q] == [str(regdb_root / "Visible" / str(p) / f"v{p}_{i}.bmp")
                                       for p in (1, 2) for i in (1, 2)]
    assert {s.modality for s in v2t_q} == {VISIBLE} and {s.modality for s in v2t_g} == {INFRARED}
    assert [s.pid for s in v2t_g] == [0, 0, 1, 1]
    assert data.query("thermal-to-visible") == v2t_g and data.gallery("thermal-to-visible") == v2t_q
    with pytest.raises(ConfigError):
        data.query("infrared-to-visible")


def test_regdb_evaluation_splits_use_only_the_readers_trial(regdb_root):
    data = RegDB(regdb_root, trial=2)
    splits = data.evaluation_splits(trials=10)
    assert sorted(splits) == ["thermal-to-visible", "visible-to-thermal"]
    assert splits["visible-to-thermal"] == [(data.query("visible-to-thermal"), data.gallery("visible-to-thermal"))]
    assert len(splits["thermal-to-visible"]) == 1 and data.metric_protocol == "regdb"


@pytest.mark.parametrize("trial", [0, 11, "1"])
def test_regdb_trial_outside_one_to_ten_is_rejected(regdb_root, trial):
    with pytest.raises(ConfigError, match="trial"):
        RegDB(regdb_root, trial=trial)


def test_regdb_missing_index_file_and_image_are_named(regdb_root):
    with pytest.raises(DatasetLayoutError, match="idx/test_thermal_3.txt"):
        RegDB(regdb_root, trial=3)
    (regdb_root / "Thermal" / "3" / "t3_2.bmp").unlink()
    with pytest.raises(DatasetLayoutError, match="t3_2.bmp"):
        RegDB(regdb_root, trial=1)


def test_regdb_malformed_line_is_reported_with_its_number(regdb_root):
    (regdb_root / "idx" / "train_visible_1.txt").write_text("Visible/1/v1_1.bmp 0\nVisible/1/v1_2.bmp\n")
    with pytest.raises(DatasetLayoutError, match="line 2"):
        RegDB(regdb_root, trial=1)


def test_regdb_synthetic_root_test_ids_are_disjoint_from_train(tmp_path):
    root = generate_synthetic(tmp_path / "syn", layout="regdb", ids=6, images_per_camera=2, height=32, width=16,
                              progress=False)
    data = open_dataset("regdb", root, trial=3)
    assert data.trial == 3
    test_lines = (root / "idx" / "test_thermal_3.txt").read_text().split()
    assert [s.path for s in data.gallery()] == [str(root / p) for p in test_lines[0::2]]
    assert {s.pid for s in data.train}.isdisjoint({s.pid for s in data.query()})
    assert "RegDB" in data.describe()


# ---------------------------------------------------------------- LLCM
LLCM_VIS = {7: {1: 2, 2: 3, 10: 2}, 8: {2: 1, 9: 4}, 9: {1: 0, 10: 1}}  # cam10 sorts after cam9
LLCM_NIR = {7: {1: 2, 4: 2}, 8: {4: 3}, 9: {6: 5, 1: 1}}


def _make_llcm(root: Path) -> Path:
    _images(root / "train_vis" / "cam1" / "0001", ["a.jpg", "b.jpg"])
    _images(root / "train_vis" / "cam5" / "0002", ["c.jpg"])
    _images(root / "train_nir" / "cam4" / "0001", ["d.jpg"])
    for folder, people in (("test_vis", LLCM_VIS), ("test_nir", LLCM_NIR)):
        for pid, cams in people.items():
            for c, n in cams.items():
                _images(root / folder / f"cam{c}" / f"{pid:04d}", _numbered(n, prefix=f"{pid:04d}_c{c:02d}_"))
    (root / "test_nir" / "cam8").mkdir()  # a camera without test people
    (root / "idx").mkdir()
    (root / "idx" / "train_vis.txt").write_text(
        "train_vis/cam5/0002/c.jpg 1\ntrain_vis/cam1/0001/a.jpg 0\ntrain_vis/cam1/0001/b.jpg 0\n")
    (root / "idx" / "train_nir.txt").write_text("train_nir/cam4/0001/d.jpg 0\n")
    (root / "idx" / "test_id.txt").write_text("9,7,8")
    return root


@pytest.fixture
def llcm_root(tmp_path) -> Path:
    return _make_llcm(tmp_path / "LLCM")


def _llcm_folder_files(folder: Path) -> list[str]:
    return sorted(str(folder / f) for f in os.listdir(folder))


def test_llcm_train_follows_index_files_with_camera_from_path(llcm_root):
    data = LLCM(llcm_root)
    assert [(Path(s.path).name, s.pid, s.camid, s.modality) for s in data.train] == [
        ("c.jpg", 1, 5, VISIBLE), ("a.jpg", 0, 1, VISIBLE), ("b.jpg", 0, 1, VISIBLE), ("d.jpg", 0, 4, INFRARED)]


def test_llcm_query_is_every_test_image_by_pid_then_numeric_camera(llcm_root):
    data = LLCM(llcm_root)
    for direction, folder, people in (("visible-to-infrared", "test_vis", LLCM_VIS),
                                      ("infrared-to-visible", "test_nir", LLCM_NIR)):
        expected = []
        for pid in sorted(people):
            for c in sorted(people[pid]):
                if people[pid][c]:
                    expected += [(p, pid, c) for p in
                                 _llcm_folder_files(llcm_root / folder / f"cam{c}" / f"{pid:04d}")]
        assert _triples(data.query(direction)) == expected


def test_llcm_gallery_equals_seeded_global_random_choice_per_pid_and_camera(llcm_root):
    data = LLCM(llcm_root)
    for direction, folder, cams in (("visible-to-infrared", "test_nir", (1, 4, 6, 8)),
                                    ("infrared-to-visible", "test_vis", (1, 2, 9, 10))):
        for trial in range(4):
            random.seed(trial)
            expected = []
            for pid in (7, 8, 9):
                for c in cams:
                    path = llcm_root / folder / f"cam{c}" / f"{pid:04d}"
                    if path.is_dir() and os.listdir(path):
                        expected.append((random.choice(_llcm_folder_files(path)), pid, c))
            state = random.getstate()
            assert _triples(data.gallery(direction, trial)) == expected
            assert random.getstate() == state


def test_llcm_evaluation_splits_cover_both_directions_and_every_trial(llcm_root):
    data = LLCM(llcm_root)
    splits = data.evaluation_splits(trials=3)
    assert sorted(splits) == ["infrared-to-visible", "visible-to-infrared"]
    runs = splits["infrared-to-visible"]  # every infrared image ranks the drawn visible images
    assert [g for _, g in runs] == [data.gallery("infrared-to-visible", t) for t in range(3)]
    assert all(q == data.query("infrared-to-visible") for q, _ in runs)
    # the released test ranks every visible image for each drawn infrared image (LLCM DEEN/test.py)
    runs = splits["visible-to-infrared"]
    assert [q for q, _ in runs] == [data.gallery("visible-to-infrared", t) for t in range(3)]
    assert all(g == data.query("visible-to-infrared") for _, g in runs)
    assert {s.modality for q, _ in runs for s in q} == {INFRARED}
    assert data.metric_protocol == "llcm"
    assert "LLCM" in data.describe()


def test_llcm_missing_layout_and_unknown_camera_are_named(llcm_root):
    (llcm_root / "idx" / "train_nir.txt").write_text("train_nir/nocamera/d.jpg 0\n")
    _images(llcm_root / "train_nir" / "nocamera", ["d.jpg"])
    with pytest.raises(DatasetLayoutError, match="camera"):
        LLCM(llcm_root)
    os.rename(llcm_root / "test_nir", llcm_root / "nir")
    with pytest.raises(DatasetLayoutError, match="test_nir"):
        LLCM(llcm_root)


# ---------------------------------------------------------------- registry
def test_open_dataset_picks_the_reader_by_name(sysu_root, regdb_root, llcm_root):
    assert isinstance(open_dataset("sysu", sysu_root), SYSUMM01)
    assert isinstance(open_dataset("LLCM", llcm_root), LLCM)
    regdb = open_dataset("regdb", regdb_root, trial=2)
    assert isinstance(regdb, RegDB) and regdb.trial == 2


def test_open_dataset_unknown_name_lists_the_valid_ones(sysu_root):
    with pytest.raises(VireidError) as err:
        open_dataset("market1501", sysu_root)
    assert all(name in str(err.value) for name in ("sysu", "regdb", "llcm", "market1501"))


# ---------------------------------------------------------------- data checks shared by the readers
def test_sysu_id_in_a_training_list_and_the_test_list_is_named_as_leakage(sysu_root):
    (sysu_root / "exp" / "train_id.txt").write_text("1,2,5")
    (sysu_root / "exp" / "val_id.txt").write_text("3,7")
    with pytest.raises(DatasetLayoutError) as err:
        SYSUMM01(sysu_root)
    message = str(err.value)
    assert "leakage" in message
    assert "5 in both exp/train_id.txt and exp/test_id.txt" in message
    assert "7 in both exp/val_id.txt and exp/test_id.txt" in message


def test_sysu_listed_ids_without_images_are_warned_about_and_counted_alike(sysu_root, caplog):
    # id 8 is listed for training and id 12 for testing, but no camera holds a folder for either
    (sysu_root / "exp" / "train_id.txt").write_text("1,2,8")
    (sysu_root / "exp" / "test_id.txt").write_text("7,4,5,6,12")
    with caplog.at_level("WARNING", logger="vireid"):
        data = SYSUMM01(sysu_root)
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "exp/train_id.txt: 8" in warned and "exp/test_id.txt: 12" in warned
    assert data.train_ids == [1, 2, 3] and data.test_ids == [4, 5, 6, 7]
    header = data.describe().splitlines()[0]
    # the header counts the ids the table counts: the distinct pids of the training and test samples
    assert "3 training ids" in header and "4 test ids" in header
    assert len({s.pid for s in data.train}) == 3
    assert {s.pid for s in data.query()} | {s.pid for s in data.gallery("all", 0, 10)} == {4, 5, 6, 7}
    assert "exp/train_id.txt: 8" in header and "exp/test_id.txt: 12" in header


def test_a_complete_sysu_root_logs_no_warning(sysu_root, caplog):
    with caplog.at_level("WARNING", logger="vireid"):
        SYSUMM01(sysu_root)
    assert not caplog.records


@pytest.mark.parametrize("name", ["sysu", "regdb", "llcm"])
def test_a_root_that_does_not_exist_says_so(tmp_path, name):
    with pytest.raises(DatasetLayoutError) as err:
        open_dataset(name, tmp_path / "typo")
    message = str(err.value)
    assert f"{tmp_path / 'typo'} does not exist" in message and "is not a" not in message


@pytest.mark.parametrize("name", ["sysu", "regdb", "llcm"])
def test_a_root_that_is_a_file_says_so(tmp_path, name):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetLayoutError, match="is not a folder"):
        open_dataset(name, tmp_path / "file")


@pytest.mark.parametrize("name", ["sysu", "regdb", "llcm"])
@pytest.mark.parametrize("root", ["", "  "])
def test_an_empty_root_is_refused_rather_than_read_as_the_current_folder(sysu_root, monkeypatch, name, root):
    monkeypatch.chdir(sysu_root)  # a valid SYSU-MM01 root: "" must not silently mean it
    with pytest.raises(ConfigError, match="root is empty"):
        open_dataset(name, root)


def test_regdb_person_folder_in_train_and_test_is_named_as_leakage(regdb_root):
    # trial 1 trains on people 1, 2 and tests on 3; list person 2's visible folder for testing too
    index = regdb_root / "idx" / "test_visible_1.txt"
    index.write_text(index.read_text() + "Visible/2/v2_1.bmp 1\n")
    with pytest.raises(DatasetLayoutError) as err:
        RegDB(regdb_root, trial=1)
    message = str(err.value)
    assert "leakage" in message
    assert f"{os.path.join('Visible', '2')} in both idx/train_visible_1.txt and idx/test_visible_1.txt" in message


def test_regdb_the_same_image_in_train_and_test_is_leakage_without_person_folders(tmp_path):
    root = tmp_path / "flat"
    _images(root / "Visible", ["a.bmp", "b.bmp"])
    _images(root / "Thermal", ["c.bmp", "d.bmp"])
    (root / "idx").mkdir()
    for split, (vis, the) in {"train": ("a", "c"), "test": ("b", "d")}.items():
        (root / "idx" / f"{split}_visible_1.txt").write_text(f"Visible/{vis}.bmp 0\n")
        (root / "idx" / f"{split}_thermal_1.txt").write_text(f"Thermal/{the}.bmp 0\n")
    assert len(RegDB(root, trial=1).train) == 2  # flat folders and equal labels are not leakage
    (root / "idx" / "test_thermal_1.txt").write_text("Thermal/c.bmp 0\n")
    with pytest.raises(DatasetLayoutError, match=r"Thermal.c\.bmp in both idx/train_thermal_1.txt"):
        RegDB(root, trial=1)


def test_regdb_test_labels_numbered_from_zero_again_are_not_leakage(regdb_root):
    # the published index files number the people of each split from 0; folders tell people apart
    for name in ("visible", "thermal"):
        index = regdb_root / "idx" / f"test_{name}_1.txt"
        index.write_text(index.read_text().replace(" 2\n", " 0\n"))
    data = RegDB(regdb_root, trial=1)
    assert {s.pid for s in data.query()} == {0} and {s.pid for s in data.train} == {0, 1}


def test_llcm_training_person_folder_that_is_a_test_id_is_named_as_leakage(llcm_root):
    # training images of person folder 0008 (label 5), while 8 is a test id
    _images(llcm_root / "train_nir" / "cam4" / "0008", ["e.jpg"])
    index = llcm_root / "idx" / "train_nir.txt"
    index.write_text(index.read_text() + "train_nir/cam4/0008/e.jpg 5\n")
    with pytest.raises(DatasetLayoutError) as err:
        LLCM(llcm_root)
    assert "person folder(s) 8 in both idx/train_nir.txt and idx/test_id.txt" in str(err.value)


def test_llcm_training_labels_equal_to_test_ids_are_not_leakage(llcm_root):
    # labels are the training split's own numbering (0, 1, ...); only person folders name people
    index = llcm_root / "idx" / "train_vis.txt"
    index.write_text(index.read_text().replace("c.jpg 1", "c.jpg 7"))
    assert {s.pid for s in LLCM(llcm_root).train} == {0, 7}


def test_llcm_test_ids_without_images_are_warned_about_and_left_out(llcm_root, caplog):
    (llcm_root / "idx" / "test_id.txt").write_text("9,7,8,30")
    with caplog.at_level("WARNING", logger="vireid"):
        data = LLCM(llcm_root)
    assert any("idx/test_id.txt: 30" in r.getMessage() for r in caplog.records)
    assert data.test_ids == [7, 8, 9]
    header = data.describe().splitlines()[0]
    assert "3 test ids" in header and "idx/test_id.txt: 30" in header
    assert {s.pid for d in ("visible-to-infrared", "infrared-to-visible") for s in data.query(d)} == {7, 8, 9}
