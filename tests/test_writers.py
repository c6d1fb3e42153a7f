"""Every table scorelib writes (scorelib.writers) reads back exactly, holds no formula, and is written atomically.

The property test writes random texts (CR, LF, CRLF, quotes, tabs, control characters, emoji) through each
format and reads every file back with the reader scorelib itself uses on its inputs.
"""
import json
import logging
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorelib.cli.score import cli_main as score_cli
from scorelib.cv.out_of_fold import write_fold_data
from scorelib.errors import DataError, OptionError
from scorelib.data.prompts import PromptTable
from scorelib.data.readers import read_table
from scorelib.results import frame_metrics, results_frame, write_results
from scorelib.writers import ILLEGAL_XML, XLSX_MAX_CHARS, write_table

FORMULAS = ["=1+1", "=KEY()", '=HYPERLINK("http://x.example","click")', "==", "+1", "-2", "@SUM(A1)", "\t=1"]
# texts made of the characters that break writers: line ends, quotes, separators, controls (no NUL), emoji
PIECES = st.sampled_from(["\r", "\n", "\r\n", '"', "'", ",", "\t", ";", " ", "=", "+", "-", "@", "\x07", "\x1b",
                          "\x0b", "\x0c", "\x1f", "\x7f", "\x85", "\u2028", "\ufeff", "é", "😀", "👩‍👩‍👧", "a", "_x000D_"])
TEXTS = st.lists(st.one_of(PIECES, st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                           max_size=5)), max_size=8).map("".join)


def frame_of(texts) -> pd.DataFrame:
    return pd.DataFrame({"key": [f"k{i}" for i in range(len(texts))], "prompt": "p1", "text": list(texts),
                         "pred": np.linspace(0.0, 3.0, len(texts))})


def sheet_xml(path) -> bytes:
    with zipfile.ZipFile(path) as z:
        return b"".join(z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/"))


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return [json.loads(line) for line in f]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXTS, min_size=1, max_size=6))
def test_random_texts_read_back_equal_from_every_format(texts, tmp_path):
    frame = frame_of(texts)
    for suffix in (".csv", ".xlsx", ".jsonl", ".tsv"):
        path = tmp_path / f"out{suffix}"
        path.unlink(missing_ok=True)
        if suffix == ".tsv" and any(c in t for t in texts for c in "\t\r\n"):
            with pytest.raises(DataError, match=r"out\.tsv: row \d+, column 'text': holds a tab or a line break"):
                write_table(frame, path)
            assert not path.exists() and not list(tmp_path.glob(".*.tmp"))
            continue
        counts = write_table(frame, path)
        if suffix == ".jsonl":
            rows = read_jsonl(path)
            assert [r["text"] for r in rows] == texts and [r["key"] for r in rows] == list(frame["key"])
            continue
        back = read_table(path)
        expected = [ILLEGAL_XML.sub("\ufffd", t) for t in texts] if suffix == ".xlsx" else texts
        assert back["text"].tolist() == expected, suffix
        assert back["key"].tolist() == frame["key"].tolist() and len(back) == len(frame), suffix
        assert np.allclose(back["pred"].astype(float), frame["pred"]), suffix
        if suffix == ".xlsx":
            assert counts["replaced_control_chars"] == sum(len(ILLEGAL_XML.findall(t)) for t in texts)
            assert b"<f>" not in sheet_xml(path) and b"<f " not in sheet_xml(path)


def test_xlsx_has_text_cells_only_keys_and_header_included(tmp_path):
    from openpyxl import load_workbook

    frame = pd.DataFrame({"key": FORMULAS, "prompt": FORMULAS[::-1], "text": FORMULAS, "pred": 1.5, "fold": 0})
    frame = frame.rename(columns={"prompt": "=HEADER()"})
    path = tmp_path / "out.xlsx"
    write_table(frame, path)
    assert b"<f>" not in sheet_xml(path) and b"<f " not in sheet_xml(path)
    ws = load_workbook(path).active
    cells = [c for row in ws.iter_rows() for c in row]
    assert {c.data_type for c in cells if c.column <= 3} == {"s"}  # header, keys, prompts, texts
    assert {c.data_type for c in cells if c.column > 3 and c.row > 1} == {"n"}
    assert read_table(path)["key"].tolist() == FORMULAS and "=HEADER()" in read_table(path).columns


def test_xlsx_counts_and_logs_replaced_characters_and_cut_texts(tmp_path, caplog):
    texts = ["a\x07bell\x1bescape", "x" * 40_000, "plain"]
    with caplog.at_level(logging.WARNING, logger="scorelib"):
        counts = write_table(frame_of(texts), tmp_path / "out.xlsx")
    assert counts == {"replaced_control_chars": 2, "truncated_texts": 1}
    assert "2 character(s) Excel cannot hold replaced by U+FFFD, 1 text(s) cut at 32,767" in caplog.text
    back = read_table(tmp_path / "out.xlsx")["text"].tolist()
    assert back == ["a\ufffdbell\ufffdescape", "x" * XLSX_MAX_CHARS, "plain"]
    assert write_table(frame_of(texts), tmp_path / "out.csv")["truncated_texts"] == 0
    assert read_table(tmp_path / "out.csv")["text"].tolist() == texts  # the CSV keeps them whole


