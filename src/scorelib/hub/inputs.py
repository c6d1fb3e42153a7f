"""What ``scorelib-score`` scores: texts from the command line or standard input, or an ``--input`` table's rows.

Mirrors the input side of ``fairseq_cli/interactive.py`` (``buffered_read`` of stdin, one text per line). An
``--input`` table is read with the training run's column names (``--key-column`` ... stored in the checkpoint's
``cfg``) unless flags name others, and a model of several prompts is never guessed at: without ``--prompt`` (or
a prompt column) it refuses and lists them.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd

from scorelib.data.readers import LAYOUTS, read_table
from scorelib.data.tables import Columns, normalize
from scorelib.errors import InputError, OptionError

NAMES = ("key", "prompt", "text", "context")


def texts_to_score(args) -> list[str]:
    """The texts after ``SAVE_DIR``, else one per non-blank line of standard input; none at all is refused."""
    lines = io.StringIO(stdin_text(), newline=None) if not args.texts else []  # as text-mode stdin reads lines
    texts = args.texts or [line.rstrip("\n") for line in lines if line.strip()]
    if not texts:
        raise InputError("no text given: pass texts after SAVE_DIR, one per line on standard input, or a table "
                         "with --input TABLE --output TABLE")
    return texts


def stdin_text() -> str:
    """Standard input as UTF-8 text; bytes that are not (a binary file piped in) are refused in one line."""
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    if isinstance(raw, str):
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"standard input: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start:,}); pipe "
                         f"in texts, one per line, in UTF-8") from None
    if "\x00" in text:
        raise InputError(f"standard input: holds a NUL byte at offset {text.index(chr(0)):,}: binary data, not "
                         f"texts, one per line")
    return text


def prompt_to_use(table, given, where: str = "") -> str:
    """``--prompt`` if given; the model's prompt if it knows one; else refuse, listing the prompts.

    Args:
        table (PromptTable): the model's prompts.
        given (str | None): ``--prompt``.
        where (str): what else would say the prompt (appended to the message).
    """
    if given is not None:
        return str(given)
    if len(table.ids) == 1:
        return table.ids[0]
    known = ", ".join(f"{p} ({lo:g}–{hi:g})" for p, (lo, hi) in ((p, table.ranges[p]) for p in table.ids))
    raise InputError(f"this model scores {len(table.ids)} prompts, each on its own scale: {known}; say which "
                     f"with --prompt ID (prompt=... in Python){where}")


def input_columns(args, cfg: dict, header) -> dict:
    """The ``--input`` table's key, prompt, text and context columns.

    A flag (``--text-column``) wins; else the training run's name (its ``cfg`` or ``--layout``) where the table has
    it; else scorelib's own name (``text``; ``key``, ``prompt``, ``context`` where present). A training run's text
    column that the table lacks, with no ``text`` column either, is the one named as missing.
    """
    layout = LAYOUTS.get(cfg.get("layout") or "table", {})
    trained = {n: cfg.get(f"{n}_column") or layout.get(n) for n in NAMES}
    given = {n: getattr(args, f"{n}_column") for n in NAMES}
    chosen = {n: given[n] or (trained[n] if trained[n] in header else None) for n in NAMES}
    names = Columns(chosen["key"], chosen["prompt"], chosen["text"], chosen["context"]).resolve(header, {})
    if names["text"] not in header and not given["text"] and trained["text"]:
        names["text"] = trained["text"]
    return names


def read_input(scorer, args) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and check ``--input``: returns ``(raw, frame)``, the table as read and its rows in scorelib's columns
    (``prompt`` from the table's prompt column, else ``--prompt``, else the model's one prompt)."""
    source, target = Path(args.input), Path(args.output)
    if target.resolve() == source.resolve() or (target.exists() and source.exists() and target.samefile(source)):
        raise OptionError(f"--output {args.output} is the --input file {args.input}; write the scored table to "
                          f"another file (the input is left as it is)")
    raw = read_table(args.input, args.encoding, sheet=args.sheet)
    names = input_columns(args, scorer.cfg, raw.columns)
    frame = normalize(raw, args.input, names, labeled=False)  # empty texts, duplicate keys: refused with their rows
    if names["prompt"] is None:
        frame["prompt"] = prompt_to_use(scorer.table, args.prompt, f" (or give {args.input} a prompt column, "
                                                                   f"named with --prompt-column)")
    return raw, frame
