"""The options of the commands beyond ``scorelib-train``: ``scorelib-cv``, ``-eval``, ``-score``, ``-probe``,
``-report`` and ``-export``.

Mirrors fairseq's ``get_validation_parser`` and ``get_interactive_parser`` (``fairseq/options.py``). Each parser is
built from groups shared with the others (:func:`add_device_args`, :func:`add_report_args`) and, for cv and eval,
from the training parser itself (:func:`scorelib.options.get_training_parser`); every one is checked by the one
:func:`scorelib.options.check_args`, whose ranges cover every numeric option of every command.
"""
from __future__ import annotations

import argparse

from scorelib import options


def get_cv_parser(argv=None) -> argparse.ArgumentParser:
    """``scorelib-train``'s parser plus ``--folds`` and ``--fold-column``; ``--test-fraction`` is left unset."""
    parser = options.get_training_parser(argv)
    parser.prog, parser.description = "scorelib-cv", "k-fold cross-validation of a text scorer."
    g = parser.add_argument_group("cross-validation")
    g.add_argument("--folds", type=int, metavar="K", help="number of folds, numbered from 0 (default: 5)")
    g.add_argument("--fold-column", metavar="NAME", help="use this column's folds as given instead of drawing them")
    g.add_argument("--keep-epoch-checkpoints", action="store_true",
                   help="keep each fold's checkpoint{N}.pt (default: a fold keeps only what it needs, checkpoint_best.pt)")
    parser.set_defaults(test_fraction=None)  # every row is predicted out of fold: a test share makes no sense
    return parser


def parse_cv_args(argv=None):
    """``scorelib-cv``'s options (:func:`get_cv_parser`), parsed and checked; DATA may name a data set
    (:mod:`scorelib.cli.datasets`: its table is written to ``SAVE_DIR/data``)."""
    from scorelib.cli.datasets import describe_data, resolve

    parser = describe_data(get_cv_parser(argv))
    return resolve(parser, parser.parse_args(argv), options.check_args)


def add_device_args(p: argparse.ArgumentParser, bf16: bool = False) -> None:
    p.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is there")
    if bf16:
        p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA, and CPU)")


def add_report_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The report's groups, second rater and bootstrap (``scorelib-report``; ``scorelib-eval --report``)."""
    p.add_argument("--group-column", metavar="COL[,COL...]",
                   help=f"{prefix}groups of writers for DSM and the fairness analyses")
    p.add_argument("--second-score-column", metavar="COL[,COL...]",
                   help=f"{prefix}a second human score, one per trait in trait order")
    p.add_argument("--bootstrap", type=int, default=1000, help=f"{prefix}resamples for the 95%% intervals (0: none)")
    p.add_argument("--min-n-per-group", type=int, default=30,
                   help=f"{prefix}RSMTool's min_n_per_group: a smaller group gets N and means only, no DSM (default 30)")


def get_eval_parser() -> argparse.ArgumentParser:
    """``scorelib-eval``: a checkpoint, the splits, the report's options, and the task's data options (fairseq's
    ``get_validation_parser``)."""
    from scorelib.tasks.text_scoring import TextScoringTask

    p = argparse.ArgumentParser(prog="scorelib-eval", description="Evaluate a checkpoint on a data split.")
    p.add_argument("checkpoint", help="a save dir (uses checkpoint_best.pt) or a .pt file")
    p.add_argument("--split", choices=["valid", "test", "train"], action="append",
                   help="split(s) to evaluate (default: valid and test)")
    p.add_argument("--results-path", help="default: the checkpoint's folder/results")
    add_device_args(p, bf16=True)
    r = p.add_argument_group("evaluation report (scorelib-report)")
    r.add_argument("--report", action="store_true",
                   help="also write results/report-{ckpt}-{split}.html and .json, as scorelib-report does")
    add_report_args(r, prefix="--report: ")
    TextScoringTask.add_args(p)
    return p


