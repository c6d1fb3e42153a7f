"""``scorelib-score SAVE_DIR [--prompt ID] [TEXT ...]`` or ``--input TABLE --output TABLE``.

Mirrors fairseq's ``fairseq_cli/interactive.py``: load a trained model (:func:`scorelib.load`), read texts (arguments,
stdin, or a table), print or write their scores.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib import options
from scorelib.cli import options as cli_options
from scorelib.errors import ScorelibError
from scorelib.hub.inputs import prompt_to_use, read_input, texts_to_score
from scorelib.logging.console import run, setup_logging
from scorelib.writers import check_writable, table_format, write_table


def cli_main(argv=None) -> int:
    """``scorelib-score SAVE_DIR [--prompt ID] [TEXT ...]`` or ``--input TABLE --output TABLE``."""
    setup_logging(logging.WARNING)
    p = cli_options.get_score_parser()
    args = options.check_args(p, p.parse_intermixed_args(argv))  # SAVE_DIR --prompt q2 TEXT TEXT
    if bool(args.input) != bool(args.output):
        p.error("--input and --output go together")
    if args.explain and args.input:
        p.error("--explain takes texts, not --input")
    return run("scorelib-score", score_texts, args)


def score_texts(args) -> None:
    from scorelib.hub.scorer import describe, load

    if args.output:  # a folder, an unknown extension or a folder that cannot be written: refused before scoring
        table_format(args.output, "--output")
        folder = Path(args.output).absolute().parent
        check_writable(folder, f"--output {args.output} (folder {folder})", "; write the scores elsewhere")
    scorer = load(args.save_dir, device="cpu" if args.cpu else None)
    if args.input:
        score_table(scorer, args)
        return
    prompt = prompt_to_use(scorer.table, args.prompt)  # several prompts: --prompt says which; one: that one
    texts = texts_to_score(args)
    values, spreads = scorer.score(texts, prompt=prompt, contexts=args.context, return_spread=True)
    for value, spread in zip(values, spreads):  # a fold ensemble's records carry the spread across its models
        record = scorer.record(value, prompt, spread=spread)
        print(json.dumps(record) if args.format == "json" else describe(record), flush=True)
    if args.explain:  # scorelib.explain.explanation: one block per text (json: one object per text)
        from scorelib.explain.explanation import explain, render_text
        for text in texts:
            e = explain(scorer, text, prompt=prompt, contexts=args.context)
            print(json.dumps(e.to_dict()) if args.format == "json" else render_text(e), flush=True)


def score_table(scorer, args) -> pd.DataFrame:
    """Score every row of ``--input`` into ``--output`` (same rows and order, plus pred columns)."""
    raw, frame = read_input(scorer, args)  # the training run's column names unless flags name others
    values: dict[str, np.ndarray] = {}  # pred, spread (and a stack's parts), each (N, K), filled prompt by prompt
    for pid in pd.unique(frame["prompt"]):
        rows = np.flatnonzero((frame["prompt"] == pid).to_numpy())
        ctx = frame["context"].iloc[rows].tolist() if frame["context"].notna().all() else args.context
        try:
            got = scorer.predict(frame["text"].iloc[rows].tolist(), prompt=pid, contexts=ctx)
        except ScorelibError as e:
            raise type(e)(f"{args.input}: rows {', '.join(map(str, frame['_row'].iloc[rows[:5]]))}"
                          f"{' ...' if len(rows) > 5 else ''}: {e}") from None
        for key, x in got.items():
            values.setdefault(key, np.full((len(frame), scorer.table.num_traits), np.nan))[rows] = \
                np.reshape(x, (len(rows), -1))
    out = raw.drop(columns="_row").assign(**scorer.output_columns(values, frame["prompt"]))
    output = Path(args.output)
    write_table(out, output, option="--output", sheet="scores")  # by extension; text cells; atomic
    print(f"scored {len(out)} rows into {output}", file=sys.stderr)
    return out


if __name__ == "__main__":
    sys.exit(cli_main())
