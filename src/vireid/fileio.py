"""Writing files so that a reader never sees half of one, and sharing folders between processes.

Every file vireid writes for later use (checkpoints, configs, metrics summaries, caches, indexes)
goes through `atomic_write`: a temporary named `<final name>.partial-<host>-<pid>-<random>` in the
same folder, renamed to its final name only when complete, so an interrupted process leaves the
previous file or none, never a truncated one. Temporaries of processes that died on this host are
found by that name and removed (`remove_abandoned`); an advisory folder lock (`folder_lock`) lets
readers check and open a shared file while writers replace or delete others. JSON is written
strictly (no NaN/Infinity tokens, which are not JSON): non-finite numbers become null.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np

from vireid.errors import OutputError


def atomic_write(path: str | Path, data: bytes | str | Callable[[IO[bytes]], None]) -> Path:
    """Write `data` (bytes, text as UTF-8, or a function writing to a binary handle) to `path` atomically.

    The temporary file has a unique name in the target folder, so concurrent writers never share it;
    the last rename wins. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / partial_name(path.name)
    try:
        with open(tmp, "xb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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


def check_writable_folder(path: str | Path, what: str) -> Path:
    """Refuse a folder that cannot be created or written, before any work; creates nothing.

    `what` names the output for the message (e.g. "--output (setting 'output')"). The folder may not
    exist yet: then its nearest existing ancestor must be a writable folder. Writability is probed by
    creating and deleting a temporary file, which also catches read-only file systems and root.
    """
    if not str(path).strip():
        raise OutputError(f"{what} is empty; give a folder")
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what}: {path} exists and is not a folder; choose another path")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{what}: cannot create {path} because {existing} is a file, not a folder; "
                          "choose another path")
    try:
        probe = existing / partial_name(".vireid-write-check")
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as err:
        raise OutputError(f"{what}: cannot write in {existing} ({err.strerror or err}); choose a writable "
                          "folder") from None
    return path


def check_writable_file(path: str | Path, what: str) -> Path:
    """Refuse an output file that cannot be written (a folder in its place, an unwritable parent)."""
    if not str(path).strip():
        raise OutputError(f"{what} is empty; give a file name")
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{what}: {path} is a folder; give a file name")
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputError(f"{what}: cannot write {path} because {path.parent} is a file, not a folder; "
                          "choose another path")
    check_writable_folder(path.parent, what)
    return path


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
