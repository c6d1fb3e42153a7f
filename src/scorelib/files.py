"""One atomic writer for every file scorelib leaves behind.

Mirrors ``torch_persistent_save`` in ``fairseq/checkpoint_utils.py``: write to a temporary
file in the same folder, flush it to disk, then rename it over the target, so that a
killed run never leaves a torn checkpoint, result table or history.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from scorelib.errors import OptionError

PAUSE_ENV = "SCORELIB_TEST_PAUSE_IN_SAVE"  # tests only: seconds to sleep between writing and renaming


def atomic_write(path, write, pause: bool = False) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    Args:
        path (str | os.PathLike): the target file; its folder must exist.
        write (callable): writes the whole file to the path it is given (a ``str``).
        pause (bool): tests only: sleep ``$SCORELIB_TEST_PAUSE_IN_SAVE`` seconds before the rename.

    Returns:
        pathlib.Path: ``path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; these are ordinary files
        if pause and float(os.environ.get(PAUSE_ENV, "0") or 0):
            time.sleep(float(os.environ[PAUSE_ENV]))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete temporary files that an interrupted :func:`atomic_write` left in ``folder``."""
    stale = sorted(Path(folder).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def check_writable(path, what: str, hint: str = "") -> None:
    """Refuse, before anything is written, a folder (made or to be made) that cannot be written to.

    Checks the folder, or its nearest existing parent, with ``os.access`` (which sees a read-only file system and
    an immutable folder even for root); files in the way are left to the callers' own checks.

    Args:
        path (str | Path): the folder.
        what (str): how the user named it (``"--save-dir runs/a"``), for the message.
        hint (str): what to do instead, appended to the message.
    """
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        where = "it is" if existing == Path(path).absolute() else f"{existing} is"
        raise OptionError(f"{what}: cannot write there ({where} read-only){hint}")


def results_dir(results_path, save_dir) -> Path:
    """``--results-path``, else ``SAVE_DIR/results``; a clear error where that path is a file or read-only."""
    path = Path(results_path) if results_path else Path(save_dir) / "results"
    if path.exists() and not path.is_dir():
        raise OptionError(f"--results-path {path}: is a file, not a folder")
    check_writable(path, f"{'--results-path ' if results_path else ''}{path}",
                   "; write the result files elsewhere with --results-path DIR")
    return path
