"""File formats: CSV, TSV and XLSX tables read as text, exactly as written.

The first half of ``load_dataset``'s input side (fairseq reads binarized files instead, see
``fairseq/data/indexed_dataset.py``); :mod:`scorelib.tables` maps and checks what is read here.
"""
from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, MissingFileError, OptionError

logger = logging.getLogger(__name__)

COLUMNS = ["key", "prompt", "text", "context", "score"]  # scorelib's own column names, in this order
SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".xlsx": None}


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def decode(raw: bytes, path, encoding: str | None = None, fallback: str | None = None) -> str:
    """Decode a text file: ``encoding`` if given, else UTF-8 (BOM allowed), else ``fallback``."""
    if encoding:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: line {_line_of(raw, e.start)}, byte {e.start}: cannot decode "
                            f"{raw[e.start:e.end]!r} as {encoding}") from None
        except LookupError:
            raise OptionError(f"--encoding {encoding!r}: unknown encoding") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a UTF-16 byte-order mark: latin-1 would only give garbage
            raise DataError(f"{path}: starts with a UTF-16 byte-order mark, so it is not UTF-8; pass "
                            f"--encoding utf-16") from None
        if fallback:
            logger.warning("%s: not valid UTF-8 (line %d); reading it as %s", path, _line_of(raw, e.start), fallback)
            return raw.decode(fallback)
        raise DataError(f"{path}: line {_line_of(raw, e.start)}, byte {e.start}: {raw[e.start:e.end]!r} is not "
                        f"valid UTF-8; pass --encoding (for example --encoding latin-1 or cp1252)") from None


def read_table(path, encoding: str | None = None, fallback: str | None = None) -> pd.DataFrame:
    """Read a CSV, TSV or XLSX table with every cell as a string, exactly as written.

    Returns:
        pd.DataFrame: string columns, plus ``_row``, the spreadsheet row of each record (header = row 1).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .xlsx")
    if not path.is_file():
        raise MissingFileError(f"{path}: file not found")
    if suffix == ".xlsx":
        try:
            frame = pd.read_excel(path, dtype=str, keep_default_na=False, na_filter=False, engine="openpyxl")
        except (ValueError, OSError, KeyError) as e:
            raise DataError(f"{path}: cannot read the spreadsheet ({e})") from None
        if frame.shape[1] == 0:
            raise DataError(f"{path}: the file is empty")
    else:
        raw = path.read_bytes()
        if not raw.strip():
            raise DataError(f"{path}: the file is empty")
        text = decode(raw, path, encoding, fallback)
        try:
            frame = pd.read_csv(io.StringIO(text), sep=SUFFIXES[suffix], dtype=str, keep_default_na=False,
                                na_filter=False, quoting=0 if suffix == ".csv" else 3)
        except pd.errors.ParserError as e:
            ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
            why = (f"line {ragged[2]} has {ragged[3]} fields, the header {ragged[1]}" if ragged
                   else " ".join(str(e).split()))  # one line, whatever pandas says
            raise DataError(f"{path}: cannot parse as {'CSV' if suffix == '.csv' else 'TSV'}: {why}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise DataError(f"{path}: has a header ({', '.join(frame.columns)}) but no rows")
    frame["_row"] = np.arange(2, len(frame) + 2)
    return frame
