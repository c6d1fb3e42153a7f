"""What every command-line tool shares: logging to stdout, and a user's mistake printed as one line.

fairseq's counterpart is the logging set-up at the top of each ``fairseq_cli`` script. A
:class:`~scorelib.errors.ScorelibError` (a mistake the user can fix) becomes one line on stderr and exit
status 2; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import logging
import sys

from scorelib.errors import PluginError, ScorelibError
from scorelib.registry import plugin_traceback

logger = logging.getLogger("scorelib")


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (a notebook or a test may replace it)."""

    def __init__(self, level=logging.NOTSET):
        super().__init__()
        self.setLevel(level)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """Send scorelib's log records to stdout as ``time | level | module | message`` (once per process).

    Called by the command-line tools and the notebooks' setup cells; ``import scorelib`` configures nothing.
    """
    logger.setLevel(min(level, logging.INFO))
    for handler in logger.handlers:
        if isinstance(handler, StdoutHandler):
            handler.setLevel(level)
            return
    handler = StdoutHandler(level=level)
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.propagate = False  # the records are shown once, here, not again by a root handler


def run(prog: str, job, *args) -> int:
    """Run ``job(*args)``; a :class:`ScorelibError` becomes one line on stderr and exit status 2 (1 for a fault
    outside the user's control, such as a full disk: its class's ``exit_status``).

    Parsing belongs inside ``job`` (a bad ``--task`` is found while the parser is built). A :class:`PluginError`
    adds the user's own traceback after its line."""
    try:
        job(*args)
    except ScorelibError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        if isinstance(e, PluginError) and e.__cause__ is not None:
            print(plugin_traceback(e.__cause__), end="", file=sys.stderr)
        return getattr(e, "exit_status", 2)
    return 0


