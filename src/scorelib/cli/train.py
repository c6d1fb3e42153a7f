"""``scorelib-train``: the fairseq-train analog.

Mirrors fairseq's ``fairseq_cli/train.py`` (``cli_main``): parse the options (:mod:`scorelib.options`), configure
logging, run :func:`scorelib.train`, and print a :class:`~scorelib.errors.ScorelibError` (a mistake the user can fix)
as one line; any other exception is a bug and keeps its traceback. The epoch loop is :mod:`scorelib.training`.
"""
from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import numpy as np

from scorelib import options, training
from scorelib.distributed import utils as dist
from scorelib.logging.console import run, setup_logging

logger = logging.getLogger("scorelib")


def cli_main(argv=None) -> int:
    """``scorelib-train``: the fairseq-train analog (no arguments: the demo data and default encoder)."""
    setup_logging()
    try:
        return run("scorelib-train", lambda: train_and_report(parse_args(argv)))
    finally:  # under torchrun: leave the process group cleanly
        dist.close()


def parse_args(argv=None):
    """``scorelib-train``'s options (:func:`scorelib.options.parse_args`), DATA a path or a data set's name
    (:mod:`scorelib.cli.datasets`: its table is written to ``SAVE_DIR/data``)."""
    from scorelib.cli.datasets import describe_data, resolve

    parser = describe_data(options.get_training_parser(argv))
    return resolve(parser, parser.parse_args(argv), options.check_args)


def after_training_steps(args) -> list:
    """The extras that ``args`` ask for after the epoch loop, in the order they run: ``--stack tfidf`` (the stack
    and its blend weight), then ``--fit-cutpoints`` (thresholds of the blend, where there is one)."""
    steps = []
    if args.stack:
        from scorelib.stack.tfidf import StackStep

        steps.append(StackStep())
    if args.fit_cutpoints:
        from scorelib.cutpoints.thresholds import CutpointStep

        steps.append(CutpointStep(blend=steps[0] if steps else None))
    return steps


def train(args) -> dict:
    """The whole job of ``scorelib-train`` (``scorelib.train``): the epoch loop (:func:`scorelib.training.main`) with
    the steps after it that the options ask for.

    Args:
        args (argparse.Namespace): from :func:`scorelib.options.parse_args`.

    Returns:
        dict: ``history`` (list of per-epoch rows), ``metrics`` per split, ``save_dir``, ``results_path``, and
        ``metric``, the valid metric that picked ``checkpoint_best`` (``history``'s ``valid_{metric}``).
    """
    return training.main(args, after_training_steps(args))


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
    from scorelib.data.prompts import PromptTable

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


if __name__ == "__main__":  # ``torchrun --nproc_per_node=N -m scorelib.cli ...`` runs scorelib-train
    sys.exit(cli_main())
