"""``scorelib-cv [DATA] --folds K --save-dir DIR [scorelib-train flags]``: k-fold cross-validation
(:mod:`scorelib.cv`). No fairseq counterpart (fairseq trains one split).
"""
from __future__ import annotations

import sys

from scorelib.logging.console import run, setup_logging


def cli_main(argv=None) -> int:
    """``scorelib-cv [DATA] --folds K --save-dir DIR [scorelib-train flags]``: k-fold cross-validation."""
    from scorelib.cv.cross_validate import cross_validate, parse_cv_args

    setup_logging()
    return run("scorelib-cv", lambda: cross_validate(parse_cv_args(argv)))


if __name__ == "__main__":
    sys.exit(cli_main())
