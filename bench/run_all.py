"""Run every benchmark (``make bench``): padding, training throughput and overhead, the
training step with and without compile and dropout, scoring, quality, cross-validation,
time to quality; then the README.

Each benchmark prints its table and stores one object in bench/results.json; bench/report.py then
rewrites the figures section of bench/README.md from that file.

    python bench/run_all.py [--skip padding,train,compile,score,quality,cv,time_to_quality]

Each script runs with its defaults, which are the settings the stored figures were measured with.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = {"padding": ["bench_padding.py"], "train": ["bench_train.py"], "compile": ["bench_compile.py"],
         "score": ["bench_score.py"],
         "quality": ["bench_quality.py"], "cv": ["bench_cv.py"], "time_to_quality": ["bench_time_to_quality.py"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip", default="", help="comma-separated steps to skip: padding, train, compile, score, quality, "
                                             "cv, time_to_quality")
    opts = p.parse_args(argv)
    skip = {s.strip() for s in opts.skip.split(",") if s.strip()}
    print(f"1-minute load average at start: {os.getloadavg()[0]:.2f} (speed figures are noisy above ~1.5 on 2 cores)")
    failed = []
    for name, script in STEPS.items():
        if name in skip:
            continue
        print(f"\n=== {name} ===", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / script[0]), *script[1:]], cwd=HERE.parent)
        if rc:
            failed.append(name)
    subprocess.call([sys.executable, str(HERE / "report.py")], cwd=HERE.parent)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
