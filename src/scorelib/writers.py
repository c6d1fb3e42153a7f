"""Every file scorelib leaves behind goes through here: one atomic writer, and the one writer of tables (CSV, TSV,
XLSX or JSON Lines, read back exactly).

:func:`atomic_write` mirrors ``torch_persistent_save`` in ``fairseq/checkpoint_utils.py``: write to a temporary
file in the same folder, flush it to disk, then rename it over the target, so that a killed run never leaves a
torn checkpoint, result table or history, and an existing file stays as it was. fairseq writes binary files and
logs only; the tables here are the result tables a teacher opens. The format follows the file's extension:

- ``.csv``: the csv module's default dialect (``QUOTE_MINIMAL``, lines ending in ``\\r\\n``), so a field
  holding a comma, a quote, ``\\r`` or ``\\n`` is quoted and reads back whole.
- ``.tsv``: one line per row, fields as they are, as :func:`scorelib.data.readers.read_table` reads a TSV
  (no quoting); a cell holding a tab, ``\\r`` or ``\\n`` cannot be written so and is refused, naming it.
- ``.xlsx``: every non-numeric cell (header and keys included) is a text cell, never a formula;
  characters XML cannot carry become U+FFFD and texts longer than Excel's 32,767 characters are cut,
  both counted and logged; ``\\r`` is kept (stored as ``&#13;``).
- ``.jsonl``: one JSON object per row; NaN and inf become ``null``.
"""
from __future__ import annotations

import errno
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.errors import DataError, DiskFullError, MissingFileError, OptionError

logger = logging.getLogger(__name__)

FORMATS = (".csv", ".tsv", ".xlsx", ".jsonl")
XLSX_MAX_CHARS = 32767  # Excel's limit for one cell
# characters XML 1.0 cannot carry (openpyxl refuses them): C0 controls but tab/LF/CR,
# lone surrogates and the two non-characters U+FFFE / U+FFFF
ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
WIDTHS = {"text": 80, "key": 18, "prompt": 14}


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
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if write_failed(e):
            free, kept = shutil.disk_usage(path.parent).free, "the file as it was is kept" if path.exists() else \
                "nothing was written"
            raise DiskFullError(f"{path}: cannot write it ({write_failed(e)}; {free / 2 ** 20:,.1f} MiB free in "
                                f"{path.parent}); {kept}: free some space and run again") from None
        raise
    return path


def write_failed(e: BaseException) -> str | None:
    """Why a write failed for want of space (``OSError`` ENOSPC or EDQUOT; torch's writer, which reports its failed
    write as a RuntimeError), else None."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full" if e.errno == errno.ENOSPC else "the disk quota is used up"
    if isinstance(e, RuntimeError) and any(m in str(e) for m in ("PytorchStreamWriter failed", "file write failed")):
        return "torch could not write it: is the disk full?"
    return None


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


def check_inputs_kept(inputs, places: list, flag: str) -> None:
    """Refuse, before anything is written, a run that would write over one of its own input files.

    Args:
        inputs (iterable of str | Path): the files the run reads (those that do not exist are skipped).
        places (list of (folder, patterns)): where the run writes: in ``folder``, the names matching ``patterns``
            (``fnmatch``; a folder's name covers what it holds).
        flag (str): the option that named the folder, for the message (``"--save-dir data"``).
    """
    from fnmatch import fnmatch

    for src in map(Path, inputs):
        real = src.resolve() if src.is_file() else None
        for folder, patterns in places:
            top = Path(folder).resolve()
            if real is not None and real.is_relative_to(top) and real != top and \
                    any(fnmatch(real.relative_to(top).parts[0], p) for p in patterns):
                raise OptionError(f"{flag}: the run would write over its input {src}; choose another folder "
                                  f"(scorelib never writes over an input file)")


def results_dir(results_path, save_dir) -> Path:
    """``--results-path``, else ``SAVE_DIR/results``; a clear error where that path is a file or read-only."""
    path = Path(results_path) if results_path else Path(save_dir) / "results"
    if path.exists() and not path.is_dir():
        raise OptionError(f"--results-path {path}: is a file, not a folder")
    check_writable(path, f"{'--results-path ' if results_path else ''}{path}",
                   "; write the result files elsewhere with --results-path DIR")
    return path


def missing(value) -> bool:
    """None, NaN or pandas' NA: an empty cell."""
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))


def jsonable(obj):
    """Numpy scalars -> Python numbers, NaN/inf/NA -> None, recursively."""
    if obj is pd.NA:
        return None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def table_format(path, option: str | None = None) -> str:
    """The format of ``path`` by its extension (``.csv``, ``.tsv``, ``.xlsx``, ``.jsonl``); others are refused.

    Raises:
        OptionError: another extension, or ``path`` is a folder; the message names ``option`` and the path.
    """
    path = Path(path)
    where = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise OptionError(f"{where}: is a folder; name a file ending in {', '.join(FORMATS)}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise OptionError(f"{where}: cannot write {suffix or 'a file without an extension'}; name a file ending "
                          f"in {', '.join(FORMATS)}")
    return suffix


