"""Command-line entry points: ``scorelib-train``, ``scorelib-cv``, ``scorelib-eval``, ``scorelib-score``.

Mirrors fairseq's ``fairseq_cli/train.py`` (``cli_main``) and ``fairseq_cli/validate.py``. Each
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
        return run("scorelib-train", train_and_report, args)
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
    prompt = PromptTable.load(save_dir / "prompts.json").ids[0] if (save_dir / "prompts.json").is_file() else "ID"
    lines += [f"next: score a text:  {tool('scorelib-score')} {shlex.quote(str(save_dir))} --prompt "
              f"{shlex.quote(prompt)} \"Type an answer here.\"",
              "      look at the results, the errors and a scoring widget: notebooks/04_train_eval.ipynb "
              f"({tool('jupyter')} lab notebooks/)"]
    return lines


def cv_cli(argv=None) -> int:
    """``scorelib-cv [DATA] --folds K --save-dir DIR [scorelib-train flags]``: k-fold cross-validation."""
    from .cv import cross_validate, parse_cv_args

    setup_logging()
    args = parse_cv_args(argv)
    return run("scorelib-cv", cross_validate, args)


EVAL_OWN = ("split", "results_path", "cpu", "bf16", "report", "group_column", "second_score_column", "bootstrap")  # scorelib-eval's own options, never taken from the checkpoint


def eval_parser() -> argparse.ArgumentParser:
    from .tasks import TextScoringTask

    p = argparse.ArgumentParser(prog="scorelib-eval", description="Evaluate a checkpoint on a data split.")
    p.add_argument("checkpoint", help="a save dir (uses checkpoint_best.pt) or a .pt file")
    p.add_argument("--split", choices=["valid", "test", "train"], action="append",
                   help="split(s) to evaluate (default: valid and test)")
    p.add_argument("--results-path", help="default: the checkpoint's folder/results")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--bf16", action="store_true")
    r = p.add_argument_group("evaluation report (scorelib-report)")
    r.add_argument("--report", action="store_true",
                   help="also write results/report-{ckpt}-{split}.html and .json, as scorelib-report does")
    r.add_argument("--group-column", metavar="COL[,COL...]", help="--report: groups of writers (DSM, fairness)")
    r.add_argument("--second-score-column", metavar="COL[,COL...]", help="--report: a second human score per trait")
    r.add_argument("--bootstrap", type=int, default=1000, help="--report: resamples for the 95%% intervals")
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
        if args.report:
            write_report(args, source, ckpt, split, results_path)
    return out


def write_report(args, source, ckpt, split, results_path) -> None:
    """``scorelib-eval --report``: :func:`scorelib.report.make_report` on the result file just written."""
    from .report import make_report

    if ckpt.name not in ("checkpoint_best.pt", "ensemble"):
        raise OptionError(f"--report reads checkpoint_best's result files; {ckpt.name} is another checkpoint: "
                          f"evaluate the save dir itself, or run scorelib-report on it")
    names = {flag: [c.strip() for c in value.split(",") if c.strip()] if value else []
             for flag, value in (("group", args.group_column), ("second", args.second_score_column))}
    done = make_report(Path(source).parent if Path(source).is_file() else source, args.data, split=split,
                       group_columns=names["group"], second_score_columns=names["second"],
                       key_column=args.key_column or "key", bootstrap=args.bootstrap, seed=args.seed,
                       results_path=results_path)
    print(f"report: {done['html']} ({len(done['report']['flags'])} flag(s))")


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
    if args.prompt is None:
        print(f"scorelib-score: no --prompt given; using {scorer.table.ids[0]!r} "
              f"(known: {', '.join(scorer.table.ids)})", file=sys.stderr)
    prompt = args.prompt or scorer.table.ids[0]
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
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
