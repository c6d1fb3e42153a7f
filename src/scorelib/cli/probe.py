"""``scorelib-probe DIR [DATA] [--split test] [--probes all|NAME,...]``: robustness probes (:mod:`scorelib.explain.probes`).

No fairseq counterpart.
"""
from __future__ import annotations

import sys

from scorelib import options
from scorelib.cli import options as cli_options
from scorelib.explain.perturb import PROBES
from scorelib.explain.probes import probe_dir
from scorelib.logging.console import run, setup_logging


def cli_main(argv=None) -> int:
    """``scorelib-probe DIR [DATA] [--split test] [--probes all|NAME,...] [--seed S]``."""
    setup_logging()
    parser = cli_options.get_probe_parser(PROBES)
    return run("scorelib-probe", probe_dir, options.check_args(parser, parser.parse_intermixed_args(argv)))


if __name__ == "__main__":
    sys.exit(cli_main())
