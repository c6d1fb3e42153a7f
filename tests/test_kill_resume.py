"""Kill ``scorelib-train`` with SIGKILL and re-run it: training must go on as if never stopped.

Two kill points: mid-epoch right after a checkpoint was saved (the process is in the next
update), and in the middle of a checkpoint write (``SCORELIB_TEST_PAUSE_IN_SAVE`` makes
``atomic_save`` wait between writing its temporary file and the rename). The data order
comes from the notes and the epoch, and the RNG states travel in the checkpoint, so the
resumed run ends with the same weights as an uninterrupted one.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from scorelib.writers import PAUSE_ENV

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# 16 rows in batches of 4: 4 updates per epoch, 8 in all; saves after updates 2, 4 (end of epoch 1), 6, 8
ARGS = ["--cpu", "--max-train-rows", "16", "--max-eval-rows", "16", "--batch-size", "4", "--max-epoch", "2",
        "--save-interval-updates", "2", "--log-format", "simple", "--log-interval", "1", "--seed", "3"]
# measured: 0.0, the resumed run is bit-identical to an uninterrupted one on the CPU; the bound leaves
# room for other BLAS builds (a code change between the two runs showed up as ~7e-7)
TOLERANCE = 1e-6
UPDATE = re.compile(r"\| update (\d+) \|")
RESUMED = re.compile(r"resumed from .*: epoch (\d+), (\d+) updates done")


def command(save_dir):
    return [str(BIN / "scorelib-train"), "--save-dir", str(save_dir), *ARGS]


def environment(pause=None):
    env = dict(os.environ, SCORELIB_FAST="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    env.pop(PAUSE_ENV, None)
    if pause:
        env[PAUSE_ENV] = str(pause)
    return env


def run_to_end(save_dir, log):
    with open(log, "w") as out:
        proc = subprocess.run(command(save_dir), stdout=out, stderr=subprocess.STDOUT, env=environment(), timeout=900)
    assert proc.returncode == 0, Path(log).read_text()[-3000:]
    return Path(log).read_text()


def run_and_kill(save_dir, log, ready, pause=None, timeout=600):
    """Start training, SIGKILL it as soon as ``ready()`` is true; returns its output."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command(save_dir), stdout=out, stderr=subprocess.STDOUT, env=environment(pause))
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                assert proc.poll() is None, f"finished before the kill point:\n{Path(log).read_text()[-3000:]}"
                assert time.monotonic() < deadline, "kill point not reached in time"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill() if proc.poll() is None else None
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return Path(log).read_text()


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def check_left_behind(save_dir):
    """Every checkpoint file left behind loads safely; returns {name: num_updates}."""
    return {p.name: load(p)["extra_state"]["num_updates"] for p in sorted(save_dir.glob("*.pt"))}


def updates_in(output):
    return [int(u) for u in UPDATE.findall(output)]


def test_sigkill_mid_epoch_and_mid_save_then_resume_matches_an_uninterrupted_run(tmp_path):
    ref_dir, dir_ = tmp_path / "reference", tmp_path / "killed"
    ref_out = run_to_end(ref_dir, tmp_path / "reference.log")
    assert updates_in(ref_out) == list(range(1, 9))

    # kill 1: mid-epoch 1, in update 3, once the checkpoint after update 2 is complete
    # (checkpoint_last.pt is the last file a save replaces)
    out1 = run_and_kill(dir_, tmp_path / "kill1.log", lambda: (dir_ / "checkpoint_last.pt").exists())
    left = check_left_behind(dir_)
    assert left["checkpoint_last.pt"] == 2 and left["checkpoint_1_2.pt"] == 2
    assert max(updates_in(out1)) <= 3

    # kill 2: while the checkpoint after update 6 is being written (its temporary file exists)
    def writing_update_6():
        return any(dir_.glob(".checkpoint_2_6.pt.*tmp"))

    out2 = run_and_kill(dir_, tmp_path / "kill2.log", writing_update_6, pause=8)
    assert RESUMED.search(out2).groups() == ("1", "2")
    assert updates_in(out2) == [3, 4, 5, 6]  # continues right after the last complete checkpoint
    assert any(dir_.glob(".checkpoint_2_6.pt.*tmp")), "the kill did not land inside the write"
    left = check_left_behind(dir_)
    assert "checkpoint_2_6.pt" not in left
    assert left["checkpoint_last.pt"] == 4 and left["checkpoint1.pt"] == 4
    assert load(dir_ / "checkpoint_last.pt")["extra_state"]["end_of_epoch"] is True

    # the same command again, to the end
    out3 = run_to_end(dir_, tmp_path / "final.log")
    assert RESUMED.search(out3).groups() == ("2", "4")
    assert "left by a save that was interrupted" in out3
    assert updates_in(out3) == [5, 6, 7, 8]
    assert not list(dir_.glob(".*tmp*"))
    left = check_left_behind(dir_)
    assert left == check_left_behind(ref_dir)  # same files, same update counts

    # same history (timings aside), same weights, same metrics as the uninterrupted run
    ref_hist, hist = pd.read_csv(ref_dir / "history.csv"), pd.read_csv(dir_ / "history.csv")
    assert hist["epoch"].tolist() == [1, 2] and hist["updates"].tolist() == [4, 8]
    same = [c for c in hist.columns if c not in ("tokens_per_s", "seconds", "valid_seconds")]
    pd.testing.assert_frame_equal(hist[same], ref_hist[same], rtol=0, atol=TOLERANCE)
    ref_state, state = load(ref_dir / "checkpoint_last.pt"), load(dir_ / "checkpoint_last.pt")
    diff = max(float((state["model"][k].float() - v.float()).abs().max()) for k, v in ref_state["model"].items())
    print(f"max abs weight difference after two kills: {diff:g}")
    assert diff <= TOLERANCE, f"max abs weight difference {diff:g}"
    for i, moments in ref_state["last_optimizer_state"]["state"].items():
        got = state["last_optimizer_state"]["state"][i]
        assert float((got["exp_avg"] - moments["exp_avg"]).abs().max()) <= TOLERANCE
    for name in ("metrics-checkpoint_best-valid.json", "metrics-checkpoint_best-test.json"):
        ref, got = (json.loads((d / "results" / name).read_text()) for d in (ref_dir, dir_))
        assert ref["overall"].keys() == got["overall"].keys()
        for key, value in ref["overall"].items():
            assert value == pytest.approx(got["overall"][key], abs=TOLERANCE), (name, key)
