"""Checkpoints that resume bit-identically: weights, optimiser, memories and every RNG state.

Everything is stored as tensors and plain Python types so `torch.load(weights_only=True)` can read
it: loading a checkpoint never runs code from the file.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from vireid.errors import CheckpointError

FORMAT = "vireid-checkpoint"
FORMAT_VERSION = 1
LATEST = "latest.txt"  # names the newest checkpoint of a folder


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states as weights_only-safe values."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": [s.cpu() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set every generator back to a saved state; accepts a checkpoint dict or its ``rng`` entry."""
    if "rng" in state:
        state = state["rng"]
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    keys = nps["keys"].numpy().astype(np.uint32)
    np.random.set_state((nps["name"], keys, int(nps["pos"]), int(nps["has_gauss"]), float(nps["gauss"])))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda[:n]])


def _tensors_to_cpu(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: _tensors_to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tensors_to_cpu(v) for v in tree)
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(tree))
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    memories: Mapping[str, torch.Tensor] | None = None,
    stage: str,
    epoch: int,
    iteration: int = 0,
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file + rename) and record it as its folder's latest.

    `epoch`/`iteration` count what is finished: resuming starts at the next one. `memories` are
    extra tensors that are not module state (cluster memories, prototypes); `extra` holds anything
    else a stage needs (tensors, numbers, strings, lists, dicts; numpy arrays become tensors).
    """
    from vireid import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vireid_version": __version__,
        "saved_at": time.time(),
        "stage": stage,
        "epoch": int(epoch),
        "iteration": int(iteration),
        "model": _tensors_to_cpu(unwrap_model(model).state_dict()),
        "optimizer": _tensors_to_cpu(optimizer.state_dict()) if optimizer is not None else None,
        "memories": _tensors_to_cpu(dict(memories)) if memories is not None else {},
        "rng": rng_state(),
        "config": _tensors_to_cpu(dict(config)),
        "extra": _tensors_to_cpu(dict(extra)) if extra is not None else {},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    marker = path.parent / LATEST
    marker_tmp = path.parent / f".{LATEST}.{os.getpid()}.tmp"
    marker_tmp.write_text(path.name + "\n", encoding="utf-8")
    os.replace(marker_tmp, marker)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (weights_only: no code runs from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (expected a .pt file written by vireid)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); "
                              "it is corrupt, truncated or not a vireid checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} was not written by vireid (no '{FORMAT}' marker); "
                              "expected a file from `vireid train`")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload['format_version']}, newer than "
                              f"this vireid understands ({FORMAT_VERSION}); upgrade vireid")
    return payload


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run folder (``<run>/checkpoints``) or a checkpoint folder; None if none."""
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    if not folder.is_dir():
        return None
    marker = folder / LATEST
    if marker.is_file():
        named = folder / marker.read_text(encoding="utf-8").strip()
        if named.is_file():
            return named
    candidates = [p for p in folder.glob("*.pt") if p.is_file()]
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name)) if candidates else None
