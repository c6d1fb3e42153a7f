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


# ---------------------------------------------------------------- item 2: an honest cross-validation headline
def oof_rows(seed=0, n=90, k=3):
    """Fake out-of-fold rows of three prompts on 0..4 (predictions unique per row), and their folds."""
    from scorelib.prompts import PromptTable
    from scorelib.results import results_frame

    rng = np.random.default_rng(seed)
    table = PromptTable(["a", "b", "c"], {p: (0.0, 4.0) for p in "abc"}, step=1.0)
    prompts = np.array(list("abc") * (n // 3), dtype=object)
    gold = rng.integers(0, 5, n).astype(float)
    pred01 = np.clip(gold / 4 * 0.5 + 0.25 + rng.normal(0, 0.08, n), 0, 1) + np.arange(n) * 1e-7  # all distinct
    frame = results_frame([f"k{i}" for i in range(n)], prompts, gold, pred01, ["t"] * n, table)
    frame.insert(2, "fold", (np.arange(n) // 3) % k)  # every prompt in every fold
    return table, frame


def test_cross_fitted_rounding_never_fits_on_a_rows_own_fold(monkeypatch):
    import scorelib.cutpoints as cp

    table, oof = oof_rows()
    fold_of = dict(zip(oof["pred"], oof["fold"]))
    seen, fit = [], cp.fit_cutpoints

    def recording(gold, pred, *rest, **kw):
        seen.append({fold_of[p] for p in pred})
        return fit(gold, pred, *rest, **kw)

    monkeypatch.setattr(cp, "fit_cutpoints", recording)
    rounded = cp.cross_fit_round(table, oof["prompt"], oof["gold"], oof["pred"], oof["fold"])
    # one fit per fold and prompt, each on the two other folds' rows only
    assert [sorted(s) for s in seen] == [[1, 2]] * 3 + [[0, 2]] * 3 + [[0, 1]] * 3
    # a fold's rounding does not move when its own gold scores change
    gold = oof["gold"].to_numpy().copy()
    gold[oof["fold"] == 0] = 4 - gold[oof["fold"] == 0]
    again = cp.cross_fit_round(table, oof["prompt"], gold, oof["pred"], oof["fold"])
    np.testing.assert_array_equal(again[oof["fold"] == 0], rounded[oof["fold"] == 0])
    assert not table.cutpoints  # the table itself is left as it was


def test_cv_reports_the_cross_fitted_qwk_and_the_in_sample_one_by_its_name():
    from scorelib.cv import cv_metrics, fit_oof_cutpoints, summarize

    table, oof = oof_rows(seed=3)
    insample = fit_oof_cutpoints(table, oof)
    assert table.cutpoints  # fitted on every row: what the ensemble uses on new texts
    np.testing.assert_array_equal(insample["pred_rounded"], table.round(oof["pred"], oof["prompt"]))
    assert not np.array_equal(oof["pred_rounded"], insample["pred_rounded"])  # cross-fitted differs
    pooled = cv_metrics(oof, table, insample)
    o = pooled["overall"]
    assert o["qwk_insample"] >= o["qwk_nearest"] - 1e-12  # in-sample: never below nearest rounding
    assert o["qwk_insample"] > o["qwk"]  # the optimism the issue saw, now named
    per_fold = [cv_metrics(f, table, insample) for _, f in oof.groupby("fold")]
    summary = summarize(per_fold, pooled)
    assert summary["overall"]["qwk"]["pooled"] == o["qwk"] and summary["overall"]["qwk_insample"]["pooled"] == \
        o["qwk_insample"]
    assert all("qwk_insample" in m for m in pooled["per_prompt"].values())


def test_a_fold_whose_valid_part_cannot_rank_epochs_is_warned(log_of):
    from argparse import Namespace

    from scorelib.cv import warn_unranked

    valid = pd.DataFrame({"prompt": ["q1"] * 3 + ["q2"] * 3 + ["q3"] * 2})
    history = [{"valid_qwk": 0.0}, {"valid_qwk": 0.0}, {"valid_qwk": 0.0}]
    warn_unranked(2, valid, {"metric": "qwk", "history": history}, Namespace(valid_fraction=0.1))
    assert "fold 2: its valid part (8 rows: q1 3, q2 3, q3 2) gave valid_qwk 0.0 in every epoch" in log_of.text
    assert "--valid-fraction (now 0.1)" in log_of.text and "fewer --folds" in log_of.text
    log_of.clear()
    for rows in ([{"valid_qwk": 0.0}, {"valid_qwk": 0.3}], [{"valid_qwk": 0.2}]):  # ranked, or a single epoch
        warn_unranked(0, valid, {"metric": "qwk", "history": rows}, Namespace(valid_fraction=0.1))
    warn_unranked(1, valid, {"metric": "qwk", "history": [{"valid_qwk": None}]}, Namespace(valid_fraction=0.1))
    assert log_of.text.count("could not rank") == 1 and "fold 1:" in log_of.text
