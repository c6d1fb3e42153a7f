"""Shared helpers of the benchmarks: real texts, the machine, child processes, tables, results.json.

The benchmarks read the real data sets through ``scorelib.datasets.load_dataset`` (one reader of each set), from
its local copy: ``$SCORELIB_DATA``, which this module sets to ``../shared/data`` beside the checkout where that
exists. Nothing is copied into the repository: prepared tables go to a temporary folder. Speed benchmarks fall
back to the embedded demo data, with a warning, where the sets are absent.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCORELIB_DATA") or ROOT.parent / "shared" / "data")
if SHARED_DATA.is_dir():
    os.environ.setdefault("SCORELIB_DATA", str(SHARED_DATA))  # the children (scorelib-train mohler ...) too
RESULTS = ROOT / "bench" / "results.json"
# The benchmark method a result was measured with; report.py flags results from an older one as stale.
# "fair-1" (issue 9): fused AdamW pinned on both sides, scorelib capped at HF's 16 texts per batch, the config
# order rotated each repeat, threads recorded per child, epochs picked on valid only, TF-IDF + ridge given the
# model's inputs with alpha tuned on valid.
METHOD = "fair-1"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def have_local(*names: str) -> bool:
    """Whether the local copy holds every set of ``names`` (the benchmarks do not download)."""
    from scorelib.datasets import sets

    return all((SHARED_DATA / sets.SETS[n].local_folder / f).is_file() for n in names for f in sets.SETS[n].local_files)


def have_shared_data() -> bool:
    return have_local("mohler", "clear")


def have_ell() -> bool:
    return have_local("ellipse")


def load(name: str) -> pd.DataFrame:
    """A set's table in scorelib's columns (``scorelib.datasets.load_dataset``, from the local copy)."""
    from scorelib.datasets import load_dataset

    return load_dataset(name, data_dir=SHARED_DATA, quiet=True).table


def load_mohler() -> pd.DataFrame:
    """Mohler SAG answers used in the paper: key, prompt (question id), text, context, score (0-5), graders."""
    return load("mohler")


def load_clear() -> pd.DataFrame:
    """The CLEAR corpus: key, prompt, text (the excerpt), score (BT_easiness), se, category."""
    return load("clear")


def skewed_texts(n: int = 256, seed: int = 0, long_share: float = 0.5) -> tuple[list[str], np.ndarray, str]:
    """``n`` real, length-skewed texts: CLEAR excerpts (long) and Mohler answers (short), shuffled.

    Returns:
        tuple: texts, targets in [0, 1] (BT_easiness or score_avg scaled), and a description of the source.
    """
    rng = np.random.default_rng(seed)
    if not have_shared_data():
        print(f"WARNING: {SHARED_DATA} not found: the speed benchmark falls back to the embedded demo data "
              f"(short answers only, so the figures are not comparable to the README's)", file=sys.stderr)
        from scorelib.data import demo

        frame = demo.load_demo()["train"]
        frame = frame.iloc[rng.permutation(len(frame))[:n]]
        lo = frame["prompt"].map(lambda p: demo.DEMO_RANGES[p][0])
        hi = frame["prompt"].map(lambda p: demo.DEMO_RANGES[p][1])
        return frame["text"].tolist(), ((frame["score"] - lo) / (hi - lo)).to_numpy(np.float32), "demo data (fallback)"
    n_long = int(round(n * long_share))
    clear, mohler = load_clear(), load_mohler()
    c = clear.iloc[rng.permutation(len(clear))[:n_long]]
    m = mohler.iloc[rng.permutation(len(mohler))[: n - n_long]]
    texts = c["text"].tolist() + m["text"].tolist()
    target = np.concatenate([(c["score"].to_numpy() + 3.7) / 5.5, m["score"].to_numpy() / 5.0])
    order = rng.permutation(n)
    desc = f"{n_long} CLEAR excerpts + {n - n_long} Mohler SAG answers (seed {seed})"
    return [texts[i] for i in order], target[order].astype(np.float32), desc


def load_ell() -> pd.DataFrame:
    """Feedback Prize ELL train essays (the local copy of 'ellipse'): key, prompt, text and the six traits."""
    return load("ellipse")


def machine() -> dict:
    """CPU model, cores, load, library versions: what a figure was measured on."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "loadavg_1m": round(os.getloadavg()[0], 2),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


