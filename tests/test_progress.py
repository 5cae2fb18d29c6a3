"""Progress: a tqdm bar on a terminal, plain periodic lines with the time left otherwise, and no module
drawing bars of its own (so a redirected log never fills with carriage returns)."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import pytest
from tqdm.auto import tqdm

import vireid
import vireid.progress as progress_module
from vireid.progress import PlainProgress, duration, progress

PACKAGE = Path(vireid.__file__).parent


class _Clock:
    """A monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


@pytest.fixture
def redirected(monkeypatch, capsys):
    """stderr captured (so not a terminal), with no run's log handlers attached; call it for the text."""
    monkeypatch.setattr(logging.getLogger("vireid"), "handlers", [])
    return lambda: capsys.readouterr().err


def test_off_a_terminal_a_loop_prints_plain_lines_with_the_time_left(redirected, clock, monkeypatch):
    monkeypatch.setenv("VIREID_PROGRESS_SECONDS", "10")
    bar = progress(range(8), desc="cmc phase 1 epoch 3", unit="it")
    assert isinstance(bar, PlainProgress)
    for step in bar:
        clock.now += 4.0  # each step takes 4 s: a line after steps 3 and 6 (12 s and 24 s since the last)
        bar.set_postfix(loss=f"{1.0 / (step + 1):.3f}")
    text = redirected()
    lines = text.splitlines()
    assert "\r" not in text
    # 3 of 8 done after 12 s: 0.25 it/s, 5 left -> 20 s; 6 of 8 after 24 s: 2 left -> 8 s
    assert lines == ["cmc phase 1 epoch 3: 3/8 it (0.25 it/s, ETA 20s) loss 0.333",
                     "cmc phase 1 epoch 3: 6/8 it (0.25 it/s, ETA 8s) loss 0.167"]


def test_a_loop_shorter_than_the_interval_prints_nothing(redirected, clock):
    with progress(total=100, desc="features", unit="img") as bar:
        for _ in range(10):
            clock.now += 0.1
            bar.update(10)
    assert redirected() == ""


def test_inside_a_run_the_lines_go_to_its_log(monkeypatch, clock, caplog):
    monkeypatch.setenv("VIREID_PROGRESS_SECONDS", "0")
    monkeypatch.setattr(progress_module, "on_terminal", lambda: False)
    monkeypatch.setattr(logging.getLogger("vireid"), "handlers", [logging.NullHandler()])  # a run is open
    with caplog.at_level(logging.INFO, logger="vireid.progress"):
        for _ in progress([1, 2], desc="sca epoch 1"):
            clock.now += 1.0
    assert [r.getMessage() for r in caplog.records] == ["sca epoch 1: 1/2 it (1.00 it/s, ETA 1s)",
                                                        "sca epoch 1: 2/2 it (1.00 it/s, ETA 0s)"]


def test_on_a_terminal_it_is_a_tqdm_bar_and_disabled_means_silent(monkeypatch):
    monkeypatch.setattr(progress_module, "on_terminal", lambda: True)
    bar = progress(range(3), desc="x")
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    monkeypatch.setattr(progress_module, "on_terminal", lambda: False)
    quiet = progress(range(3), desc="x", enabled=False)
    assert isinstance(quiet, tqdm) and quiet.disable
    assert list(quiet) == [0, 1, 2]


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (65, "1m05s"), (3600 * 2 + 7 * 60, "2h07m"),
                                           (float("inf"), "?")])
def test_durations_read_like_a_person_writes_them(seconds, text):
    assert duration(seconds) == text


def test_no_module_draws_its_own_tqdm_bar():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "progress.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(re.match(r"tqdm(\.|$)", n) for n in names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == [], f"use vireid.progress.progress instead of tqdm in {offenders}"
