"""File formats: CSV, TSV and XLSX tables read as text, exactly as written.

The first half of ``load_dataset``'s input side (fairseq reads binarized files instead, see
``fairseq/data/indexed_dataset.py``); :mod:`scorelib.data.tables` maps and checks what is read here.
"""

from __future__ import annotations

import csv
import io
import logging
import posixpath
import re
import zipfile
from pathlib import Path
from xml.etree.ElementTree import ParseError
from xml.parsers import expat

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

    An ``.xlsx`` is checked against :data:`XLSX_BOUNDS` before it is parsed (:func:`check_workbook`); ``sheet``
    names the sheet to read, needed where the workbook has several.

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
    spreadsheet program opens and saves it. ``sheet`` is the sheet read (:func:`check_workbook`'s answer).
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


# ---------------------------------------------------------------- what an .xlsx may hold before it is parsed
# A workbook is a zip of XML parts; openpyxl and pandas trust it. Each bound is checked before either reads it
# (check_workbook), and a workbook past one is refused in one line naming the file and the bound (docs/safety.md).
MB = 2 ** 20
XLSX_BOUNDS = {
    "bytes": 200 * MB,  # the parts' uncompressed sizes, in all (zipfile reads no more than a part declares)
    "ratio": 100,  # a part over 1 MB: uncompressed size over compressed size (a zip bomb inflates 1000-fold)
    "parts": 10_000,  # files in the zip (a workbook of a few sheets has about a dozen)
    "cells": 5_000_000,  # rows x columns from A1 to the last cell (pandas pads every row to the widest): the
    "rows": 1_048_576, "columns": 16_384,  # sheet's <dimension ref=...> and every cell; Excel's own limits
    "gap": 1 * MB,  # bytes of the sheet's (or shared strings') XML between two elements: a comment, a tag, a text
}
R_ID = "relationships id"  # r:id, its namespace as expat writes it (transitional and strict OOXML both end so)
_CELL = re.compile(r"\$?([A-Za-z]{1,4})\$?([0-9]{1,8})$")


def column_number(letters: str) -> int:
    """``A`` -> 1, ``Z`` -> 26, ``AA`` -> 27, ``XFD`` -> 16384."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def _sizes(count: int) -> str:
    return f"{count / MB:,.1f} MB" if count >= MB else f"{count:,} bytes"


def open_workbook(path) -> zipfile.ZipFile:
    """The workbook as a zip, its parts' sizes checked against :data:`XLSX_BOUNDS` (nothing inflated yet)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise DataError(f"{path}: not an Excel workbook (.xlsx): {e} (a CSV file, an old .xls, a password-protected "
                        f"workbook or a truncated copy named .xlsx?)") from None
    parts = zf.infolist()
    if len(parts) > XLSX_BOUNDS["parts"]:
        zf.close()
        raise DataError(f"{path}: not an Excel workbook (.xlsx) scorelib reads: {len(parts):,} files in the zip, "
                        f"past the bound of {XLSX_BOUNDS['parts']:,}")
    total = sum(i.file_size for i in parts)
    if total > XLSX_BOUNDS["bytes"]:
        zf.close()
        raise DataError(f"{path}: the workbook's parts come to {_sizes(total)} uncompressed, past the bound of "
                        f"{_sizes(XLSX_BOUNDS['bytes'])}; export the table as CSV")
    for i in parts:
        if i.file_size > MB and i.file_size > XLSX_BOUNDS["ratio"] * max(i.compress_size, 1):
            zf.close()
            raise DataError(f"{path}: part {i.filename} inflates {i.file_size / max(i.compress_size, 1):,.0f}-fold "
                            f"({_sizes(i.compress_size)} to {_sizes(i.file_size)}), past the bound of "
                            f"{XLSX_BOUNDS['ratio']}-fold for a part over 1 MB; not a workbook scorelib reads")
    return zf


def scan_part(path, zf: zipfile.ZipFile, part: str, on_start=None) -> None:
    """Parse one XML part in a single pass (expat), calling ``on_start(local_name, attributes)`` per element.

    Refuses a part that is missing, not well-formed, declares a DOCTYPE, or holds more than
    ``XLSX_BOUNDS["gap"]`` bytes between two elements (a comment, a tag or a text that long: the parsers that
    read the part in 16 KB pieces take time quadratic in its length).
    """
    try:
        data = zf.read(part)
    except KeyError:
        raise DataError(f"{path}: not an Excel workbook (.xlsx): it lacks the part {part}") from None
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as e:
        raise DataError(f"{path}: not an Excel workbook (.xlsx): part {part}: {e}") from None
    parser = expat.ParserCreate(namespace_separator=" ")
    last, bound = 0, XLSX_BOUNDS["gap"]

    def gap(at: int) -> None:
        nonlocal last
        if at - last > bound:
            raise DataError(f"{path}: {part} holds {_sizes(at - last)} of XML between two elements (from byte "
                            f"{last:,}), past the bound of {_sizes(bound)}; not a workbook scorelib reads")
        last = at

    def start(name, attrs):
        gap(parser.CurrentByteIndex)
        if on_start is not None:
            on_start(name.rpartition(" ")[2], attrs)

    def doctype(*_):
        raise DataError(f"{path}: {part} declares a DOCTYPE, which no workbook has; not a workbook scorelib reads")

    parser.StartElementHandler = start
    parser.CommentHandler = lambda _: gap(parser.CurrentByteIndex)
    parser.ProcessingInstructionHandler = lambda *_: gap(parser.CurrentByteIndex)
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise DataError(f"{path}: {part} is not well-formed XML ({expat.ErrorString(e.code)}, line {e.lineno}); "
                        f"not a workbook scorelib reads") from None
    gap(len(data))


