"""What lets several processes share one folder safely: unique temporary names, the cleanup of
temporaries left by processes that died, and an advisory folder lock.

A temporary is named `<final name>.partial-<host>-<pid>-<random>`; it is renamed to its final name
only when complete, so nothing half-written ever carries a final name. A temporary is abandoned
when it was made on this host by a process that no longer runs (Ctrl-C, kill, power loss); only
those are removed, never the temporaries of a live process or of another host sharing the folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PARTIAL = ".partial-"
LOCK_FILE = ".lock"


def partial_name(final: str) -> str:
    """A temporary name for `final` that no other process, here or on another host, will pick."""
    return f"{final}{PARTIAL}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def is_abandoned(name: str) -> bool:
    """Whether `name` (made by `partial_name`) belongs to a process of this host that has ended."""
    _, marker, owner = name.rpartition(PARTIAL)
    parts = owner.rsplit("-", 2)
    if not marker or len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    return host == socket.gethostname() and not _running(pid)


def _running(pid: int) -> bool:
    """Whether process `pid` exists; True where that cannot be asked safely (not POSIX)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0: an existence check, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def remove_abandoned(folder: Path, pattern: str = "*") -> list[Path]:
    """Delete the abandoned temporaries among `folder/<pattern><PARTIAL>*`; returns what was removed."""
    removed = []
    for path in folder.glob(f"{pattern}{PARTIAL}*"):
        if is_abandoned(path.name):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def folder_lock(folder: Path, exclusive: bool) -> Iterator[None]:
    """Hold the advisory lock `folder/.lock`: shared for readers, exclusive for writers.

    Readers hold it from checking a file to opening it and writers while they rename or delete, so
    a file a reader has just checked is never deleted before the reader has it open. Without
    `fcntl` (Windows), or in a folder where the lock file can neither be created nor opened, this
    is a no-op: such a folder is read-only to this process, so it deletes nothing there.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            yield
            return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
