"""One live writer per run folder: an exclusive advisory lock on the file `<run>/.vireid-run.lock`.

Every command that writes into a run folder holds the lock while it works: `train` (and `train
--resume`) and `demo` for the whole run, under torchrun rank 0 for the job; `evaluate`, `extract`,
`export`, `search` and `report` when one of their outputs lies inside a run folder. A second writer
is refused at once (`RunFolderBusyError`, exit status 2) with the folder, the process and host
holding it and the two ways on. Readers (`report` reading runs, `match --run`) never take it, so
they neither wait nor make a run wait.

The lock is `flock` (Linux and macOS): the operating system drops it when its process ends in any
way, `kill -9` included, so a killed run's folder is free at once and `--resume` continues it. After
locking, the holder writes its pid, host and command into the file for the refusal message; the
file is only ever read for that, never trusted as the lock itself. On a file system without locks
(some network file systems: ENOLCK, EOPNOTSUPP, ENOSYS) a warning is printed once and the command
goes on unprotected.

Why the lock file lives inside the run folder: the folder's contents stay its own (no `runs/x.lock`
beside every run), and copying or moving a run folder moves nothing that could block. The folder
must exist to hold the file, so locking creates it (and missing parents), and the lock must be taken
before the checks it protects (`check_reuse`: two processes both seeing an empty folder). When the
run is then refused by a later check, releasing the lock removes the lock file and the folders that
locking created, provided nothing else was written there; a run that cannot start still leaves
nothing behind. A finished run's folder keeps no lock file either: the holder deletes the file
before it lets go of the lock, and a process that locked a file which was meanwhile deleted or
replaced notices (the path no longer names the file it holds) and tries again.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from vireid.engine.reuse import RUN_LOCK, RunFolderError
from vireid.errors import OutputError

# errno values of a file system that has no (working) file locks
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.ENOSYS}
_held: dict[str, "RunLock"] = {}  # folder (real path) -> the lock this process holds on it
_warned: set[str] = set()


class RunFolderBusyError(RunFolderError):
    """Another live process writes into the run folder."""


class RunLock:
    """This process's hold on one run folder; re-entrant (the demo holds it around `train`)."""

    def __init__(self, folder: Path, fd: int | None, created: list[Path]) -> None:
        self.folder, self.fd, self.created, self.depth = folder, fd, created, 1

    @property
    def file(self) -> Path:
        return self.folder / RUN_LOCK

    def release(self) -> None:
        """Let go (the outermost release only): delete the lock file while still holding it, remove the
        folders locking created when they hold nothing, then close, which drops the lock."""
        self.depth -= 1
        if self.depth > 0:
            return
        _held.pop(_key(self.folder), None)
        if self.fd is not None and _names_our_file(self.file, self.fd):
            self.file.unlink(missing_ok=True)
        for folder in reversed(self.created):
            try:
                folder.rmdir()  # only an empty folder: a run that wrote something keeps it
            except OSError:
                break
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _key(folder: Path) -> str:
    return os.path.realpath(folder)


def _names_our_file(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd` (not deleted, not replaced by another)."""
    try:
        here, ours = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (ours.st_dev, ours.st_ino)


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist yet, outermost first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _holder(fd: int) -> str:
    """Who holds the lock, from what the holder wrote into the file (it may not have written yet)."""
    for _ in range(20):
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
        pid, _, rest = text.partition(" ")
        host, _, command = rest.partition(" ")
        if pid.isdigit() and host:
            return f"{command or 'another process'} (process {pid} on {host})"
        time.sleep(0.025)
    return "another process, which has just started"


def acquire_run_folder(folder: str | Path, what: str = "--output", command: str = "a vireid run") -> RunLock:
    """Lock the run folder `folder` for this process (creating it if needed), or raise
    RunFolderBusyError naming who holds it. `what` is the option choosing the folder and `command` what
    this process is, for the messages. A folder this process already holds is held once more."""
    folder = Path(folder).expanduser()
    held = _held.get(_key(folder))
    if held is not None:
        held.depth += 1
        return held
    created = _missing_folders(folder)
    try:
        fd = _lock(folder, what, command)
    except BaseException:
        for made in reversed(created):
            try:
                made.rmdir()
            except OSError:
                break
        raise
    lock = RunLock(folder, fd, created)
    _held[_key(folder)] = lock
    return lock


def _lock(folder: Path, what: str, command: str) -> int | None:
    """The open, locked lock file of `folder` (None where the file system has no locks)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks to take
        _warn_once(folder, "this system has no fcntl file locks")
        return None
    path = folder / RUN_LOCK
    for _ in range(50):  # each retry means another process removed or replaced the file meanwhile
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue  # a refused run removed the folder between the two calls
        except OSError as err:
            raise OutputError(f"{what}: cannot create the run folder {folder} or its lock file "
                              f"({err.strerror or err}); choose a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunFolderBusyError(f"run folder {folder} is in use by {holder}; wait for it to finish, or "
                                     f"choose another {what}") from None
        except OSError as err:
            if err.errno in NO_LOCKS:
                _warn_once(folder, f"its file system has no file locks ({err.strerror})")
                return fd
            os.close(fd)
            raise OutputError(f"{what}: cannot lock {path} ({err.strerror or err})") from None
        if not _names_our_file(path, fd):
            os.close(fd)  # deleted by a holder that finished, or replaced: lock the file now there
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {command}\n".encode(), 0)
        return fd
    raise OutputError(f"{what}: cannot lock {path}: other processes keep replacing it")


def _warn_once(folder: Path, why: str) -> None:
    if why not in _warned:
        _warned.add(why)
        print(f"vireid: warning: cannot lock the run folder {folder}: {why}; nothing stops a second run "
              "from writing into it at the same time", file=sys.stderr)


@contextmanager
def hold_run_folder(folder: str | Path, what: str = "--output", command: str = "a vireid run") -> Iterator[RunLock]:
    """`acquire_run_folder` for the duration of a `with` block."""
    lock = acquire_run_folder(folder, what, command)
    try:
        yield lock
    finally:
        lock.release()


def run_folder_of(path: str | Path) -> Path | None:
    """The run folder `path` lies in (a folder holding config.yaml and log.txt, or a run's lock file),
    searched from `path` itself upwards; None outside any run folder."""
    here = Path(path).expanduser().absolute()
    for folder in (here, *here.parents):
        if (folder / RUN_LOCK).exists() or ((folder / "config.yaml").is_file() and (folder / "log.txt").is_file()):
            return folder
    return None


@contextmanager
def hold_run_folders_of(outputs: Iterable[tuple[str | Path | None, str]], command: str) -> Iterator[None]:
    """Hold the run folder of every output (path, option naming it) that lies inside one, so a command
    writing there never writes beside a live run; outputs elsewhere (or None) need nothing."""
    with ExitStack() as stack:
        for path, what in outputs:
            folder = run_folder_of(path) if path else None
            if folder is not None:
                stack.enter_context(hold_run_folder(folder, what, command))
        yield
