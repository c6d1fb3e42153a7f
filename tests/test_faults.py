"""Faults: unsafe or damaged checkpoints, NaN losses and out-of-memory batches.

Checkpoints are loaded with ``torch.load(weights_only=True)`` (scorelib.checkpoint_utils.load_checkpoint),
so a file that smuggles Python objects is refused before any of its code can run.
"""
import logging
import math
import shutil

import numpy as np
import pytest
import torch

import scorelib
from conftest import train_args
from scorelib import checkpoint_utils
from scorelib.cli.eval import cli_main as eval_cli
from scorelib.cli.score import cli_main as score_cli
from scorelib.cli.train import cli_main as train_cli
from scorelib.models.scoring_model import ScoringModel
from scorelib.trainer import Trainer

TRAIN_ARGV = ["--cpu", "--max-epoch", "1", "--max-train-rows", "16", "--max-eval-rows", "8", "--batch-size", "4",
              "--log-format", "simple", "--no-epoch-checkpoints"]


class Payload:
    """Unpickling this runs ``open(marker, "w")``, which creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def save_dir_with(trained_dir, target, write_checkpoint):
    """A copy of a real save dir's assets with a checkpoint_best.pt written by ``write_checkpoint(path)``."""
    for name in ("tokenizer", "encoder"):
        shutil.copytree(trained_dir / name, target / name)
    shutil.copyfile(trained_dir / "prompts.json", target / "prompts.json")
    write_checkpoint(target / "checkpoint_best.pt")
    return target


def plant(path, marker):
    torch.save({"format_version": 1, "model": {}, "cfg": Payload(marker)}, path)


def test_the_planted_payload_is_live(tmp_path):
    """Control: without weights_only the planted file does run its code, so the refusals below mean something."""
    marker = tmp_path / "ran"
    plant(tmp_path / "evil.pt", marker)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.slow
