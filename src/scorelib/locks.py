"""One run at a time in a folder: a lock held for the whole run, on a save dir, a CV dir or the data cache.

A run takes ``FOLDER/.scorelib.lock`` with the operating system's advisory lock (``flock``) and writes who holds it
(process id, host, command, start time) into the file. A second run on the same folder is refused in one line that
names that process. The system drops the lock when its process ends, however it ends, so a lock is never "stuck";
the file's text is cleared on a clean release, so text found there by the next run means the holder was killed,
and the next run says so as it takes the folder over. Where the file system cannot lock (some network mounts), the
run goes on with a warning. Within one process the lock is re-entrant: a command that holds a CV dir may open the
same folder again.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from scorelib.errors import ScorelibError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not kept apart there
    fcntl = None

logger = logging.getLogger(__name__)

LOCK_NAME = ".scorelib.lock"
_held: dict[str, list] = {}  # resolved folder -> [file descriptor, depth]: this process's locks


class FolderInUseError(ScorelibError, RuntimeError):
    """Another running process holds the folder's lock; the message names it."""


def holder_text() -> str:
    """Who holds a lock: this process, as one line of JSON."""
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else sys.executable
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command[:300],
                       "started": time.strftime("%Y-%m-%d %H:%M:%S")})


def describe(text: str) -> str:
    """'process 123 on host (scorelib-train data, started 2026-12-07 05:00:00)' from a lock file's text."""
    try:
        info = json.loads(text)
        return (f"process {info['pid']} on {info['host']} ({info['command']}, started {info['started']})")
    except (ValueError, KeyError, TypeError):
        return "another process"


def read_text(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace").strip()


def acquire(folder, what: str) -> bool:
    """Take ``folder``'s lock for this process (``what`` names it in messages: ``"--save-dir runs/a"``).

    Returns:
        bool: True where this call took the lock, False where this process already held it (re-entrant).
    Raises:
        FolderInUseError: another live process holds it.
    """
    key = str(Path(folder).resolve())
    if key in _held:
        _held[key][1] += 1
        return False
    if fcntl is None:
        return False
    path = Path(key) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = describe(read_text(fd))
        os.close(fd)
        raise FolderInUseError(f"{what}: in use by {holder}; wait for it to finish, or choose another "
                               f"folder") from None
    except OSError as e:  # the file system has no locks (some network mounts): go on, unprotected
        os.close(fd)
        logger.warning("%s: cannot lock %s (%s); make sure no other run uses this folder", what, path, e.strerror)
        return False
    left = read_text(fd)
    if left:
        logger.warning("%s: taking over the lock left by %s, which is no longer running", what, describe(left))
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder_text().encode("utf-8") + b"\n", 0)
    _held[key] = [fd, 1]
    return True


def check_free(folder, what: str) -> None:
    """Refuse a folder whose lock another live process holds, without taking the lock or writing anything (a run
    refused later for another reason leaves the folder as it was); :func:`acquire` takes it where the run writes.

    Raises:
        FolderInUseError: as :func:`acquire`.
    """
    path = Path(folder) / LOCK_NAME
    if fcntl is None or str(Path(folder).resolve()) in _held or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # dropped with the descriptor, below
    except BlockingIOError:
        raise FolderInUseError(f"{what}: in use by {describe(read_text(fd))}; wait for it to finish, or choose "
                               f"another folder") from None
    except OSError:
        pass
    finally:
        os.close(fd)


def release(folder) -> None:
    """Give back this process's lock on ``folder`` (the outermost release clears the file's text and unlocks)."""
    key = str(Path(folder).resolve())
    if key not in _held:
        return
    _held[key][1] -= 1
    if _held[key][1] > 0:
        return
    fd = _held.pop(key)[0]
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing drops the flock


@contextmanager
def folder_lock(folder, what: str):
    """``with folder_lock(save_dir, "--save-dir x"):`` the whole run; the folder must exist."""
    acquire(folder, what)
    try:
        yield
    finally:
        release(folder)
