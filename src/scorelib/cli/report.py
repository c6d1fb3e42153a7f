"""``scorelib-report DIR [DATA]``: the evaluation report of a save dir or a CV dir (:mod:`scorelib.report`).

fairseq has no counterpart; the report follows ETS's RSMTool ``rsmeval``.
"""
from __future__ import annotations

import argparse
import sys

from scorelib.errors import OptionError, ScorelibError
from scorelib.report.builder import make_report


def report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scorelib-report", description="Write an evaluation report (HTML and JSON) "
                                "from a save dir's or a CV dir's result file.")
    p.add_argument("dir", help="a save dir of scorelib-train or a cross-validation dir of scorelib-cv")
    p.add_argument("data", nargs="?", help="the input table (or a folder of tables), to join --group-column and "
                   "--second-score-column by key where the result file lacks them")
    p.add_argument("--split", help="default: test (oof, the out-of-fold predictions, for a CV dir)")
    p.add_argument("--group-column", help="COL[,COL...]: groups of writers for DSM and the fairness analyses")
    p.add_argument("--second-score-column", help="COL[,COL...]: a second human score, one per trait in trait order")
    p.add_argument("--key-column", default="key", help="DATA's key column (default: key)")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% intervals (0: none)")
    p.add_argument("--seed", type=int, default=1, help="seeds the bootstrap (default 1)")
    p.add_argument("--results-path", help="where the result files are and the report goes (default: DIR/results)")
    p.add_argument("--rsmeval-dir", help="also write rsmeval-ready predictions and config files here")
    return p


def cli_main(argv=None) -> int:
    """``scorelib-report DIR [DATA] [options]``; a user's mistake is one line on stderr and exit status 2."""
    args = report_parser().parse_args(argv)
    try:
        out = make_report(args.dir, args.data, split=args.split,
                          group_columns=names_of(args.group_column, "--group-column"),
                          second_score_columns=names_of(args.second_score_column, "--second-score-column"),
                          key_column=args.key_column,
                          bootstrap=args.bootstrap, seed=args.seed, results_path=args.results_path,
                          rsmeval_dir=args.rsmeval_dir)
    except ScorelibError as e:
        print(f"scorelib-report: error: {e}", file=sys.stderr)
        return 2
    flags = out["report"]["flags"]
    print(f"wrote {out['html']} and {out['json']}: {len(flags)} flag(s)")
    for f in flags:
        print(f"  [{f['trait']}, {f['scope']}] {f['en']}")
    return 0


def names_of(value, flag: str) -> list[str]:
    names = [v.strip() for v in value.split(",")] if value else []
    if any(not n for n in names):
        raise OptionError(f"{flag} {value!r}: an empty name in the comma list")
    return names


if __name__ == "__main__":
    sys.exit(cli_main())
