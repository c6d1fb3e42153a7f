"""The benchmarks' own arithmetic: checked against brute force on small cases."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_padding import best_padding  # noqa: E402

from scorelib.data.scoring_dataset import batch_by_size, padding_efficiency  # noqa: E402


def brute_force(sizes, max_tokens, batch_size, num_batches):
    """Best efficiency over every assignment of items to at most ``num_batches`` batches (any grouping)."""
    n, best = len(sizes), None
    for labels in itertools.product(range(num_batches), repeat=n):
        groups = [[sizes[i] for i in range(n) if labels[i] == b] for b in range(num_batches)]
        groups = [g for g in groups if g]
        if any(len(g) > batch_size or len(g) * max(g) > max_tokens for g in groups):
            continue
        eff = sum(sizes) / sum(len(g) * max(g) for g in groups)
        best = eff if best is None else max(best, eff)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_best_padding_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, size=7).tolist()
    for k in (2, 3):
        expected = brute_force(sizes, 60, 4, k)
        got = best_padding(sizes, 60, 4, k)
        assert (got is None) == (expected is None)
        if expected is not None:
            assert got == pytest.approx(expected)


def test_best_padding_bounds_the_greedy_batches():
    sizes = np.random.default_rng(0).integers(3, 300, size=200)
    batches = batch_by_size(np.argsort(sizes, kind="stable"), lambda i: sizes[i], 2048, 16)
    greedy = padding_efficiency(batches, sizes)
    bound = best_padding(sizes, 2048, 16, len(batches))
    assert greedy <= bound + 1e-12
    assert best_padding(sizes, 2048, 16, len(batches) + 2) > bound  # more batches, less padding
    assert best_padding(sizes, 2048, 16, 2) is None  # 200 rows cannot fit in 2 batches of 16


def test_the_score_benchmark_reads_real_texts_through_the_loader(shared_data):
    """bench_score's two text sets come from scorelib.datasets' tables (their ``text`` column), not raw files."""
    import bench_score

    short, what = bench_score.batch_texts(5)
    long, what_long = bench_score.essays(3)
    assert "Mohler" in what and "ELL" in what_long
    assert len(short) == 5 and len(long) == 3 and all(isinstance(t, str) and t.strip() for t in short + long)
    assert np.mean([len(t) for t in long]) > 5 * np.mean([len(t) for t in short])  # essays, not answers


def test_peak_memory_is_this_process_own_not_an_inherited_one():
    """A child exec'd from a big parent reports its own peak (ru_maxrss would give the parent's)."""
    import subprocess

    bench = Path(__file__).resolve().parents[1] / "bench"
    code = f"import sys; sys.path.insert(0, {str(bench)!r}); import common; print(common.peak_rss_mb())"
    ballast = bytearray(400 * 2 ** 20)  # this process's peak is now over 400 MiB
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(child.stdout) < 300, child.stdout
    del ballast
