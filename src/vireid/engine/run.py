"""The run folder: resolved config, human log, machine-readable metrics, TensorBoard, artefacts.

Layout::

    <run>/config.yaml      the resolved config this run started with
    <run>/log.txt          Python logging of the `vireid` logger (file: everything; console: INFO)
    <run>/metrics.jsonl    one JSON object per event
    <run>/tb/              TensorBoard scalars, tag `stage/name`
    <run>/checkpoints/  <run>/plots/  <run>/pseudo_labels/

Only rank 0 writes. On other ranks the object knows the paths (so every rank can find the
checkpoint to resume from) but every writing method does nothing.
"""

from __future__ import annotations

import io
import json
import logging
import math
import numbers
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vireid.config import Config, save_config
from vireid.engine.reuse import RunFolderError, check_reuse, clear_unfinished  # noqa: F401 - RunFolderError is public
from vireid.fileio import atomic_write, dumps_json, jsonable, write_json

SUBFOLDERS = ("checkpoints", "plots", "pseudo_labels", "tb")
logger = logging.getLogger("vireid")


class RunFolder:
    """One training/evaluation run's folder; `log`, `log_metrics`, `save_npz`, `write_json`.

    A folder holding a run is only reused with ``resume=True`` and the same config; one whose run never
    saved a checkpoint takes the new run (`vireid.engine.reuse`). Use as a context manager or call `close()`.
    """

    def __init__(
        self,
        path: str | Path,
        config: Config | None = None,
        resume: bool = False,
        rank: int = 0,
        console: bool = True,
    ) -> None:
        self.path = Path(path)
        self.rank = rank
        self.enabled = rank == 0
        self.checkpoints = self.path / "checkpoints"
        self.plots = self.path / "plots"
        self.pseudo_labels = self.path / "pseudo_labels"
        self.tb = self.path / "tb"
        self.metrics_path = self.path / "metrics.jsonl"
        self._handlers: list[logging.Handler] = []
        self._writer: Any = None
        self._metrics: Any = None
        self._counter = 0
        if not self.enabled:
            return
        self._check_reuse(config, resume)
        for name in SUBFOLDERS:
            (self.path / name).mkdir(parents=True, exist_ok=True)
        if config is not None:
            save_config(config, self.path / "config.yaml")
        self._metrics = open(self.metrics_path, "a", encoding="utf-8")
        self._open_logging(console)

    # -- setup -------------------------------------------------------------------------------
    def _check_reuse(self, config: Config | None, resume: bool) -> None:
        if check_reuse(self.path, config, resume) or not (self.path / "config.yaml").is_file():
            return
        clear_unfinished(self.path)  # an earlier attempt that saved no checkpoint: start it again

    def _open_logging(self, console: bool) -> None:
        file_handler = logging.FileHandler(self.path / "log.txt", encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._handlers.append(file_handler)
        if console:
            stream = logging.StreamHandler(sys.stderr)
            stream.setLevel(logging.INFO)
            stream.setFormatter(logging.Formatter("%(message)s"))
            stream.addFilter(lambda record: not getattr(record, "file_only", False))
            self._handlers.append(stream)
        for handler in self._handlers:
            logger.addHandler(handler)
        self._old_level = logger.level
        logger.setLevel(logging.DEBUG)

    # -- writing -----------------------------------------------------------------------------
    def log(self, msg: str, level: int = logging.INFO, console: bool = True) -> None:
        """A line for people: log.txt, and the console when level >= INFO and `console`."""
        if self.enabled:
            logger.log(level, msg, extra={"file_only": not console})

    def log_metrics(
        self, event: str, stage: str | None = None, epoch: int | None = None, step: int | None = None,
        **values: Any,
    ) -> None:
        """Append one JSON object to metrics.jsonl and each numeric value to TensorBoard.

        TensorBoard tags are ``<stage or event>/<name>``; the x-axis is `step`, else `epoch`, else
        a running count of events.
        """
        if not self.enabled:
            return
        record: dict[str, Any] = {"event": event, "stage": stage, "epoch": epoch}
        if step is not None:
            record["step"] = step
        record["time"] = time.time()
        record.update({k: jsonable(v) for k, v in values.items()})  # non-finite values become null
        self._metrics.write(dumps_json(record) + "\n")
        self._metrics.flush()
        logger.debug("%s %s", event, json.dumps(record))
        x = step if step is not None else epoch if epoch is not None else self._counter
        self._counter += 1
        numeric = {k: float(v) for k, v in record.items()
                   if k not in ("epoch", "step", "time") and isinstance(v, numbers.Real)
                   and not isinstance(v, bool) and math.isfinite(float(v))}
        if numeric:
            writer = self._tensorboard()
            for name, value in numeric.items():
                writer.add_scalar(f"{stage or event}/{name}", value, x)

    def _tensorboard(self) -> Any:
        if self._writer is None:  # imported on first use: tensorboard takes a second to import
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.tb))
        return self._writer

    def save_npz(self, relpath: str | Path, **arrays: Any) -> Path:
        """Write arrays to ``<run>/<relpath>`` atomically (compressed .npz)."""
        path = self.path / relpath
        if self.enabled:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **{k: np.asarray(_to_numpy(v)) for k, v in arrays.items()})
            atomic_write(path, buffer.getvalue())
        return path

    def write_json(self, relpath: str | Path, obj: Any) -> Path:
        """Write an object as pretty, strict JSON to ``<run>/<relpath>`` atomically."""
        path = self.path / relpath
        if self.enabled:
            write_json(path, obj)
        return path

    def close(self) -> None:
        """Flush and detach: TensorBoard writer, metrics file, log handlers."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        for handler in self._handlers:
            logger.removeHandler(handler)
            handler.close()
        if self._handlers:
            logger.setLevel(self._old_level)
        self._handlers = []

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All events of a metrics.jsonl file (a run folder or the file itself), in order."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
