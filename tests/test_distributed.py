"""Multi-process training (torch.distributed DDP, gloo on the CPU) matches one process.

Two processes with ``--update-freq 1`` see, at each update, the same two batches as one process with
``--update-freq 2`` (rank r takes batches r, r + 2, ...; the odd last batch pairs with a dummy batch whose
gradient is zeroed). With dropout off and the same seed, the final weights and valid metrics agree up to
float summation order.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.slow

# 48 rows in batches of at most 7 texts: 7 batches, so 4 updates, the last one with a single batch.
COMMON = ["--cpu", "--seed", "3", "--max-epoch", "1", "--max-train-rows", "48", "--max-eval-rows", "24",
          "--batch-size", "7", "--encoder-dropout", "0", "--head-dropout", "0", "--warmup-updates", "0",
          "--lr", "1e-4", "--log-format", "json", "--log-interval", "1", "--no-epoch-checkpoints"]
WEIGHT_ATOL = 1e-5  # measured: 0 (bitwise equal, one thread per process); room for other BLAS summation orders
METRIC_ATOL = 1e-5


def run(cmd, tmp_path, name):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SCORELIB_FAST": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    (tmp_path / f"{name}.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def grad_norms(proc) -> list[float]:
    """The per-update gradient norms that rank 0 logs (after the division by the sample size)."""
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return [r["gnorm"] for r in records if "gnorm" in r]


def test_two_processes_match_one_with_update_freq(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = run([sys.executable, "-m", "scorelib.cli", "--save-dir", str(one), "--update-freq", "2", *COMMON], tmp_path, "one")
    p2 = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "scorelib.cli",
         "--save-dir", str(two), "--update-freq", "1", *COMMON], tmp_path, "two")

    a = torch.load(one / "checkpoint_last.pt", weights_only=True)
    b = torch.load(two / "checkpoint_last.pt", weights_only=True)
    assert a["extra_state"]["num_updates"] == b["extra_state"]["num_updates"] == 4
    diffs = {k: (a["model"][k].float() - b["model"][k].float()).abs().max().item() for k in a["model"]}
    worst = max(diffs, key=diffs.get)
    print(f"max |weight difference| {diffs[worst]:.3g} ({worst})")
    assert diffs[worst] <= WEIGHT_ATOL, f"{worst}: {diffs[worst]}"
    # the weights moved, so the comparison is not vacuous
    from transformers import AutoModel

    from scorelib import default_model_path

    pretrained = AutoModel.from_pretrained(default_model_path()).state_dict()
    moved = max((a["model"][f"encoder.{k}"].float() - v.float()).abs().max().item() for k, v in pretrained.items()
                if f"encoder.{k}" in a["model"] and v.is_floating_point())
    assert moved > 1e-6
    # the gradient is divided by the same total sample size: AdamW and clipping would hide a factor of 2 in the
    # weights, but not in the logged pre-clipping norm
    n1, n2 = grad_norms(p1), grad_norms(p2)
    print(f"grad norms: one process {n1}, two processes {n2}")
    assert len(n1) == len(n2) == 4 and n1 == pytest.approx(n2, rel=1e-3, abs=2e-3)

    ha, hb = pd.read_csv(one / "history.csv"), pd.read_csv(two / "history.csv")
    for col in ("train_loss", "valid_loss", "valid_pearson", "valid_rmse"):
        print(f"{col}: one process {ha[col].iloc[-1]:.8f}, two processes {hb[col].iloc[-1]:.8f}")
        assert abs(ha[col].iloc[-1] - hb[col].iloc[-1]) <= METRIC_ATOL, col
    # rank 0 alone wrote the save dir: one set of checkpoints and results
    assert sorted(p.name for p in two.glob("*.pt")) == sorted(p.name for p in one.glob("*.pt"))
    assert not list(two.glob(".*.tmp*"))