class Boom:
    def __str__(self):
        raise RuntimeError("cannot be written")

    __repr__ = __str__


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx", ".jsonl"])
def test_an_existing_file_is_unchanged_when_a_write_fails(tmp_path, suffix):
    path = tmp_path / f"keep{suffix}"
    write_table(frame_of(["first version"]), path)
    before = path.read_bytes()
    with pytest.raises((RuntimeError, TypeError)):
        write_table(pd.DataFrame({"key": ["k"], "text": [Boom()]}), path)
    assert path.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))
    if suffix == ".tsv":  # a text a TSV cannot carry: refused before anything is written
        with pytest.raises(DataError, match="keep.tsv: row 2, column 'text'"):
            write_table(frame_of(["two\nlines"]), path)
        assert path.read_bytes() == before


@pytest.mark.parametrize("name, needle", [("out.json", "cannot write .json"), ("out", "without an extension"),
                                          ("folder", "is a folder")])
def test_unknown_extensions_and_folders_are_refused_naming_the_path(tmp_path, name, needle):
    (tmp_path / "folder").mkdir()
    with pytest.raises(OptionError, match=re.escape(needle)) as info:
        write_table(frame_of(["x"]), tmp_path / name, option="--output")
    assert str(info.value).startswith(f"--output {tmp_path / name}: ") and "\n" not in str(info.value)
    assert ".csv, .tsv, .xlsx, .jsonl" in str(info.value) or needle == "is a folder"


def test_result_files_with_cr_and_lf_texts_read_back_row_for_row(tmp_path):
    texts = ["lone\rcarriage return", "line\nfeed", "both\r\nends", '"quoted", and, commas', "=1+1"]
    table = PromptTable(ids=["p1"], ranges={"p1": (0.0, 3.0)}, step=1.0)
    frame = results_frame([f"k{i}" for i in range(5)], ["p1"] * 5, [0, 1, 2, 3, np.nan], np.linspace(0, 1, 5), texts,
                          table)
    paths = write_results(frame, frame_metrics(frame, table), table, tmp_path, "checkpoint_best.pt", "test")
    for kind in ("csv", "xlsx"):
        back = read_table(paths[kind])
        assert back["text"].tolist() == texts and back["key"].tolist() == list(frame["key"]), kind
    assert b"<f>" not in sheet_xml(paths["xlsx"])


def test_cv_fold_tables_keep_texts_with_line_breaks(tmp_path):
    texts = ["a\rb", "c\nd", "e\r\nf", "plain"]
    table = PromptTable(ids=["p1"], ranges={"p1": (0.0, 3.0)}, step=1.0)
    frame = pd.DataFrame({"key": ["k0", "k1", "k2", "k3"], "prompt": "p1", "text": texts, "score": [0.0, 1, 2, 3],
                          "context": None})
    write_fold_data(tmp_path / "data", frame, frame.iloc[:2], table)
    back = read_table(tmp_path / "data" / "train.csv")
    assert back["text"].tolist() == texts and back["score"].tolist() == ["0.0", "1.0", "2.0", "3.0"]
    assert len(read_table(tmp_path / "data" / "valid.csv")) == 2


@pytest.fixture
def input_table(tmp_path):
    texts = [*FORMULAS, "bell\x07 and escape\x1b", "w" * 40_000, "lone\rCR", "an ordinary answer"]
    frame = pd.DataFrame({"key": ["=KEY()"] + [f"k{i}" for i in range(1, len(texts))], "text": texts})
    frame.to_csv(tmp_path / "in.csv", index=False, lineterminator="\r\n")
    return tmp_path / "in.csv", frame


@pytest.mark.slow
def test_score_output_xlsx_is_safe_and_counts(trained_dir, input_table, tmp_path, capsys):
    path, frame = input_table
    out = tmp_path / "keep.xlsx"
    out.write_bytes(b"an older file")
    assert score_cli([str(trained_dir), "--cpu", "--prompt", "q1", "--input", str(path), "--output", str(out)]) == 0
    log = capsys.readouterr().out  # scorelib-score logs its warnings to stdout
    assert b"<f>" not in sheet_xml(out) and b"<f " not in sheet_xml(out)
    back = read_table(out)
    assert back["key"].tolist() == frame["key"].tolist()
    expected = [ILLEGAL_XML.sub("\ufffd", t)[:XLSX_MAX_CHARS] for t in frame["text"]]
    assert back["text"].tolist() == expected and (back["pred"] != "").all()
    assert "keep.xlsx: 2 character(s) Excel cannot hold replaced by U+FFFD, 1 text(s) cut at 32,767" in log


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_score_output_csv_and_jsonl_keep_every_row_and_text(trained_dir, input_table, tmp_path, suffix):
    path, frame = input_table
    out = tmp_path / f"out{suffix}"
    assert score_cli([str(trained_dir), "--cpu", "--prompt", "q1", "--input", str(path), "--output", str(out)]) == 0
    rows = read_jsonl(out) if suffix == ".jsonl" else read_table(out).to_dict("records")
    assert [r["text"] for r in rows] == frame["text"].tolist() and [r["key"] for r in rows] == frame["key"].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("output, needle", [("folder", "is a folder"), ("out.json", "cannot write .json")])
def test_score_output_refuses_a_folder_or_an_unknown_extension(trained_dir, input_table, tmp_path, capsys,
                                                               output, needle):
    (tmp_path / "folder").mkdir()
    path, _ = input_table
    rc = score_cli([str(trained_dir), "--cpu", "--input", str(path), "--output", str(tmp_path / output)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"scorelib-score: error: --output {tmp_path / output}: ") and needle in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out.json").exists()
