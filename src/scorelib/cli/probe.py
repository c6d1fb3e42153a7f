"""``scorelib-probe DIR [DATA] [--split test] [--probes all|NAME,...]``: robustness probes (:mod:`scorelib.explain.probes`).

No fairseq counterpart.
"""
from __future__ import annotations

import argparse
import sys

from scorelib.explain.perturb import PROBES
from scorelib.explain.probes import probe_dir
from scorelib.logging.console import run, setup_logging


def probe_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scorelib-probe", description="Rescore a split's texts after perturbations "
                                "that should not raise their scores (robustness probes).")
    p.add_argument("save_dir", help="save dir of scorelib-train or scorelib-cv (or a checkpoint file)")
    p.add_argument("data", nargs="?", help="a folder of train/valid/test tables or one table (default: the demo data)")
    p.add_argument("--split", default="test", help="the split to probe (a single table is read whole as it)")
    p.add_argument("--probes", default="all", help=f"all, or a comma list of: {', '.join(PROBES)}")
    p.add_argument("--seed", type=int, default=1, help="seeds every perturbation")
    p.add_argument("--max-rows", type=int, help="probe a seeded sample of this many rows")
    p.add_argument("--results-path", help="default: the save dir's results/")
    for name in ("key", "prompt", "text", "context", "score"):
        p.add_argument(f"--{name}-column", help=f"DATA's column holding the {name}")
    p.add_argument("--layout", default="table", help="a named layout of DATA (see scorelib-train --layout)")
    p.add_argument("--encoding", help="text encoding of DATA (default: UTF-8)")
    p.add_argument("--cpu", action="store_true")
    return p


def cli_main(argv=None) -> int:
    """``scorelib-probe DIR [DATA] [--split test] [--probes all|NAME,...] [--seed S]``."""
    setup_logging()
    return run("scorelib-probe", probe_dir, probe_parser().parse_intermixed_args(argv))


if __name__ == "__main__":
    sys.exit(cli_main())
