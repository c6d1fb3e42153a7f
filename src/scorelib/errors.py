"""The user's mistakes, as one family of exceptions.

fairseq has no such file; it plays the part of argparse's ``parser.error`` for everything
found after parsing. The command-line tools print a :class:`ScorelibError` as one line
(the message names the file, row, column or flag to change) and let any other exception,
a bug in scorelib, print its traceback.
"""
from __future__ import annotations


class ScorelibError(Exception):
    """A mistake the user can fix: bad data or options, a missing file, an unusable checkpoint."""


class DataError(ScorelibError, ValueError):
    """Bad input data; the message names the file, row and column."""


class UnknownPromptError(DataError, KeyError):
    """A prompt id the prompt table does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class OptionError(ScorelibError, ValueError):
    """An option (or a combination of options) that cannot work; the message names the flag."""


class MissingFileError(ScorelibError, FileNotFoundError):
    """A file or folder the user named does not exist (or is not the kind expected)."""


class CheckpointError(ScorelibError, RuntimeError):
    """A checkpoint or save dir that cannot be used; the message names the file."""


class InputError(ScorelibError, ValueError):
    """A text, prompt or context the scorer cannot take; the message says what to change."""


class BatchOutOfMemory(ScorelibError, RuntimeError):
    """Out of memory on one batch; the message gives its shape and what to lower."""


class InvalidLossError(ScorelibError, FloatingPointError):
    """A loss or gradient that is NaN or inf: training diverged (lower --lr, or --skip-invalid-loss)."""


class PluginError(ScorelibError, ImportError):
    """A ``--user-dir`` file that fails to import; the command-line tools print this one line, then the plugin's
    own traceback (its ``__cause__``)."""


class DiskFullError(ScorelibError, OSError):
    """A file could not be written: the disk is full (or the write failed). Not the user's mistake: the tools exit
    with status 1; the message names the file and the free space, and the file as it was before is intact."""

    exit_status = 1
