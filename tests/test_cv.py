"""k-fold cross-validation (scorelib-cv), fold ensembles and QWK cut-points, on a small demo subset."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import scorelib
from conftest import module_scratch, trait_table
from scorelib.cli.cv import cli_main as cv_cli
from scorelib.cli.eval import cli_main as eval_cli
from scorelib.cli.score import cli_main as score_cli
from scorelib.cutpoints.thresholds import cross_fit_round, fit_table_cutpoints
from scorelib.cli.cv import cross_validate
from scorelib.cv.folds import assign_folds
from scorelib.cv.out_of_fold import pooled_rows
from scorelib.cli.options import parse_cv_args
from scorelib.data.demo import DEMO_RANGES, load_demo
from scorelib.errors import OptionError
from scorelib.metrics import compute_metrics
from scorelib.results import frame_metrics
from scorelib.data.prompts import PromptTable

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--cpu", "--max-epoch", "1", "--max-train-rows", "24", "--max-eval-rows", "8", "--log-format", "simple",
        "--no-epoch-checkpoints", "--max-length", "64"]


def small_table(folder: Path, per_prompt: int = 15, fold_column: bool = False) -> Path:
    """``per_prompt`` demo rows of each prompt in one CSV (plus ranges.csv); optionally a fold column."""
    frame = pd.concat(load_demo().values()).groupby("prompt").head(per_prompt).reset_index(drop=True)
    frame = frame[["key", "prompt", "text", "score"]]
    if fold_column:
        frame["split"] = ["b" if i % 3 == 1 else "a" for i in range(len(frame))]
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "scores.csv", index=False)
    pd.DataFrame([(p, lo, hi) for p, (lo, hi) in DEMO_RANGES.items()], columns=["prompt", "min", "max"]).to_csv(
        folder / "ranges.csv", index=False)
    return folder / "scores.csv"


@pytest.fixture(scope="module")
def cv_run(request, tmp_path_factory):
    """One tiny 3-fold run with --fit-cutpoints: (save dir, input frame, returned dict)."""
    with module_scratch(request, tmp_path_factory, "cv") as base:
        data = small_table(base / "data")
        argv = [str(data), "--folds", "3", "--save-dir", str(base / "cv"), "--score-ranges",
                str(data.parent / "ranges.csv"), "--score-step", "1", "--fit-cutpoints", *TINY]
        out = cross_validate(parse_cv_args(argv))
        yield base / "cv", pd.read_csv(data, dtype=str, keep_default_na=False), out, argv


@pytest.mark.slow
def test_cv_writes_folds_oof_table_and_metrics(cv_run):
    save_dir, frame, out, _ = cv_run
    for i in range(3):
        assert (save_dir / f"fold{i}" / "checkpoint_best.pt").is_file()
        assert (save_dir / f"fold{i}" / "oof.csv").is_file()
    assert not (save_dir / "fold3").exists()
    oof = pd.read_csv(save_dir / "results" / "result-cv-oof.csv", dtype={"key": str, "prompt": str},
                      keep_default_na=False)
    assert list(oof.columns) == ["key", "prompt", "fold", "gold", "pred", "pred_rounded", "text"]
    assert oof["key"].tolist() == frame["key"].tolist()  # every input row once, in input order
    assert sorted(oof["fold"].unique()) == [0, 1, 2]
    np.testing.assert_array_equal(oof["gold"], frame["score"].astype(float))
    assert oof["text"].tolist() == frame["text"].tolist()
    import openpyxl

    sheet = openpyxl.load_workbook(save_dir / "results" / "result-cv-oof.xlsx").active
    assert [c.value for c in sheet[1]] == list(oof.columns)
    assert [r[0].value for r in sheet.iter_rows(min_row=2)] == frame["key"].tolist()
    assert all(r[0].data_type == "s" and r[6].data_type == "s" for r in sheet.iter_rows(min_row=2))  # text cells
    assert sheet["C2"].number_format == "0" and sheet["D2"].number_format == "0.00"
    for pid, rows in oof.groupby("prompt"):  # stratified by prompt: 15 rows -> 5 per fold
        assert rows["fold"].value_counts().tolist() == [5, 5, 5], pid
    # the held-out rows of fold i were never in its train or valid table
    for i in range(3):
        seen = pd.concat(pd.read_csv(save_dir / f"fold{i}" / "data" / f"{s}.csv", dtype={"key": str})
                         for s in ("train", "valid"))["key"]
        assert not set(seen) & set(oof.loc[oof["fold"] == i, "key"])
    metrics = json.loads((save_dir / "results" / "metrics-cv.json").read_text())
    assert metrics["folds"] == 3 and metrics["n"] == 45
    for name in ("qwk", "qwk_nearest", "pearson", "rmse"):
        assert set(metrics["overall"][name]) >= {"mean", "sd", "pooled"}
    rmse = metrics["overall"]["rmse"]
    assert rmse["mean"] == pytest.approx(np.mean([f["rmse"] for f in metrics["per_fold"]]))
    assert rmse["sd"] == pytest.approx(np.std([f["rmse"] for f in metrics["per_fold"]], ddof=1))
    assert rmse["pooled"] == pytest.approx(np.sqrt(np.mean((oof["pred"] - oof["gold"]) ** 2)), abs=1e-4)
    assert set(metrics["per_prompt"]) == {"q1", "q2", "q3"}
    # cut-points fitted on all out-of-fold predictions are stored for the ensemble; pred_rounded and qwk are
    # cross-fitted (each fold rounded by thresholds fitted on the other folds), qwk_insample is the in-sample figure
    table = PromptTable.load(save_dir / "prompts.json")
    assert table.cutpoints and set(table.cutpoints) <= {"q1", "q2", "q3"}
    np.testing.assert_allclose(oof["pred_rounded"], cross_fit_round(table, oof["prompt"], oof["gold"], oof["pred"],
                                                                    oof["fold"]))
    insample = oof.assign(pred_rounded=table.round(oof["pred"], oof["prompt"]))
    assert metrics["pooled"]["overall"]["qwk"] == pytest.approx(frame_metrics(oof, table)["overall"]["qwk"])
    assert metrics["pooled"]["overall"]["qwk_insample"] == pytest.approx(
        frame_metrics(insample, table)["overall"]["qwk"])
    assert set(metrics["overall"]["qwk_insample"]) >= {"mean", "sd", "pooled"}
    for pid, m in metrics["pooled"]["per_prompt"].items():
        if m["qwk_nearest"] is not None:
            assert m["qwk_insample"] >= m["qwk_nearest"] - 1e-9  # in-sample: never below nearest rounding


@pytest.mark.slow
def test_rerun_finishes_fold2_without_retraining_fold1(cv_run, monkeypatch):
    save_dir, _, _, argv = cv_run
    fold1, fold2 = save_dir / "fold1", save_dir / "fold2"
    stamps = lambda d: [(d / n).stat().st_mtime_ns for n in ("checkpoint_best.pt", "oof.csv")]
    # a finished fold keeps checkpoint_best.pt only: checkpoint_last.pt (3x its size) served resuming
    assert not (fold1 / "checkpoint_last.pt").exists() and not (fold2 / "checkpoint_last.pt").exists()
    before = stamps(fold1)
    shutil.rmtree(fold2)  # fold 2 again, killed after its last save but before its held-out rows were predicted
    killed = RuntimeError("killed while predicting fold 2's held-out rows")
    monkeypatch.setattr("scorelib.cli.cv.results_frame", lambda *a, **k: (_ for _ in ()).throw(killed))
    with pytest.raises(RuntimeError, match="killed while predicting"):
        cross_validate(parse_cv_args(argv))
    monkeypatch.undo()
    assert not (fold2 / "oof.csv").exists() and (fold2 / "checkpoint_last.pt").is_file()
    state = torch.load(fold2 / "checkpoint_last.pt", weights_only=True)["extra_state"]
    assert state["epoch"] == 1 and state["end_of_epoch"] and state["num_updates"] > 0
    best2 = (fold2 / "checkpoint_best.pt").stat().st_mtime_ns
    cross_validate(parse_cv_args(argv))
    assert stamps(fold1) == before  # fold 1 was not trained (or predicted) again
    assert (fold2 / "oof.csv").is_file()
    # resumed at its end from checkpoint_last.pt, not trained from scratch: checkpoint_best.pt was not rewritten
    assert (fold2 / "checkpoint_best.pt").stat().st_mtime_ns == best2
    assert not (fold2 / "checkpoint_last.pt").exists()  # finished now, so dropped
    oof = pd.read_csv(save_dir / "results" / "result-cv-oof.csv", dtype={"key": str})
    assert len(oof) == 45 and oof["key"].is_unique


@pytest.mark.slow
def test_score_cli_averages_the_folds_with_a_spread(cv_run, capsys):
    save_dir = cv_run[0]
    text = "Plants use light to make sugar from carbon dioxide and water."
    assert score_cli([str(save_dir), "--cpu", "--prompt", "q2", text]) == 0
    line = capsys.readouterr().out.strip()
    assert " ± " in line and "q2's 1–6 scale" in line, line
    assert score_cli([str(save_dir), "--cpu", "--prompt", "q2", "--format", "json", text]) == 0
    record = json.loads(capsys.readouterr().out)
    ensemble = scorelib.load(save_dir, device="cpu")
    folds = [scorelib.load(save_dir / f"fold{i}", device="cpu").score(text, prompt="q2") for i in range(3)]
    assert record["score"] == pytest.approx(np.mean(folds), abs=1e-4)
    assert record["spread"] == pytest.approx(np.std(folds), abs=1e-4)
    score, spread = ensemble.score([text], prompt="q2", return_spread=True)
    assert score[0] == pytest.approx(record["score"]) and spread[0] == pytest.approx(record["spread"])
    assert record["score_rounded"] == float(ensemble.round(record["score"], "q2")[0])  # by the fitted cut-points


@pytest.mark.slow
def test_score_cli_input_table_on_cv_dir_adds_the_spread(cv_run, tmp_path):
    save_dir = cv_run[0]
    rows = pd.DataFrame({"id": ["a", "b", "c"], "prompt": ["q2", "q1", "q2"],
                         "text": ["Plants use light to make sugar.", "Gravity pulls things down.", "Cells divide."]})
    rows.to_csv(tmp_path / "in.csv", index=False)
    assert score_cli([str(save_dir), "--cpu", "--input", str(tmp_path / "in.csv"), "--output",
                      str(tmp_path / "out.csv"), "--key-column", "id"]) == 0
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert list(out.columns) == ["id", "prompt", "text", "pred", "pred_rounded", "spread"]
    ensemble = scorelib.load(save_dir, device="cpu")
    for row in out.itertuples():
        score, spread = ensemble.score(row.text, prompt=row.prompt, return_spread=True)
        assert row.pred == pytest.approx(score, abs=1e-5) and row.spread == pytest.approx(spread, abs=1e-5)
        assert row.spread > 0  # three fold models trained on different rows disagree a little


@pytest.mark.slow
def test_eval_cli_on_cv_dir_evaluates_the_ensemble(cv_run, tmp_path, capsys):
    save_dir = cv_run[0]
    held = load_demo("test").groupby("prompt").head(3)[["key", "prompt", "text", "score"]]
    held.to_csv(tmp_path / "held.csv", index=False)
    assert eval_cli([str(save_dir), "--cpu", "--split", "test", str(tmp_path / "held.csv"),
                     "--results-path", str(tmp_path / "r")]) == 0
    assert "ensemble on test:" in capsys.readouterr().out
    frame = pd.read_csv(tmp_path / "r" / "result-ensemble-test.csv", dtype={"key": str})
    assert frame["key"].tolist() == held["key"].tolist()
    assert eval_cli([str(save_dir), "--cpu", "--split", "test"]) == 2  # no held-out table: refused
    assert "held-out table" in capsys.readouterr().err


def test_cutpoints_never_lower_qwk_on_their_data():
    rng = np.random.default_rng(11)
    for trial in range(40):
        table = PromptTable(ids=["a", "b"], ranges={"a": (0.0, 3.0), "b": (1.0, 6.0)}, step=1.0)
        n = int(rng.integers(4, 150))
        prompts = rng.choice(["a", "b"], n)
        lo, hi = table.bounds(prompts)
        gold = np.round(rng.uniform(lo, hi))
        pred = np.clip(gold + rng.normal(rng.normal(0, 0.5), rng.uniform(0.1, 2.5), n), lo, hi)
        before = compute_metrics(prompts, gold, pred, table.round(pred, prompts), table)
        fit_table_cutpoints(table, prompts, gold, pred)
        after = compute_metrics(prompts, gold, pred, table.round(pred, prompts), table)
        for pid, m in before["per_prompt"].items():
            if m["qwk"] is not None:
                assert after["per_prompt"][pid]["qwk"] >= m["qwk"] - 1e-12, (trial, pid)
                assert after["per_prompt"][pid]["qwk_nearest"] == pytest.approx(m["qwk"])
        for pid, cuts in table.cutpoints.items():
            assert np.all(np.diff(cuts) > 0)
        assert PromptTable.from_dict(json.loads(json.dumps(table.to_dict()))).cutpoints == table.cutpoints


def test_fit_cutpoints_refused_on_a_continuous_target(tmp_path, capsys):
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(12)], "text": [f"text number {i}" for i in range(12)],
                          "score": np.linspace(0.13, 2.71, 12)})
    frame.to_csv(tmp_path / "cont.csv", index=False)
    assert cv_cli([str(tmp_path / "cont.csv"), "--folds", "3", "--save-dir", str(tmp_path / "cv"),
                   "--fit-cutpoints", *TINY]) == 2
    assert "--fit-cutpoints" in capsys.readouterr().err and not (tmp_path / "cv").exists()
    from scorelib.options import parse_args
    from scorelib import train

    with pytest.raises(OptionError, match="--score-step"):
        train(parse_args([str(tmp_path / "cont.csv"), "--save-dir", str(tmp_path / "t"), "--fit-cutpoints", *TINY]))
    assert not (tmp_path / "t").exists()


def test_test_fraction_refused_under_cv(tmp_path, capsys):
    assert cv_cli(["--folds", "3", "--save-dir", str(tmp_path / "cv"), "--test-fraction", "0.2", *TINY]) == 2
    assert "--test-fraction" in capsys.readouterr().err


def test_fold_column_used_as_given(tmp_path):
    data = small_table(tmp_path, per_prompt=9, fold_column=True)
    args = parse_cv_args([str(data), "--fold-column", "split", "--save-dir", str(tmp_path / "cv")])
    frame, _ = pooled_rows(args)
    from scorelib.cv.folds import given_folds

    folds = given_folds(frame, args)
    raw = pd.read_csv(data, dtype=str)
    np.testing.assert_array_equal(folds, (raw["split"] == "b").astype(int))
    with pytest.raises(OptionError, match="holds 2 folds"):
        given_folds(frame, parse_cv_args([str(data), "--fold-column", "split", "--folds", "3"]))


def test_folds_drawn_by_stratified_kfold_seeded(tmp_path):
    args = parse_cv_args(["--save-dir", str(tmp_path)])  # the demo data, pooled
    frame, tables = pooled_rows(args)
    assert len(frame) == sum(len(f) for f in load_demo().values())
    table = PromptTable.from_tables(tables)
    a, b = assign_folds(frame, table, 5, 1), assign_folds(frame, table, 5, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, assign_folds(frame, table, 5, 2))
    counts = pd.crosstab(frame["prompt"], a)
    assert (counts.max(axis=1) - counts.min(axis=1) <= 1).all()  # each prompt split evenly over the folds


def test_cv_console_script_entry():
    proc = subprocess.run([sys.executable, "-c", "from scorelib.cli.cv import cli_main; raise SystemExit(cli_main())",
                           "--help"], capture_output=True, text=True, cwd=ROOT,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and "--folds" in proc.stdout and "--fit-cutpoints" in proc.stdout
    assert 'scorelib-cv = "scorelib.cli.cv:cli_main"' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.slow
def test_widget_shows_the_spread_of_a_fold_ensemble(cv_run):
    from scorelib.hub.widget import ScoringWidget

    ensemble = scorelib.load(cv_run[0], device="cpu")
    w = ScoringWidget(ensemble)
    w.prompt.value, w.text.value = "q1", "The earth is tilted, so sunlight hits it at different angles."
    w.on_click()
    shown = "".join(o.get("text", "") for o in w.output.outputs)
    assert " ± " in shown and "q1's 0–3 scale" in shown, shown


@pytest.mark.slow
def test_train_fit_cutpoints_on_the_valid_split(tmp_path):
    from conftest import train_args

    out = scorelib.train(train_args(tmp_path / "run", "--no-epoch-checkpoints", "--fit-cutpoints", "--max-length", 64))
    state = torch.load(tmp_path / "run" / "checkpoint_best.pt", weights_only=True)
    table = PromptTable.from_dict(state["prompts"])
    assert table.cutpoints and table.cutpoints == PromptTable.load(tmp_path / "run" / "prompts.json").cutpoints
    assert scorelib.load(tmp_path / "run", device="cpu").table.cutpoints == table.cutpoints
    valid = out["metrics"]["valid"]
    assert valid["cutpoints"] == table.cutpoints and "qwk_nearest" in valid["overall"]
    for pid, m in valid["per_prompt"].items():  # fitted on valid: never below nearest rounding there
        if m["qwk_nearest"] is not None and pid in table.cutpoints:
            assert m["qwk"] >= m["qwk_nearest"] - 1e-9
    frame = pd.read_csv(tmp_path / "run" / "results" / "result-checkpoint_best-test.csv", dtype={"prompt": str})
    np.testing.assert_allclose(frame["pred_rounded"], table.round(frame["pred"], frame["prompt"]))


def test_continuous_scores_stratified_by_quantile_bins():
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(30)], "prompt": "0", "score": np.linspace(0, 1, 30) ** 2})
    table = PromptTable(ids=["0"], ranges={"0": (0.0, 1.0)}, step=None)
    folds = assign_folds(frame, table, 3, 1)
    assert np.bincount(folds).tolist() == [10, 10, 10]
    for low in (frame["score"] < frame["score"].median(),):  # low and high scores spread over every fold
        assert np.bincount(folds[low.to_numpy()], minlength=3).min() >= 4


@pytest.mark.slow
def test_cv_of_two_traits_writes_trait_columns_mcrmse_and_per_trait_cutpoints(tmp_path, capsys):
    from scorelib.data.demo import DEMO_TRAITS

    frame = trait_table(tmp_path, 12)
    save = tmp_path / "cv"
    cross_validate(parse_cv_args([str(tmp_path / "traits.csv"), "--folds", "3", "--save-dir", str(save),
                                  "--score-column", "content,accuracy", "--score-ranges",
                                  str(tmp_path / "ranges.csv"), "--fit-cutpoints", *TINY]))
    oof = pd.read_csv(save / "results" / "result-cv-oof.csv", dtype={"key": str})
    assert list(oof.columns) == ["key", "prompt", "fold", "gold_content", "pred_content", "pred_rounded_content",
                                 "gold_accuracy", "pred_accuracy", "pred_rounded_accuracy", "text"]
    assert oof["key"].tolist() == frame["key"].tolist()
    for t in ("content", "accuracy"):
        np.testing.assert_array_equal(oof[f"gold_{t}"], frame[t].astype(float))
        lo, hi = DEMO_TRAITS[t][:2]
        assert oof[f"pred_{t}"].between(lo, hi).all()
    metrics = json.loads((save / "results" / "metrics-cv.json").read_text())
    rmse = [np.sqrt(np.mean((oof[f"pred_{t}"] - oof[f"gold_{t}"]) ** 2)) for t in ("content", "accuracy")]
    assert metrics["overall"]["mcrmse"]["pooled"] == pytest.approx(np.mean(rmse), abs=1e-6)
    assert metrics["overall"]["mcrmse"]["mean"] == pytest.approx(np.mean([f["mcrmse"] for f in metrics["per_fold"]]))
    assert set(metrics["traits"]) == {"content", "accuracy"}
    table = PromptTable.load(save / "prompts.json")
    for t in ("content", "accuracy"):  # each trait's own thresholds, fitted on the out-of-fold predictions
        view = table.for_trait(t)
        np.testing.assert_allclose(oof[f"pred_rounded_{t}"], cross_fit_round(
            view, oof["prompt"], oof[f"gold_{t}"], oof[f"pred_{t}"], oof["fold"]))
        m = metrics["pooled"]["traits"][t]["overall"]
        if view.cutpoints and m.get("qwk_nearest") is not None:
            assert m["qwk_insample"] >= m["qwk_nearest"] - 1e-9
    folds = pd.read_csv(save / "fold0" / "data" / "train.csv")
    assert {"content", "accuracy"} <= set(folds.columns)
    ensemble = scorelib.load(save, device="cpu")
    score, spread = ensemble.score("Plants use light to make sugar.", prompt="q1", return_spread=True)
    assert set(score) == set(spread) == {"content", "accuracy"}
    from scorelib.hub.widget import check_and_score

    shown = check_and_score(ensemble, "q1", "Plants use light to make sugar.")
    assert {t: shown["traits"][t]["spread"] for t in spread} == pytest.approx(spread)
    capsys.readouterr()  # the folds' training lines
    assert score_cli([str(save), "--cpu", "--prompt", "q1", "Plants use light to make sugar."]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["content", "accuracy"] and all(" ± " in x for x in lines)


@pytest.mark.slow
def test_cv_predicts_held_out_rows_with_the_folds_long_text_mode(tmp_path):
    """A fold trained with --long-text chunks predicts its held-out rows from every window, as its scorer does."""
    data = small_table(tmp_path / "data", per_prompt=4)
    save = tmp_path / "cv"
    cross_validate(parse_cv_args([str(data), "--folds", "2", "--save-dir", str(save), "--score-ranges",
                                  str(data.parent / "ranges.csv"), "--score-step", "1", *TINY,
                                  "--max-length", "24", "--long-text", "chunks", "--valid-fraction", "0.34"]))
    oof = pd.read_csv(save / "results" / "result-cv-oof.csv", dtype={"key": str, "prompt": str})
    longest = oof.loc[oof["text"].str.len().idxmax()]
    scorer = scorelib.load(save / f"fold{longest['fold']}", device="cpu")
    assert scorer.long_text == "chunks"
    assert len(scorer.tokenizer(longest["text"])["input_ids"]) > 24  # more than one window
    assert longest["pred"] == pytest.approx(scorer.score(longest["text"], prompt=longest["prompt"]), abs=1e-5)


@pytest.mark.slow
def test_bench_cv_scores_the_held_out_rows_with_each_fold_and_the_ensemble(cv_run):
    """bench/bench_cv.py's test-split scoring: one figure per fold model, the ensemble the mean of their outputs."""
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_cv

    save_dir, frame, _, _ = cv_run
    test = load_demo()["test"].groupby("prompt").head(4).reset_index(drop=True)[["key", "prompt", "text", "score"]]
    got = bench_cv.on_test(save_dir.parent, test)  # its work folder: the CV save dir is WORK/cv
    ens = scorelib.load(save_dir, device="cpu")
    each = np.concatenate([ens.models_scores01(ens.dataset(rows["text"].tolist(), pid))
                           for pid, rows in test.groupby("prompt", sort=False)], axis=1)
    order = np.concatenate([rows.index.to_numpy() for _, rows in test.groupby("prompt", sort=False)])
    prompts, gold = test["prompt"].to_numpy()[order], test["score"].to_numpy(np.float64)[order]
    pred = ens.table.unscale(each.mean(axis=0), prompts)
    assert got["n"] == len(test) and [f["fold"] for f in got["folds"]] == [0, 1, 2]
    assert got["ensemble"]["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - gold) ** 2))))
    assert "ensemble_parts" not in got  # no --stack: no parts


def test_cutpoint_warnings_on_a_flat_model():
    """Cross-fitted cut-points on a machine whose predictions barely vary: QWK raised far over nearest rounding is
    warned, and so is a row rounded (by its fold's thresholds) to a lower mark than a lower prediction."""
    from scorelib.cutpoints.thresholds import cutpoint_warnings

    rng = np.random.default_rng(0)
    n = 60
    gold = rng.integers(0, 4, n).astype(float)
    pred = 1.4 + 0.05 * (gold - 1.5) / 1.5 + rng.normal(0, 0.01, n)  # SD ~0.04 against gold's ~1.1, but in order
    folds = np.arange(n) % 3
    table = PromptTable(ids=["photo"], ranges={"photo": (0.0, 3.0)}, step=1.0)
    oof = pd.DataFrame({"key": [f"k{i}" for i in range(n)], "prompt": "photo", "fold": folds, "gold": gold,
                        "pred": pred, "text": "x"})
    oof["pred_rounded"] = cross_fit_round(table, oof["prompt"], gold, pred, folds)
    fitted = table.without_cutpoints()
    fit_table_cutpoints(fitted, oof["prompt"], gold, pred, quiet=True)
    m = frame_metrics(oof, fitted)
    assert m["per_prompt"]["photo"]["qwk"] - m["per_prompt"]["photo"]["qwk_nearest"] > 0.1
    checks = {w["check"]: w for w in cutpoint_warnings(fitted, oof, m)}
    assert "cutpoint_gain" in checks and "below 0.5" in checks["cutpoint_gain"]["en"]
    # two folds' thresholds: a higher prediction rounded lower than a lower one is counted
    broken = oof.copy()
    top, low = int(np.argmax(pred)), int(np.argmin(pred))
    broken.loc[top, "pred_rounded"], broken.loc[low, "pred_rounded"] = 0.0, 3.0
    checks = {w["check"]: w for w in cutpoint_warnings(fitted, broken, m)}
    assert checks["order"]["value"] >= 1 and "more than one step (1) below that of a lower prediction" in checks["order"]["en"]
    spread = oof.assign(pred=gold + rng.normal(0, 0.3, n))  # a machine that varies: no gain warning
    spread["pred_rounded"] = cross_fit_round(table, spread["prompt"], gold, spread["pred"], folds)
    assert not [w for w in cutpoint_warnings(fitted, spread, frame_metrics(spread, fitted)) if w["check"] == "cutpoint_gain"]


@pytest.mark.slow
def test_flat_model_cv_on_two_scales_is_flagged(tmp_path):
    """The issue's table: two prompts of 25 rows, 0-3 and 1-10 (step 0.5), 3 folds of a one-epoch model: the report
    flags the machine's small SD in HTML and JSON, flags no DSM of the random school groups (under
    min_n_per_group), pools the prompts only on the 0-1 scale, and warns of the prompts' 25 rows."""
    from scorelib.cli.report import cli_main as report_cli

    rng = np.random.default_rng(1)
    demo = pd.concat(load_demo().values())
    texts = demo["text"].drop_duplicates().head(50).tolist()
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(50)], "question": ["photo"] * 25 + ["essay"] * 25,
                          "answer": texts, "mark": np.r_[rng.integers(0, 4, 25), rng.integers(2, 21, 25) / 2],
                          "school": rng.choice(["north", "south", "east"], 50)})
    frame.to_csv(tmp_path / "answers.csv", index=False)
    pd.DataFrame({"prompt": ["photo", "essay"], "min": [0, 1], "max": [3, 10]}).to_csv(tmp_path / "ranges.csv",
                                                                                       index=False)
    assert cv_cli([str(tmp_path / "answers.csv"), "--folds", "3", "--save-dir", str(tmp_path / "cv"),
                   "--key-column", "id", "--prompt-column", "question", "--text-column", "answer",
                   "--score-column", "mark", "--score-ranges", str(tmp_path / "ranges.csv"), "--score-step", "0.5",
                   "--fit-cutpoints", "--valid-fraction", "0.2", *TINY]) == 0
    metrics = json.loads((tmp_path / "cv" / "results" / "metrics-cv.json").read_text())
    assert "pooled" in metrics["kinds"] and "cutpoint_warnings" in metrics
    assert report_cli([str(tmp_path / "cv"), str(tmp_path / "answers.csv"), "--key-column", "id",
                       "--group-column", "school", "--bootstrap", "100"]) == 0
    rep = json.loads((tmp_path / "cv" / "results" / "report-cv-oof.json").read_text(encoding="utf-8"))
    html = (tmp_path / "cv" / "results" / "report-cv-oof.html").read_text(encoding="utf-8")
    per = rep["traits"]["score"]
    assert per["overall"]["scale"] == "0-1" and "distribution" not in per["overall"]
    assert any(f["check"] == "sd_ratio" for f in rep["flags"]) and "machine SD" in html
    assert not [f for f in rep["flags"] if f["check"] == "dsm"]
    assert all(lv["too_few"] for lv in per["overall"]["groups"]["school"]["levels"].values())
    assert {w["scope"] for w in rep["warnings"]} == {"prompt photo", "prompt essay"} and 'id="warnings"' in html


def test_cv_folds_keep_no_epoch_files_unless_asked(tmp_path):
    """A fold needs only its checkpoint_best.pt: scorelib-cv as README shows it (no --no-epoch-checkpoints) keeps no
    checkpoint{N}.pt per fold (263 MB each for the default encoder); --keep-epoch-checkpoints keeps them."""
    from scorelib.cv.out_of_fold import fold_args

    table = PromptTable(ids=["q"], ranges={"q": (0.0, 3.0)}, step=1.0)
    plain = fold_args(parse_cv_args(["--save-dir", str(tmp_path)]), tmp_path / "fold0", tmp_path / "r.csv", table)
    kept = fold_args(parse_cv_args(["--save-dir", str(tmp_path), "--keep-epoch-checkpoints"]), tmp_path / "fold0",
                     tmp_path / "r.csv", table)
    assert plain.no_epoch_checkpoints is True and kept.no_epoch_checkpoints is False