def test_planted_pickle_is_refused_by_load_eval_score_and_finetune(trained_dir, tmp_path, capsys):
    marker = tmp_path / "pwned"
    save_dir = save_dir_with(trained_dir, tmp_path / "evil", lambda p: plant(p, marker))
    evil = save_dir / "checkpoint_best.pt"

    with pytest.raises(checkpoint_utils.CheckpointError, match="refused to load") as info:
        scorelib.load(save_dir, device="cpu")
    message = str(info.value)
    assert str(evil) in message and "blocked global io.open" in message
    assert "will likely succeed" not in message and "\x1b" not in message  # none of torch's advice to switch it off
    assert "never load it with weights_only=False unless you trust" in message
    assert not marker.exists()

    assert eval_cli([str(save_dir), "--cpu", "--split", "valid", "--results-path", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scorelib-eval: error:") and "refused to load" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "res").exists()

    assert score_cli([str(evil), "--cpu", "--prompt", "q1", "some answer"]) == 2
    assert "refused to load" in capsys.readouterr().err
    assert not marker.exists()

    rc = train_cli(["--save-dir", str(tmp_path / "ft"), *TRAIN_ARGV, "--finetune-from-model", str(evil)])
    assert rc == 2 and "refused to load" in capsys.readouterr().err
    assert not marker.exists()


def test_foreign_checkpoints_give_clear_errors(tmp_path):
    # a truncated checkpoint: the bad-input suite's case "truncated checkpoint" (scorelib-eval, one line, exit 2)
    not_torch = tmp_path / "notes.pt"
    not_torch.write_text("these are my notes, not a model")
    with pytest.raises(checkpoint_utils.CheckpointError, match="not a torch checkpoint") as info:
        checkpoint_utils.load_checkpoint(not_torch)
    assert str(info.value).startswith(f"{not_torch}: not a torch") and "truncated" not in str(info.value)[len(str(not_torch)):]

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(checkpoint_utils.CheckpointError, match="not a scorelib checkpoint"):
        checkpoint_utils.load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        checkpoint_utils.load_checkpoint(tmp_path / "missing.pt")


@pytest.fixture
def train_batches(monkeypatch):
    """Records the keys of each training update's batches."""
    seen = []
    original = Trainer.train_step

    def step(trainer, samples):
        seen.append([k for s in samples for k in s["key"]])
        return original(trainer, samples)

    monkeypatch.setattr(Trainer, "train_step", step)
    return seen


def nan_on_training_call(monkeypatch, n):
    """Make the ``n``-th training forward return NaN scores."""
    calls = []
    original = ScoringModel.forward

    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.training:
            calls.append(1)
            if len(calls) == n:
                return {"encoder_out": out["encoder_out"] * float("nan")}
        return out

    monkeypatch.setattr(ScoringModel, "forward", forward)


@pytest.mark.slow
def test_nan_loss_stops_training_naming_the_batch(tmp_path, monkeypatch, capsys, train_batches):
    nan_on_training_call(monkeypatch, 2)
    assert train_cli(["--save-dir", str(tmp_path / "nan"), *TRAIN_ARGV]) == 2
    err = capsys.readouterr().err
    assert len(train_batches) == 2  # stopped on the second update
    assert "loss is nan at update 2" in err and "--skip-invalid-loss" in err and "Traceback" not in err
    for key in train_batches[1]:
        assert key in err
    assert not any(key in err for key in train_batches[0])


@pytest.fixture
def scorelib_log():
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("scorelib")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.mark.slow
def test_skip_invalid_loss_skips_logs_and_finishes(tmp_path, monkeypatch, train_batches, scorelib_log):
    nan_on_training_call(monkeypatch, 2)
    save_dir = tmp_path / "skip"
    out = scorelib.train(train_args(save_dir, *TRAIN_ARGV[1:], "--skip-invalid-loss"))
    assert len(train_batches) == 4  # every batch of the epoch was still visited
    skipped = [r.getMessage() for r in scorelib_log if "skipping a batch" in r.getMessage()]
    assert len(skipped) == 1 and "loss is nan" in skipped[0]
    assert all(key in skipped[0] for key in train_batches[1])
    row = out["history"][-1]
    assert row["updates"] == 4 and math.isfinite(row["train_loss"])
    state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert math.isfinite(out["metrics"]["valid"]["overall"]["rmse"])


def test_out_of_memory_names_the_batch_shape_and_max_tokens(tmp_path, monkeypatch, capsys):
    shapes = []

    def forward(self, input_ids, *args, **kwargs):
        shapes.append(tuple(input_ids.shape))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ScoringModel, "forward", forward)
    rc = train_cli(["--save-dir", str(tmp_path / "oom"), *TRAIN_ARGV, "--max-tokens", "1000"])
    assert rc == 2
    err = capsys.readouterr().err
    b, t = shapes[0]
    assert len(shapes) == 1 and f"out of memory on a batch of {b} texts x {t} tokens" in err
    assert "lower --max-tokens (now 1000)" in err and "Traceback" not in err


def test_a_bug_keeps_its_traceback_while_user_errors_are_one_line(tmp_path, monkeypatch, capsys):
    """Only the user's mistakes (ScorelibError) become one line; anything else is a bug and is raised as is."""
    def broken(*args, **kwargs):
        raise KeyError("internal bookkeeping")

    monkeypatch.setattr(scorelib.TextScoringTask, "build_criterion", broken)
    with pytest.raises(KeyError, match="internal bookkeeping"):
        train_cli(["--save-dir", str(tmp_path / "bug"), *TRAIN_ARGV])
    monkeypatch.undo()
    capsys.readouterr()
    missing = tmp_path / "answers.csv"
    assert train_cli([str(missing), "--save-dir", str(tmp_path / "bad"), *TRAIN_ARGV]) == 2
    err = capsys.readouterr().err
    assert err == f"scorelib-train: error: data {missing}: no such file or folder\n"
    assert not (tmp_path / "bad").exists()  # refused before the save dir was made


def test_import_configures_no_logging():
    """``import scorelib`` adds only a NullHandler and leaves propagation on; the CLI sets up its own output."""
    import subprocess
    import sys

    code = ("import logging, scorelib; log = logging.getLogger('scorelib'); "
            "print([type(h).__name__ for h in log.handlers], log.propagate, log.level)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['NullHandler'] True 0"


# ---------------------------------------------------------------- two runs, one save dir (scorelib.locks)
@pytest.mark.slow
def test_a_second_run_on_a_save_dir_in_use_is_refused_and_a_killed_runs_lock_taken_over(tmp_path):
    """Two real scorelib-train processes: the second, started while the first is inside its first checkpoint save,
    is refused in one line naming the first (exit 2) and leaves the first's in-flight file alone; once the first is
    killed, the next run takes its lock over with a warning and finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from scorelib.locks import LOCK_NAME
    from scorelib.writers import PAUSE_ENV

    save = tmp_path / "run"
    argv = [str(Path(sys.executable).parent / "scorelib-train"), "--save-dir", str(save), *TRAIN_ARGV]
    env = {k: v for k, v in os.environ.items() if k != PAUSE_ENV}
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**env, PAUSE_ENV: "300"})
    try:
        deadline = time.monotonic() + 300
        while not list(save.glob(".checkpoint*.tmp")):  # the first run is writing its first checkpoint
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first run never reached its first save"
            time.sleep(0.05)
        in_flight = list(save.glob(".checkpoint*.tmp"))
        second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        assert second.returncode == 2, second.stderr[-3000:]
        assert second.stderr.count("\n") == 1 and second.stderr.startswith(f"scorelib-train: error: --save-dir {save}: "
                                                                           f"in use by process {first.pid} ")
        assert "scorelib-train --save-dir" in second.stderr and "started" in second.stderr
        assert all(p.is_file() for p in in_flight) and first.poll() is None  # the first run was not disturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert str(first.pid) in (save / LOCK_NAME).read_text()  # a killed run cannot clear its lock's text
    third = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert f"taking over the lock left by process {first.pid} " in third.stdout
    assert "no longer running" in third.stdout and "left by a save that was interrupted" in third.stdout
    assert not list(save.glob(".*.tmp")) and (save / "checkpoint_best.pt").is_file()
    assert (save / LOCK_NAME).read_text() == ""  # released cleanly at the end of the run


HOLD = "import sys, time; from scorelib import locks; locks.acquire(sys.argv[1], 'x'); print('locked', flush=True); " \
       "time.sleep(120)"


def held_by_another_process(folder):
    import subprocess
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def run_while_held(folder, command, capsys) -> tuple[int, str, int]:
    """``command()`` while another process holds ``folder``'s lock: (its exit status, its stderr, the holder's pid)."""
    holder = held_by_another_process(folder)
    try:
        code = command()
    finally:
        holder.kill()
        holder.wait()
    return code, capsys.readouterr().err, holder.pid


def test_a_cv_dir_in_use_is_refused_before_anything_is_written(tmp_path, capsys):
    """scorelib-cv locks its CV dir for the whole cross-validation (each fold's run locks its own fold{i}/)."""
    from test_cv import TINY, small_table

    from scorelib.cli.cv import cli_main as cv_cli

    data = small_table(tmp_path / "data")
    code, err, pid = run_while_held(
        tmp_path / "cv", lambda: cv_cli([str(data), "--folds", "3", "--save-dir", str(tmp_path / "cv"), *TINY]), capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"scorelib-cv: error: --save-dir {tmp_path / 'cv'}: in use by process {pid} ")
    assert [p.name for p in (tmp_path / "cv").iterdir()] == [".scorelib.lock"]  # nothing of the run written


def test_eval_refuses_a_results_folder_another_evaluation_writes(trained_dir, tmp_path, capsys):
    results = tmp_path / "results"
    code, err, pid = run_while_held(
        results, lambda: eval_cli([str(trained_dir), "--split", "valid", "--cpu", "--results-path", str(results)]),
        capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"scorelib-eval: error: --results-path {results}: in use by process {pid} ")
    assert [p.name for p in results.iterdir()] == [".scorelib.lock"]


# ---------------------------------------------------------------- damaged or edited save dirs (issue 34, item 6)
def edited_copy(trained_dir, target, edit_state=None, stack=False):
    """A save dir beside ``trained_dir``: its tokenizer and encoder linked, prompts.json copied, checkpoint_best.pt
    rewritten after ``edit_state(state)``; with ``stack``, a real TF-IDF stack fitted on a few demo texts in stack/
    (and ``cfg.stack`` set), so that the stack's files can be damaged without another training run."""
    import os

    target.mkdir()
    for name in ("tokenizer", "encoder"):
        os.symlink(trained_dir / name, target / name)
    shutil.copyfile(trained_dir / "prompts.json", target / "prompts.json")
    state = torch.load(trained_dir / "checkpoint_best.pt", map_location="cpu", weights_only=True)
    if stack:
        from scorelib.data.demo import load_demo
        from scorelib.stack.tfidf import STACK_DIR, TfidfStack

        frame = load_demo()["train"].head(40)
        y = (frame["score"].astype(float) / 10).to_numpy()
        TfidfStack.fit(frame["text"].tolist(), y, frame["text"].tolist(), y).save(target / STACK_DIR)
        state["cfg"]["stack"] = "tfidf"
    if edit_state:
        edit_state(state)
    torch.save(state, target / "checkpoint_best.pt")
    return target


def edit_json(path, edit):
    import json

    value = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(edit(value)), encoding="utf-8")


def edit_npz(path, **arrays):
    import numpy as np

    with np.load(path) as data:
        values = {k: data[k] for k in data.files}
    values.update(arrays)
    with open(path, "wb") as f:
        np.savez_compressed(f, **values)


def head_weight(state):
    """One NaN in the last matrix of the model (the head's output layer)."""
    name = [k for k in state["model"] if k.endswith(".weight") and state["model"][k].dim() == 2][-1]
    state["model"][name] = state["model"][name].clone()
    state["model"][name][0, 0] = float("nan")
    return name


def fake_cv_dir(trained_dir, target):
    """A CV dir of two folds that are both ``trained_dir`` (linked), with cv.json and prompts.json as scorelib-cv
    writes them."""
    import json
    import os

    target.mkdir()
    for i in range(2):
        os.symlink(trained_dir, target / f"fold{i}")
    shutil.copyfile(trained_dir / "prompts.json", target / "prompts.json")
    cfg = torch.load(trained_dir / "checkpoint_best.pt", map_location="cpu", weights_only=True)["cfg"]
    (target / "cv.json").write_text(json.dumps({"folds": 2, "args": cfg}), encoding="utf-8")
    return target


def stack_case(edit):
    def build(trained_dir, tmp):
        save = edited_copy(trained_dir, tmp / "save", stack=True)
        edit(save / "stack")
        return save
    return build


def state_case(edit):
    return lambda trained_dir, tmp: edited_copy(trained_dir, tmp / "save", edit)


def cv_case(edit):
    def build(trained_dir, tmp):
        cv = fake_cv_dir(trained_dir, tmp / "cv")
        edit(cv)
        return cv
    return build


def set_key(key, value):
    return lambda d: {**d, key: value}


def drop_key(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


DAMAGED = [  # (id, build(trained_dir, tmp) -> the dir scorelib-score reads, needles of its one error line)
    ("checkpoint without encoder", state_case(lambda s: s.pop("encoder")),
     ("checkpoint_best.pt: its 'encoder' entry holds nothing",)),
    ("checkpoint without prompts", state_case(lambda s: s.pop("prompts")),
     ("checkpoint_best.pt: its 'prompts' entry holds nothing",)),
    ("model a list", state_case(lambda s: s.update(model=list(s["model"].values()))),
     ("checkpoint_best.pt: its 'model' entry holds list",)),
    ("ques_emb of the wrong shape", state_case(lambda s: s["model"].update(
        {"ques_emb.weight": torch.zeros(7, s["model"]["ques_emb.weight"].shape[1])})),
     ("checkpoint_best.pt: its weights do not fit its 3 prompt(s)", "ques_emb.weight")),
    ("format_version '1'", state_case(lambda s: s.update(format_version="1")),
     ("checkpoint_best.pt: format_version '1' is not a format number",)),
    ("cfg.max_length 'abc'", state_case(lambda s: s["cfg"].update(max_length="abc")),
     ("checkpoint_best.pt: its options hold max_length 'abc'", "--max-length must be >= 8")),
    ("cfg.pooling unknown", state_case(lambda s: s["cfg"].update(pooling="bogus")),
     ("checkpoint_best.pt: its options hold pooling 'bogus', not one of",)),
    ("a NaN head weight", state_case(head_weight), ("checkpoint_best.pt: weight", "holds NaN or infinite values")),
    ("prompts.json {'ranges': 5}", lambda trained_dir, tmp: (edited_copy(trained_dir, tmp / "save"), edit_json(
        tmp / "save" / "prompts.json", lambda d: {"ranges": 5}))[0], ("prompts.json: not a valid prompt table",)),
    ("prompts.json ranges a number", lambda trained_dir, tmp: (edited_copy(trained_dir, tmp / "save"), edit_json(
        tmp / "save" / "prompts.json", set_key("ranges", 5)))[0],
     ("prompts.json: not a valid prompt table (AttributeError",)),
    ("stack.json without vocabularies", stack_case(lambda d: edit_json(d / "stack.json", drop_key("vocabularies"))),
     ("stack.json: no vocabulary of terms for each of word, char",)),
    ("stack alphas 'x'", stack_case(lambda d: edit_json(d / "stack.json", set_key("alphas", ["x"]))),
     ("stack.json: needs a weight in [0, 1] and an alpha", "alphas ['x']")),
    ("stack weight 25", stack_case(lambda d: edit_json(d / "stack.json", set_key("weight", [25]))),
     ("stack.json: needs a weight in [0, 1]", "got weight [25]")),
    ("stack weight NaN", stack_case(lambda d: edit_json(d / "stack.json", set_key("weight", [float("nan")]))),
     ("stack.json: needs a weight in [0, 1]", "got weight [nan]")),
    ("stack coefficient NaN", stack_case(lambda d: edit_npz(d / "arrays.npz", coef=np.load(d / "arrays.npz")[
        "coef"] * float("nan"))), ("arrays.npz: array 'coef' holds values that are not finite",)),
    ("stack intercept 1e308", stack_case(lambda d: edit_npz(d / "arrays.npz", intercept=np.array([1e308]))),
     ("arrays.npz: array 'intercept' holds values that are not finite or lie outside [-1e+06, 1e+06]",)),
    ("stack array of 1e7 floats", stack_case(lambda d: edit_npz(d / "arrays.npz", idf_word=np.ones(10 ** 7))),
     ("arrays.npz: refused to load: array 'idf_word' takes 80,000,128 bytes, more than its shape",)),
    ("stack/ holding evil.pkl", stack_case(lambda d: (d / "evil.pkl").write_bytes(b"\x80\x04N.")),
     ("stack/evil.pkl: refused: a stack folder holds only stack.json, arrays.npz",)),
    ("cv.json without folds", cv_case(lambda d: edit_json(d / "cv.json", drop_key("folds"))),
     ("cv.json: holds no fold count",)),
    ("CV prompts.json range edited to 0..300", cv_case(lambda d: edit_json(d / "prompts.json", lambda p: {
        **p, "ranges": {**p["ranges"], "q1": [0, 300]}})), ("cv/prompts.json: its ranges", "differ from those",
                                                            "fold0/checkpoint_best.pt was trained on")),
]


@pytest.mark.slow
@pytest.mark.parametrize("build, needles", [pytest.param(b, n, id=i) for i, b, n in DAMAGED])
def test_a_damaged_or_edited_save_dir_is_refused_in_one_line(build, needles, trained_dir, tmp_path, capsys):
    """scorelib-score on a damaged save dir, stack or CV dir: exit 2, one line naming the file and what is wrong,
    no score printed (a NaN never), nothing changed."""
    from test_bad_inputs import snapshot

    target = build(trained_dir, tmp_path)
    before = snapshot(tmp_path, trained_dir)
    capsys.readouterr()
    code = score_cli([str(target), "--cpu", "--prompt", "q1", "--format", "json", "an answer to score"])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("Loading weights")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("scorelib-score: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "NaN" not in out and '"score"' not in out
    assert snapshot(tmp_path, trained_dir) == before


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["stack", "cv"])
def test_the_undamaged_copies_score(kind, trained_dir, tmp_path, capsys):
    """Control for the cases above: the same copies, undamaged, load and score."""
    import json

    target = edited_copy(trained_dir, tmp_path / "save", stack=True) if kind == "stack" else \
        fake_cv_dir(trained_dir, tmp_path / "cv")
    capsys.readouterr()
    assert score_cli([str(target), "--cpu", "--prompt", "q1", "--format", "json", "an answer to score"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= record["score"] <= 3


# ---------------------------------------------------------------- user text in plots (issue 34, item 5)
MATH_IDS = ["$\\foo$", "a$b$c", "50$"]


def math_results(tmp_path, monkeypatch=None):
    from scorelib.data.prompts import PromptTable
    from scorelib.results import results_frame, write_results

    table = PromptTable(ids=MATH_IDS, ranges={p: (0.0, 4.0) for p in MATH_IDS}, step=1.0)
    prompts = [p for p in MATH_IDS for _ in range(4)]
    gold = np.array([0, 1, 3, 4] * 3, dtype=float)
    frame = results_frame([f"k{i}" for i in range(12)], prompts, gold, np.linspace(0.1, 0.9, 12),
                          ["a text"] * 12, table)
    from scorelib.results import frame_metrics

    return write_results(frame, frame_metrics(frame, table), table, tmp_path / "results", "checkpoint_best.pt", "test")


def test_prompt_ids_with_dollars_are_drawn_as_text(tmp_path, log_of):
    """A prompt named ``$\\foo$`` (mathtext that matplotlib cannot parse) is drawn as typed; the control shows
    that matplotlib's default would raise on it."""
    from matplotlib.figure import Figure

    control = Figure()
    control.subplots().set_title(MATH_IDS[0])
    with pytest.raises(ValueError):
        control.savefig(tmp_path / "control.png")
    paths = math_results(tmp_path)
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "not drawn" not in log_of.text
    from scorelib.report.html import dsm_plot

    html = dsm_plot({MATH_IDS[0]: {"dsm": 0.2}, MATH_IDS[1]: {"dsm": -0.05}}, "$group$", 0.1)  # the report's figure
    assert html.startswith('<img alt="plot" src="data:image/png;base64,')


def test_a_figure_that_fails_costs_only_the_figure(tmp_path, monkeypatch, log_of):
    """The result tables and metrics are written before the figure; a failing figure is one warning."""
    import scorelib.results

    def broken(*args, **kwargs):
        raise RuntimeError("the plot broke\non two lines")

    monkeypatch.setattr(scorelib.results, "plot_results", broken)
    paths = math_results(tmp_path)
    for key in ("xlsx", "csv", "metrics"):
        assert paths[key].is_file()
    assert not paths["plot"].exists() and not list(paths["plot"].parent.glob(".*.tmp"))
    warnings = {r.getMessage() for r in log_of.records if r.levelname == "WARNING"}  # (caplog may see it twice)
    assert warnings == {f"{paths['plot']}: not drawn (RuntimeError: the plot broke on two lines); the result tables "
                        f"and metrics are written"}


# ---------------------------------------------------------------- input files are never written over (item 4)
def small_folder(folder):
    """The demo's first 15 rows of each prompt as ``folder/train.csv`` and ``folder/ranges.csv`` (with a note)."""
    import pandas as pd

    from scorelib.data.demo import DEMO_RANGES, load_demo

    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.concat(load_demo().values()).groupby("prompt").head(15)[["key", "prompt", "text", "score"]]
    frame.to_csv(folder / "train.csv", index=False)
    pd.DataFrame([(p, lo, hi, "keep me") for p, (lo, hi) in DEMO_RANGES.items()],
                 columns=["prompt", "min", "max", "note"]).to_csv(folder / "ranges.csv", index=False)
    return folder


@pytest.mark.parametrize("tool", ["cv", "train"])
def test_a_run_that_would_write_over_its_input_is_refused(tool, tmp_path, capsys):
    """``scorelib-cv DATA --save-dir DATA --score-ranges DATA/ranges.csv`` would rewrite ranges.csv (the CV's own
    copy of the ranges); a training run whose data table is named as one of its files (history.csv) the same."""
    from test_bad_inputs import entry, snapshot

    data = small_folder(tmp_path / "data")
    if tool == "train":
        (data / "train.csv").rename(data / "history.csv")
        argv = [str(data / "history.csv"), "--save-dir", str(data)]
        victim = data / "history.csv"
    else:
        argv = [str(data), "--folds", "3", "--save-dir", str(data), "--score-ranges", str(data / "ranges.csv")]
        victim = data / "ranges.csv"
    before = snapshot(tmp_path)
    code = entry(tool)([*argv, *TRAIN_ARGV])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"scorelib-{tool}: error: --save-dir {data}: the run would write over its input "
                                 f"{victim}; choose another folder (scorelib never writes over an input file)\n")
    assert snapshot(tmp_path) == before  # nothing written, the input byte for byte as it was


def test_rsmeval_file_names_are_unique_per_prompt(tmp_path, log_of):
    """Prompt ids that give one file name (``a/b`` and ``a.b``; ``é`` and ``è``) get a file each, suffixed by a hash
    of the id, and a warning says which file holds which prompt; each file's description names its prompt."""
    import json

    import pandas as pd

    from scorelib.data.prompts import PromptTable
    from scorelib.report.rsmeval import write_rsmeval

    ids = ["a/b", "a.b", "é", "è", "plain"]
    table = PromptTable(ids=ids, ranges={p: (0.0, 2.0 + i) for i, p in enumerate(ids)}, step=1.0)
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(10)], "prompt": [p for p in ids for _ in range(2)],
                          "gold": [1.0] * 10, "pred": [1.5] * 10})
    written = write_rsmeval(frame, table, tmp_path / "rsm", [], [], "checkpoint_best-test")
    configs = [json.loads(p.read_text(encoding="utf-8")) for p in written if p.suffix == ".json"]
    assert len(written) == 10 and len(set(written)) == 10 and all(p.is_file() for p in written)
    held = {c["description"].rsplit("prompt ", 1)[1].rstrip(")"): c["predictions_file"] for c in configs}
    assert sorted(held) == sorted(ids)
    for pid, name in held.items():  # each file holds its prompt's rows
        assert pd.read_csv(tmp_path / "rsm" / name, dtype=str)["prompt"].tolist() == [pid, pid]
    assert held["plain"] == "scorelib_checkpoint_best_test__plain.csv"  # as before: no suffix
    warned = {r.getMessage() for r in log_of.records if r.levelname == "WARNING"}
    assert len(warned) == 4 and all(f"--rsmeval-dir: {held[p]} holds prompt {p!r}" in " ".join(warned)
                                    for p in ids[:4])


