"""Small promises of the command line's output: RegDB's single gallery is explained, and torch hub's
download line never reaches stdout, which holds only results."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from model_helpers import model_for_tests
from vireid.cli import main
from vireid.config import config_to_dict, load_config
from vireid.data.synthetic import generate_synthetic
from vireid.engine.checkpoint import save_checkpoint
from vireid.models.factory import _download_imagenet


pytestmark = pytest.mark.usefixtures("private_cache")


def test_evaluate_on_regdb_says_why_there_is_one_gallery_draw(tmp_path, capsys):
    root = generate_synthetic(tmp_path / "regdb", layout="regdb", ids=4, images_per_camera=2, height=64, width=32,
                              progress=False)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "final.pt", model=model_for_tests("resnet18"), stage="done", epoch=0,
                                 config=config_to_dict(load_config("smoke", ["data.dataset=regdb"])))
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "regdb", "--data-root", str(root),
                 "--device", "cpu", "--trials", "10"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("gallery draws per protocol"))
    assert line.startswith("gallery draws per protocol: 1 (RegDB has one fixed gallery per split")
    assert "--trials does not apply" in line and "eval.trials" not in line


def test_the_imagenet_download_line_goes_to_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def fake_download(url, dst, hash_prefix=None, progress=True):  # the network, replaced by a local file
        torch.save(torchvision.models.resnet18().state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    state = _download_imagenet("resnet18")
    captured = capsys.readouterr()
    assert "conv1.weight" in state
    assert "Downloading" in captured.err and "Downloading" not in captured.out
