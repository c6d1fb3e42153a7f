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
    def job():
        import tempfile

        from scorelib.cli.datasets import describe_data, table_for

        parser = describe_data(cli_options.get_probe_parser(PROBES))
        args = options.check_args(parser, parser.parse_intermixed_args(argv))
        with tempfile.TemporaryDirectory(prefix="scorelib-probe-data-") as tmp:  # a data set's table, while it runs
            args.data = table_for(args.data, args.save_dir, tmp)
            return probe_dir(args)

    return run("scorelib-probe", job)


if __name__ == "__main__":
    sys.exit(cli_main())
