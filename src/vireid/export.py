"""ONNX export of one modality's embedding network, checked against PyTorch in onnxruntime.

The exported graph takes ImageNet-normalised float32 images (B, 3, H, W) — the same input as
`vireid.data.transforms.normalize_images` produces — and returns L2-normalised features (B, D).
The batch axis is dynamic. One file per modality, since each has its own stem.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vireid.data.records import MODALITIES
from vireid.errors import NonFiniteError, VireidError
from vireid.fileio import check_writable_file
from vireid.models.factory import load_model


class _OneModality(nn.Module):
    """Fix the modality argument so the exported graph has a single tensor input."""

    def __init__(self, model: nn.Module, modality: str) -> None:
        super().__init__()
        self.model = model
        self.modality = modality

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images, modality=self.modality)


def export_onnx(
    checkpoint_or_model: str | Path | nn.Module,
    out_path: str | Path,
    modality: str,
    height: int | None = None,
    width: int | None = None,
    opset: int = 17,
    check_batch: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Write `out_path` (.onnx) and return a report with the onnxruntime-vs-PyTorch max abs difference.

    `height`/`width` default to the checkpoint's config when a checkpoint path is given. The parity
    check feeds `check_batch` random images (a batch size other than the export's, to exercise the
    dynamic axis) to both runtimes on CPU.
    """
    if modality not in MODALITIES:
        raise VireidError(f"export modality must be one of {'|'.join(MODALITIES)}, got {modality!r}")
    require_onnx()
    out_path = check_writable_file(out_path, "export --out")
    if isinstance(checkpoint_or_model, nn.Module):
        model = copy.deepcopy(checkpoint_or_model).cpu().float().eval()
        if height is None or width is None:
            raise VireidError("export_onnx of a model object needs height and width")
    else:
        model, cfg = load_model(checkpoint_or_model)
        height = height or cfg.data.height
        width = width or cfg.data.width
    wrapper = _OneModality(model, modality).eval()
    source = f"checkpoint {checkpoint_or_model}" if not isinstance(checkpoint_or_model, nn.Module) else "the model"
    check_finite_output(wrapper, source, check_batch, height, width, seed)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, height, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is chatty about deprecations
        torch.onnx.export(wrapper, (dummy,), str(out_path), input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    max_diff = onnx_parity(wrapper, out_path, check_batch, height, width, seed)
    if not math.isfinite(max_diff):
        out_path.unlink(missing_ok=True)
        raise NonFiniteError(f"the ONNX export of {source} gives non-finite features in onnxruntime (parity "
                             f"difference {max_diff}); nothing was written")
    return {"path": str(out_path), "modality": modality, "height": height, "width": width, "opset": opset,
            "input": "images", "output": "features", "feature_dim": int(getattr(model, "feature_dim", 0)),
            "max_abs_diff": max_diff}


def require_onnx() -> None:
    """Refuse to start an export without the optional `export` dependencies, saying how to get them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise VireidError(f"vireid export needs onnx and onnxruntime ({err}); install them with "
                          'pip install "vireid[export]"') from None


@torch.no_grad()
def check_finite_output(wrapper: nn.Module, source: str, batch: int, height: int, width: int, seed: int) -> None:
    """Refuse a model whose features of random images are NaN or infinite (damaged weights)."""
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
    out = wrapper.eval()(x)
    if not torch.isfinite(out).all():
        raise NonFiniteError(f"{source} gives NaN or infinite features; its weights are damaged or diverged, "
                             "so it is not exported")


@torch.no_grad()
def onnx_parity(wrapper: nn.Module, onnx_path: str | Path, batch: int, height: int, width: int,
                seed: int = 0) -> float:
    """Max abs difference between onnxruntime and PyTorch outputs on random normalised images."""
    import onnxruntime as ort

    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
    expected = wrapper.eval()(x).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    return float(np.abs(got - expected).max())
