"""A data set's name where the commands take DATA: ``scorelib-train mohler --save-dir runs/m``.

No fairseq counterpart (fairseq-train reads the folder that fairseq-preprocess wrote). ``scorelib-train``,
``scorelib-cv``, ``scorelib-eval``, ``scorelib-report`` and ``scorelib-probe`` take ``mohler``, ``clear`` or
``ellipse`` as DATA where no file or folder of that name exists (a path always wins); the last two read the table
the save dir was trained on where it keeps one (:func:`table_for`). The command layer resolves it, since the core imports no extra: the options
the user left at their defaults take the set's (``--score-range``, ``--score-step``, the traits of
``--score-column``), the set is loaded by :func:`scorelib.datasets.load_dataset` (a local copy, the cache or a
pinned download), and its table is written to ``SAVE_DIR/data/NAME.csv`` (a temporary folder for
``scorelib-eval``), which the run then reads as any table, so that the save dir keeps the data it was trained on.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from scorelib.datasets import NAMES, load_dataset, sets
from scorelib.errors import OptionError
from scorelib.writers import atomic_write

logger = logging.getLogger(__name__)

DATA_HELP = f"; or a data set's name: {', '.join(NAMES)} (scorelib.datasets: a local copy in $SCORELIB_DATA, the " \
            f"cache, else a download), where no such path exists"


def describe_data(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the data set names to DATA's help."""
    for action in parser._actions:
        if action.dest == "data" and DATA_HELP not in (action.help or ""):
            action.help = (action.help or "") + DATA_HELP
    return parser


def dataset_name(data) -> str | None:
    """``data`` where it names a data set and no file or folder of that name exists, else None."""
    if data is None or Path(data).exists():
        return None
    return data if data in NAMES else None


def fill_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The data set DATA names (or None); the options left at their defaults take the set's."""
    name = dataset_name(getattr(args, "data", None))
    if name:
        for dest, value in sets.SETS[name].options.items():
            if getattr(args, dest, None) == parser.get_default(dest):
                setattr(args, dest, value)
    return name


def write_dataset(name: str, folder: Path) -> str:
    """Load the set and write its table to ``folder/NAME.csv`` (atomically); returns the path."""
    table = load_dataset(name).table
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = atomic_write(folder / f"{name}.csv", lambda tmp: table.to_csv(tmp, index=False))
    except OSError as e:
        raise OptionError(f"data set {name!r}: cannot write its table to {folder} ({e.strerror or e}); choose a "
                          f"--save-dir you can write to") from None
    logger.info("data set %r: %d rows, as %s", name, len(table), path)
    return str(path)


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace, check, folder=None) -> argparse.Namespace:
    """Parse-time work of a command whose DATA may be a data set: the set's defaults, the command's own ``check``
    (``options.check_args``), then the set's table in ``folder`` (default: ``SAVE_DIR/data``)."""
    name = fill_defaults(parser, args)
    args = check(parser, args)
    if name:
        args.data = write_dataset(name, Path(folder or Path(args.save_dir) / "data"))
    return args


def table_for(data, save_dir, folder) -> str | None:
    """DATA of a command that reads what a save dir wrote (``scorelib-report``, ``scorelib-probe``): a data set's
    name is the table the save dir was trained on (``SAVE_DIR/data/NAME.csv``, so that the rows are the same and
    split the same) where it keeps one, else the set's table written to ``folder``; any other DATA as given."""
    name = dataset_name(data)
    if name is None:
        return data
    kept = Path(save_dir) / "data" / f"{name}.csv"
    if kept.is_file():
        logger.info("data set %r: the table %s was trained on (%s)", name, save_dir, kept)
        return str(kept)
    return write_dataset(name, Path(folder))
