"""Progress of long loops: a tqdm bar on a terminal, plain periodic lines with an ETA otherwise.

A bar redrawn with carriage returns is right on a terminal and wrong in a redirected log (`vireid
train ... 2> log` would fill it with half-drawn bars). So when stderr is not a terminal, a loop
prints one plain line every `VIREID_PROGRESS_SECONDS` seconds (default 30) instead: done/total,
rate and estimated time left. Loops shorter than that print nothing. Inside a run the lines go
through the `vireid` logger (console and log.txt); outside one, straight to stderr.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

INTERVAL_ENV = "VIREID_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0

logger = logging.getLogger("vireid.progress")


def on_terminal() -> bool:
    """Whether stderr (where progress goes) is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def line_interval() -> float:
    """Seconds between two plain progress lines ($VIREID_PROGRESS_SECONDS, default 30)."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    """A short human duration: 45s, 3m05s, 2h07m."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _emit(line: str) -> None:
    """Through the vireid logger when a run has attached handlers to it, else straight to stderr."""
    if logging.getLogger("vireid").handlers:
        logger.info(line)
    else:
        print(line, file=sys.stderr, flush=True)


class PlainProgress:
    """The non-terminal stand-in for a tqdm bar: the same `update`/`set_postfix`/iteration interface."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str,
                 interval: float) -> None:
        self.iterable, self.desc, self.unit, self.interval = iterable, desc, unit, interval
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            _emit(self.line(now))

    def line(self, now: float | None = None) -> str:
        """`desc: done/total unit (rate unit/s, ETA 1m05s) postfix`."""
        elapsed = max((now if now is not None else time.monotonic()) - self.start, 1e-9)
        rate = self.n / elapsed
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        eta = ""
        if self.total and rate > 0:
            eta = f", ETA {duration((self.total - self.n) / rate)}"
        text = f"{self.desc}: {done} {self.unit} ({rate:.2f} {self.unit}/s{eta})"
        return f"{text} {self.postfix}" if self.postfix else text

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        pass

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, leave: bool = False) -> Any:
    """A progress wrapper for a loop (iterate it) or for manual counting (`update(n)`).

    A tqdm bar when stderr is a terminal, plain periodic lines otherwise, nothing when not `enabled`.
    """
    if enabled and not on_terminal():
        return PlainProgress(iterable, total, desc, unit, line_interval())
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=not enabled)
