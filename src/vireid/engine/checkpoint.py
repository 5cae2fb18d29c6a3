"""Resumable checkpoints: weights, optimiser, scheduler and every RNG state, so a resumed run repeats
an uninterrupted one bit for bit in deterministic mode. The file format and its reader live in
`vireid.models.checkpoint`; this module adds what resuming needs.
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

from vireid import __version__
from vireid.errors import CheckpointError
from vireid.models.checkpoint import LATEST, read_checkpoint, write_checkpoint
from vireid.models.factory import unwrap_model

load_checkpoint = read_checkpoint  # the one reader: every bad file is a CheckpointError


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
    stage: str,
    epoch: int,
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and record it as its folder's latest.

    `epoch` counts what is finished: resuming starts at the next one. `extra` holds anything else a
    stage needs (tensors, numbers, strings, lists, dicts; numpy arrays become tensors).
    """
    payload = {
        "vireid_version": __version__,
        "saved_at": time.time(),
        "stage": stage,
        "epoch": int(epoch),
        "model": _tensors_to_cpu(unwrap_model(model).state_dict()),
        "optimizer": _tensors_to_cpu(optimizer.state_dict()) if optimizer is not None else None,
        "rng": rng_state(),
        "config": _tensors_to_cpu(dict(config)),
        "extra": _tensors_to_cpu(dict(extra)) if extra is not None else {},
    }
    return write_checkpoint(path, payload)


def checkpoint_candidates(run_dir: str | Path) -> list[Path]:
    """The checkpoints of a run folder (``<run>/checkpoints``) or a checkpoint folder, newest first:
    the one `latest.txt` names, then the others by modification time."""
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    if not folder.is_dir():
        return []
    files = sorted((p for p in folder.glob("*.pt") if p.is_file()),
                   key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    marker = folder / LATEST
    if marker.is_file():
        named = folder / marker.read_text(encoding="utf-8").strip()
        if named in files:
            files.remove(named)
            files.insert(0, named)
    return files


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run folder (``<run>/checkpoints``) or a checkpoint folder; None if none."""
    candidates = checkpoint_candidates(run_dir)
    return candidates[0] if candidates else None


def latest_readable_checkpoint(run_dir: str | Path) -> tuple[dict[str, Any] | None, list[tuple[Path, str]]]:
    """The newest checkpoint of a run that can be read (its path under "path"), and the newer ones
    that could not, each with its problem; (None, []) when the run has no checkpoint.

    A damaged `last.pt` then costs one epoch (`prev.pt`, see `rotate_last`) instead of the run.
    CheckpointError when every checkpoint is damaged.
    """
    damaged: list[tuple[Path, str]] = []
    for path in checkpoint_candidates(run_dir):
        try:
            state = read_checkpoint(path)
        except CheckpointError as err:
            damaged.append((path, str(err)))
            continue
        state["path"] = str(path)
        return state, damaged
    if damaged:
        raise CheckpointError(f"cannot resume {run_dir}: none of its {len(damaged)} checkpoint(s) can be read "
                              f"({damaged[0][1]}); start again with another --output")
    return None, []


PREVIOUS = "prev.pt"  # the epoch before last.pt, kept in case last.pt is damaged


def rotate_last(path: Path) -> None:
    """Before `last.pt` is replaced, keep the current one as `prev.pt` (a rename: no copy)."""
    if path.is_file():
        os.replace(path, path.with_name(PREVIOUS))
