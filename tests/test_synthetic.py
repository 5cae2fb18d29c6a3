"""The synthetic dataset: raw layouts, determinism, identity consistency, how infrared relates to colour."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vireid.data.synthetic import contact_sheet, generate_synthetic, read_synthetic_info, sysu_camera_pairs
from vireid.data.synthetic_people import (BOTTOM, NIR_CHANNEL_WEIGHTS, NIR_MATERIAL_SPREAD, SKIN, TOP, TOP2,
                                          make_identity)
from vireid.errors import ConfigError, DatasetLayoutError

SMALL = dict(height=64, width=32, progress=False)
VISIBLE_CAMS, INFRARED_CAMS = ("cam1", "cam2", "cam4", "cam5"), ("cam3", "cam6")


@pytest.fixture(scope="module")
def sysu(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("sysu"), ids=24, images_per_camera=2, **SMALL)


@pytest.fixture(scope="module")
def regdb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("regdb")
    return generate_synthetic(root, layout="regdb", ids=9, images_per_camera=3, **SMALL)


def _ids(root: Path, name: str) -> list[int]:
    text = (root / "exp" / f"{name}_id.txt").read_text()
    assert len(text.strip().splitlines()) <= 1, "SYSU id files hold one line"
    return [int(x) for x in text.strip().split(",") if x]


def _cams_of(root: Path, pid: int) -> set[str]:
    return {c for c in VISIBLE_CAMS + INFRARED_CAMS if (root / c / f"{pid:04d}").is_dir()}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- SYSU-MM01 layout
def test_sysu_layout_has_cameras_pid_folders_and_numbered_jpegs(sysu):
    for cam in VISIBLE_CAMS + INFRARED_CAMS:
        assert (sysu / cam).is_dir()
        for person in (sysu / cam).iterdir():
            assert len(person.name) == 4 and person.name.isdigit() and 1 <= int(person.name) <= 24
            names = sorted(f.name for f in person.iterdir())
            assert names == ["0001.jpg", "0002.jpg"]
    with Image.open(next((sysu / "cam1").rglob("*.jpg"))) as img:
        assert img.size == (32, 64) and img.format == "JPEG"


def test_sysu_id_files_split_all_ids_with_half_for_test_and_some_val(sysu):
    train, val, test = _ids(sysu, "train"), _ids(sysu, "val"), _ids(sysu, "test")
    assert sorted(train + val + test) == list(range(1, 25))
    assert len(test) == 12 and len(val) >= 1 and len(val) < len(train)
    assert train == sorted(train) and test == sorted(test)


def test_sysu_every_id_is_seen_in_both_modalities_but_not_every_camera(sysu):
    seen = {pid: _cams_of(sysu, pid) for pid in range(1, 25)}
    for pid, cams in seen.items():
        assert cams & set(VISIBLE_CAMS), f"pid {pid} has no visible image"
        assert cams & set(INFRARED_CAMS), f"pid {pid} has no infrared image"
    assert any(len(c) < 6 for c in seen.values()), "like SYSU-MM01, some people miss some cameras"
    assert any(len(c) == 6 for c in seen.values())


def test_infrared_images_are_grey_and_visible_images_are_coloured(sysu):
    def chroma(path: Path) -> float:
        x = _pixels(path)
        return float(np.abs(x - x.mean(axis=2, keepdims=True)).max())

    ir = [chroma(p) for cam in INFRARED_CAMS for p in sorted((sysu / cam).rglob("*.jpg"))[:10]]
    vis = [chroma(p) for cam in VISIBLE_CAMS for p in sorted((sysu / cam).rglob("*.jpg"))[:10]]
    assert max(ir) <= 2 / 255
    assert min(vis) > 0.05


def test_info_file_records_the_parameters_and_counts(sysu):
    info = json.loads((sysu / "synthetic.json").read_text())
    assert (info["layout"], info["ids"], info["seed"], info["images_per_camera"]) == ("sysu", 24, 0, 2)
    assert (info["height"], info["width"]) == (64, 32) and isinstance(info["version"], int)
    on_disk = len(list(sysu.rglob("*.jpg")))
    assert info["images"] == on_disk == sum(info["images_per_folder"].values())
    assert read_synthetic_info(sysu) == info


# ---------------------------------------------------------------- RegDB layout
def test_regdb_layout_has_ten_trials_of_index_files_pointing_at_images(regdb):
    assert len(list((regdb / "Visible").rglob("*.jpg"))) == 9 * 3
    assert len(list((regdb / "Thermal").rglob("*.jpg"))) == 9 * 3
    for t in range(1, 11):
        for split in ("train", "test"):
            for modality, folder in (("visible", "Visible"), ("thermal", "Thermal")):
                lines = (regdb / "idx" / f"{split}_{modality}_{t}.txt").read_text().splitlines()
                for line in lines:
                    rel, label = line.split(" ")
                    assert rel.startswith(folder + "/") and (regdb / rel).is_file()
                    assert int(label) == int(rel.split("/")[1]) - 1  # label = person index, folder = index + 1


def test_regdb_trials_split_people_into_disjoint_random_halves(regdb):
    def people(split: str, modality: str, t: int) -> set[int]:
        lines = (regdb / "idx" / f"{split}_{modality}_{t}.txt").read_text().splitlines()
        return {int(line.split(" ")[1]) for line in lines}

    splits = []
    for t in range(1, 11):
        train, test = people("train", "visible", t), people("test", "visible", t)
        assert train == people("train", "thermal", t) and test == people("test", "thermal", t)
        assert not train & test and train | test == set(range(9))
        assert abs(len(train) - len(test)) <= 1
        splits.append(frozenset(test))
    assert len(set(splits)) > 1, "trials should split differently"


# ---------------------------------------------------------------- determinism
def test_same_seed_gives_identical_bytes_even_with_workers(tmp_path):
    a = generate_synthetic(tmp_path / "a", ids=5, images_per_camera=2, seed=3, **SMALL)
    b = generate_synthetic(tmp_path / "b", ids=5, images_per_camera=2, seed=3, workers=2, **SMALL)
    c = generate_synthetic(tmp_path / "c", ids=5, images_per_camera=2, seed=4, **SMALL)
    bytes_a, bytes_b, bytes_c = _tree_bytes(a), _tree_bytes(b), _tree_bytes(c)
    assert bytes_a == bytes_b
    images = [k for k in bytes_a if k.endswith(".jpg") and k in bytes_c]
    assert images and all(bytes_a[k] != bytes_c[k] for k in images)


def test_same_parameters_reuse_the_root_and_new_ones_replace_it_only_when_forced(tmp_path):
    root = generate_synthetic(tmp_path / "d", ids=6, images_per_camera=1, **SMALL)
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    generate_synthetic(root, ids=6, images_per_camera=1, **SMALL)
    assert (root / "synthetic.json").stat().st_mtime_ns == stamp
    before = _tree_bytes(root)
    with pytest.raises(DatasetLayoutError) as err:
        generate_synthetic(root, ids=3, images_per_camera=1, **SMALL)
    assert "ids: 6 -> 3" in str(err.value) and "--force" in str(err.value)
    assert _tree_bytes(root) == before, "a refused replacement must leave the dataset as it was"
    generate_synthetic(root, ids=3, images_per_camera=1, overwrite=True, **SMALL)
    pids = {p.name for cam in VISIBLE_CAMS + INFRARED_CAMS for p in (root / cam).glob("*")}
    assert pids <= {"0001", "0002", "0003"}, "stale people from the larger run must be gone"
    assert read_synthetic_info(root)["ids"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"], "no temporary folder is left beside it"


def test_refuses_to_write_into_a_folder_with_other_data(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetLayoutError, match="not empty"):
        generate_synthetic(tmp_path, ids=3, **SMALL)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad", [dict(layout="market"), dict(ids=1), dict(ids=6.0), dict(test_fraction=1.0),
                                 dict(images_per_camera=0), dict(height=8), dict(seed=-1)])
def test_invalid_settings_raise_config_errors_naming_the_setting(tmp_path, bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        generate_synthetic(tmp_path / "x", **{**SMALL, **bad})


# ---------------------------------------------------------------- what the images show
def _centre_mean(path: Path) -> np.ndarray:
    x = _pixels(path)
    h, w = x.shape[:2]
    return x[h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(-1, 3).mean(axis=0)


def _intra_inter(vectors: dict[int, list[np.ndarray]]) -> tuple[float, float]:
    """Mean distance between images of the same id and between images of different ids (loops)."""
    intra, inter = [], []
    items = [(pid, v) for pid, vs in vectors.items() for v in vs]
    for (pa, va), (pb, vb) in itertools.combinations(items, 2):
        (intra if pa == pb else inter).append(float(np.linalg.norm(va - vb)))
    return float(np.mean(intra)), float(np.mean(inter))


@pytest.mark.parametrize("cams", [VISIBLE_CAMS, INFRARED_CAMS])
def test_images_of_one_identity_look_alike_across_cameras(sysu, cams):
    vectors = {pid: [_centre_mean(p) for cam in cams for p in sorted((sysu / cam / f"{pid:04d}").glob("*.jpg"))]
               for pid in range(1, 25)}
    intra, inter = _intra_inter({k: v for k, v in vectors.items() if len(v) >= 2})
    assert intra < 0.6 * inter


def _torso_luma(path: Path) -> float:
    """Mean luma of the upper-body window where the torso of a standing person falls."""
    x = _pixels(path)
    h, w = x.shape[:2]
    window = x[int(0.25 * h): int(0.5 * h), int(0.3 * w): int(0.7 * w)].reshape(-1, 3).mean(axis=0)
    return float(window @ np.array([0.299, 0.587, 0.114]))


def _person_luma(root: Path, pid: int, folders: tuple[str, ...], pattern: str) -> float:
    return float(np.mean([_torso_luma(p) for f in folders for p in (root / f / f"{pid:04d}").glob(pattern)]))


def test_near_infrared_brightness_follows_visible_brightness_only_loosely(sysu):
    # Control: the torso measurement on the first visible images of each person correlates
    # strongly with the same measurement on their second images. SYSU's near-infrared cameras
    # see a brightness tied to the colour's (weighted) brightness plus a material term of their
    # own: positively correlated, clearly less than the visible control.
    pids = range(1, 25)
    first = np.array([_person_luma(sysu, pid, VISIBLE_CAMS, "0001.jpg") for pid in pids])
    second = np.array([_person_luma(sysu, pid, VISIBLE_CAMS, "0002.jpg") for pid in pids])
    infrared = np.array([_person_luma(sysu, pid, INFRARED_CAMS, "*.jpg") for pid in pids])
    control = np.corrcoef(first, second)[0, 1]
    across = np.corrcoef((first + second) / 2, infrared)[0, 1]
    assert control > 0.8
    assert 0.3 < across < control - 0.1


def test_thermal_brightness_does_not_follow_visible_brightness(tmp_path):
    # RegDB's thermal camera sees emitted heat: its torso brightness must not correlate with the
    # visible one, while the visible control does.
    root = generate_synthetic(tmp_path, layout="regdb", ids=24, images_per_camera=4, **SMALL)

    def luma(folder: str, pid: int, pattern: str) -> float:
        return float(np.mean([_torso_luma(p) for p in (root / folder / str(pid)).glob(pattern)]))

    pids = range(1, 25)
    first = np.array([luma("Visible", pid, "*_0[12].jpg") for pid in pids])
    second = np.array([luma("Visible", pid, "*_0[34].jpg") for pid in pids])
    thermal = np.array([luma("Thermal", pid, "*.jpg") for pid in pids])
    assert np.corrcoef(first, second)[0, 1] > 0.8
    assert abs(np.corrcoef((first + second) / 2, thermal)[0, 1]) < 0.4


def test_sysu_layout_with_thermal_infrared_decouples_infrared_from_colour(tmp_path):
    # `infrared="thermal"` makes SYSU's cam3/cam6 see heat: the same people's visible images are
    # drawn as before, the infrared torso no longer follows the visible brightness, and the kind
    # is part of the parameters, so it never reuses a near-infrared set.
    thermal = generate_synthetic(tmp_path / "thermal", ids=24, infrared="thermal", test_fraction=0.5, **SMALL)
    near = generate_synthetic(tmp_path / "near", ids=24, test_fraction=0.5, **SMALL)
    pids = range(1, 25)
    visible = np.array([_person_luma(thermal, pid, VISIBLE_CAMS, "*.jpg") for pid in pids])
    heat = np.array([_person_luma(thermal, pid, INFRARED_CAMS, "*.jpg") for pid in pids])
    assert abs(np.corrcoef(visible, heat)[0, 1]) < 0.4
    for cam, same in (("cam1", True), ("cam3", False)):
        files = sorted(p.relative_to(near) for p in (near / cam).rglob("*.jpg"))
        assert files and files == sorted(p.relative_to(thermal) for p in (thermal / cam).rglob("*.jpg"))
        assert ((thermal / files[0]).read_bytes() == (near / files[0]).read_bytes()) is same
    assert read_synthetic_info(thermal)["infrared"] == "thermal" and "infrared" not in read_synthetic_info(near)
    with pytest.raises(DatasetLayoutError):
        generate_synthetic(tmp_path / "thermal", ids=24, test_fraction=0.5, **SMALL)


def test_near_infrared_levels_follow_the_colour_with_a_material_term():
    people = [make_identity(0, pid) for pid in range(1, 301)]
    colour = np.array([p.colors[TOP] for p in people])
    nir = np.array([p.near_infrared[TOP] for p in people])
    weighted = colour @ NIR_CHANNEL_WEIGHTS
    # level = 0.15 + 0.7 * weighted + U(-s, s), clipped: the residual is the material term
    residual = nir - (0.15 + 0.7 * weighted)
    unclipped = (nir > 0.05) & (nir < 1.0)
    assert np.abs(residual[unclipped]).max() <= NIR_MATERIAL_SPREAD + 1e-6
    assert residual[unclipped].std() > 0.5 * NIR_MATERIAL_SPREAD / np.sqrt(3), "a real material term"
    assert 0.6 < np.corrcoef(weighted, nir)[0, 1] < 0.95
    close = [(i, j) for i, j in itertools.combinations(range(len(people)), 2)
             if np.abs(colour[i] - colour[j]).max() < 0.05]
    assert close and max(abs(nir[i] - nir[j]) for i, j in close) > 0.15
    assert all(p.near_infrared[SKIN] >= 0.75 for p in people), "skin reflects the illuminator"
    assert all(abs(p.near_infrared[TOP2] - p.near_infrared[TOP]) >= 0.15 - 1e-6 for p in people), "patterns show"


def test_people_with_the_same_top_colour_can_have_different_thermal_levels():
    people = [make_identity(0, pid) for pid in range(1, 301)]
    colour = np.array([p.colors[TOP] for p in people])
    heat = np.array([p.emissivity[TOP] for p in people])
    lum = colour @ np.array([0.299, 0.587, 0.114])
    assert abs(np.corrcoef(lum, heat)[0, 1]) < 0.2
    close = [(i, j) for i, j in itertools.combinations(range(len(people)), 2)
             if np.abs(colour[i] - colour[j]).max() < 0.05]
    assert close and max(abs(heat[i] - heat[j]) for i, j in close) > 0.3
    assert all(p.emissivity[SKIN] > max(p.emissivity[TOP], p.emissivity[BOTTOM]) for p in people), "skin is warm"


def test_contact_sheet_puts_visible_left_and_grey_infrared_right(sysu, tmp_path):
    out = contact_sheet(sysu, tmp_path / "sheet.png", ids=3)
    with Image.open(out) as img:
        sheet = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    label_w, pad, gap, w, h = 44, 2, 10, 32, 64
    assert sheet.shape == (16 + 3 * (h + pad), label_w + 8 * (w + pad) + gap, 3)
    row = sheet[16:16 + h]
    left, right = row[:, label_w: label_w + w], row[:, label_w + 4 * (w + pad) + gap:][:, :w]
    assert np.abs(left - left.mean(axis=2, keepdims=True)).max() > 0.1
    assert np.abs(right - right.mean(axis=2, keepdims=True)).max() <= 2 / 255
    assert right.std() > 0.02, "an infrared image, not blank padding"


# ---------------------------------------------------------------- readers
@pytest.mark.skipif(importlib.util.find_spec("vireid.data.sysu") is None, reason="SYSU reader not written yet")
def test_sysu_reader_loads_the_synthetic_root(sysu):
    from vireid.data.sysu import SYSUMM01

    data = SYSUMM01(sysu)
    train_ids = set(_ids(sysu, "train")) | set(_ids(sysu, "val"))
    assert {s.pid for s in data.train} == train_ids
    assert len(data.train) == sum(len(list((sysu / c / f"{p:04d}").glob("*.jpg")))
                                  for p in train_ids for c in _cams_of(sysu, p))


def test_sysu_camera_pairs_count_the_images_the_reader_finds(sysu):
    from vireid.data.records import VISIBLE
    from vireid.data.sysu import SYSUMM01

    data = SYSUMM01(sysu)
    pairs = sysu_camera_pairs(24, seed=0, test_fraction=0.5)
    visible = sum(s.modality == VISIBLE for s in data.train)
    assert (2 * pairs["train"][0], 2 * pairs["train"][1]) == (visible, len(data.train) - visible)
    test_ids = _ids(sysu, "test")
    test_vis = sum(len(list((sysu / c / f"{p:04d}").glob("*.jpg"))) for p in test_ids for c in VISIBLE_CAMS
                   if (sysu / c / f"{p:04d}").is_dir())
    test_ir = sum(len(list((sysu / c / f"{p:04d}").glob("*.jpg"))) for p in test_ids for c in INFRARED_CAMS
                  if (sysu / c / f"{p:04d}").is_dir())
    assert (2 * pairs["test"][0], 2 * pairs["test"][1]) == (test_vis, test_ir)


@pytest.mark.skipif(importlib.util.find_spec("vireid.data.regdb") is None, reason="RegDB reader not written yet")
def test_regdb_reader_loads_the_synthetic_root(regdb):
    from vireid.data.regdb import RegDB

    data = RegDB(regdb, trial=1)
    lines = (regdb / "idx" / "train_visible_1.txt").read_text().splitlines()
    lines += (regdb / "idx" / "train_thermal_1.txt").read_text().splitlines()
    assert len(data.train) == len(lines)


# ---------------------------------------------------------------- writing safely
def _interrupt_after_first_batch(monkeypatch):
    """Make the image writer stop like Ctrl-C once one batch of images is on disk."""
    from vireid.data import synthetic

    real, calls = synthetic._write_images, []

    def writer(*args):
        if calls:
            raise KeyboardInterrupt
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(synthetic, "_write_images", writer)
    return calls


def test_an_interrupted_run_leaves_nothing_that_blocks_the_next(tmp_path, monkeypatch):
    calls = _interrupt_after_first_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "d", ids=6, images_per_camera=3, **SMALL)
    assert calls and Path(calls[0]) != tmp_path / "d", "images are drawn into a temporary folder"
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    root = generate_synthetic(tmp_path / "d", ids=6, images_per_camera=3, **SMALL)
    assert read_synthetic_info(root)["ids"] == 6


def test_an_interrupted_replacement_keeps_the_previous_dataset_whole(tmp_path, monkeypatch):
    root = generate_synthetic(tmp_path / "d", ids=4, images_per_camera=2, **SMALL)
    before = _tree_bytes(root)
    _interrupt_after_first_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(root, ids=7, images_per_camera=2, overwrite=True, **SMALL)
    assert _tree_bytes(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_temporary_folders_of_ended_runs_are_removed_and_those_of_live_runs_kept(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True).stdout.strip()
    host = socket.gethostname()
    dead = tmp_path / f"d.partial-{host}-{ended}-00000000"
    live = tmp_path / f"d.partial-{host}-{os.getpid()}-00000000"
    for folder in (dead, live):
        (folder / "cam1").mkdir(parents=True)
    generate_synthetic(tmp_path / "d", ids=3, images_per_camera=1, **SMALL)
    assert not dead.exists() and live.exists()


def test_a_symbolic_link_to_a_folder_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    generate_synthetic(tmp_path / "link", ids=3, images_per_camera=1, **SMALL)
    assert (tmp_path / "link").is_symlink() and read_synthetic_info(tmp_path / "real")["ids"] == 3


def test_synth_command_refuses_other_parameters_in_one_line_and_replaces_with_force(tmp_path, capsys):
    from vireid.cli import main

    out = str(tmp_path / "d")
    common = ["synth", "--out", out, "--height", "64", "--width", "32", "--images-per-camera", "1"]
    assert main([*common, "--ids", "4"]) == 0
    capsys.readouterr()
    assert main([*common, "--ids", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err and "ids: 4 -> 5" in err
    assert read_synthetic_info(out)["ids"] == 4
    assert main([*common, "--ids", "5", "--force"]) == 0
    assert read_synthetic_info(out)["ids"] == 5