def get_score_parser() -> argparse.ArgumentParser:
    """``scorelib-score`` (fairseq's ``get_interactive_parser``)."""
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
    p.add_argument("--sheet", metavar="NAME", help="the sheet of an --input workbook (.xlsx) of several")
    p.add_argument("--output", help="where --input's rows go, with pred and pred_rounded columns "
                                    "(pred_{trait} and pred_rounded_{trait} per trait; a cross-validation dir "
                                    "adds spread (spread_{trait}), the fold models' standard deviation)")
    for name in ("key", "text", "prompt", "context"):
        p.add_argument(f"--{name}-column", help=f"column of --input holding the {name} (default: the training "
                                                f"run's, where --input has it, else {name!r})")
    p.add_argument("--encoding", help="text encoding of --input (default: UTF-8)")
    add_device_args(p)
    p.add_argument("--explain", action="store_true", help="also print each sentence with its effect on the score "
                   "(score minus the score without it; scorelib.explain)")
    return p


def get_probe_parser(probe_names=()) -> argparse.ArgumentParser:
    """``scorelib-probe``; ``probe_names`` lists the probes in ``--probes``' help."""
    p = argparse.ArgumentParser(prog="scorelib-probe", description="Rescore a split's texts after perturbations "
                                "that should not raise their scores (robustness probes).")
    p.add_argument("save_dir", help="save dir of scorelib-train or scorelib-cv (or a checkpoint file)")
    p.add_argument("data", nargs="?", help="a folder of train/valid/test tables or one table (default: the demo data)")
    p.add_argument("--split", default="test", help="the split to probe (a single table is read whole as it)")
    p.add_argument("--probes", default="all", help=f"all, or a comma list of: {', '.join(probe_names)}")
    p.add_argument("--seed", type=int, default=1, help="seeds every perturbation")
    p.add_argument("--max-rows", type=int, help="probe a seeded sample of this many rows")
    p.add_argument("--results-path", help="default: the save dir's results/")
    for name in ("key", "prompt", "text", "context", "score"):
        p.add_argument(f"--{name}-column", help=f"DATA's column holding the {name}")
    p.add_argument("--layout", default="table", help="a named layout of DATA (see scorelib-train --layout)")
    p.add_argument("--encoding", help="text encoding of DATA (default: UTF-8)")
    p.add_argument("--sheet", metavar="NAME", help="the sheet of DATA's workbooks (.xlsx) of several")
    add_device_args(p)
    return p


def get_report_parser() -> argparse.ArgumentParser:
    """``scorelib-report``."""
    p = argparse.ArgumentParser(prog="scorelib-report", description="Write an evaluation report (HTML and JSON) "
                                "from a save dir's or a CV dir's result file.")
    p.add_argument("dir", help="a save dir of scorelib-train or a cross-validation dir of scorelib-cv")
    p.add_argument("data", nargs="?", help="the input table (or a folder of tables), to join --group-column and "
                   "--second-score-column by key where the result file lacks them")
    p.add_argument("--split", help="default: test (oof, the out-of-fold predictions, for a CV dir)")
    add_report_args(p)
    p.add_argument("--key-column", default="key", help="DATA's key column (default: key)")
    p.add_argument("--seed", type=int, default=1, help="seeds the bootstrap (default 1)")
    p.add_argument("--results-path", help="where the result files are and the report goes (default: DIR/results)")
    p.add_argument("--rsmeval-dir", help="also write rsmeval-ready predictions and config files here")
    return p


def get_export_parser() -> argparse.ArgumentParser:
    """``scorelib-export``."""
    p = argparse.ArgumentParser(prog="scorelib-export", description="Export a trained scorer as ONNX graphs, "
                                "scored by onnxruntime without PyTorch (scorelib-score OUT, scorelib.load(OUT)).")
    p.add_argument("dir", help="save dir of scorelib-train (or a checkpoint file) or of scorelib-cv (its folds)")
    p.add_argument("out", help="the export folder to write (new, empty, or an earlier export, replaced)")
    p.add_argument("--quantize", choices=["int8"], help="int8 weights for the matrix products (onnxruntime dynamic "
                   "quantization): smaller and faster on CPUs, scores within about 0.01 on a 1-6 scale")
    return p
