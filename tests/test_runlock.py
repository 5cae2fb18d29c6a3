"""A run folder belongs to one live writer: a second is refused at once with one line naming the holder,
the folder is free again as soon as the holder ends (also by SIGKILL), readers are never refused, and a
refused run leaves no folder behind.

The competing writer is a small helper process that takes the lock through the same code path as
`vireid train` and waits; one test races two real `vireid train` commands.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vireid.cli import main
from vireid.data.synthetic import generate_synthetic
from vireid.engine import runlock
from vireid.engine.reuse import RUN_LOCK
from vireid.engine.runlock import RunFolderBusyError, acquire_run_folder, hold_run_folder, run_folder_of

HOLDER = """
import sys
from vireid.engine.runlock import acquire_run_folder
lock = acquire_run_folder(sys.argv[1], command="vireid train")
print("locked", flush=True)
sys.stdin.readline()  # hold the folder until told to finish
lock.release()
"""


pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the run folder `tmp_path/run`; yields it (stdin: a line makes it finish)."""
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _refusal(folder: Path) -> str:
    with pytest.raises(RunFolderBusyError) as caught:
        acquire_run_folder(folder)
    return str(caught.value)


def test_a_second_writer_is_refused_naming_the_folder_the_process_and_the_ways_on(holder, tmp_path):
    folder = tmp_path / "run"
    proc = holder(folder)
    line = _refusal(folder)
    assert str(folder) in line and f"process {proc.pid} on {socket.gethostname()}" in line
    assert "vireid train" in line and "wait for it to finish" in line and "another --output" in line
    assert "\n" not in line


def test_the_folder_is_free_once_its_holder_has_finished(holder, tmp_path):
    folder = tmp_path / "run"
    proc = holder(folder)
    proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    assert not folder.exists()  # locking created it and nothing was written: it goes with the lock
    with hold_run_folder(folder):
        assert (folder / RUN_LOCK).read_text().startswith(f"{os.getpid()} ")


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(holder, tmp_path):
    folder = tmp_path / "run"
    proc = holder(folder)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert f"{proc.pid} " in (folder / RUN_LOCK).read_text()  # its note stays, its lock does not
    with hold_run_folder(folder):
        assert (folder / RUN_LOCK).read_text().startswith(f"{os.getpid()} ")
    assert not (folder / RUN_LOCK).exists()


def test_train_refuses_a_folder_another_run_holds_and_writes_nothing_there(holder, tmp_path, capsys):
    data = generate_synthetic(tmp_path / "data", ids=6, images_per_camera=2, height=64, width=32, progress=False)
    folder = tmp_path / "run"
    proc = holder(folder)
    code = main(["train", "--preset", "smoke", "--data-root", str(data), "--output", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("vireid train: error: run folder") and f"process {proc.pid}" in err[0]
    assert sorted(p.name for p in folder.iterdir()) == [RUN_LOCK]  # the holder's run is untouched


def test_demo_refuses_a_folder_another_run_holds_before_generating_data(holder, tmp_path, capsys):
    folder = tmp_path / "run"
    proc = holder(folder)
    assert main(["demo", "--data", str(tmp_path / "data"), "--output", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vireid demo: error: run folder") and f"process {proc.pid}" in err[0]
    assert not (tmp_path / "data").exists()


def test_locking_creates_missing_folders_and_a_refused_run_removes_only_those(tmp_path):
    existing = tmp_path / "empty"
    existing.mkdir()
    for folder, kept in ((tmp_path / "a" / "b" / "run", tmp_path), (existing, existing)):
        lock = acquire_run_folder(folder)
        assert (folder / RUN_LOCK).is_file()
        lock.release()
        assert not (tmp_path / "a").exists() and kept.is_dir() and not (folder / RUN_LOCK).exists()
    with hold_run_folder(tmp_path / "kept"):
        (tmp_path / "kept" / "log.txt").write_text("a run wrote this")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["log.txt"]  # a folder with a run stays


def test_the_holder_may_take_its_own_folder_again(tmp_path):
    folder = tmp_path / "run"
    outer = acquire_run_folder(folder, command="vireid demo")
    inner = acquire_run_folder(folder)  # `train` inside `demo`
    assert inner is outer
    inner.release()
    assert (folder / RUN_LOCK).read_text().split()[2:] == ["vireid", "demo"]
    outer.release()
    assert not folder.exists()


def test_a_file_system_without_locks_is_named_once_and_the_command_goes_on(tmp_path, monkeypatch, capsys):
    import fcntl

    def unsupported(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", unsupported)
    monkeypatch.setattr(runlock, "_warned", set())
    for name in ("one", "two"):
        with hold_run_folder(tmp_path / name):
            pass
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no file locks" in err[0] and "No locks available" in err[0]


def test_the_run_folder_of_a_path_is_the_nearest_folder_holding_a_run(tmp_path):
    run = tmp_path / "runs" / "a"
    (run / "plots").mkdir(parents=True)
    assert run_folder_of(run / "plots" / "cmc.png") is None
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "log.txt").write_text("")
    assert run_folder_of(run / "plots" / "cmc.png") == run and run_folder_of(run) == run
    assert run_folder_of(tmp_path / "runs" / "b.json") is None


def test_commands_writing_into_a_live_run_are_refused_and_readers_are_not(holder, tmp_path, capsys):
    from test_report import fake_run

    run = fake_run(tmp_path / "run")
    proc = holder(run)
    assert main(["report", str(run), "--out", str(tmp_path / "elsewhere.html")]) == 0  # reading a live run
    assert (tmp_path / "elsewhere.html").is_file()
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(run / "report.html")]) == 2  # writing into it
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"process {proc.pid}" in err[0] and "another --out" in err[0], err
    assert not (run / "report.html").exists()


@pytest.mark.slow
def test_two_train_commands_never_share_a_folder_and_a_killed_run_resumes_at_once(tmp_path, capsys):
    data = generate_synthetic(tmp_path / "data", ids=16, height=64, width=32, seed=3, progress=False)
    folder = tmp_path / "run"
    command = ["train", "--preset", "smoke", "--stages", "cmc", "--data-root", str(data), "--output", str(folder)]
    first = subprocess.Popen([sys.executable, "-m", "vireid", *command], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.time() + 300
        while not (folder / "checkpoints" / "last.pt").exists():  # the first run has finished an epoch
            assert first.poll() is None and time.time() < deadline, "the first run ended early"
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGSTOP)  # frozen mid-run: still alive, still holding the folder
        assert main(command) == 2  # the second command, while the first runs
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"run folder {folder} is in use" in line and f"process {first.pid}" in line
        assert not (folder / "final_metrics.json").exists()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert main([*command, "--resume"]) == 0  # no stale lock: the killed run continues at once
    assert (folder / "final_metrics.json").is_file() and not (folder / RUN_LOCK).exists()
    log = (folder / "log.txt").read_text()
    assert log.count("vireid run in") == 2 and "resuming" in log