@pytest.mark.slow
def test_eval_refuses_to_write_its_results_over_its_data(trained_dir, tmp_path, capsys):
    """A table to evaluate named as the result file the evaluation writes (in its --results-path)."""
    from test_bad_inputs import snapshot

    results = small_folder(tmp_path / "results")
    data = results / "result-checkpoint_best-test.csv"
    (results / "train.csv").rename(data)
    before = snapshot(tmp_path)
    code = eval_cli([str(trained_dir), "--cpu", "--split", "test", str(data), "--results-path", str(results)])
    err = capsys.readouterr().err
    assert code == 2 and err.endswith(f"scorelib-eval: error: --results-path {results}: the run would write over its "
                                      f"input {data}; choose another folder (scorelib never writes over an input "
                                      f"file)\n"), err
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- small ones (issue 34, item 7)
@pytest.mark.parametrize("failure", ["ENOSPC", "torch"])
def test_a_full_disk_keeps_the_old_file_and_names_the_path_and_free_space(tmp_path, failure):
    import errno

    from scorelib.errors import DiskFullError
    from scorelib.writers import atomic_write

    target = tmp_path / "metrics.json"
    target.write_text("the old file")

    def write(tmp):
        open(tmp, "w").write("half a ")
        if failure == "ENOSPC":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    with pytest.raises(DiskFullError) as e:
        atomic_write(target, write)
    message = str(e.value)
    assert message.startswith(f"{target}: cannot write it (") and "MiB free in " in message and "\n" not in message
    assert message.endswith("the file as it was is kept: free some space and run again")
    assert target.read_text() == "the old file" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_full_disk_while_training_saves_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_utils.torch, "save", full)
    save = tmp_path / "save"
    assert train_cli(["--save-dir", str(save), *TRAIN_ARGV]) == 1
    err = capsys.readouterr().err
    first = save / "checkpoint_best.pt"  # the first file of the first save (checkpoint_last.pt is replaced last)
    lines = [line for line in err.splitlines() if "Loading weights" not in line]  # transformers' bar, on stderr
    assert len(lines) == 1 and lines[0].startswith(f"scorelib-train: error: {first}: cannot write it (the disk is "
                                                   f"full; "), err
    assert "MiB free in" in err and not list(save.glob("*.pt")) and not list(save.glob(".*.tmp"))


