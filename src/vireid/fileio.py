"""Writing files so that a reader never sees half of one: temp file in the same folder, then rename.

Every file vireid writes for later use (checkpoints, configs, metrics summaries, caches, indexes)
goes through `atomic_write`, so an interrupted process leaves the previous file or none, never a
truncated one. JSON is written strictly (no NaN/Infinity tokens, which are not JSON): non-finite
numbers become null.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import numpy as np


def atomic_write(path: str | Path, data: bytes | str | Callable[[IO[bytes]], None]) -> Path:
    """Write `data` (bytes, text as UTF-8, or a function writing to a binary handle) to `path` atomically.

    The temporary file has a unique name in the target folder, so concurrent writers never share it;
    the last rename wins. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(value: Any) -> Any:
    """numpy/torch scalars and arrays -> plain Python; non-finite floats -> None (strict JSON)."""
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def dumps_json(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text of `obj` after `jsonable` (never emits NaN or Infinity)."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def write_json(path: str | Path, obj: Any) -> Path:
    """Pretty, strict JSON written atomically."""
    return atomic_write(path, dumps_json(obj, indent=2) + "\n")
