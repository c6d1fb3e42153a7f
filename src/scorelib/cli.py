"""Command-line entry points: ``scorelib-train``, ``scorelib-cv``, ``scorelib-eval``, ``scorelib-score``.

Mirrors fairseq's ``fairseq_cli/train.py`` (``cli_main``) and ``fairseq_cli/interactive.py``;
``scorelib-eval`` lives in :mod:`scorelib.evaluate` (``fairseq_cli/validate.py``). Each
entry point configures logging, runs, and prints a :class:`~scorelib.errors.ScorelibError` (a
mistake the user can fix) as one line; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import distributed as dist
from . import options
from .console import run, setup_logging
from .errors import ScorelibError
from .evaluate import eval_cli, eval_parser, evaluate_checkpoint  # noqa: F401  (scorelib-eval's entry point)
from .inputs import prompt_to_use, read_input, texts_to_score
from .train import train
from .writers import table_format, write_table

logger = logging.getLogger("scorelib")


def train_cli(argv=None) -> int:
    """``scorelib-train``: the fairseq-train analog (no arguments: the demo data and default encoder)."""
    setup_logging()
    try:
        return run("scorelib-train", lambda: train_and_report(options.parse_args(argv)))
    finally:  # under torchrun: leave the process group cleanly
        dist.close()


def train_and_report(args) -> dict:
    """:func:`scorelib.train` and, on the main process, :func:`next_steps`' lines."""
    result = train(args)
    if dist.World.from_env().is_main:
        print("\n".join(next_steps(result)), flush=True)
    return result


def tool(name: str) -> str:
    """How to call another scorelib tool: beside the running one (``.venv/bin/scorelib-score``), else by name."""
    here = Path(sys.argv[0]).with_name(name)
    return str(here) if here.is_file() else name


def next_steps(result: dict) -> list[str]:
    """The last lines of ``scorelib-train`` (``make demo``): where the files went and what to run next.

    Args:
        result (dict): what :func:`scorelib.train` returned (``save_dir``, ``results_path``, ``metrics``).

    Returns:
        list[str]: the save dir, its result files, the held-out figure, and the next commands.
    """
    from .prompts import PromptTable

    save_dir, results = Path(result["save_dir"]), Path(result["results_path"])
    files = sorted(p.name for p in results.glob("*checkpoint_best-*")) if results.is_dir() else []
    lines = [f"done: the model is in {save_dir}/ (checkpoint_best.pt; history.csv per epoch; prompts.json)",
             f"  result files in {results}/: " + (", ".join(files) if files else "none (no valid or test split)")]
    split = next((s for s in ("test", "valid") if s in result["metrics"]), None)
    for trait, m in result["metrics"].get(split, {}).get("traits", {"": result["metrics"].get(split)}).items():
        if m:  # each prompt's own figures, averaged: a figure pooled over prompts of other scales misleads
            means = {k: np.mean(v) for k in ("qwk", "pearson", "rmse")
                     if (v := [p[k] for p in m["per_prompt"].values() if p[k] is not None])}
            shown = ", ".join(f"{k.upper() if k != 'pearson' else 'Pearson'} {v:.3f}" for k, v in means.items())
            lines.append(f"  {split}{' ' + trait if trait else ''}: mean of per-prompt {shown or 'metrics undefined'}"
                         f" (n={m['n']}; metrics-checkpoint_best-{split}.json has each prompt's)")
    ids = PromptTable.load(save_dir / "prompts.json").ids if (save_dir / "prompts.json").is_file() else ["ID", "?"]
    prompt = f"--prompt {shlex.quote(ids[0])} " if len(ids) > 1 else ""  # one prompt: scorelib-score takes it
    lines += [f"next: score a text:  {tool('scorelib-score')} {shlex.quote(str(save_dir))} {prompt}"
              f"\"Type an answer here.\"",
              "      look at the results, the errors and a scoring widget: notebooks/04_train_eval.ipynb "
              f"({tool('jupyter')} lab notebooks/)"]
    return lines


def cv_cli(argv=None) -> int:
    """``scorelib-cv [DATA] --folds K --save-dir DIR [scorelib-train flags]``: k-fold cross-validation."""
    from .cv import cross_validate, parse_cv_args

    setup_logging()
    return run("scorelib-cv", lambda: cross_validate(parse_cv_args(argv)))


def score_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scorelib-score", description="Score texts with a trained model.")
    p.add_argument("save_dir", help="save dir of scorelib-train (or a checkpoint file)")
    p.add_argument("texts", nargs="*", help="texts to score (default: one per line from stdin)")
    p.add_argument("--prompt", help="prompt id as in the data (needed for a model of several prompts, unless "
                                    "--input has a prompt column)")
    p.add_argument("--context", help="second segment for models trained on (text, context) pairs")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: one line per text (per trait, for a model of several traits) with the prompt's "
                        "range and the rounded score; json: one object per text (prompt, score, score_rounded, min, "
                        "max; with traits: prompt and traits, an object per trait)")
    p.add_argument("--input", help="a table (.csv/.tsv/.xlsx) of texts to score, every row")
    p.add_argument("--output", help="where --input's rows go, with pred and pred_rounded columns "
                                    "(pred_{trait} and pred_rounded_{trait} per trait; a cross-validation dir "
                                    "adds spread (spread_{trait}), the fold models' standard deviation)")
    for name in ("key", "text", "prompt", "context"):
        p.add_argument(f"--{name}-column", help=f"column of --input holding the {name} (default: the training "
                                                f"run's, where --input has it, else {name!r})")
    p.add_argument("--encoding", help="text encoding of --input (default: UTF-8)")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--explain", action="store_true", help="also print each sentence with its effect on the score "
                   "(score minus the score without it; scorelib.explain)")
    return p


def score_cli(argv=None) -> int:
    """``scorelib-score SAVE_DIR [--prompt ID] [TEXT ...]`` or ``--input TABLE --output TABLE``."""
    setup_logging(logging.WARNING)
    p = score_parser()
    args = p.parse_intermixed_args(argv)  # SAVE_DIR --prompt q2 TEXT TEXT
    if bool(args.input) != bool(args.output):
        p.error("--input and --output go together")
    if args.explain and args.input:
        p.error("--explain takes texts, not --input")
    return run("scorelib-score", score_texts, args)


def score_texts(args) -> None:
    from .scorer import describe, load

    if args.output:  # a folder or an unknown extension: refused before the model is loaded
        table_format(args.output, "--output")
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
    if args.explain:  # scorelib.explain: one block per text (json: one object per text)
        from .explain import explain, render_text
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


if __name__ == "__main__":  # ``torchrun --nproc_per_node=N -m scorelib.cli ...`` runs scorelib-train
    sys.exit(train_cli())
