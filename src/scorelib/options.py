"""Every command's options, ``fairseq-train``'s names where fairseq has them.

Mirrors fairseq's ``fairseq/options.py`` (``get_training_parser``, ``get_validation_parser``,
``get_interactive_parser``, ``parse_args_and_arch``): one module builds the parser of each command
(:mod:`scorelib.cli`) from shared groups of options. For training, ``--user-dir`` is read and
imported first, then the chosen task and model add their own arguments, then everything is parsed
and checked once (:func:`check_args`).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
from typing import NamedTuple

from scorelib.errors import OptionError
from scorelib.registry import CRITERION_REGISTRY, MODEL_REGISTRY, TASK_REGISTRY, import_user_dir, lookup

# SCORELIB_FAST=1 (set by the tests): the same real model, fewer rows and epochs.
# These only change defaults, so a flag given explicitly always wins.
FAST_DEFAULTS = {"max_train_rows": 128, "max_eval_rows": 64, "max_epoch": 2}
RESTORE_FILE = "checkpoint_last.pt"  # --restore-file's default: resume if it is there, else start afresh
# the transformers.get_scheduler names (its SchedulerType) that need nothing but warmup and total updates; the others
# need a metric at each step (reduce_lr_on_plateau, greedy) or options of their own (cosine_with_min_lr, ...)
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt")


def fast_mode() -> bool:
    """True when the environment asks for quick runs (``SCORELIB_FAST=1``)."""
    return os.environ.get("SCORELIB_FAST", "").strip().lower() not in ("", "0", "false", "no")


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to a flag's help where it has a default and the help does not name one already."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def add_plugin_args(p: argparse.ArgumentParser) -> None:
    """``--user-dir`` and the registered names it may add: read before the rest (:func:`get_training_parser`)."""
    p.add_argument("--user-dir", metavar="PATH",
                   help="import a plugin folder (and its tasks/, models/, criterions/, data/) first; runs its code")
    p.add_argument("--task", default="text_scoring", help="registered task name")
    p.add_argument("--arch", default="text_scorer", help="registered model name")
    p.add_argument("--criterion", default="score_mse", help="registered criterion name")


def _base_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scorelib-train", description="Train a text scorer, as fairseq-train trains a custom task.",
        formatter_class=HelpFormatter, allow_abbrev=False)
    add_plugin_args(p)
    c = p.add_argument_group("checkpoints")
    c.add_argument("--save-dir", default="checkpoints", help="where checkpoints, tokenizer and prompt table go")
    c.add_argument("--restore-file", default=RESTORE_FILE,
                   help="resume from this (in --save-dir unless a path); a name other than the default must exist. "
                        "Resuming refuses options that change the model, its data or the optimizer's groups (encoder, "
                        "--max-length, --long-text, --chunk-stride, score columns, ranges, step, --head-lr, "
                        "--layer-lr-decay): train those in another --save-dir")
    c.add_argument("--finetune-from-model", metavar="PATH",
                   help="start from this checkpoint's weights with a fresh optimizer (ignored once checkpoint_last.pt exists)")
    c.add_argument("--save-interval-updates", type=int, default=0, metavar="N",
                   help="also save (and validate) every N updates as checkpoint_{epoch}_{updates}.pt")
    c.add_argument("--no-epoch-checkpoints", action="store_true", help="keep only checkpoint_best.pt and checkpoint_last.pt")
    c.add_argument("--no-save-optimizer-state", action="store_true",
                   help="leave the optimizer state out of checkpoint_best.pt and the epoch/update files (about a third "
                        "of the size: 91 MB instead of 275 MB for the default encoder); checkpoint_last.pt keeps it "
                        "for resuming")
    c.add_argument("--best-checkpoint-metric", choices=["qwk", "pearson", "spearman", "rmse", "mcrmse", "loss"],
                   default=None, help="validation metric that picks checkpoint_best (default: mcrmse with several "
                                      "--score-column traits, else qwk with --score-step, else pearson); with traits, "
                                      "qwk/pearson/spearman/rmse are means over the traits")
    c.add_argument("--maximize-best-checkpoint-metric", action="store_true",
                   help="treat the metric as higher-is-better (the default follows the metric)")
    c.add_argument("--patience", type=int, default=-1, metavar="N",
                   help="stop after N validations without improvement (-1: never)")
    c.add_argument("--results-path", metavar="DIR", help="where evaluation files go (default: SAVE_DIR/results)")
    c.add_argument("--fit-cutpoints", action="store_true",
                   help="after training, fit per-prompt thresholds between rubric points that maximise QWK on the "
                        "valid split (out-of-fold predictions under scorelib-cv) and round by them (per trait, with "
                        "several); needs --score-step (or each trait's step)")
    c.add_argument("--stack", choices=["tfidf"], default=None,
                   help="also fit a word + character n-gram TF-IDF ridge per score on the train split and blend it "
                        "with the encoder, the weight fitted on valid (out-of-fold under scorelib-cv); saved in "
                        "SAVE_DIR/stack without pickle")
    o = p.add_argument_group("optimization")
    o.add_argument("--max-tokens", type=int, default=2048, metavar="N", help="padded tokens per batch")
    o.add_argument("--batch-size", type=int, default=16, metavar="N", help="texts per batch (at most)")
    o.add_argument("--max-epoch", type=int, default=4, metavar="N", help="stop after N epochs (0: no limit)")
    o.add_argument("--max-update", type=int, default=0, metavar="N", help="stop after N updates (0: no limit)")
    o.add_argument("--lr", type=float, default=8e-5, help="peak learning rate of AdamW")
    o.add_argument("--weight-decay", type=float, default=0.01)
    o.add_argument("--lr-scheduler", choices=LR_SCHEDULERS, default="linear",
                   help="transformers.get_scheduler's schedule, with --warmup-updates")
    o.add_argument("--warmup-updates", type=int, default=None, metavar="N", help="default: 6%% of all updates")
    o.add_argument("--clip-norm", type=float, default=1.0, help="clip gradients to this norm (0: off)")
    o.add_argument("--update-freq", type=int, default=1, metavar="N", help="accumulate gradients over N batches")
    o.add_argument("--skip-invalid-loss", action="store_true",
                   help="skip (and log) a batch whose loss is NaN or inf instead of stopping")
    h = p.add_argument_group("hardware and logging")
    h.add_argument("--seed", type=int, default=1)
    h.add_argument("--fp16", action="store_true", help="float16 autocast with a grad scaler (CUDA)")
    h.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA, and CPU)")
    h.add_argument("--cpu", action="store_true", help="use the CPU even if a GPU is there")
    h.add_argument("--compile", action="store_true",
                   help="torch.compile the encoder (dynamic shapes, so length-bucketed batches compile once; dropout "
                        "drawn by torch's own kernels, as eager); falls back to eager, with a log line, where "
                        "compiling is not available")
    h.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    h.add_argument("--log-format", choices=["tqdm", "simple", "json"], default="tqdm")
    h.add_argument("--log-interval", type=int, default=20, metavar="N", help="updates between simple/json log lines")
    h.add_argument("--no-progress-bar", action="store_true", help="no tqdm bar (same as --log-format simple)")
    h.add_argument("--tensorboard-logdir", metavar="DIR",
                   help="write TensorBoard curves (train loss and lr every --log-interval updates and per epoch, every "
                        "valid metric) to DIR/{the --save-dir folder's name}; needs pip install 'scorelib[tensorboard]'")
    return p


def get_training_parser(argv=None, fast: bool | None = None) -> argparse.ArgumentParser:
    """The full parser: base options, then those of the task and model named in ``argv``.

    ``--user-dir`` is imported before anything else, so a plugin can register the task it names.
    ``fast`` (default: :func:`fast_mode`) applies the quick defaults of ``SCORELIB_FAST=1``.
    """
    plugins = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # --help waits for the full parser
    add_plugin_args(plugins)
    known, _ = plugins.parse_known_args(argv)
    if known.user_dir:
        import_user_dir(known.user_dir)
    from scorelib.criterions.score_mse import ScoreMSECriterion
    from scorelib.models.scoring_model import ScoringModel
    from scorelib.tasks.text_scoring import TextScoringTask

    for table, cls in ((TASK_REGISTRY, TextScoringTask), (MODEL_REGISTRY, ScoringModel),
                       (CRITERION_REGISTRY, ScoreMSECriterion)):
        table.setdefault(cls.registry_name, cls)  # registered on import; again here if a registry was cleared

    parser = _base_parser()
    task_cls = lookup(TASK_REGISTRY, "task", known.task)
    task_cls.add_args(parser)
    model_cls = lookup(MODEL_REGISTRY, "model", known.arch)
    model_cls.add_args(parser)
    crit_cls = lookup(CRITERION_REGISTRY, "criterion", known.criterion)
    if hasattr(crit_cls, "add_args"):
        crit_cls.add_args(parser)
    if fast_mode() if fast is None else fast:
        parser.set_defaults(**FAST_DEFAULTS)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """Parse training options (``argv=None`` reads ``sys.argv``; a list parses that list)."""
    parser = get_training_parser(argv)
    return check_args(parser, parser.parse_args(argv))


class Range(NamedTuple):
    """One numeric option's allowed values, checked by :func:`check_args`.

    From ``low`` to ``high`` (None: no bound), each end included unless ``open_low`` / ``open_high``; a float must
    also be finite (and each value of a list, such as ``--score-range``'s two). ``rule`` says it in words, as the
    error line does: ``--seed must be in [0, 2**32) (numpy's seeds), got -1``.
    """
    dest: str
    rule: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def holds(self, value) -> bool:
        """Whether ``value`` (a number, or a list of numbers) lies in the range."""
        if isinstance(value, (list, tuple)):
            return all(self.holds(v) for v in value)
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return ((self.low is None or (value > self.low if self.open_low else value >= self.low))
                and (self.high is None or (value < self.high if self.open_high else value <= self.high)))


SEED = "in [0, 2**32) (numpy's seeds)"
ALL_ROWS = "positive (leave it out for every row)"
# every numeric option of every command (tests/test_registry_options.py walks the parsers: a numeric option without
# an entry here fails it); an option a command lacks is skipped
RANGES = [
    # optimization
    Range("lr", ">= 0", 0), Range("head_lr", ">= 0", 0), Range("weight_decay", ">= 0", 0),
    Range("layer_lr_decay", "in (0, 1] (1: off)", 0, 1, open_low=True),
    Range("clip_norm", ">= 0 (0: no clipping)", 0), Range("warmup_updates", ">= 0", 0),
    Range("max_tokens", "positive", 1), Range("batch_size", "positive", 1), Range("update_freq", "positive", 1),
    Range("max_epoch", ">= 0 (0: no limit)", 0), Range("max_update", ">= 0 (0: no limit)", 0),
    # checkpoints
    Range("save_interval_updates", ">= 0 (0: at epoch ends only)", 0),
    Range("patience", ">= -1 (-1: never stop early)", -1),
    # model
    Range("head_dropout", "in [0, 1)", 0, 1, open_high=True),
    Range("encoder_dropout", "in [0, 1)", 0, 1, open_high=True),
    Range("reinit_layers", ">= 0", 0),
    # hardware and logging
    Range("seed", SEED, 0, 2 ** 32, open_high=True), Range("num_workers", ">= 0", 0),
    Range("log_interval", "positive", 1),
    # the task's data
    Range("score_range", "finite (MIN MAX)"), Range("score_step", "positive", 0, open_low=True),
    Range("max_length", ">= 8 (tokens)", 8), Range("chunk_stride", ">= 0", 0),
    Range("valid_fraction", "in [0, 1)", 0, 1, open_high=True),
    Range("test_fraction", "in [0, 1)", 0, 1, open_high=True),
    Range("split_seed", SEED, 0, 2 ** 32, open_high=True),
    Range("max_train_rows", ALL_ROWS, 1), Range("max_eval_rows", ALL_ROWS, 1),
    # scorelib-cv
    Range("folds", "at least 2", 2),
    # scorelib-eval --report, scorelib-report
    Range("bootstrap", ">= 0 (0: no intervals)", 0), Range("min_n_per_group", "positive", 1),
    # scorelib-probe
    Range("max_rows", ALL_ROWS, 1),
]


def shown(value) -> str:
    """A value as the error line gives it: ``-1``, ``1.5``, ``8589934592``, ``nan 5``."""
    if isinstance(value, (list, tuple)):
        return " ".join(shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The one check after parsing, shared by every command (train, cv, eval, score, probe, report).

    Refuses, with ``parser.error`` (usage and one line, exit status 2), a value outside its :data:`RANGES` entry
    and the combinations argparse cannot see; each check applies where the parser has the option. Nothing edits the
    options after this step.

    Returns:
        argparse.Namespace: the options to use (``--no-progress-bar`` folded into ``--log-format simple``).
    """
    values = dict(vars(args))
    if values.get("fp16") and values.get("bf16"):
        parser.error("--fp16 and --bf16 exclude each other")
    for r in RANGES:  # None: not given (0 is given: --folds 0 is refused, not the default)
        value = values.get(r.dest)
        if value is not None and not r.holds(value):
            parser.error(f"--{r.dest.replace('_', '-')} must be {r.rule}, got {shown(value)}")
    if values.get("score_range") is not None and not values["score_range"][0] < values["score_range"][1]:
        parser.error(f"--score-range {shown(values['score_range'])}: MIN must be below MAX")
    if values.get("tensorboard_logdir"):
        check_logdir(parser, values["tensorboard_logdir"], values.get("save_dir") or "checkpoints")
    check_qwk_step(parser, values)
    if "long_text" in values and (values["long_text"] != "truncate" or values["chunk_stride"] is not None
                                  or values["max_length"] < 8):
        from scorelib.data import long_text

        try:
            long_text.check_options(values["long_text"], values["max_length"], values["chunk_stride"])
        except OptionError as e:
            parser.error(str(e))
    if values.get("no_progress_bar") and values.get("log_format") == "tqdm":
        values["log_format"] = "simple"
    return argparse.Namespace(**values)


def check_logdir(parser: argparse.ArgumentParser, logdir: str, save_dir: str) -> None:
    """``--tensorboard-logdir``: its package installed, and no file where its folders go (DIR/{save dir's name})."""
    from scorelib.logging.progress_bar import run_dir

    if importlib.util.find_spec("tensorboard") is None:
        parser.error(f"--tensorboard-logdir {logdir}: the tensorboard package is not installed; "
                     f"pip install 'scorelib[tensorboard]' (or pip install tensorboard)")
    path = run_dir(logdir, save_dir).absolute()
    for folder in (path, *path.parents):  # the nearest one there must be a folder
        if folder.exists():
            if not folder.is_dir():
                parser.error(f"--tensorboard-logdir {logdir}: {folder} is a file, not a folder")
            return


def check_qwk_step(parser: argparse.ArgumentParser, values: dict) -> None:
    """``--best-checkpoint-metric qwk`` where no step can come: DATA given, no ``--score-step``, no ranges file
    (whose step column may give one per trait) and a layout without a step. The prompt table's own check
    (:func:`scorelib.training.check_trait_options`) sees the rest; this one refuses before ``scorelib-cv`` writes."""
    if values.get("best_checkpoint_metric") != "qwk" or values.get("score_step") is not None \
            or values.get("score_ranges") or values.get("data") is None:
        return
    from scorelib.data.readers import LAYOUTS

    if LAYOUTS.get(values.get("layout"), {}).get("step") is None:
        parser.error("--best-checkpoint-metric qwk needs each score's step, and the data gives none: give "
                     "--score-step (or a step column in --score-ranges), or pick checkpoints by pearson or rmse")


# options whose default changed: a checkpoint saved before the option existed was trained at the old default
# head_lr None: the head trained at --lr (before bench/bench_recipe.py chose 5e-4); encoder_dropout None: the encoder
# config's dropout (before it chose 0)
FORMER_DEFAULTS = {"head_lr": None, "encoder_dropout": None}


def complete_cfg(cfg: dict) -> dict:
    """A checkpoint's options with those it lacks (saved by an older scorelib) set to the defaults it was trained
    with: :data:`FORMER_DEFAULTS`, else today's.

    Called once, where a checkpoint is loaded (:func:`scorelib.checkpoint_utils.load_checkpoint`), so that no
    reader of ``cfg`` needs a fallback of its own.
    """
    parser = get_training_parser([], fast=False)
    return {**vars(parser.parse_args([])), **FORMER_DEFAULTS, **cfg}
