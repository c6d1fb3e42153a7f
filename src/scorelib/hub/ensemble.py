"""Where the checkpoints are: a save dir's ``checkpoint_best.pt``, and a ``scorelib-cv`` dir's ``fold{i}/`` save dirs.

fairseq averages several checkpoints' outputs with ``--path a.pt:b.pt`` (``EnsembleModel`` in
``fairseq/sequence_generator.py``). Here :func:`scorelib.hub.scorer.load` turns a CV dir into one
:class:`~scorelib.hub.scorer.Scorer` of its fold models (their outputs in [0, 1] averaged, their spread
kept as a rough sign of how sure the ensemble is); this module only finds the folds, so that the
scorer, the CLI and ``scorelib-cv`` share one definition of a CV dir.
"""
from __future__ import annotations

import json
from pathlib import Path

from scorelib.errors import CheckpointError, MissingFileError


def is_cv_dir(path) -> bool:
    """True for a ``scorelib-cv`` dir: a folder holding ``fold0/`` and no checkpoint of its own."""
    path = Path(path)
    return path.is_dir() and (path / "fold0").is_dir() and not (path / "checkpoint_best.pt").is_file() \
        and not (path / "checkpoint_last.pt").is_file()


def read_cv_info(path) -> dict | None:
    """``DIR/cv.json`` (``folds``, a count of at least 2, and ``args``, the run's options); None where it is absent.

    Raises:
        CheckpointError: a file that is not such a table (edited or damaged), in one line.
    """
    info = Path(path) / "cv.json"
    if not info.is_file():
        return None
    try:
        value = json.loads(info.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{info}: not a JSON file ({e})") from None
    folds = value.get("folds") if isinstance(value, dict) else None
    if type(folds) is not int or not 2 <= folds <= 1000 or not isinstance(value.get("args"), dict):
        raise CheckpointError(f"{info}: holds no fold count (an integer of at least 2) and options ('folds', "
                              f"'args'); the file was edited or damaged")
    return value


def fold_dirs(path) -> list[Path]:
    """``DIR/fold0 .. DIR/fold{K-1}``, K from ``DIR/cv.json`` (else the ``fold*`` folders found)."""
    path = Path(path)
    info = read_cv_info(path)
    k = info["folds"] if info else len([p for p in path.glob("fold*") if p.is_dir()])
    return [path / f"fold{i}" for i in range(k)]


def resolve_checkpoint(path) -> Path:
    """A save dir -> its ``checkpoint_best.pt`` (else ``checkpoint_last.pt``); a file -> itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
            if (path / name).is_file():
                return path / name
        raise MissingFileError(f"{path}: no checkpoint_best.pt or checkpoint_last.pt in this save dir")
    if not path.exists():
        raise MissingFileError(f"no such save dir or checkpoint: {path}")
    return path


def resolve_fold(fold: Path) -> Path:
    """A fold's checkpoint; a clear error for a cross-validation that has not finished."""
    if not ((fold / "checkpoint_best.pt").is_file() or (fold / "checkpoint_last.pt").is_file()):
        raise CheckpointError(f"{fold}: no checkpoint; this cross-validation has not finished "
                              f"(re-run scorelib-cv with the same options to finish it)")
    return resolve_checkpoint(fold)
