"""What an ``.xlsx`` may hold before openpyxl and pandas parse it: bounds checked first, and refused in one line.

A workbook is a zip of XML parts, and a few kilobytes of it can inflate to gigabytes (a cell at XFD1048576: pandas
pads every row to the widest) or parse for minutes (a 60 MB comment: parsers that read a part in 16 KB pieces take
time quadratic in a token's length). :func:`check_workbook` reads each part it checks once, with expat, before
:func:`scorelib.data.readers.read_table` lets pandas read the table. The bounds are stated in docs/safety.md.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from xml.parsers import expat

from scorelib.errors import DataError, OptionError

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
