"""Checkpoints: bit-identical resume, RNG round trips, weights_only-safe content, clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from vireid.engine.checkpoint import (latest_checkpoint, latest_readable_checkpoint, load_checkpoint, restore_rng,
                                      save_checkpoint)
from vireid.errors import CheckpointError


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    """Each step draws from torch (data, dropout), numpy (noise) and Python's random (labels)."""
    model.train()
    for _ in range(steps):
        x = torch.randn(6, 8) + torch.from_numpy(np.random.randn(6, 8).astype(np.float32))
        y = torch.tensor([random.randrange(4) for _ in range(6)])
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def fresh(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = tiny_model()
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    straight, opt = fresh(0)
    train_steps(straight, opt, 6)

    first, opt = fresh(0)
    train_steps(first, opt, 3)
    path = save_checkpoint(tmp_path / "ckpt.pt", model=first, optimizer=opt, stage="cmc", epoch=2,
                           config={"seed": 0})
    del first, opt

    resumed, opt = fresh(12345)  # different weights and generator states, as in a new process
    ckpt = load_checkpoint(path)
    resumed.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    restore_rng(ckpt)
    train_steps(resumed, opt, 3)

    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_restored_generators_repeat_their_draws(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    np.random.randn()  # numpy keeps one too after an odd number of normals
    save_checkpoint(tmp_path / "c.pt", model=nn.Linear(1, 1), stage="x", epoch=0, config={})
    expected = (random.random(), random.gauss(0, 1), np.random.randn(3), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.randn(3), torch.rand(3))
    assert got[:2] == expected[:2]
    np.testing.assert_array_equal(got[2], expected[2])
    assert torch.equal(got[3], expected[3])


def test_checkpoint_holds_everything_a_stage_needs(tmp_path):
    model = nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "ck.pt", model=model, stage="sca", epoch=4,
                           config={"seed": 0, "cmc": {"lr": 0.1}},
                           extra={"labels": np.array([0, -1, 1]), "note": "x", "score": np.float64(0.5)})
    ckpt = torch.load(path, weights_only=True)  # plain weights_only load must work
    assert (ckpt["stage"], ckpt["epoch"]) == ("sca", 4)
    assert ckpt["optimizer"] is None and ckpt["config"] == {"seed": 0, "cmc": {"lr": 0.1}}
    assert torch.equal(ckpt["model"]["weight"], model.weight.detach())
    assert ckpt["extra"]["labels"].tolist() == [0, -1, 1] and ckpt["extra"]["score"] == 0.5
    import vireid

    assert ckpt["vireid_version"] == vireid.__version__


def test_wrapped_models_are_saved_without_the_wrapper_prefix(tmp_path):
    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    save_checkpoint(tmp_path / "w.pt", model=Wrapper(nn.Linear(2, 2)), stage="cmc", epoch=0, config={})
    assert set(load_checkpoint(tmp_path / "w.pt")["model"]) == {"weight", "bias"}


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.pt"):
        load_checkpoint(tmp_path / "nothere.pt")
    save_checkpoint(tmp_path / "good.pt", model=nn.Linear(2, 2), stage="cmc", epoch=0, config={})
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="foreign.pt is not a vireid checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def _zip_without_torch_data() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not a tensor archive")
    return buffer.getvalue()


@pytest.mark.parametrize("content, says", [(b"", "is empty"), (bytes(range(256)) * 40, "not a vireid checkpoint"),
                                           (_zip_without_torch_data(), "truncated or damaged")])
def test_empty_random_and_damaged_files_get_one_plain_line(tmp_path, content, says):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=says) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and "bad.pt" in str(err.value)


def test_latest_checkpoint_is_the_last_one_saved(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    assert latest_checkpoint(tmp_path / "run") is None
    for name in ("cmc_epoch_009.pt", "sca_epoch_000.pt", "cmc_epoch_010.pt"):
        save_checkpoint(folder / name, model=nn.Linear(1, 1), stage="x", epoch=0, config={})
    assert latest_checkpoint(tmp_path / "run") == folder / "cmc_epoch_010.pt"
    assert latest_checkpoint(folder) == folder / "cmc_epoch_010.pt"
    assert not list(folder.glob(".*tmp"))


def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_readable_one(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    assert latest_readable_checkpoint(tmp_path / "run") == (None, [])
    for epoch, name in enumerate(("cmc.pt", "prev.pt", "last.pt")):
        save_checkpoint(folder / name, model=nn.Linear(1, 1), stage="sca", epoch=epoch, config={})
    (folder / "last.pt").write_bytes(b"")  # latest.txt still names it
    state, damaged = latest_readable_checkpoint(tmp_path / "run")
    assert state["epoch"] == 1 and state["path"] == str(folder / "prev.pt")
    assert [path for path, _ in damaged] == [folder / "last.pt"] and "is empty" in damaged[0][1]
    for name in ("cmc.pt", "prev.pt"):
        (folder / name).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="none of its 3 checkpoint"):
        latest_readable_checkpoint(tmp_path / "run")


def test_the_checkpointer_keeps_the_epoch_before_last_as_prev(tmp_path):
    from vireid.config import load_config
    from vireid.engine.hooks import Checkpointer

    checkpointer = Checkpointer(tmp_path, load_config("smoke"))
    model = nn.Linear(1, 1)
    for epoch in range(3):
        checkpointer.save("last.pt", model, "cmc", epoch)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    assert load_checkpoint(tmp_path / "prev.pt")["epoch"] == 1
    assert latest_checkpoint(tmp_path) == tmp_path / "last.pt"
