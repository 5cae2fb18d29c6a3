"""Fixtures that several test modules share."""

from __future__ import annotations

from pathlib import Path

import pytest

from vireid.data.synthetic import generate_synthetic


@pytest.fixture
def private_cache(monkeypatch, tmp_path) -> None:
    """A vireid cache of the test's own (`VIREID_CACHE_DIR`), so no test reuses what another wrote.
    Modules that want it for every test say `pytestmark = pytest.mark.usefixtures("private_cache")`."""
    monkeypatch.setenv("VIREID_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A six-person synthetic SYSU-layout set at 64x32, made once per module that asks for it (a module
    may define its own `dataset` instead)."""
    return generate_synthetic(tmp_path_factory.mktemp("data"), ids=6, images_per_camera=2, height=64, width=32,
                              progress=False)
