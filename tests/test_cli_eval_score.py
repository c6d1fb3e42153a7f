"""Tests of the command-line tools ``scorelib-eval`` and ``scorelib-score`` (scorelib.cli) on a trained save dir."""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import torch

import scorelib
from scorelib.cli.eval import cli_main as eval_cli
from scorelib.cli.score import cli_main as score_cli
from scorelib.data.demo import DEMO_RANGES

# every test here reads conftest.py's trained_dir: a real training run (once per session)
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
FORMULA_LIKE = ["=1+1 is how a spreadsheet adds two numbers", '=HYPERLINK("http://example.com","click") here',
                "=SUM(A1:A9) adds a column", "+cmd|' /C calc'!A0 and then some words", "@SUM(1,2) looks like a formula"]


def result_files(folder, split):
    return {kind: Path(folder) / f"{stem}-checkpoint_best-{split}.{ext}" for kind, stem, ext in
            [("xlsx", "result", "xlsx"), ("csv", "result", "csv"), ("metrics", "metrics", "json"),
             ("plot", "plot", "png")]}


def read_csv(path):
    return pd.read_csv(path, dtype={"key": str, "prompt": str, "text": str}, keep_default_na=False)


@pytest.fixture(scope="module")
def scorer(trained_dir):
    return scorelib.load(trained_dir, device="cpu")


@pytest.fixture(scope="module")
def valid_keys(trained_dir, tokenizer):
    """The keys of the valid split the trained model was validated on, rebuilt from its options."""
    from scorelib.tasks.text_scoring import TextScoringTask

    cfg = torch.load(trained_dir / "checkpoint_best.pt", weights_only=True)["cfg"]
    task = TextScoringTask.setup_task(argparse.Namespace(**cfg), tokenizer)
    return task.frames["valid"]["key"].tolist()


def test_eval_writes_result_files_with_per_prompt_rescaling(trained_dir, tmp_path, scorer, valid_keys, capsys):
    out = tmp_path / "results"
    assert eval_cli([str(trained_dir), "--cpu", "--split", "valid", "--results-path", str(out)]) == 0
    assert "checkpoint_best.pt on valid:" in capsys.readouterr().out
    files = result_files(out, "valid")
    for path in files.values():
        assert path.is_file() and path.stat().st_size > 0, path
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    frame = read_csv(files["csv"])
    assert list(frame.columns) == ["key", "prompt", "gold", "pred", "pred_rounded", "text"]
    assert frame["key"].tolist() == valid_keys and len(valid_keys) == 24
    metrics = json.loads(files["metrics"].read_text())
    assert metrics["n"] == 24 and set(metrics["per_prompt"]) == {"q1", "q2", "q3"}
    sheet = openpyxl.load_workbook(files["xlsx"]).active
    assert [c.value for c in sheet[1]] == list(frame.columns)
    assert [row[0].value for row in sheet.iter_rows(min_row=2)] == valid_keys

    for pid, (lo, hi) in DEMO_RANGES.items():
        rows = frame[frame["prompt"] == pid].head(2)
        assert len(rows) == 2
        texts, prompt, contexts = scorer.check(rows["text"].tolist(), pid, None)
        pred01 = scorer.score01_dataset(scorer.dataset(texts, prompt, contexts))
        np.testing.assert_allclose(rows["pred"], pred01 * (hi - lo) + lo, atol=1e-4)
        np.testing.assert_allclose(rows["pred"], scorer.score(texts, prompt=pid), atol=1e-4)
        assert ((rows["pred_rounded"] >= lo) & (rows["pred_rounded"] <= hi)).all()
        assert ((rows["gold"] >= lo) & (rows["gold"] <= hi)).all()