def test_a_read_only_output_folder_is_refused_before_the_model_is_loaded(tmp_path, monkeypatch, capsys, request):
    import scorelib.hub.scorer
    from test_bad_inputs import read_only

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded (and the texts would be scored) before the check")

    monkeypatch.setattr(scorelib.hub.scorer, "load", never)
    folder = read_only(tmp_path / "ro", request)
    (tmp_path / "in.csv").write_text("key,prompt,text\nk1,q1,an answer\n")
    code = score_cli([str(tmp_path), "--input", str(tmp_path / "in.csv"), "--output", str(folder / "out.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"scorelib-score: error: --output {folder / 'out.csv'} (folder {folder}): cannot "
                                 f"write there (it is read-only); write the scores elsewhere\n")


@pytest.mark.slow
@pytest.mark.parametrize("data, needle", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", "standard input: not UTF-8 text (byte 0x89 at offset 0)"),
    (b"an answer\n\x00\x01\x02 more\n", "standard input: holds a NUL byte at offset 10"),
])
def test_binary_standard_input_is_one_line(data, needle, trained_dir, monkeypatch, capsys):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert score_cli([str(trained_dir), "--cpu", "--prompt", "q1"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"scorelib-score: error: {needle}") and err.count("\n") == 1, err
    assert out == ""


def test_texts_with_lone_surrogates_are_refused_by_the_one_check():
    from scorelib.data.prompts import PromptTable
    from scorelib.errors import InputError
    from scorelib.hub.scorer import Scorer

    scorer = Scorer([], None, PromptTable(ids=["q1"], ranges={"q1": (0.0, 3.0)}))
    with pytest.raises(InputError, match="text 1 holds a NUL or a lone surrogate"):
        scorer.check(["fine", "bytes \udcff\udcfe read with surrogateescape"], "q1", None)


def test_a_leak_and_lookalike_prompt_ids_are_warned_of(tmp_path, tokenizer, log_of):
    """Texts of test found word for word in train: a warning with their count and first keys. Prompt ids that
    differ only in their Unicode form (café composed, and decomposed): a warning naming both."""
    import unicodedata

    from scorelib.options import parse_args
    from scorelib.tasks.text_scoring import TextScoringTask

    data = tmp_path / "data"
    data.mkdir()
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    train = [f"t{i},{p},answer {i} to {p} in its own words,{i % 3}" for i, p in enumerate([nfc, nfd] * 6)]
    test = [f"s{i},{nfc},{'answer 0 to ' + nfc + ' in its own words' if i < 3 else f'a new text {i}'},1"
            for i in range(8)]
    for name, rows in (("train", train), ("valid", train[:0] + ["v1," + nfc + ",another text,1"]), ("test", test)):
        (data / f"{name}.csv").write_text("key,prompt,text,score\n" + "\n".join(rows) + "\n", encoding="utf-8")
    task = TextScoringTask.setup_task(parse_args([str(data), "--save-dir", str(tmp_path / "s")]), tokenizer=tokenizer)
    assert len(task.prompts.ids) == 2  # two prompts, as written: the warning says so, nothing is merged
    warned = {r.getMessage() for r in log_of.records if r.levelname == "WARNING"}
    assert "test: 3 text(s) also in train, word for word (keys s0, s1, s2): its figures will be too good; drop " \
           "them, or split by text" in warned
    assert any(m.startswith(f"prompt ids {ascii(nfc)} and {ascii(nfd)} differ only in their Unicode form")
               or m.startswith(f"prompt ids {ascii(nfd)} and {ascii(nfc)} differ only in their Unicode form")
               for m in warned), warned
    assert not any(m.startswith("valid:") for m in warned)


def test_a_plugin_that_calls_sys_exit_is_an_error_not_a_silent_end(tmp_path, capsys):
    plugin = tmp_path / "sl_exits"
    plugin.mkdir()
    (plugin / "__init__.py").write_text("import sys\nsys.exit(0)\n")
    status = train_cli(["--user-dir", str(plugin), "--save-dir", str(tmp_path / "save")])
    err = capsys.readouterr().err
    assert status == 2 and err == (f"scorelib-train: error: --user-dir {plugin}: the plugin exited (sys.exit(0) while "
                                   f"scorelib imported {plugin / '__init__.py'}); a plugin may only define and "
                                   f"register its classes\n")
    assert not (tmp_path / "save").exists()


@pytest.mark.slow
def test_probe_takes_sheet_like_the_other_readers(trained_dir, tmp_path, capsys):
    """scorelib-probe on a workbook of two sheets: refused without --sheet, read from the sheet --sheet names."""
    import openpyxl

    from scorelib.cli.probe import cli_main as probe_cli
    from scorelib.data.demo import load_demo

    book = openpyxl.Workbook()
    book.active.title = "notes"
    book.active.append(["a note"])
    sheet = book.create_sheet("answers")
    sheet.append(["key", "prompt", "text", "score"])
    for row in load_demo()["test"].head(6)[["key", "prompt", "text", "score"]].itertuples(index=False):
        sheet.append([str(row.key), str(row.prompt), row.text, int(row.score)])
    book.save(tmp_path / "book.xlsx")
    argv = [str(trained_dir), str(tmp_path / "book.xlsx"), "--cpu", "--max-rows", "3", "--probes", "typos",
            "--results-path", str(tmp_path / "out")]
    assert probe_cli(argv) == 2
    assert "a workbook of 2 sheets ('notes', 'answers')" in capsys.readouterr().err
    assert probe_cli([*argv, "--sheet", "answers"]) == 0
    assert list((tmp_path / "out").iterdir())
