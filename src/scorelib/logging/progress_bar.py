"""A training run's log: its log lines (:func:`emit`), ``history.csv``, TensorBoard curves (``--tensorboard-logdir``).

Mirrors fairseq's ``TensorboardProgressBarWrapper`` (``fairseq/logging/progress_bar.py``): one run per
``--save-dir``, in ``DIR/{the save dir's folder name}`` (``DIR/{cv dir}/fold{i}`` under ``scorelib-cv``), its
scalars tagged by split as fairseq tags them: ``train_inner/loss``, ``train_inner/lr`` (every ``--log-interval``
updates), ``train/loss``, ``train/lr`` (per epoch) and ``valid/{metric}`` (every validation), with the number of
updates as the step. ``tensorboard --logdir DIR`` shows every run side by side.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from scorelib.errors import OptionError
from scorelib.writers import write_table


def run_dir(logdir, save_dir) -> Path:
    """``DIR/{save dir's folder name}``: where one run's event files go."""
    return Path(logdir) / (Path(save_dir).resolve().name or "run")


class Curves:
    """Writes scalars with ``torch.utils.tensorboard.SummaryWriter``; does nothing without a log dir.

    Args:
        logdir (str | None): ``--tensorboard-logdir`` (None: write nothing).
        save_dir (str | Path): the run's ``--save-dir``, which names its subfolder.
    """

    def __init__(self, logdir=None, save_dir="checkpoints"):
        self.writer = None
        if not logdir:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise OptionError(f"--tensorboard-logdir {logdir}: the tensorboard package is not installed; pip install "
                              f"'scorelib[tensorboard]' (or pip install tensorboard)") from None
        self.path = run_dir(logdir, save_dir)
        self.writer = SummaryWriter(str(self.path))

    def log(self, split: str, values: dict, step: int) -> None:
        """Add every finite number of ``values`` as ``{split}/{name}`` at ``step`` (the number of updates)."""
        if self.writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "n" \
                    and math.isfinite(value):
                self.writer.add_scalar(f"{split}/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def emit(args, record: dict, digits: int | None = 4) -> None:
    """Print one log line: ``key value | key value`` (simple, tqdm) or a JSON object (json)."""
    shown = {k: (round(v, digits) if isinstance(v, float) and digits is not None else v) for k, v in record.items()}
    print(json.dumps(shown) if args.log_format == "json" else " | ".join(f"{k} {v}" for k, v in shown.items()),
          flush=True)


def save_history(save_dir, history: list) -> None:
    write_table(pd.DataFrame(history), Path(save_dir) / "history.csv")
