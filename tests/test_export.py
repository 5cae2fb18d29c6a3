"""ONNX export: onnxruntime output equals PyTorch's, for any batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vireid.config import config_to_dict, load_config
from vireid.engine.checkpoint import save_checkpoint
from vireid.errors import VireidError

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A resnet18 64x32 checkpoint whose stems differ (as after training)."""
    from model_helpers import model_for_tests

    cfg = load_config("smoke")
    torch.manual_seed(0)
    model = model_for_tests("resnet18", pretrained="none")
    with torch.no_grad():
        model.infrared_stem.conv1.weight.mul_(0.5)
        model.bottleneck.running_mean.normal_(0, 0.1)
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "final.pt", model=model, stage="sca", epoch=1,
                           config=config_to_dict(cfg))
    return model.eval(), path


def test_export_from_checkpoint_matches_pytorch(trained, tmp_path):
    model, path = trained
    report = export_and_check(path, tmp_path / "ir.onnx", "infrared")
    assert report["max_abs_diff"] < 1e-4
    assert (report["height"], report["width"], report["feature_dim"]) == (64, 32, 512)

    # independent check: a batch size the export never saw, against the original model object
    x = torch.randn(5, 3, 64, 32, generator=torch.Generator().manual_seed(7))
    session = ort.InferenceSession(str(tmp_path / "ir.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = model(x, modality="infrared").numpy()
        other_stem = model(x, modality="visible").numpy()
    assert got.shape == (5, 512)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(got - other_stem).max() > 1e-3  # the infrared stem was exported, not the visible one


def export_and_check(source, out, modality):
    from vireid.export import export_onnx

    return export_onnx(source, out, modality)


def test_export_of_a_model_object_needs_a_size(trained, tmp_path):
    from vireid.export import export_onnx

    with pytest.raises(VireidError, match="height and width"):
        export_onnx(trained[0], tmp_path / "m.onnx", "visible")
    with pytest.raises(VireidError, match="modality"):
        export_onnx(trained[0], tmp_path / "m.onnx", "thermal", 64, 32)
