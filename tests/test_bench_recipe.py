"""bench/bench_recipe.py's bookkeeping (no training): resumable results, wins on valid, no test table."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_recipe as R  # noqa: E402


def run(data_set, setting, valid, maximize=True, budget_s=60.0, max_rows=None, train_rows_cap=None):
    return {"data_set": data_set, "setting": setting, "valid": valid, "maximize": maximize, "budget_s": budget_s,
            "max_rows": max_rows, "train_rows_cap": train_rows_cap, "epochs": 2, "wall_s": 90.0}


def key(r):
    return f"{r['data_set']}|{r['setting']}|{r['budget_s']:.0f}|{r['max_rows']}|{r['train_rows_cap']}"


def test_wins_count_data_sets_where_a_setting_beats_baseline_in_the_metrics_direction():
    runs = [run("demo", "baseline", 0.5), run("demo", "attention", 0.6), run("demo", "cls", 0.4),
            run("feedback_prize_ell", "baseline", 0.55, False), run("feedback_prize_ell", "attention", 0.50, False),
            run("feedback_prize_ell", "cls", 0.60, False)]
    wins = R.wins({key(r): r for r in runs})
    assert wins == {"attention": ["demo", "feedback_prize_ell"], "cls": []}
    smaller = run("demo", "dropout0", 0.9, train_rows_cap=100)  # another study size: no baseline of its own here
    assert "dropout0" not in R.wins({key(r): r for r in [*runs, smaller]})
    text = R.table({key(r): r for r in runs})
    assert text.startswith("| setting | feedback_prize_ell (mcrmse) | demo (qwk) |")
    assert "| attention | 0.5000 (2 ep, 1.5 min) | 0.6000 (2 ep, 1.5 min) |" in text
    assert "attention: beats baseline on valid on 2 data set(s)" in text


def test_runs_are_appended_and_other_entries_kept(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"bench_long": {"x": 1}}))
    a, b = run("demo", "baseline", 0.5), run("demo", "cls", 0.4)
    R.store(path, key(a), a)
    R.store(path, key(b), b)
    data = json.loads(path.read_text())
    assert data["bench_long"] == {"x": 1} and list(data["recipe"]["runs"]) == [key(a), key(b)]
    assert R.load_results(path)["runs"][key(b)]["valid"] == 0.4


def test_prepare_writes_train_and_valid_only(tmp_path):
    flags, train = R.prepare("demo", tmp_path / "data", max_rows=32)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["ranges.csv", "train.csv", "valid.csv"]
    assert len(train) == 32 and "--score-ranges" in flags


def test_train_rows_keeps_a_seeded_train_sample_and_the_whole_valid_split(tmp_path):
    flags, train = R.prepare("demo", tmp_path / "a", max_rows=None, train_rows=100)
    again = R.prepare("demo", tmp_path / "b", max_rows=None, train_rows=100)[1]
    valid = (tmp_path / "a" / "valid.csv").read_text().splitlines()
    assert len(train) == 100 and train["key"].tolist() == again["key"].tolist()
    assert len(valid) == 1 + 270 and "--max-length" not in flags  # the window is the data set's, unchanged


def test_a_second_round_setting_is_judged_against_the_first_rounds_winner():
    """``head_lr_dropout0`` counts a win where it beats ``head_lr`` (AGAINST), not where it beats the baseline."""
    runs = [run("demo", "baseline", 0.5), run("demo", "head_lr", 0.7), run("demo", "head_lr_dropout0", 0.6),
            run("feedback_prize_ell", "baseline", 0.55, False), run("feedback_prize_ell", "head_lr", 0.54, False),
            run("feedback_prize_ell", "head_lr_dropout0", 0.52, False)]
    wins = R.wins({key(r): r for r in runs})
    assert wins["head_lr_dropout0"] == ["feedback_prize_ell"]  # beats baseline on demo too, but not head_lr
    assert "head_lr_dropout0: beats head_lr on valid on 1 data set(s): feedback_prize_ell" in R.table(
        {key(r): r for r in runs})


def test_a_setting_at_the_same_cost_trains_for_the_epochs_of_the_run_it_is_judged_against(tmp_path, monkeypatch):
    """``head_lr_dropout0_cls`` (pooling costs nothing) takes ``head_lr_dropout0``'s epochs, not the baseline's."""
    import pandas as pd

    calls = []

    def fake_train(data, flags, save_dir):  # no training: record the flags, write what run_setting reads
        calls.append(flags)
        save_dir.mkdir(parents=True)
        pd.DataFrame({"seconds": [1.0], "valid_qwk": [0.5]}).to_csv(save_dir / "history.csv", index=False)
        return {"overall": {"qwk": 0.5}}, 1.0, {"mean": 0.0}, ""

    monkeypatch.setattr(R, "train", fake_train)
    against = {**run("demo", "head_lr_dropout0", 0.9), "epochs": 3, "estimated_epoch_s": 30.0}
    got = R.run_setting("demo", "head_lr_dropout0_cls", 90.0, 10, None, None, against)
    assert len(calls) == 1 and calls[0][calls[0].index("--max-epoch") + 1] == "3"  # no calibration of its own
    assert calls[0][calls[0].index("--pooling") + 1] == "cls" and calls[0][calls[0].index("--head-lr") + 1] == "5e-4"
    assert got["epochs"] == 3 and got["epochs_from"] == "head_lr_dropout0's calibration"


def test_a_winner_judged_again_in_a_later_round_is_decided_there():
    """``cls`` beats the baseline on three sets, but ``head_lr_dropout0_cls`` (cls on the new defaults) decides."""
    sets = [("demo", True), ("mohler_sag", True), ("clear_readability", False), ("feedback_prize_ell", False)]
    runs = []
    for n, up in sets:
        sign = 1 if up else -1
        runs += [run(n, "baseline", 0.5, up), run(n, "cls", 0.5 + sign * 0.01, up),
                 run(n, "head_lr_dropout0", 0.6, up), run(n, "head_lr_dropout0_cls", 0.6 - sign * 0.01, up)]
    text = R.table({key(r): r for r in runs})
    assert "- cls: beats baseline on valid on 4 data set(s)" in text
    assert "judged again on top of the newer defaults, as head_lr_dropout0_cls, which decides" in text
    assert "- head_lr_dropout0_cls: beats head_lr_dropout0 on valid on 0 data set(s)\n" in text + "\n"
    assert "-> change the default" not in text.split("- cls:")[1].split("\n")[0]
