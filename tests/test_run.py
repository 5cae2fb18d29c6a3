"""Run folder: layout, metrics lines, TensorBoard scalars, atomic artefacts, reuse rules, ranks."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import yaml

from vireid.config import config_to_dict, load_config
from vireid.engine.run import RunFolder, RunFolderError, read_metrics


@pytest.fixture
def cfg():
    return load_config("smoke")


def test_creates_the_documented_layout(tmp_path, cfg):
    with RunFolder(tmp_path / "run", cfg, console=False) as run:
        run.log("hello from the test")
    root = tmp_path / "run"
    for name in ("checkpoints", "plots", "pseudo_labels", "tb"):
        assert (root / name).is_dir()
    assert yaml.safe_load((root / "config.yaml").read_text()) == config_to_dict(cfg)
    assert "hello from the test" in (root / "log.txt").read_text()


def test_metrics_lines_hold_event_fields_and_values(tmp_path, cfg):
    with RunFolder(tmp_path / "run", cfg, console=False) as run:
        run.log_metrics("epoch", stage="cmc", epoch=0, loss=np.float32(2.5), clusters=torch.tensor(12))
        run.log_metrics("epoch", stage="cmc", epoch=1, loss=1.5, clusters=10, note="text is fine")
        run.log_metrics("final", rank1=0.5)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == 3
    assert {k: events[0][k] for k in ("event", "stage", "epoch", "loss", "clusters")} == {
        "event": "epoch", "stage": "cmc", "epoch": 0, "loss": 2.5, "clusters": 12}
    assert events[1]["note"] == "text is fine" and isinstance(events[1]["time"], float)
    assert events[2]["stage"] is None and events[2]["rank1"] == 0.5
    assert read_metrics(tmp_path / "run") == events


def test_tensorboard_gets_one_scalar_per_numeric_value(tmp_path, cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunFolder(tmp_path / "run", cfg, console=False) as run:
        run.log_metrics("epoch", stage="sca", epoch=0, loss=3.0, note="skip me")
        run.log_metrics("epoch", stage="sca", epoch=1, loss=2.0)
    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["sca/loss"]
    assert [(e.step, e.value) for e in acc.Scalars("sca/loss")] == [(0, 3.0), (1, 2.0)]


def test_npz_and_json_are_written_whole(tmp_path, cfg):
    labels = np.array([0, 1, -1, 1], dtype=np.int64)
    with RunFolder(tmp_path / "run", cfg, console=False) as run:
        path = run.save_npz("pseudo_labels/epoch000.npz", labels=labels, counts=torch.tensor([1, 2]))
        jpath = run.write_json("mmlm/summary.json", {"ari": np.float64(0.25), "pairs": np.arange(3)})
    with np.load(path) as data:
        np.testing.assert_array_equal(data["labels"], labels)
        np.testing.assert_array_equal(data["counts"], [1, 2])
    assert json.loads(jpath.read_text()) == {"ari": 0.25, "pairs": [0, 1, 2]}
    assert not list(tmp_path.rglob("*.tmp"))


def _saved_an_epoch(run) -> None:
    """What a run that finished an epoch has: a checkpoint (its content does not matter here)."""
    (run / "checkpoints" / "last.pt").write_bytes(b"checkpoint")


def test_refuses_a_folder_holding_another_run(tmp_path, cfg):
    RunFolder(tmp_path / "run", cfg, console=False).close()
    _saved_an_epoch(tmp_path / "run")
    with pytest.raises(RunFolderError, match=r"--resume.*--output"):
        RunFolder(tmp_path / "run", cfg, console=False)


def test_a_run_that_saved_no_checkpoint_is_started_again_in_its_folder(tmp_path, cfg):
    with RunFolder(tmp_path / "run", cfg, console=False) as run:
        run.log("first attempt")
        run.log_metrics("epoch", stage="cmc", epoch=0, loss=1.0)
        run.write_json("mmlm/summary.json", {"pairs": 1})
    other = load_config("smoke", ["cluster.eps=0.3"])  # the fix of the first attempt's settings
    with RunFolder(tmp_path / "run", other, console=False) as run:
        run.log("second attempt")
    root = tmp_path / "run"
    assert yaml.safe_load((root / "config.yaml").read_text())["cluster"]["eps"] == 0.3
    assert read_metrics(root) == [] and not (root / "mmlm").exists()  # the first attempt's artefacts are gone
    log = (root / "log.txt").read_text()
    assert "first attempt" in log and "second attempt" in log  # its story is kept


@pytest.mark.parametrize("state", ["missing", "empty", "foreign"])
def test_resume_needs_a_run_to_continue(tmp_path, cfg, state):
    folder = tmp_path / "run"
    if state != "missing":
        folder.mkdir()
    if state == "foreign":
        (folder / "notes.txt").write_text("not a run")
    with pytest.raises(RunFolderError, match=rf"cannot resume: {folder} (does not exist|holds no vireid run)"):
        RunFolder(folder, cfg, resume=True, console=False)
    assert state != "missing" or not folder.exists()


def test_a_folder_of_other_files_is_not_taken_over(tmp_path, cfg):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="holds other files, not a vireid run"):
        RunFolder(tmp_path / "run", cfg, console=False)


def test_an_empty_existing_folder_is_fine(tmp_path, cfg):
    (tmp_path / "run").mkdir()
    RunFolder(tmp_path / "run", cfg, console=False).close()
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_resume_appends_to_the_same_run(tmp_path, cfg):
    with RunFolder(tmp_path / "run", cfg, console=False) as run:
        run.log_metrics("epoch", stage="cmc", epoch=0, loss=1.0)
    _saved_an_epoch(tmp_path / "run")
    moved = load_config("smoke", ["device=auto", "data.root=/elsewhere"])  # allowed to differ
    with RunFolder(tmp_path / "run", moved, resume=True, console=False) as run:
        run.log_metrics("epoch", stage="cmc", epoch=1, loss=0.5)
    assert [e["epoch"] for e in read_metrics(tmp_path / "run")] == [0, 1]


def test_resume_refuses_a_different_config(tmp_path, cfg):
    RunFolder(tmp_path / "run", cfg, console=False).close()
    _saved_an_epoch(tmp_path / "run")
    other = load_config("smoke", ["cluster.eps=0.3"])
    with pytest.raises(RunFolderError, match=r"cluster\.eps: 0\.6 -> 0\.3"):
        RunFolder(tmp_path / "run", other, resume=True, console=False)


def test_other_ranks_write_nothing(tmp_path, cfg):
    run = RunFolder(tmp_path / "run", cfg, rank=1, console=False)
    run.log("nobody sees this")
    run.log_metrics("epoch", stage="cmc", epoch=0, loss=1.0)
    run.save_npz("pseudo_labels/x.npz", a=np.zeros(2))
    run.write_json("x.json", {})
    run.close()
    assert not (tmp_path / "run").exists()
    assert run.checkpoints == tmp_path / "run" / "checkpoints"  # paths still known for resume


def test_close_detaches_log_handlers(tmp_path, cfg):
    before = list(logging.getLogger("vireid").handlers)
    RunFolder(tmp_path / "run", cfg).close()
    assert logging.getLogger("vireid").handlers == before
