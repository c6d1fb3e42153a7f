"""One tiny run on a table with its own column names and no prompt column, with --tensorboard-logdir and
--fit-cutpoints: the curves come back through TensorBoard's own event reader, the score line names no prompt
("on the 0–3 scale", not "0's") and says it rounds by the fitted cut-points, and scorelib-score --input reads the
training run's column names without being told them."""
import json
import logging
import re
from types import SimpleNamespace

import pandas as pd
import pytest

from conftest import module_scratch, train_args

WORDS = ["cache", "memory", "latency", "bandwidth", "register", "disk", "page", "line"]


@pytest.fixture(scope="module")
def run(request, tmp_path_factory):
    from scorelib import train

    with module_scratch(request, tmp_path_factory, "curves") as tmp:
        rows = [f"e{i},an answer about {' '.join(WORDS[: 1 + i % 8])} number {i},{i % 4}" for i in range(60)]
        data = tmp / "marks.csv"
        data.write_text("id,answer,mark\n" + "\n".join(rows) + "\n", encoding="utf-8")
        logs = []
        handler = logging.Handler()
        handler.emit = lambda record: logs.append(record.getMessage())
        logger, level = logging.getLogger("scorelib"), logging.getLogger("scorelib").level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            out = train(train_args(tmp / "marks", data, "--key-column", "id", "--text-column", "answer",
                                   "--score-column", "mark", "--score-step", "1", "--score-range", "0", "3",
                                   "--fit-cutpoints", "--tensorboard-logdir", tmp / "tb", "--log-interval", "1",
                                   "--max-epoch", "2", "--no-save-optimizer-state"))
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        yield SimpleNamespace(tmp=tmp, save_dir=tmp / "marks", tb=tmp / "tb", logs=logs, out=out)


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_valid_metrics_and_the_train_curves(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert [p.name for p in run.tb.iterdir()] == ["marks"]  # one run per save dir, named after it
    events = EventAccumulator(str(run.tb / "marks"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"valid/qwk", "valid/pearson", "valid/rmse", "valid/loss", "train/loss", "train/lr", "train_inner/loss",
            "train_inner/lr"} <= tags, tags
    history = pd.read_csv(run.save_dir / "history.csv")
    assert [e.value for e in events.Scalars("valid/qwk")] == pytest.approx(history["valid_qwk"].tolist(), abs=1e-6)
    assert [e.step for e in events.Scalars("valid/qwk")] == history["updates"].tolist()
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(history["train_loss"].tolist(), rel=1e-5)
    assert len(events.Scalars("train_inner/loss")) == history["updates"].iloc[-1]  # --log-interval 1


def test_a_cv_fold_writes_its_curves_under_the_cv_runs_folder(tmp_path):
    import argparse

    from scorelib.logging.progress_bar import run_dir
    from scorelib.cv.out_of_fold import fold_args
    from scorelib.options import parse_args
    from scorelib.data.prompts import PromptTable

    args = parse_args(["--save-dir", str(tmp_path / "cv5"), "--tensorboard-logdir", str(tmp_path / "tb")])
    table = PromptTable(["a"], {"a": (0.0, 3.0)}, step=1.0)
    fold = fold_args(args, tmp_path / "cv5" / "fold2", tmp_path / "cv5" / "ranges.csv", table)
    assert run_dir(fold.tensorboard_logdir, fold.save_dir) == tmp_path / "tb" / "cv5" / "fold2"
    assert isinstance(fold, argparse.Namespace) and args.tensorboard_logdir == str(tmp_path / "tb")


@pytest.mark.slow
def test_logs_leave_the_implicit_prompt_out(run):
    loaded = [line for line in run.logs if line.startswith(("train: ", "valid: "))]
    assert loaded and not any("(0: " in line for line in loaded), loaded
    assert json.loads((run.save_dir / "prompts.json").read_text())["implicit_prompt"] is True


@pytest.mark.slow
def test_the_score_line_of_a_one_prompt_model_names_no_prompt_and_the_cut_points(run, capsys):
    from scorelib.cli.score import cli_main as score_cli

    assert score_cli([str(run.save_dir), "--cpu", "an answer about the cache"]) == 0  # one prompt: no --prompt
    out, err = capsys.readouterr()
    assert re.fullmatch(r"\d\.\d on the 0–3 scale \(rounded by the fitted cut-points: \d\)\n", out), out
    assert "0's" not in out + err
    assert score_cli([str(run.save_dir), "--cpu", "--format", "json", "an answer"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["implicit_prompt"] is True and record["rounded_by_cutpoints"] is True


@pytest.mark.slow
def test_input_without_column_flags_reads_the_training_runs_names(run, capsys):
    from scorelib import load
    from scorelib.cli.score import cli_main as score_cli

    src, dst = run.tmp / "new.csv", run.tmp / "new-scored.csv"
    texts = ["an answer about the cache", "memory and latency", "a third answer"]
    pd.DataFrame({"answer": texts, "id": ["n1", "n2", "n3"], "note": ["x", "y", "z"]}).to_csv(src, index=False)
    assert score_cli([str(run.save_dir), "--cpu", "--input", str(src), "--output", str(dst)]) == 0
    capsys.readouterr()
    scored = pd.read_csv(dst, dtype=str)
    assert scored["id"].tolist() == ["n1", "n2", "n3"] and scored["answer"].tolist() == texts
    expected = load(run.save_dir, device="cpu").score(texts)
    assert scored["pred"].astype(float).tolist() == pytest.approx(list(expected), abs=1e-4)
    # a flag still wins over the training run's name
    pd.DataFrame({"answer": texts, "body": ["x y", "y z", "z w"], "id": ["n1", "n2", "n3"]}).to_csv(src, index=False)
    assert score_cli([str(run.save_dir), "--cpu", "--input", str(src), "--output", str(dst),
                      "--text-column", "body"]) == 0
    assert pd.read_csv(dst)["pred"].tolist() == pytest.approx(list(load(run.save_dir, device="cpu").score(
        ["x y", "y z", "z w"])), abs=1e-4)


@pytest.mark.slow
def test_input_names_the_training_runs_text_column_when_the_table_lacks_it(run, capsys):
    from scorelib.cli.score import cli_main as score_cli

    src = run.tmp / "other.csv"
    pd.DataFrame({"id": ["n1"], "essay": ["an answer"]}).to_csv(src, index=False)
    assert score_cli([str(run.save_dir), "--cpu", "--input", str(src), "--output", str(run.tmp / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "missing column 'answer'" in err and "--text-column" in err and str(src) in err