class LoadSampler:
    """The 1-minute load average every 15 s while a run lasts: what else the machine was doing."""

    def __init__(self, every_s: float = 15.0):
        self.every_s, self.samples, self.stop = every_s, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            self.samples.append(os.getloadavg()[0])
            if self.stop.wait(self.every_s):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def summary(self) -> dict:
        return {"mean": round(float(np.mean(self.samples)), 2), "max": round(float(np.max(self.samples)), 2),
                "samples": len(self.samples)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB: Linux's ``VmHWM``, which starts afresh in an exec'd child
    (``ru_maxrss`` does not: a child started from a big parent reports the parent's peak); elsewhere ``ru_maxrss``
    (KiB on Linux, bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


def emit(obj: dict) -> None:
    """A child's result: one JSON line, prefixed so the parent can find it among log lines."""
    print("BENCH_RESULT " + json.dumps(obj), flush=True)


class ChildFailed(RuntimeError):
    """A child process of a benchmark exited with a non-zero status or ran past its timeout."""


def run_child(cmd: list, log_path, env: dict | None = None, timeout: float | None = None, cwd=None,
              append: bool = False, tail: int = 40) -> str:
    """Run ``cmd`` (the program, then its arguments) with its stdout and stderr written to ``log_path``.

    The log starts with a ``$ command`` line, then the child's output as it came (stderr interleaved). With
    ``append`` the log keeps what it held (children that share one log, a resumed run). ``env`` is added to
    this process's environment. Returns what the child wrote (without the ``$`` line); on a non-zero exit
    status or a timeout raises :class:`ChildFailed` with the command, the status, the log's path and its last
    ``tail`` lines."""
    cmd = [str(c) for c in cmd]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a" if append else "w") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        start = log.tell()
        try:
            status = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                    timeout=timeout, cwd=cwd).returncode
        except subprocess.TimeoutExpired:
            status = None
    output = log_path.read_bytes()[start:].decode(errors="replace")
    if status != 0:
        how = f"was stopped after its timeout of {timeout:g} s" if status is None else f"failed (exit status {status})"
        last = "\n".join(output.splitlines()[-tail:])
        raise ChildFailed(f"{shlex.join(cmd)} {how}; log: {log_path}\n--- its last {tail} lines ---\n{last}")
    return output


def child_result(args: list[str], log_path, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``python args...`` (from the checkout's root, through :func:`run_child`, appending to ``log_path``) and
    return the dict it :func:`emit`-ted, with ``child_wall_s``."""
    t0 = time.perf_counter()
    output = run_child([sys.executable, *args], log_path, env=env, timeout=timeout, cwd=ROOT, append=True)
    lines = [line for line in output.splitlines() if line.startswith("BENCH_RESULT ")]
    if not lines:
        raise ChildFailed(f"{' '.join(args)} emitted no BENCH_RESULT line; log: {log_path}")
    out = json.loads(lines[-1][len("BENCH_RESULT "):])
    out["child_wall_s"] = round(time.perf_counter() - t0, 2)
    return out


def median(values) -> float:
    return float(np.median([v for v in values if v is not None]))


def print_table(rows: list[dict], columns: list[str], title: str = "") -> None:
    """Print rows as an aligned text table."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    if title:
        print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def save_result(name: str, obj: dict) -> None:
    """Store one benchmark's object under ``name`` in bench/results.json (other entries are kept)."""
    import fcntl

    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    with open(ROOT / "bench" / "out" / "results.lock", "w") as lock:  # benchmarks may finish at the same time
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        data[name] = obj
        tmp = RESULTS.with_suffix(f".json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, RESULTS)