def write_table(frame: pd.DataFrame, path, option: str | None = None, sheet: str = "results") -> dict:
    """Write ``frame`` (no index) to ``path`` atomically, in the format its extension names.

    Args:
        frame (pd.DataFrame): numeric columns are written as numbers, every other column as text.
        path (str | os.PathLike): a ``.csv``, ``.tsv``, ``.xlsx`` or ``.jsonl`` file; its folder must exist.
        option (str, optional): the flag that named ``path`` (e.g. ``"--output"``), for error messages.
        sheet (str): the xlsx sheet's title.

    Returns:
        dict: ``replaced_control_chars`` and ``truncated_texts`` (non-zero for an xlsx only).

    Raises:
        OptionError: an unknown extension or a folder. MissingFileError: the folder does not exist.
        DataError: a TSV cell holding a tab or line break. Nothing is written then.
    """
    path = Path(path)
    suffix = table_format(path, option)
    if not path.parent.is_dir():
        raise MissingFileError(f"{option + ' ' if option else ''}{path}: folder {path.parent} does not exist")
    counts = {"replaced_control_chars": 0, "truncated_texts": 0}
    if suffix == ".tsv":
        lines = tsv_lines(frame, path)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes("".join(lines).encode("utf-8")))
    elif suffix == ".csv":
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\r\n"))
    elif suffix == ".jsonl":
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(jsonl_text(frame).encode("utf-8")))
    else:
        atomic_write(path, lambda tmp: counts.update(write_xlsx(frame, tmp, sheet)))
    if counts["replaced_control_chars"] or counts["truncated_texts"]:
        logger.warning("%s: %d character(s) Excel cannot hold replaced by U+FFFD, %d text(s) cut at %s characters "
                       "(Excel's limit for a cell)", path, counts["replaced_control_chars"], counts["truncated_texts"],
                       f"{XLSX_MAX_CHARS:,}")
    return counts


def write_json(obj, path) -> Path:
    """Write ``obj`` as indented JSON (NaN/inf as ``null``, numpy values as numbers), atomically."""
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(text.encode("utf-8")))


def is_number_column(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def cell_text(value) -> str:
    """A cell as a TSV field: numbers as Python writes them (``repr`` of a float), NaN and None empty."""
    if missing(value) or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def tsv_lines(frame: pd.DataFrame, path) -> list[str]:
    """The TSV's lines; a cell that holds a tab, ``\\r`` or ``\\n`` is refused (TSV has no quoting)."""
    rows = [list(map(str, frame.columns))] + [[cell_text(v) for v in row]
                                              for row in frame.itertuples(index=False, name=None)]
    for r, row in enumerate(rows, start=1):
        for name, field in zip(frame.columns, row):
            if any(c in field for c in "\t\r\n"):
                raise DataError(f"{path}: row {r}, column {name!r}: holds a tab or a line break, which a TSV cannot "
                                f"carry; write a .csv, .xlsx or .jsonl file instead")
    return ["\t".join(row) + "\n" for row in rows]


def jsonl_text(frame: pd.DataFrame) -> str:
    """One JSON object per line; U+0085/U+2028/U+2029 escaped too, so that no line reader splits a row."""
    rows = (json.dumps(jsonable(dict(zip(map(str, frame.columns), row))), ensure_ascii=False, allow_nan=False)
            for row in frame.itertuples(index=False, name=None))
    escapes = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
    return "".join(re.sub("[\x85\u2028\u2029]", lambda m: escapes[m.group(0)], line) + "\n" for line in rows)


def xlsx_text(value) -> tuple[str | None, int, bool]:
    """A text cell's value: ``(text, characters replaced, cut)``; None, NaN: an empty cell."""
    if missing(value):
        return None, 0, False
    text, replaced = ILLEGAL_XML.subn("\ufffd", str(value))
    return text[:XLSX_MAX_CHARS], replaced, len(text) > XLSX_MAX_CHARS


def write_xlsx(frame: pd.DataFrame, path, sheet: str = "results") -> dict:
    """Write ``frame`` as a workbook: text cells typed as strings, numbers with two decimals shown.

    Numbers keep their full value and show two decimals (number format ``0.00``, the notes' ``%8.2f``;
    ``0`` for integers and the ``fold`` column). Returns the counts of :func:`write_table`.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    numeric = [is_number_column(frame.iloc[:, i]) for i in range(frame.shape[1])]
    counts = {"replaced_control_chars": 0, "truncated_texts": 0}

    def put(row: int, col: int, value, as_text: bool, fmt: str = "0.00"):
        cell = ws.cell(row=row, column=col)
        if as_text:
            value, replaced, cut = xlsx_text(value)
            counts["replaced_control_chars"] += replaced
            counts["truncated_texts"] += cut
            cell.value = value
            if value is not None:
                cell.data_type = "s"  # '=1+1' stays text: openpyxl would otherwise mark it a formula
        else:
            cell.value = None if missing(value) or not math.isfinite(value) else float(value)
            cell.number_format = fmt
        return cell

    for c, name in enumerate(frame.columns, start=1):
        put(1, c, str(name), True).font = Font(bold=True)
        ws.column_dimensions[ws.cell(row=1, column=c).column_letter].width = WIDTHS.get(str(name), 12)
    ws.freeze_panes = "A2"
    formats = ["0" if name == "fold" or pd.api.types.is_integer_dtype(frame.iloc[:, i]) else "0.00"
               for i, name in enumerate(frame.columns)]
    for r, row in enumerate(frame.itertuples(index=False, name=None), start=2):
        for c, value in enumerate(row, start=1):
            put(r, c, value, not numeric[c - 1], formats[c - 1])
    buffer = io.BytesIO()
    wb.save(buffer)
    keep_carriage_returns(buffer.getvalue(), path)
    return counts


def keep_carriage_returns(workbook: bytes, path) -> None:
    """Copy the workbook to ``path`` with each ``\\r`` of its sheets written ``&#13;``: an XML reader turns a
    raw ``\\r`` into ``\\n``, a character reference it keeps."""
    with zipfile.ZipFile(io.BytesIO(workbook)) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.startswith("xl/worksheets/"):
                data = data.replace(b"\r", b"&#13;")
            dst.writestr(item, data)
