"""Running this repository's scripts (studies/, benchmarks/) in a subprocess from a test."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def script_env(cache: Path | None = None, threads: int | None = None) -> dict[str, str]:
    """The environment a script needs: the package in src/ importable without an install, and where
    given, a private vireid cache (`VIREID_CACHE_DIR`) and a cap on its threads (`OMP_NUM_THREADS`)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    if cache is not None:
        env["VIREID_CACHE_DIR"] = str(cache)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env