def test_eval_console_script(trained_dir, tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([BIN / "scorelib-eval", trained_dir, "--cpu", "--split", "test", "--results-path", out],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checkpoint_best.pt on test:" in proc.stdout
    files = result_files(out, "test")
    assert all(p.is_file() for p in files.values())
    assert len(read_csv(files["csv"])) == 24


def test_formula_like_texts_stay_text_in_the_xlsx(trained_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    table = pd.DataFrame({"key": ["=A1", "k2", "k3", "k4", "-5"], "prompt": ["q1", "q2", "q3", "q1", "q2"],
                          "text": FORMULA_LIKE, "score": [1, 3, 5, 2, 4]})
    table.to_csv(data / "test.csv", index=False)
    out = tmp_path / "results"
    # the data folder after an option: scorelib-eval SAVE_DIR --split test DATA_FOLDER
    assert eval_cli([str(trained_dir), "--split", "test", str(data), "--cpu", "--results-path", str(out)]) == 0
    files = result_files(out, "test")
    sheet = openpyxl.load_workbook(files["xlsx"]).active
    header = [c.value for c in sheet[1]]
    rows = list(sheet.iter_rows(min_row=2))
    assert len(rows) == len(table)
    for row, key, text in zip(rows, table["key"], table["text"]):
        cells = dict(zip(header, row))
        assert cells["text"].data_type == "s" and cells["text"].value == text
        assert cells["key"].data_type == "s" and cells["key"].value == key
        assert cells["pred"].data_type == "n"
    frame = read_csv(files["csv"])
    assert frame["text"].tolist() == FORMULA_LIKE and frame["key"].tolist() == table["key"].tolist()
    lo, hi = np.array([DEMO_RANGES[p] for p in table["prompt"]]).T
    assert ((frame["pred"] >= lo) & (frame["pred"] <= hi)).all()


def test_score_texts_on_a_prompt(trained_dir, capsys):
    assert score_cli([str(trained_dir), "--prompt", "q2", "--cpu", "The cache keeps recent data close.",
                      "No idea."]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2
    for line in lines:  # "3.0 on q2's 1–6 scale (rounded: 3)"
        match = re.fullmatch(r"(\d\.\d) on q2's 1–6 scale \(rounded: (\d)\)", line)
        assert match, line
        assert 1.0 <= float(match.group(1)) <= 6.0 and abs(float(match.group(1)) - int(match.group(2))) <= 0.55
    assert "no --prompt given" not in captured.err


def test_score_json_gives_range_and_rounded_score(trained_dir, scorer, capsys):
    text = "The cache keeps recent data close."
    assert score_cli([str(trained_dir), "--prompt", "q2", "--cpu", "--format", "json", text]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record) == {"prompt", "score", "score_rounded", "min", "max"}
    assert (record["prompt"], record["min"], record["max"]) == ("q2", 1.0, 6.0)
    assert record["score"] == pytest.approx(scorer.score(text, prompt="q2"), abs=1e-6)
    assert record["score_rounded"] == float(scorer.round(record["score"], "q2")[0])


def test_score_reads_stdin(trained_dir):
    proc = subprocess.run([BIN / "scorelib-score", trained_dir, "--cpu", "--prompt", "q1"],
                          input="first answer\n\nsecond answer\n", capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all(" on q1's 0–3 scale (rounded: " in line for line in lines)
    scores = [float(line.split()[0]) for line in lines]
    assert all(0.0 <= v <= 3.0 for v in scores)  # q1's range
    # without --prompt, a model of three prompts refuses (tests/test_bad_inputs.py) instead of guessing q1


def test_score_unknown_prompt_lists_known_ones(trained_dir):
    proc = subprocess.run([BIN / "scorelib-score", trained_dir, "--cpu", "--prompt", "q9", "an answer"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "unknown prompt 'q9'" in proc.stderr and "q1 (0–3), q2 (1–6), q3 (0–10)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_score_table_keeps_every_key_in_order(trained_dir, tmp_path, scorer, capsys):
    keys = ["007", "b-2", "a-1", "10", "9"]
    prompts = ["q3", "q1", "q2", "q1", "q3"]
    texts = ["Caching stores results.", "A short answer.", "Another answer here.", "Yet one more.", "The end."]
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"key": keys, "prompt": prompts, "text": texts}).to_csv(src, index=False)
    assert score_cli([str(trained_dir), "--cpu", "--input", str(src), "--output", str(dst)]) == 0
    assert "scored 5 rows" in capsys.readouterr().err
    out = read_csv(dst)
    assert out["key"].tolist() == keys and out["prompt"].tolist() == prompts and out["text"].tolist() == texts
    for pid, text, pred, rounded in zip(prompts, texts, out["pred"], out["pred_rounded"]):
        lo, hi = DEMO_RANGES[pid]
        assert lo <= pred <= hi and lo <= rounded <= hi and rounded == round(rounded)
        assert abs(pred - scorer.score(text, prompt=pid)) < 1e-4


def test_score_table_with_an_empty_text_names_the_row(trained_dir, tmp_path, capsys):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"key": ["a", "b", "c"], "prompt": ["q1", "q1", "q2"], "text": ["fine", "  ", "fine too"]}) \
        .to_csv(src, index=False)
    assert score_cli([str(trained_dir), "--cpu", "--input", str(src), "--output", str(dst)]) == 2
    err = capsys.readouterr().err
    assert "column 'text': empty or whitespace-only text at row(s) 3" in err and str(src) in err
    assert "Traceback" not in err
    assert not dst.exists()
