"""File formats: CSV, TSV and XLSX tables read as text, exactly as written.

The first half of ``load_dataset``'s input side (fairseq reads binarized files instead, see
``fairseq/data/indexed_dataset.py``); :mod:`scorelib.data.tables` maps and checks what is read here.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from pathlib import Path
from xml.etree.ElementTree import ParseError

import numpy as np
import pandas as pd

from scorelib.errors import DataError, MissingFileError, OptionError

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


def read_table(path, encoding: str | None = None, fallback: str | None = None,
               sheet: str | None = None) -> pd.DataFrame:
    """Read a CSV, TSV or XLSX table with every cell as a string, exactly as written.

    An ``.xlsx`` is checked against bounds before it is parsed (:func:`scorelib.data.xlsx.check_workbook`);
    ``sheet`` names the sheet to read, needed where the workbook has several.

    Returns:
        pd.DataFrame: string columns, plus ``_row``, the spreadsheet row of each record (header = row 1).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .xlsx")
    if not path.is_file():
        raise MissingFileError(f"{path}: file not found")
    if sheet is not None and suffix != ".xlsx":
        raise OptionError(f"--sheet {sheet!r}: {path} is not a workbook (.xlsx) but {suffix} text, which has no sheets")
    if suffix == ".xlsx":
        from scorelib.data.xlsx import check_workbook  # only for workbooks: the bounds (docs/safety.md)

        name = check_workbook(path, sheet)
        try:
            frame = pd.read_excel(path, sheet_name=name, dtype=str, keep_default_na=False, na_filter=False,
                                  engine="openpyxl")
            header = pd.read_excel(path, sheet_name=name, header=None, nrows=1, dtype=str,
                                   engine="openpyxl").iloc[0].tolist() if frame.shape[1] else []
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile, ParseError) as e:
            raise DataError(f"{path}: cannot read the spreadsheet ({' '.join(str(e).split())})") from None
        if frame.shape[1] == 0:
            raise DataError(f"{path}: the file is empty")
        if (frame == "").to_numpy().any():
            check_formulas(path, name)
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
        header = next(csv.reader(io.StringIO(text), delimiter=SUFFIXES[suffix],
                                 quoting=csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE), [])
    check_header(path, header)
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise DataError(f"{path}: has a header ({', '.join(frame.columns)}) but no rows")
    frame["_row"] = np.arange(2, len(frame) + 2)
    return frame


def check_header(path, header: list) -> None:
    """Refuse a header that names a column twice (pandas would read the second as ``name.1``), naming it."""
    names = [str(h).strip() for h in header]
    twice = sorted({n for n in names if names.count(n) > 1 and n not in ("", "nan")})
    if twice:
        where = "; ".join(f"{n!r} in columns {', '.join(str(i + 1) for i, m in enumerate(names) if m == n)}"
                          for n in twice)
        raise DataError(f"{path}: the header names a column more than once ({where}); give each column its own "
                        f"name")


def check_formulas(path, sheet: str) -> None:
    """Refuse xlsx cells that hold a formula whose value was never computed (read as empty otherwise).

    A workbook written by a program (openpyxl, a script) keeps formulas without their values until a
    spreadsheet program opens and saves it. ``sheet`` is the sheet read (:func:`scorelib.data.xlsx.check_workbook`'s
    answer).
    """
    import openpyxl

    formulas = openpyxl.load_workbook(path, read_only=True)[sheet]
    values = openpyxl.load_workbook(path, read_only=True, data_only=True)[sheet]
    for s in (formulas, values):  # the cells as they are, as pandas reads them: not padded to the sheet's dimension
        s.reset_dimensions()
    found = [(cell.coordinate, cell.value) for row_f, row_v in zip(formulas.iter_rows(), values.iter_rows())
             for cell, value in zip(row_f, row_v) if cell.data_type == "f" and value.value is None]
    if found:
        cell, formula = found[0]
        raise DataError(f"{path}: cell {cell} holds a formula ({formula}) whose value was never computed "
                        f"({len(found)} such cells); open the file in a spreadsheet program and save it (which "
                        f"computes the values), or export it as CSV")


LAYOUTS = {
    "table": {},
    "asap-aes": {  # Kaggle's training_set_rel3.tsv
        "key": "essay_id", "prompt": "essay_set", "text": "essay", "score": "domain1_score", "step": 1.0,
        "encoding_fallback": "latin-1",
        "ranges": {"1": (2, 12), "2": (1, 6), "3": (0, 3), "4": (0, 3), "5": (0, 4), "6": (0, 4), "7": (0, 30),
                   "8": (0, 60)},
    },
    "asap-sas": {  # Kaggle's train.tsv of the short-answer set
        "key": "Id", "prompt": "EssaySet", "text": "EssayText", "score": "Score1", "step": 1.0,
        "encoding_fallback": "latin-1",
        "ranges": {str(i): (0, 3 if i in (1, 2, 5, 6) else 2) for i in range(1, 11)},
    },
}
