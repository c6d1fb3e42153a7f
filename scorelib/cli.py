"""Command-line entry points: ``scorelib-train``, ``scorelib-cv``, ``scorelib-eval``, ``scorelib-score``.

Mirrors fairseq's ``fairseq_cli/train.py`` (``cli_main``) and ``fairseq_cli/validate.py``. Each
entry point configures logging, runs, and prints a :class:`~scorelib.errors.ScorelibError` (a
mistake the user can fix) as one line; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import checkpoint as C
from . import distributed as dist
from . import options
from .errors import OptionError, ScorelibError
from .metrics import flat_metrics
from .results import evaluate_dataset
from .tables import Columns, normalize, read_table
from .train import results_dir, train
from .writers import table_format, write_table

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
    """Run ``job(*args)``; a :class:`ScorelibError` becomes one line on stderr and exit status 2."""
    try:
        job(*args)
    except ScorelibError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


def train_cli(argv=None) -> int:
    """``scorelib-train``: the fairseq-train analog (no arguments: the demo data and default encoder)."""
    setup_logging()
    args = options.parse_args(argv)
    try:
        return run("scorelib-train", train, args)
    finally:  # under torchrun: leave the process group cleanly
        dist.close()


def cv_cli(argv=None) -> int:
    """``scorelib-cv [DATA] --folds K --save-dir DIR [scorelib-train flags]``: k-fold cross-validation."""
    from .cv import cross_validate, parse_cv_args

    setup_logging()
    args = parse_cv_args(argv)
    return run("scorelib-cv", cross_validate, args)


EVAL_OWN = ("split", "results_path", "cpu", "bf16")  # scorelib-eval's own options, never taken from the checkpoint


def eval_parser() -> argparse.ArgumentParser:
    from .tasks import TextScoringTask

    p = argparse.ArgumentParser(prog="scorelib-eval", description="Evaluate a checkpoint on a data split.")
    p.add_argument("checkpoint", help="a save dir (uses checkpoint_best.pt) or a .pt file")
    p.add_argument("--split", choices=["valid", "test", "train"], action="append",
                   help="split(s) to evaluate (default: valid and test)")
    p.add_argument("--results-path", help="default: the checkpoint's folder/results")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--bf16", action="store_true")
    TextScoringTask.add_args(p)
    return p


def eval_cli(argv=None) -> int:
    """``scorelib-eval SAVE_DIR_OR_CHECKPOINT [--split S] [data arguments]``."""
    setup_logging()
    parser = eval_parser()
    args = options.check_args(parser, parser.parse_intermixed_args(argv))  # SAVE_DIR --split test DATA
    return run("scorelib-eval", evaluate_checkpoint, args, parser)


def eval_options(args, parser, cfg: dict, traits) -> argparse.Namespace:
    """The options of an evaluation: those given, else the training run's (``cfg``), as a new namespace.

    With another table (DATA given), the training data's column names and row subsets do not apply; the
    model's traits are still looked up by name.
    """
    given = {k for k, v in vars(args).items() if v != parser.get_default(k)}
    merged = dict(vars(args))
    for key, value in cfg.items():
        if key not in merged or key in given or key in EVAL_OWN:
            continue
        if "data" in given and (key.endswith("_column") or key.startswith("max_") and key.endswith("_rows")):
            continue
        merged[key] = value
    merged["seed"] = cfg["seed"]
    merged["score_column"] = merged["score_column"] or ",".join(traits) or None
    return argparse.Namespace(**merged)


def evaluate_checkpoint(args, parser) -> dict:
    """Evaluate a saved checkpoint (or a CV dir's fold ensemble): data options not given come from its training run."""
    from .ensemble import is_cv_dir
    from .scorer import load, resolve_checkpoint
    from .tasks import TextScoringTask

    if is_cv_dir(args.checkpoint):  # a scorelib-cv dir: the fold ensemble, with the options of the CV run
        if args.data is None:
            raise OptionError(f"{args.checkpoint}: a cross-validation dir was trained on every row of its data; "
                              f"name a held-out table: scorelib-eval {args.checkpoint} --split test DATA")
        ckpt, source = Path(args.checkpoint) / "ensemble", args.checkpoint  # results: result-ensemble-{split}
        cfg = options.complete_cfg(json.loads((ckpt.parent / "cv.json").read_text(encoding="utf-8"))["args"])
    else:
        source = ckpt = resolve_checkpoint(args.checkpoint)
        cfg = C.load_checkpoint(ckpt)["cfg"]
    scorer = load(source, device="cpu" if args.cpu else None)
    args = eval_options(args, parser, cfg, scorer.traits)
    results_path = results_dir(args.results_path, ckpt.parent)
    out = {}
    for split in args.split or ["valid", "test"]:
        task = TextScoringTask.setup_eval_task(args, scorer.tokenizer, scorer.table, split)
        ds = task.load_dataset(split)
        preds = scorer.score01_dataset(ds, bf16=args.bf16)
        _, metrics = evaluate_dataset(ds, preds, scorer.table, results_path, ckpt.name, split)
        print(f"{ckpt.name} on {split}: {flat_metrics(metrics)}")
        out[split] = metrics
    return out


def score_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scorelib-score", description="Score texts with a trained model.")
    p.add_argument("save_dir", help="save dir of scorelib-train (or a checkpoint file)")
    p.add_argument("texts", nargs="*", help="texts to score (default: one per line from stdin)")
    p.add_argument("--prompt", help="prompt id as in the data (default: the first, sorted)")
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
        p.add_argument(f"--{name}-column", help=f"column of --input holding the {name} (default: {name!r})")
    p.add_argument("--encoding", help="text encoding of --input (default: UTF-8)")
    p.add_argument("--cpu", action="store_true")
    return p


def score_cli(argv=None) -> int:
    """``scorelib-score SAVE_DIR [--prompt ID] [TEXT ...]`` or ``--input TABLE --output TABLE``."""
    setup_logging(logging.WARNING)
    p = score_parser()
    args = p.parse_intermixed_args(argv)  # SAVE_DIR --prompt q2 TEXT TEXT
    if bool(args.input) != bool(args.output):
        p.error("--input and --output go together")
    return run("scorelib-score", score_texts, args)


def score_texts(args) -> None:
    from .scorer import describe, load

    if args.output:  # a folder or an unknown extension: refused before the model is loaded
        table_format(args.output, "--output")
    scorer = load(args.save_dir, device="cpu" if args.cpu else None)
    if args.input:
        score_table(scorer, args)
        return
    if args.prompt is None:
        print(f"scorelib-score: no --prompt given; using {scorer.table.ids[0]!r} "
              f"(known: {', '.join(scorer.table.ids)})", file=sys.stderr)
    prompt = args.prompt or scorer.table.ids[0]
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    values, spreads = scorer.score(texts, prompt=prompt, contexts=args.context, return_spread=True)
    for value, spread in zip(values, spreads):  # a fold ensemble's records carry the spread across its models
        record = scorer.record(value, prompt, spread=spread)
        print(json.dumps(record) if args.format == "json" else describe(record), flush=True)


def score_table(scorer, args) -> pd.DataFrame:
    """Score every row of ``--input`` into ``--output`` (same rows and order, plus pred columns)."""
    raw = read_table(args.input, args.encoding)
    names = Columns(args.key_column, args.prompt_column, args.text_column, args.context_column).resolve(raw.columns, {})
    frame = normalize(raw, args.input, names, labeled=False)  # empty texts, duplicate keys: refused with their rows
    if names["prompt"] is None:
        frame["prompt"] = args.prompt or scorer.table.ids[0]
    pred = np.full((len(frame), scorer.table.num_traits), np.nan)
    spread = np.full_like(pred, np.nan)
    for pid in pd.unique(frame["prompt"]):
        rows = np.flatnonzero((frame["prompt"] == pid).to_numpy())
        ctx = frame["context"].iloc[rows].tolist() if names["context"] else args.context
        try:
            scores, spreads = scorer.score(frame["text"].iloc[rows].tolist(), prompt=pid, contexts=ctx,
                                           return_spread=True)
        except ScorelibError as e:
            raise type(e)(f"{args.input}: rows {', '.join(map(str, frame['_row'].iloc[rows[:5]]))}"
                          f"{' ...' if len(rows) > 5 else ''}: {e}") from None
        pred[rows], spread[rows] = np.reshape(scores, (len(rows), -1)), np.reshape(spreads, (len(rows), -1))
    out = raw.drop(columns="_row").assign(**scorer.output_columns(pred, spread, frame["prompt"]))
    output = Path(args.output)
    write_table(out, output, option="--output", sheet="scores")  # by extension; text cells; atomic
    print(f"scored {len(out)} rows into {output}", file=sys.stderr)
    return out


if __name__ == "__main__":  # ``torchrun --nproc_per_node=N -m scorelib.cli ...`` runs scorelib-train
    sys.exit(train_cli())
