"""What a new user's first runs must not get wrong (issue 23): ranges files that miss the data's prompts,
the result files' gold as it was written, the end of a training run."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from scorelib.cli import train_cli
from scorelib.errors import DataError
from scorelib.tables import Columns, read_splits


@pytest.fixture
def log_of(caplog):
    """caplog that also sees the ``scorelib`` logger (which does not propagate to the root)."""
    logger = logging.getLogger("scorelib")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)


def essays(folder, n=12):
    """The issue's table: ``essay_id, question, answer, mark``, three questions, and a ranges file naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(f"e{q}{i}", f"Q{q}", f"answer {i} to question {q} " + "word " * (i % 4), i % (2 + 3 * (q == 3)) * 2)
            for q in (1, 2, 3) for i in range(n)]
    pd.DataFrame(rows, columns=["essay_id", "question", "answer", "mark"]).to_csv(folder / "essays.csv", index=False)
    pd.DataFrame([("Q1", 0, 8), ("Q2", 0, 8), ("Q3", 0, 8)], columns=["prompt", "min", "max"]).to_csv(
        folder / "ranges.csv", index=False)
    return folder / "essays.csv", folder / "ranges.csv"


# ---------------------------------------------------------------- item 1: a ranges file the data does not meet
def test_ranges_file_naming_absent_prompts_is_refused_with_their_names(tmp_path, capsys):
    data, ranges = essays(tmp_path / "data")
    save = tmp_path / "run"
    code = train_cli([str(data), "--key-column", "essay_id", "--text-column", "answer", "--score-column", "mark",
                      "--score-ranges", str(ranges), "--save-dir", str(save), "--cpu", "--max-epoch", "1"])
    err = capsys.readouterr().err
    assert code == 2 and not save.exists()  # refused before anything is written
    assert len(err.strip().splitlines()) == 1
    for name in ("'Q1'", "'Q2'", "'Q3'", str(ranges), "prompt '0'", "--prompt-column question"):
        assert name in err, (name, err)


def test_with_the_prompt_column_the_same_files_are_read(tmp_path):
    data, ranges = essays(tmp_path / "data")
    tables = read_splits(data, Columns("essay_id", "question", "answer", None, "mark"), ranges_file=ranges)
    assert tables.ranges == {p: (0.0, 8.0) for p in ("Q1", "Q2", "Q3")}
    assert sorted(pd.concat(tables.frames.values())["prompt"].unique()) == ["Q1", "Q2", "Q3"]


def test_a_misspelt_prompt_in_the_ranges_file_is_refused(tmp_path):
    data, ranges = essays(tmp_path / "data")
    pd.DataFrame([("Q1", 0, 8), ("Q2", 0, 8), ("q3", 0, 8)], columns=["prompt", "min", "max"]).to_csv(ranges,
                                                                                                    index=False)
    with pytest.raises(DataError, match=r"'q3', which do not occur.*'Q3' without a range"):
        read_splits(data, Columns("essay_id", "question", "answer", None, "mark"), ranges_file=ranges)


def test_ranges_of_prompts_left_out_by_prompts_are_fine(tmp_path):
    data, ranges = essays(tmp_path / "data")
    tables = read_splits(data, Columns("essay_id", "question", "answer", None, "mark"), ranges_file=ranges,
                         keep_prompts="Q1,Q2")
    assert set(pd.concat(tables.frames.values())["prompt"]) == {"Q1", "Q2"}


def test_without_a_prompt_column_the_log_names_the_column_that_repeats_like_prompt_ids(tmp_path, log_of):
    data, _ = essays(tmp_path / "data")
    tables = read_splits(data, Columns("essay_id", None, "answer", None, "mark"))
    assert set(tables.frames["train"]["prompt"]) == {"0"}
    assert list(tables.prompt_candidates) == ["question"]  # not the key, the text or the score
    assert "did you mean --prompt-column question?" in log_of.text and "Q1, Q2, Q3" in log_of.text


def test_no_hint_for_a_table_without_repeating_columns(tmp_path, log_of):
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(20)], "text": [f"text {i}" for i in range(20)],
                          "score": [i % 4 for i in range(20)], "note": [f"n{i}" for i in range(20)]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert read_splits(tmp_path / "t.csv", Columns()).prompt_candidates == {}
    assert "repeats like prompt ids" not in log_of.text
