"""The .xlsx guard (scorelib.data.xlsx, called by scorelib.data.readers.read_table): bounds checked before openpyxl
parses a workbook.

Crafted workbooks, each a minimal valid one written by openpyxl and then edited with zipfile, are read in a
subprocess under a memory limit (``resource.setrlimit``) and a time limit: each must end in one line naming the
file and the bound, exit status 2, well within both limits. Unbounded, the first took 11 GB in 2.5 minutes and the
second over 7 minutes.
"""
import base64
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scorelib.data.readers import read_table
from scorelib.data.xlsx import XLSX_BOUNDS, check_workbook
from scorelib.errors import DataError, OptionError

SHEET = "xl/worksheets/sheet1.xml"
MEMORY = 2 * 2 ** 30  # bytes of address space for the reading process
SECONDS = 30
READ = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
from scorelib.data.readers import read_table
from scorelib.errors import ScorelibError
try:
    frame = read_table(sys.argv[1])
except ScorelibError as e:
    print(f"error: {{e}}", file=sys.stderr)
    sys.exit(2)
print(frame.shape)
"""


def workbook(path: Path, sheets=("Sheet",), rows=6) -> Path:
    """A small valid workbook: a header and ``rows`` rows on its first sheet, one cell on each other sheet."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = sheets[0]
    book.active.append(["key", "prompt", "text", "score"])
    for i in range(rows):
        book.active.append([f"k{i}", "a", f"answer number {i}", i % 4])
    for name in sheets[1:]:
        book.create_sheet(name).append(["key", "note"])
        book[name].append(["k0", f"a row of {name}"])
    book.save(path)
    return path


def edited(src: Path, dst: Path, part: str, edit) -> Path:
    """``src`` rewritten as ``dst`` with ``edit(bytes) -> bytes`` applied to one part."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info.filename, edit(data) if info.filename == part else data)
    return dst


def far_cell(dimension: bool = True):
    """A cell at XFD1048576, Excel's last (and the sheet's dimension saying so, with ``dimension``)."""
    def edit(xml: bytes) -> bytes:
        if dimension:
            xml, n = re.subn(rb'<dimension ref="[^"]*"\s*/>', b'<dimension ref="A1:XFD1048576"/>', xml)
            assert n == 1
        return xml.replace(b"</sheetData>", b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is>'
                                            b'</c></row></sheetData>')
    return edit


def comment(size: int, pad: bytes = b""):
    """An XML comment of ``size`` bytes at the start of the sheet's data (``pad``: incompressible bytes after it)."""
    return lambda xml: xml.replace(b"<sheetData>", b"<sheetData><!--" + b"x" * size + b"-->" + pad, 1)


def read_limited(path: Path) -> subprocess.CompletedProcess:
    code = READ.format(memory=MEMORY)
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=SECONDS)


@pytest.fixture
def book(tmp_path) -> Path:
    return workbook(tmp_path / "ok.xlsx")


def test_a_small_workbook_reads_in_the_limits(book):
    proc = read_limited(book)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(6, 5)"


@pytest.mark.parametrize("edit, needles", [
    (far_cell(), ("far.xlsx", "sheet 'Sheet' declares its dimension A1:XFD1048576", "1,048,576 rows x 16,384 columns",
                  "past the bound of 5,000,000 cells")),
    (far_cell(dimension=False), ("far.xlsx", "has a cell at XFD1048576", "past the bound of 5,000,000 cells")),
    (comment(60 * 2 ** 20), ("far.xlsx", f"part {SHEET} inflates", "past the bound of 100-fold")),
    # the comment padded with 200 KB of random text, so that the part inflates less than 100-fold
    (comment(12 * 2 ** 20, b"<!--" + base64.b64encode(os.urandom(150_000)) + b"-->"),
     ("far.xlsx", f"{SHEET} holds 12.0 MB of XML between two elements", "past the bound of 1.0 MB")),
], ids=["cell at XFD1048576 and its dimension", "cell at XFD1048576, dimension left small", "60 MB XML comment",
        "12 MB comment, padded to pass the ratio"])
