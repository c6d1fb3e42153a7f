"""Shared fixtures: fast mode, the real default tokenizer, and one small trained save dir."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SCORELIB_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCORELIB_SHARED_DATA", ROOT.parent / "shared" / "data"))


def train_args(save_dir, *extra):
    """Options for a tiny, quick training run on the demo data (CPU, 1 epoch, few rows)."""
    from scorelib.options import parse_args

    argv = ["--save-dir", str(save_dir), "--cpu", "--max-epoch", "1", "--max-train-rows", "48",
            "--max-eval-rows", "24", "--log-format", "simple", *map(str, extra)]
    return parse_args(argv)


@pytest.fixture(scope="session")
def tokenizer():
    from scorelib.model import load_tokenizer

    return load_tokenizer(None)


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory):
    """A save dir from one tiny real training run (checkpoints, tokenizer, prompts, results)."""
    from scorelib import train

    save_dir = tmp_path_factory.mktemp("trained") / "ckpt"
    train(train_args(save_dir, "--no-epoch-checkpoints"))
    return save_dir


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (set SCORELIB_SHARED_DATA)")
    return SHARED_DATA
