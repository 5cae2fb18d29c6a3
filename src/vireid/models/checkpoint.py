"""The checkpoint file format: what vireid writes, and the one reader that turns any bad file into
a `CheckpointError` that says what is wrong (missing, empty, truncated, foreign, too new).

Everything is stored as tensors and plain Python types so `torch.load(weights_only=True)` can read
it: loading a checkpoint never runs code from the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from vireid.errors import CheckpointError
from vireid.fileio import atomic_write

FORMAT = "vireid-checkpoint"
FORMAT_VERSION = 1
LATEST = "latest.txt"  # names the newest checkpoint of a folder


def write_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write a payload (already CPU tensors and plain types) atomically; record it as its folder's latest."""
    path = Path(path)
    atomic_write(path, lambda handle: torch.save({"format": FORMAT, "format_version": FORMAT_VERSION,
                                                  **payload}, handle))
    atomic_write(path.parent / LATEST, path.name + "\n")
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by vireid, or a CheckpointError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist (expected a .pt file written by vireid)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file (expected a .pt file written by vireid)")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the write that made it was cut off; "
                              "use an earlier checkpoint")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is not a vireid checkpoint (not a PyTorch archive; "
                              f"{size} bytes): it is truncated or another kind of file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for damaged archives
        raise CheckpointError(f"checkpoint {path} is truncated or damaged and cannot be read "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'})"
                              ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a vireid checkpoint (no '{FORMAT}' marker); "
                              "expected a file from `vireid train`")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload['format_version']}, newer than "
                              f"this vireid understands ({FORMAT_VERSION}); upgrade vireid")
    return payload
