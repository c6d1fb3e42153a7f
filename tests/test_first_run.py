"""What a new user's first runs must not get wrong (issue 23): ranges files that miss the data's prompts,
the result files' gold as it was written, the end of a training run."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from scorelib.cli.train import cli_main as train_cli
from scorelib.errors import DataError
from scorelib.data.tables import Columns, read_splits


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


def test_cv_refuses_the_same_ranges_file_and_eval_reads_a_table_with_it(tmp_path):
    from scorelib.cv.out_of_fold import pooled_rows
    from scorelib.cli.options import parse_cv_args

    data, ranges = essays(tmp_path / "data")
    argv = [str(data), "--key-column", "essay_id", "--text-column", "answer", "--score-column", "mark",
            "--score-ranges", str(ranges), "--save-dir", str(tmp_path / "cv")]
    with pytest.raises(DataError, match="'Q1', 'Q2', 'Q3', which do not occur in the data"):
        pooled_rows(parse_cv_args(argv))
    # evaluation takes the model's ranges: a table read whole as a split to evaluate is not refused for them
    tables = read_splits(data, Columns("essay_id", None, "answer", None, "mark"), ranges_file=ranges,
                         whole_file_as="test")
    assert set(tables.frames["test"]["prompt"]) == {"0"}


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


def test_a_column_named_like_prompt_ids_is_named_first(tmp_path):
    from scorelib.data.scores import prompt_column_candidates

    raw = pd.DataFrame({"rater": list("abab") * 3, "text": [f"t{i}" for i in range(12)],
                        "task_set": ["x", "y", "z"] * 4, "score": ["1"] * 12})
    assert list(prompt_column_candidates(raw, ["text", "score"])) == ["task_set", "rater"]


def test_no_hint_for_a_table_without_repeating_columns(tmp_path, log_of):
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(20)], "text": [f"text {i}" for i in range(20)],
                          "score": [i % 4 for i in range(20)], "note": [f"n{i}" for i in range(20)]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert read_splits(tmp_path / "t.csv", Columns()).prompt_candidates == {}
    assert "repeats like prompt ids" not in log_of.text


# ---------------------------------------------------------------- item 2: an honest cross-validation headline
def oof_rows(seed=0, n=90, k=3):
    """Fake out-of-fold rows of three prompts on 0..4 (predictions unique per row), and their folds."""
    from scorelib.data.prompts import PromptTable
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
    import scorelib.cutpoints.thresholds as cp

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
    from scorelib.cv.out_of_fold import cv_metrics, fit_oof_cutpoints, summarize

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

    from scorelib.cv.out_of_fold import warn_unranked

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


# ---------------------------------------------------------------- item 6: gold written as it was read
def test_result_csv_writes_integral_gold_as_read_and_fractional_gold_unchanged(tmp_path):
    from scorelib.data.prompts import PromptTable
    from scorelib.results import results_frame, write_results, frame_metrics

    table = PromptTable(["a"], {"a": (0.0, 4.0)}, step=0.5)
    for name, gold, written in (("whole", [1, 3, np.nan, 0], ["1", "3", "", "0"]),
                                ("halves", [1, 2.5, 4, 0], ["1", "2.5", "4", "0"])):  # as the xlsx keeps them
        frame = results_frame(["k1", "k2", "k3", "k4"], ["a"] * 4, gold, [0.2, 0.6, 0.5, 0.1], ["t"] * 4, table)
        paths = write_results(frame, frame_metrics(frame, table), table, tmp_path / name, "checkpoint_best.pt", "test")
        lines = paths["csv"].read_text(encoding="utf-8").splitlines()
        assert [line.split(",")[2] for line in lines[1:]] == written, lines
        assert frame["gold"].dtype == np.float64  # the frame itself keeps float64 (metrics, plots)
        back = pd.read_csv(paths["csv"])
        np.testing.assert_array_equal(back["gold"].to_numpy(np.float64), np.asarray(gold, dtype=float))


# ---------------------------------------------------------------- item 5: plots faceted by prompt
def demo_like(n=60, seed=0):
    from scorelib.data.demo import DEMO_RANGES
    from scorelib.data.prompts import PromptTable
    from scorelib.results import frame_metrics, results_frame

    ids = list(DEMO_RANGES)
    table = PromptTable(ids, dict(DEMO_RANGES), step=1.0)
    rng = np.random.default_rng(seed)
    prompts = np.array(ids * (n // 3), dtype=object)
    lo, hi = (np.array([DEMO_RANGES[p][i] for p in prompts]) for i in (0, 1))
    gold = np.round(lo + rng.uniform(0, 1, n) * (hi - lo))
    frame = results_frame([f"k{i}" for i in range(n)], prompts, gold, rng.uniform(0.2, 0.8, n), ["t"] * n, table)
    return frame, table, frame_metrics(frame, table)


def texts_of(fig):
    return [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text") and o.get_text())]


def test_result_plot_has_a_panel_per_prompt_on_its_own_range_with_its_own_figures():
    import warnings

    from scorelib.plots import plot_results

    frame, table, metrics = demo_like()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no missing-glyph warnings, whatever fonts are installed
        fig = plot_results(frame, metrics, table, title="checkpoint_best · test")
        fig.canvas.draw()
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 3
    for ax, pid in zip(axes, table.ids):
        lo, hi = table.ranges[pid]
        assert ax.get_xlim()[0] < lo < hi < ax.get_xlim()[1] and ax.get_xlim()[1] - ax.get_xlim()[0] < 1.5 * (hi - lo)
        m = metrics["per_prompt"][pid]
        assert ax.get_title().startswith(f"{pid} ({lo:g}–{hi:g}), n={m['n']}")
        assert f"QWK {m['qwk']:.3f}" in ax.get_title() and f"Pearson {m['pearson']:.3f}" in ax.get_title()
        (points,) = ax.collections
        x = points.get_offsets()[:, 0]
        gold = frame.loc[frame["prompt"] == pid, "gold"].to_numpy()
        assert 0 < np.abs(x - gold).max() <= 0.15 + 1e-9  # jittered, less than a rubric step
        assert points.get_alpha() < 1
    shown = " ".join(texts_of(fig))  # the overall figure is the mean of the per-prompt ones, and says so
    assert f"mean of per-prompt QWK {metrics['overall']['qwk']:.3f}" in shown


def test_plot_titles_fall_back_to_english_without_a_cjk_font(monkeypatch):
    import warnings

    import scorelib.plots as plots

    frame, table, metrics = demo_like()
    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.plot_results(frame, metrics, table, title="t")
        fig.canvas.draw()
    shown = " ".join(texts_of(fig))
    assert "gold score" in shown and not any("\u4e00" <= ch <= "\u9fff" for ch in shown)


def test_bilingual_titles_where_a_cjk_font_is_installed():
    from scorelib.plots import bilingual, cjk_font

    if cjk_font() is None:
        pytest.skip("no font with Chinese glyphs (fc-list :lang=zh); .ci/run installs fonts-noto-cjk")
    assert bilingual("gold score", "人工评分") == "gold score / 人工评分"


def test_widget_plot_of_one_prompt_and_many_prompts_in_one_panel():
    from scorelib.plots import MAX_FACETS, plot_gold_vs_pred
    from scorelib.data.prompts import PromptTable
    from scorelib.results import frame_metrics, results_frame

    frame, table, _ = demo_like()
    fig = plot_gold_vs_pred(frame, table, title="prompt q2", prompts=["q2"], new_score=3.3, trait=None)
    (ax,) = fig.axes
    assert ax.get_xlim()[0] < 1 and ax.get_xlim()[1] > 6 and ax.get_xlim()[1] < 7.5  # q2's own 1..6
    assert any("new text: 3.30" in t.get_text() for t in ax.get_legend().get_texts())
    ids = [f"p{i}" for i in range(MAX_FACETS + 1)]
    big = PromptTable(ids, {p: (0.0, 4.0) for p in ids}, step=1.0)
    n = 4 * len(ids)
    rows = results_frame([f"k{i}" for i in range(n)], ids * 4, np.arange(n) % 5, np.full(n, 0.5), ["t"] * n, big)
    fig = plot_gold_vs_pred(rows, big, frame_metrics(rows, big))
    assert len(fig.axes) == 1 and f"{len(ids)} prompts in one panel" in " ".join(texts_of(fig))


# ---------------------------------------------------------------- item 5: how `make demo` ends
@pytest.mark.slow
def test_training_ends_by_naming_the_save_dir_the_result_files_and_the_next_command(tmp_path, capsys):
    """``make demo`` is ``scorelib-train --save-dir checkpoints/demo --no-epoch-checkpoints`` on the demo data:
    the same entry point, on a tiny run."""
    save = tmp_path / "demo"
    assert train_cli(["--save-dir", str(save), "--no-epoch-checkpoints", "--cpu", "--max-epoch", "1",
                      "--max-train-rows", "24", "--max-eval-rows", "12", "--max-length", "48",
                      "--no-save-optimizer-state", "--log-format", "simple"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-5:]
    assert last[0] == f"done: the model is in {save}/ (checkpoint_best.pt; history.csv per epoch; prompts.json)"
    assert last[1].startswith(f"  result files in {save / 'results'}/: ")
    for name in ("result-checkpoint_best-test.xlsx", "result-checkpoint_best-test.csv",
                 "metrics-checkpoint_best-test.json", "plot-checkpoint_best-test.png"):
        assert name in last[1] and (save / "results" / name).is_file()
    assert last[2].startswith("  test: mean of per-prompt QWK") and "n=12" in last[2]
    assert last[3].startswith("next: score a text:  ") and "scorelib-score" in last[3]
    assert last[3].endswith(f'{save} --prompt q1 "Type an answer here."')
    assert "notebooks/04_train_eval.ipynb" in last[4]
