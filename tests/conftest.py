"""Shared fixtures: fast mode, the real default tokenizer, and one small trained save dir."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

os.environ.setdefault("SCORELIB_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
# the real data sets: $SCORELIB_DATA, else ../shared/data beside the checkout, which the tests (and the notebooks
# they run) then read as scorelib.datasets' local copy instead of downloading
SHARED_DATA = Path(os.environ.get("SCORELIB_DATA") or ROOT.parent / "shared" / "data")
if SHARED_DATA.is_dir():
    os.environ.setdefault("SCORELIB_DATA", str(SHARED_DATA))


def train_args(save_dir, *extra):
    """Options for a tiny, quick training run on the demo data (CPU, 1 epoch, few rows)."""
    from scorelib.options import parse_args

    argv = ["--save-dir", str(save_dir), "--cpu", "--max-epoch", "1", "--max-train-rows", "48",
            "--max-eval-rows", "24", "--log-format", "simple", *map(str, extra)]
    return parse_args(argv)


@contextlib.contextmanager
def module_scratch(request, tmp_path_factory, name: str):
    """A folder for a module-scoped fixture, deleted once the module's tests are done unless one failed.

    pytest deletes a passing test's ``tmp_path`` at once (``tmp_path_retention_policy = "failed"``)
    but leaves ``tmp_path_factory`` folders until the session ends; a few trained save dirs of
    0.3-3 GB each would otherwise pile up on the disk of a CI runner."""
    path = tmp_path_factory.mktemp(name)
    failed = request.session.testsfailed
    yield path
    if request.session.testsfailed == failed:
        shutil.rmtree(path, ignore_errors=True)


def trait_table(folder, rows_per_prompt: int):
    """The two-trait demo's first training rows of each prompt as ``folder/traits.csv`` (key, prompt, text,
    content, accuracy), with ``folder/ranges.csv`` (trait, min, max, step); returns the rows written."""
    import pandas as pd

    from scorelib.data.demo import DEMO_TRAITS, load_demo_traits

    frame = load_demo_traits("train").groupby("prompt").head(rows_per_prompt).reset_index(drop=True)
    frame = frame[["key", "prompt", "text", "content", "accuracy"]]
    frame.to_csv(folder / "traits.csv", index=False)
    pd.DataFrame([(t, *r) for t, r in DEMO_TRAITS.items()], columns=["trait", "min", "max", "step"]).to_csv(
        folder / "ranges.csv", index=False)
    return frame


@pytest.fixture(scope="session")
def tokenizer():
    from scorelib.models.scoring_model import load_tokenizer

    return load_tokenizer(None)


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory):
    """A save dir from one tiny real training run (checkpoints, tokenizer, prompts, results)."""
    from scorelib import train

    save_dir = tmp_path_factory.mktemp("trained") / "ckpt"
    train(train_args(save_dir, "--no-epoch-checkpoints"))
    return save_dir


@pytest.fixture
def log_of(caplog):
    """caplog that also sees the ``scorelib`` logger (which does not propagate to the root)."""
    logger = logging.getLogger("scorelib")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (set SCORELIB_DATA)")
    return SHARED_DATA


class NotebookRuns:
    """nbval: delete each notebook's save dirs under ``notebooks/runs/`` that this run made or remade
    once its last cell has passed, so that the notebooks' checkpoints (up to 3 GB for 04) do not add
    up on the disk of a CI runner. A notebook with a failed cell keeps them to look at, as does every
    notebook with ``SCORELIB_KEEP_RUNS=1``. Registered as a plugin (below) because a conftest's own
    run hooks see only the items of its folder, and the notebooks are not under tests/."""

    def __init__(self):
        self.started, self.failed = {}, set()

    @staticmethod
    def notebook(nodeid: str):
        path = nodeid.split("::")[0]
        return path if path.endswith(".ipynb") else None

    def pytest_runtest_setup(self, item):
        if self.notebook(item.nodeid):
            self.started.setdefault(item.nodeid.split("::")[0], time.time() - 1)

    def pytest_runtest_logreport(self, report):
        if report.failed and self.notebook(report.nodeid):
            self.failed.add(self.notebook(report.nodeid))

    def pytest_runtest_teardown(self, item, nextitem):
        name = self.notebook(item.nodeid)
        if not name or (nextitem is not None and self.notebook(nextitem.nodeid) == name):
            return
        if name in self.failed or os.environ.get("SCORELIB_KEEP_RUNS"):
            return
        runs = Path(str(item.fspath)).parent / "runs"
        for run in (runs.iterdir() if runs.is_dir() else ()):
            if run.is_dir() and run.stat().st_mtime >= self.started[name]:
                shutil.rmtree(run, ignore_errors=True)


def pytest_configure(config):
    config.pluginmanager.register(NotebookRuns(), "scorelib-notebook-runs")