def _resolve(base: str, target: str) -> str:
    """A relationship's target as a part name: absolute (``/xl/...``) or relative to ``base``'s folder."""
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), target))


def _relationships(path, zf, part: str) -> dict:
    """``{id: (type, part name)}`` of ``part``'s relationships (none where it has no .rels part)."""
    rels_part = posixpath.join(posixpath.dirname(part), "_rels", posixpath.basename(part) + ".rels")
    found = {}
    if rels_part not in zf.NameToInfo:
        return found

    def on_start(name, attrs):
        if name == "Relationship" and "Id" in attrs and "Target" in attrs:
            external = attrs.get("TargetMode") == "External"
            found[attrs["Id"]] = (attrs.get("Type", ""), None if external else _resolve(part, attrs["Target"]))

    scan_part(path, zf, rels_part, on_start)
    return found


def check_workbook(path, sheet: str | None = None) -> str:
    """Check an .xlsx against :data:`XLSX_BOUNDS` before it is parsed; return the name of the sheet to read.

    A workbook of several sheets needs ``sheet`` (``--sheet NAME``); the sheet's declared dimension and every cell
    (rows x columns from A1), and the longest stretch of its XML and of the shared strings between two elements,
    are bounded. Everything past a bound is refused in one line naming the file and the bound.
    """
    with open_workbook(path) as zf:
        main = next((p for kind, p in _relationships(path, zf, "").values() if kind.endswith("/officeDocument")),
                    "xl/workbook.xml")
        if main not in zf.NameToInfo:
            raise DataError(f"{path}: not an Excel workbook (.xlsx): no workbook part ({main}); an OpenDocument or "
                            f"other zip file?")
        rels = _relationships(path, zf, main)
        sheets = []  # (name, part) of the worksheets, in the workbook's order (chart sheets left out)

        def on_sheet(name, attrs):
            if name == "sheet":
                rid = next((v for k, v in attrs.items() if k.endswith(R_ID)), None)
                kind, part = rels.get(rid, ("", None))
                if kind.endswith("/worksheet") and part:
                    sheets.append((attrs.get("name", ""), part))

        scan_part(path, zf, main, on_sheet)
        names = ", ".join(repr(n) for n, _ in sheets)
        if not sheets:
            raise DataError(f"{path}: the workbook holds no worksheet")
        if sheet is None and len(sheets) > 1:
            raise DataError(f"{path}: a workbook of {len(sheets)} sheets ({names}); name the one to read with "
                            f"--sheet NAME, or save that sheet as a workbook of its own")
        if sheet is not None and sheet not in dict(sheets):
            raise OptionError(f"--sheet {sheet!r}: {path} has no such sheet; its sheets: {names}")
        name, part = (sheet, dict(sheets)[sheet]) if sheet is not None else sheets[0]
        scan_sheet(path, zf, name, part)
        strings = [p for kind, p in rels.values() if kind.endswith("/sharedStrings") and p]
        for p in strings[:1]:
            if p in zf.NameToInfo:
                scan_part(path, zf, p)
    return name


def _past(rows: int, columns: int) -> bool:
    b = XLSX_BOUNDS
    return rows > b["rows"] or columns > b["columns"] or rows * columns > b["cells"]


def _extent_error(path, sheet: str, what: str, rows: int, columns: int) -> DataError:
    b = XLSX_BOUNDS
    return DataError(f"{path}: sheet {sheet!r} {what}: {rows:,} rows x {columns:,} columns from A1, past the bound of "
                     f"{b['cells']:,} cells ({b['rows']:,} rows, {b['columns']:,} columns); delete what lies far "
                     f"from the table (or export it as CSV)")


def scan_sheet(path, zf: zipfile.ZipFile, sheet: str, part: str) -> None:
    """Refuse a sheet whose ``<dimension ref=...>`` or whose cells reach past the bounds (:data:`XLSX_BOUNDS`)."""
    at = {"row": 0, "column": 0, "rows": 0, "columns": 0}

    def cell_at(ref: str) -> tuple[int, int]:
        m = _CELL.match(ref or "")
        if m is None:
            raise DataError(f"{path}: sheet {sheet!r}: {ref!r} is not a cell reference; not a workbook scorelib "
                            f"reads")
        return int(m[2]), column_number(m[1])

    def on_start(name, attrs):
        if name == "c":
            ref = attrs.get("r")
            if ref is None:
                at["column"] += 1
            else:
                at["row"], at["column"] = cell_at(ref)
            if at["row"] > at["rows"] or at["column"] > at["columns"]:
                at["rows"], at["columns"] = max(at["rows"], at["row"]), max(at["columns"], at["column"])
                if _past(at["rows"], at["columns"]):
                    raise _extent_error(path, sheet, f"has a cell at {attrs.get('r') or 'row ' + str(at['row'])}",
                                        at["rows"], at["columns"])
        elif name == "row":
            try:
                at["row"] = int(attrs["r"]) if "r" in attrs else at["row"] + 1
            except ValueError:
                raise DataError(f"{path}: sheet {sheet!r}: row number {attrs['r']!r} is not a number; not a "
                                f"workbook scorelib reads") from None
            at["column"] = 0
        elif name == "dimension":
            ref = attrs.get("ref", "")
            rows, columns = cell_at(ref.rpartition(":")[2])
            if _past(rows, columns):
                raise _extent_error(path, sheet, f"declares its dimension {ref}", rows, columns)

    scan_part(path, zf, part, on_start)


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
