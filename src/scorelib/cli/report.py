"""``scorelib-report DIR [DATA]``: the evaluation report of a save dir or a CV dir (:mod:`scorelib.report`).

fairseq has no counterpart; the report follows ETS's RSMTool ``rsmeval``.
"""
from __future__ import annotations

import sys
import tempfile

from scorelib import options
from scorelib.cli import options as cli_options
from scorelib.errors import OptionError, ScorelibError
from scorelib.report.builder import make_report


def cli_main(argv=None) -> int:
    """``scorelib-report DIR [DATA] [options]``; a user's mistake is one line on stderr and exit status 2."""
    from scorelib.cli.datasets import describe_data, table_for

    parser = describe_data(cli_options.get_report_parser())
    args = options.check_args(parser, parser.parse_args(argv))
    try:
        with tempfile.TemporaryDirectory(prefix="scorelib-report-data-") as tmp:  # a data set's table, while it runs
            out = report(args, table_for(args.data, args.dir, tmp))
    except ScorelibError as e:
        print(f"scorelib-report: error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", 2)
    flags = out["report"]["flags"]
    print(f"wrote {out['html']} and {out['json']}: {len(flags)} flag(s)")
    for f in flags:
        print(f"  [{f['trait']}, {f['scope']}] {f['en']}")
    for w in out["report"]["warnings"]:
        print(f"  warning [{w['trait']}, {w['scope']}] {w['en']}")
    return 0


def report(args, data) -> dict:
    return make_report(args.dir, data, split=args.split,
                       group_columns=names_of(args.group_column, "--group-column"),
                       second_score_columns=names_of(args.second_score_column, "--second-score-column"),
                       key_column=args.key_column, bootstrap=args.bootstrap, seed=args.seed,
                       results_path=args.results_path, rsmeval_dir=args.rsmeval_dir,
                       min_n_per_group=args.min_n_per_group)


def names_of(value, flag: str) -> list[str]:
    names = [v.strip() for v in value.split(",")] if value else []
    if any(not n for n in names):
        raise OptionError(f"{flag} {value!r}: an empty name in the comma list")
    return names


if __name__ == "__main__":
    sys.exit(cli_main())