def test_a_crafted_workbook_is_refused_in_one_line_within_memory_and_time_limits(book, tmp_path, edit, needles):
    path = edited(book, tmp_path / "far.xlsx", SHEET, edit)
    assert path.stat().st_size < 400_000  # small files: what they would inflate to is the attack
    proc = read_limited(path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_the_crafted_workbook_is_refused_before_anything_is_inflated(book, tmp_path):
    path = edited(book, tmp_path / "far.xlsx", SHEET, far_cell())
    with pytest.raises(DataError, match="declares its dimension A1:XFD1048576"):
        check_workbook(path)


@pytest.mark.parametrize("content, why", [
    (b"key,prompt,text,score\nk1,a,an answer,1\n", "File is not a zip file"),
    ("truncated", "File is not a zip file"),
    (b"", "File is not a zip file"),
])
def test_a_file_that_is_not_a_workbook_is_one_line(book, tmp_path, content, why):
    path = tmp_path / "data.xlsx"
    path.write_bytes(book.read_bytes()[: book.stat().st_size // 2] if content == "truncated" else content)
    with pytest.raises(DataError) as e:
        read_table(path)
    assert str(e.value).startswith(f"{path}: not an Excel workbook (.xlsx): {why}"), e.value
    assert "\n" not in str(e.value)


def test_a_zip_that_is_no_workbook_is_named(tmp_path):
    path = tmp_path / "data.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("content.xml", "<office:document-content/>")
    with pytest.raises(DataError, match=r"not an Excel workbook \(\.xlsx\): no workbook part \(xl/workbook.xml\)"):
        read_table(path)


def test_the_total_size_and_part_count_are_bounded(book, tmp_path, monkeypatch):
    monkeypatch.setitem(XLSX_BOUNDS, "bytes", 1000)
    with pytest.raises(DataError, match=r"ok.xlsx: the workbook's parts come to [\d,]+ bytes uncompressed, past "
                                        r"the bound of 1,000 bytes"):
        read_table(book)
    monkeypatch.setitem(XLSX_BOUNDS, "bytes", 200 * 2 ** 20)
    monkeypatch.setitem(XLSX_BOUNDS, "parts", 3)
    with pytest.raises(DataError, match=r"files in the zip, past the bound of 3"):
        read_table(book)


def test_cells_are_bounded_as_rows_times_columns(book, tmp_path, monkeypatch):
    monkeypatch.setitem(XLSX_BOUNDS, "cells", 20)  # the book is 7 rows x 4 columns
    with pytest.raises(DataError, match=r"sheet 'Sheet' declares its dimension A1:D7: 7 rows x 4 columns from A1, "
                                        r"past the bound of 20 cells"):
        read_table(book)
    undeclared = edited(book, tmp_path / "nodim.xlsx", SHEET, lambda x: re.sub(rb"<dimension[^>]*/>", b"", x))
    with pytest.raises(DataError, match=r"sheet 'Sheet' has a cell at A6: 6 rows x 4 columns"):
        read_table(undeclared)


def test_a_doctype_and_bad_xml_are_refused(book, tmp_path):
    doctype = edited(book, tmp_path / "dtd.xlsx", SHEET, lambda x: x.replace(
        b"<worksheet", b'<!DOCTYPE worksheet [<!ENTITY a "aaaa">]><worksheet', 1))
    with pytest.raises(DataError, match=f"dtd.xlsx: {SHEET} declares a DOCTYPE"):
        read_table(doctype)
    broken = edited(book, tmp_path / "broken.xlsx", SHEET, lambda x: x.replace(b"</sheetData>", b"</sheetDat>"))
    with pytest.raises(DataError, match=f"broken.xlsx: {SHEET} is not well-formed XML \\(mismatched tag, line"):
        read_table(broken)


def test_a_workbook_of_several_sheets_needs_sheet(tmp_path):
    path = workbook(tmp_path / "two.xlsx", sheets=("scores", "notes"))
    with pytest.raises(DataError, match=r"two.xlsx: a workbook of 2 sheets \('scores', 'notes'\); name the one to "
                                        r"read with --sheet NAME"):
        read_table(path)
    assert read_table(path, sheet="scores")["key"].tolist() == [f"k{i}" for i in range(6)]
    notes = read_table(path, sheet="notes")
    assert notes.columns.tolist() == ["key", "note", "_row"] and notes["note"].tolist() == ["a row of notes"]
    with pytest.raises(OptionError, match=r"--sheet 'Notes': .*two.xlsx has no such sheet; its sheets: 'scores', "
                                          r"'notes'"):
        read_table(path, sheet="Notes")


def test_sheet_is_refused_for_a_text_table(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("key,prompt,text,score\nk1,a,an answer,1\n")
    with pytest.raises(OptionError, match=r"--sheet 'scores': .*data.csv is not a workbook"):
        read_table(path, sheet="scores")


def test_formulas_are_checked_on_the_sheet_read(tmp_path):
    """The formula check reads the named sheet, not the first."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "other"
    book.active.append(["x"])
    sheet = book.create_sheet("data")
    sheet.append(["key", "prompt", "text", "score"])
    sheet.append(["k1", "a", "an answer", "=1+1"])
    sheet.append(["k2", "a", "another", 2])
    book.save(tmp_path / "f.xlsx")
    with pytest.raises(DataError, match="f.xlsx: cell D2 holds a formula"):
        read_table(tmp_path / "f.xlsx", sheet="data")


def test_the_bounds_are_stated_in_the_safety_page():
    text = (Path(__file__).parents[1] / "docs" / "safety.md").read_text(encoding="utf-8")
    b = XLSX_BOUNDS
    for stated in (f"{b['bytes'] // 2 ** 20} MB", f"{b['ratio']}-fold", f"{b['parts']:,} files",
                   f"{b['cells']:,} cells",
                   f"{b['rows']:,} rows", f"{b['columns']:,} columns", f"{b['gap'] // 2 ** 20} MB of XML"):
        assert stated in text, stated


def test_sheet_picks_the_sheet_of_the_data(tmp_path, tokenizer):
    """--sheet reaches read_table for the task's data (train, cv, eval share TextScoringTask's options)."""
    from scorelib.options import parse_args
    from scorelib.tasks.text_scoring import TextScoringTask

    path = workbook(tmp_path / "two.xlsx", sheets=("scores", "notes"), rows=12)
    args = parse_args([str(path), "--sheet", "scores", "--valid-fraction", "0.25", "--test-fraction", "0"])
    task = TextScoringTask.setup_task(args, tokenizer=tokenizer)
    assert sorted(k for f in task.frames.values() for k in f["key"]) == sorted(f"k{i}" for i in range(12))
    with pytest.raises(OptionError, match="--sheet 'Scores': .*two.xlsx has no such sheet"):
        TextScoringTask.setup_task(parse_args([str(path), "--sheet", "Scores"]), tokenizer=tokenizer)


def test_sheet_picks_the_sheet_of_score_input(tmp_path):
    """scorelib-score --input BOOK --sheet NAME: read_input reads that sheet."""
    import argparse

    from scorelib.hub.inputs import read_input

    path = workbook(tmp_path / "two.xlsx", sheets=("scores", "notes"))

    class Scorer:  # what read_input asks of a scorer: the training options and the prompt table
        cfg = {"key_column": None, "prompt_column": None, "text_column": None, "context_column": None}
        table = argparse.Namespace(ids=["a"], ranges={"a": (0, 3)})

    args = argparse.Namespace(input=str(path), output=str(tmp_path / "out.csv"), sheet="scores", encoding=None,
                              prompt=None, key_column=None, text_column=None, prompt_column=None, context_column=None)
    raw, frame = read_input(Scorer(), args)
    assert raw["key"].tolist() == [f"k{i}" for i in range(6)]
