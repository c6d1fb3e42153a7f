"""The epoch loop of ``scorelib-train``: ``main(args, steps)``, ``train_epoch``, ``validate_and_save``.

Mirrors ``fairseq_cli/train.py``: ``main`` (set up the task, model and criterion, resume or
fine-tune, loop over epochs, save), ``train`` (one epoch), ``validate_and_save`` and
``should_stop_early`` (patience), as plain functions around a :class:`Trainer`.

What runs after the loop and is not part of the course (``--stack tfidf``, ``--fit-cutpoints``) comes in as
:class:`AfterTraining` steps, which :func:`scorelib.train` (:mod:`scorelib.cli.train`) builds from the options:
this module knows the interface only, never the extras.
"""
from __future__ import annotations

import logging
import math
import random
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from scorelib import checkpoint_utils
from scorelib.data.scoring_dataset import batch_iterator
from scorelib.distributed import utils as dist
from scorelib.errors import MissingFileError, OptionError
from scorelib.logging.progress_bar import Curves, emit, save_history
from scorelib.metrics import MAXIMIZE, MIN_ROWS, flat_metrics, summary_line, warnings_of
from scorelib.options import RESTORE_FILE
from scorelib.registry import TASK_REGISTRY, lookup
from scorelib.results import frame_metrics, results_frame, write_dataset_results
from scorelib.trainer import Trainer
from scorelib.writers import check_inputs_kept, check_writable, results_dir

logger = logging.getLogger(__name__)


# what a run writes in its save dir, and in its results folder: no input file may be there (scorelib-cv adds its own)
RUN_FILES = ("prompts.json", "history.csv", "checkpoint*.pt", "tokenizer", "encoder", "stack", "results")
RESULT_FILES = ("result-*", "metrics-*", "plot-*", "report-*")


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Progress:
    """Where the loop stands; saved in each checkpoint's ``extra_state`` so that a run resumes whole."""

    metric: str
    maximize: bool
    epoch: int = 1
    iterations_in_epoch: int = 0
    best: float | None = None
    bad_validations: int = 0
    history: list = field(default_factory=list)
    meters: dict = field(default_factory=dict)  # this epoch's running sums, so a resumed epoch reports them whole

    def extra_state(self, end_of_epoch: bool) -> dict:
        state = asdict(self)
        state["best"] = {"metric": self.metric, "value": self.best, "maximize": self.maximize}
        return {**{k: v for k, v in state.items() if k not in ("metric", "maximize")}, "end_of_epoch": end_of_epoch}

    def resume(self, extra: dict) -> None:
        self.epoch = extra["epoch"] + (1 if extra["end_of_epoch"] else 0)
        self.iterations_in_epoch = 0 if extra["end_of_epoch"] else extra["iterations_in_epoch"]
        self.best, self.bad_validations = extra["best"]["value"], extra["bad_validations"]
        self.history = list(extra["history"])
        self.meters = {} if extra["end_of_epoch"] else dict(extra.get("meters") or {})

    def is_better(self, value) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.best is None
        return self.best is None or (value > self.best if self.maximize else value < self.best)


def fresh_meters() -> dict:
    return {"loss": 0.0, "sample_size": 0.0, "ntokens": 0, "seconds": 0.0, "valid_seconds": 0.0}


class AfterTraining:
    """A step that runs once the epoch loop has ended, on ``checkpoint_best.pt``, before its result files are
    written. The extras subclass it (:class:`scorelib.stack.tfidf.StackStep`,
    :class:`scorelib.cutpoints.thresholds.CutpointStep`); the loop calls the three methods in this order."""

    def check(self, task) -> None:
        """Refuse, before any file is written, data or options this step cannot work with."""

    def run(self, trainer, best: Path) -> None:
        """Fit on ``checkpoint_best`` (called on every process; the step decides which ones work)."""

    def write_split(self, trainer, best: Path, ds, preds01, results_path: Path, split: str) -> dict | None:
        """Write one split's result files in place of :func:`write_split` (``None``: leave them to it)."""
        return None


def main(args, steps: tuple = ()) -> dict:
    """Set up, resume or fine-tune, train, run the ``steps``, and evaluate ``checkpoint_best``.

    Args:
        args (argparse.Namespace): from :func:`scorelib.options.parse_args`.
        steps (sequence of AfterTraining): run in order after the loop (:func:`scorelib.train` passes those the
            options ask for).

    Returns:
        dict: ``history`` (list of per-epoch rows), ``metrics`` per split, ``save_dir``, ``results_path``, and
        ``metric``, the valid metric that picked ``checkpoint_best`` (``history``'s ``valid_{metric}``).

    Raises:
        FolderInUseError: another run holds the save dir (its lock is held by the main process, to the end).
    """
    with ExitStack() as held:
        return train_locked(args, steps, held)


def train_locked(args, steps: tuple, held: ExitStack) -> dict:
    """:func:`main`'s body; the save dir's locks taken are released by ``held``."""
    from scorelib import locks  # not part of the course: one run at a time in a folder

    world = dist.init(args.cpu)
    set_seed(args.seed)
    check_writable(args.save_dir, f"--save-dir {args.save_dir}", "; choose a folder you can write to")
    results_path = results_dir(args.results_path, args.save_dir)
    # a file in the save dir's way is refused here; the folder itself is created below
    save_dir = checkpoint_utils.prepare_save_dir(args.save_dir, create=False)
    what = f"--save-dir {args.save_dir}"
    task = lookup(TASK_REGISTRY, "task", args.task).setup_task(args)  # every data check, before any file is written
    inputs = [*(f for frame in task.frames.values() for f in frame["_file"].unique()), args.score_ranges or ""]
    check_inputs_kept(inputs, [(args.save_dir, RUN_FILES), (results_path, RESULT_FILES)], what)
    check_trait_options(args, task.prompts)
    for step in steps:
        step.check(task)
    if world.is_main:  # a second run is refused before it reads the first one's checkpoints (nothing written yet)
        locks.check_free(save_dir, what)
    task.load_dataset("train")
    if "valid" in task.frames:
        task.load_dataset("valid")
        small = {p: n for p, n in task.frames["valid"].groupby("prompt").size().items() if n < MIN_ROWS}
        if small:  # a metric of 2 rows (Pearson 1.000) picks checkpoint_best by chance
            logger.warning("the valid split has fewer than %d rows for prompt(s) %s: too few to rank epochs, so "
                           "checkpoint_best may be a chance pick; give a larger valid table or --valid-fraction "
                           "(now %s)", MIN_ROWS, ", ".join(f"{p} ({n})" for p, n in small.items()), args.valid_fraction)
    model = task.build_model(args)
    criterion = task.build_criterion(args)
    restore = Path(args.restore_file)
    restore = restore if restore.parent != Path(".") or restore.is_absolute() else save_dir / restore
    if not restore.is_file() and args.restore_file != RESTORE_FILE:
        raise MissingFileError(f"--restore-file {args.restore_file}: {restore} not found (only the default, "
                               f"{RESTORE_FILE}, may be absent: then training starts afresh)")
    if not restore.is_file() and args.finetune_from_model:
        state = checkpoint_utils.load_checkpoint(args.finetune_from_model)
        moved = checkpoint_utils.load_finetune_weights(model, state, task.prompts, model.encoder.config,
                                                       args.finetune_from_model)
        logger.info("fine-tuning from %s: prompts kept %s, new %s", args.finetune_from_model,
                    moved["shared"] or "none", moved["new"] or "none")
    elif restore.is_file() and args.finetune_from_model:
        logger.info("%s exists, so --finetune-from-model is ignored and training resumes", restore)
    trainer = Trainer(args, task, model, criterion)
    metric = args.best_checkpoint_metric or ("mcrmse" if task.prompts.traits else
                                             "qwk" if task.prompts.step is not None else "pearson")
    progress = Progress(metric, args.maximize_best_checkpoint_metric or MAXIMIZE[metric])
    extra = trainer.load_checkpoint(restore)  # checked against this run's options before anything is written
    if world.is_main:
        checkpoint_utils.prepare_save_dir(save_dir, lock=what)  # (re-entrant) locked before temporaries go
        held.callback(locks.release, save_dir)
        checkpoint_utils.save_assets(save_dir, task.tokenizer, model.encoder.config, task.prompts)
    if extra is not None:
        progress.resume(extra)
        logger.info("resumed from %s: epoch %d, %d updates done, %d batches into the epoch",
                    restore, progress.epoch, trainer.num_updates, progress.iterations_in_epoch)
    curves = Curves(args.tensorboard_logdir if world.is_main else None, save_dir)
    try:
        while not should_stop(args, trainer, progress):
            if not train_epoch(args, trainer, progress, curves):
                break
    finally:
        curves.close()
    best = save_dir / "checkpoint_best.pt"
    if best.is_file():
        for step in steps:
            step.run(trainer, best)
    metrics = write_best_results(trainer, best, results_path, steps)
    return {"history": progress.history, "metrics": metrics, "save_dir": save_dir, "results_path": results_path,
            "metric": progress.metric}


def check_trait_options(args, table) -> None:
    """Refuse the options that need several score columns, and a QWK to pick checkpoint_best without a step."""
    if args.best_checkpoint_metric == "mcrmse" and not table.traits:
        raise OptionError("--best-checkpoint-metric mcrmse needs several traits (--score-column a,b,...); "
                          "with one score column use rmse")
    stepless = [name for name, view in table.views.items() if view.step is None]
    if args.best_checkpoint_metric == "qwk" and stepless:  # valid QWK None: checkpoint_best would stay at epoch 1
        raise OptionError(f"--best-checkpoint-metric qwk needs each score's step, and {', '.join(stepless)} has none: "
                          f"give --score-step (or a step column in --score-ranges), or pick checkpoints by pearson "
                          f"or rmse")


def should_stop(args, trainer: Trainer, progress: Progress) -> bool:
    """``--max-update``, ``--max-epoch`` or ``--patience`` reached."""
    over_updates = args.max_update and trainer.num_updates >= args.max_update
    over_epochs = args.max_epoch and progress.epoch > args.max_epoch
    patience = args.patience >= 0 and progress.bad_validations > args.patience
    return bool(over_updates or over_epochs or patience)


def train_epoch(args, trainer: Trainer, progress: Progress, curves: Curves | None = None) -> bool:
    """Train (the rest of) one epoch, validating and saving as due; returns whether the epoch finished.

    ``curves`` (``--tensorboard-logdir``) receives the train loss and lr every ``--log-interval`` updates and at the
    end of the epoch, and the valid metrics of every validation. Only training counts towards the epoch's ``seconds``
    and ``tokens_per_s``; validation time is logged on its own as ``valid_seconds``.
    """
    from tqdm.auto import tqdm

    ds, main = trainer.train_data, trainer.world.is_main
    curves = curves or Curves()
    batches = trainer.rank_batches(progress.epoch)
    groups = [batches[i:i + args.update_freq] for i in range(0, len(batches), args.update_freq)]
    start = progress.iterations_in_epoch // args.update_freq
    progress.meters = {**fresh_meters(), **(progress.meters if start else {})}
    m = progress.meters
    bar = tqdm(total=len(groups), initial=start, desc=f"epoch {progress.epoch:03d}", leave=False,
               disable=args.log_format != "tqdm" or not main)
    t0 = time.perf_counter()
    # the epoch's batches from the first group not yet trained (a resumed epoch), loaded by --num-workers processes
    samples = batch_iterator(ds, batches[start * args.update_freq:], args.num_workers)
    for g in range(start, len(groups)):
        log = trainer.train_step([next(samples) for _ in groups[g]])
        progress.iterations_in_epoch = (g + 1) * args.update_freq
        for k in ("ntokens", "loss", "sample_size"):
            m[k] += log[k]
        bar.update(1)
        bar.set_postfix(loss=f"{log['loss'] / max(log['sample_size'], 1):.4f}", lr=f"{trainer.get_lr():.1e}")
        if main and trainer.num_updates % args.log_interval == 0:
            inner = {"loss": log["loss"] / max(log["sample_size"], 1), "lr": trainer.get_lr(),
                     "gnorm": log["grad_norm"]}
            curves.log("train_inner", inner, trainer.num_updates)
            if args.log_format != "tqdm":
                emit(args, {"epoch": progress.epoch, "update": trainer.num_updates, "loss": round(inner["loss"], 5),
                            "lr": inner["lr"], "gnorm": round(inner["gnorm"], 3)}, digits=None)
        if args.save_interval_updates and trainer.num_updates % args.save_interval_updates == 0 \
                and g + 1 < len(groups):
            m["seconds"] += time.perf_counter() - t0
            validate_and_save(args, trainer, progress, end_of_epoch=False, curves=curves)
            t0 = time.perf_counter()  # the clock restarts after validation: it is not training time
        if args.max_update and trainer.num_updates >= args.max_update:
            break
    samples.close()  # stopped early (--max-update): the loader's workers end here
    bar.close()
    m["seconds"] += time.perf_counter() - t0
    finished = progress.iterations_in_epoch >= len(batches)
    row = {"epoch": progress.epoch, "updates": trainer.num_updates,
           "train_loss": m["loss"] / max(m["sample_size"], 1)}
    validate_and_save(args, trainer, progress, end_of_epoch=finished, row=row, curves=curves)
    if main:
        emit(args, progress.history[-1])
        curves.log("train", {"loss": row["train_loss"], "lr": trainer.get_lr()}, trainer.num_updates)
    if finished:
        progress.epoch, progress.iterations_in_epoch = progress.epoch + 1, 0
    if main:
        save_history(args.save_dir, progress.history)
    return finished


def validate(trainer: Trainer) -> dict:
    """Loss and metrics on the valid split (``qwk``, ``pearson``, ``spearman``, ``rmse``, ``loss``)."""
    ds = trainer.valid_data
    loss, preds = trainer.valid_step(ds)
    frame = results_frame(ds.keys, ds.prompts, ds.scores, preds, ds.texts, trainer.task.prompts)
    return {**flat_metrics(frame_metrics(frame, trainer.task.prompts)), "loss": loss / max(len(ds), 1)}


def validate_and_save(args, trainer: Trainer, progress: Progress, end_of_epoch: bool, row: dict | None = None,
                      curves: Curves | None = None):
    """Validate, track the best value and save; ``row`` (the epoch's history row) goes into that checkpoint."""
    t0 = time.perf_counter()
    metrics = validate(trainer) if trainer.valid_data is not None else {}
    if trainer.world.is_main and curves is not None:
        curves.log("valid", metrics, trainer.num_updates)
    progress.meters["valid_seconds"] += time.perf_counter() - t0
    value = metrics.get(progress.metric)
    is_best = progress.is_better(value)
    if is_best:
        progress.best = value if value is not None else progress.best
        progress.bad_validations = 0
    else:
        progress.bad_validations += 1
    if row is not None:  # appended before saving, so that resuming from this checkpoint keeps the row
        m = progress.meters
        progress.history.append({**row, **{f"valid_{k}": v for k, v in metrics.items() if k != "n"},
                                 "tokens_per_s": m["ntokens"] / max(m["seconds"], 1e-9), "seconds": m["seconds"],
                                 "valid_seconds": m["valid_seconds"]})
    names = ["checkpoint_last.pt"]
    if end_of_epoch and not args.no_epoch_checkpoints:
        names.append(f"checkpoint{progress.epoch}.pt")
    if not end_of_epoch and args.save_interval_updates:
        names.append(f"checkpoint_{progress.epoch}_{trainer.num_updates}.pt")
    if is_best:
        names.append("checkpoint_best.pt")
    trainer.save_checkpoint(names, progress.extra_state(end_of_epoch))
    return metrics


def write_best_results(trainer: Trainer, best: Path, results_path: Path, steps: tuple = ()) -> dict:
    """Reload ``checkpoint_best.pt`` and write its result files for the valid and test splits (a step that writes
    them its own way, as ``--stack tfidf`` does, takes over)."""
    metrics = {}
    if not best.is_file():
        return metrics
    trainer.model.load_state_dict(checkpoint_utils.load_checkpoint(best)["model"])
    for split in ("valid", "test"):
        if split in trainer.task.frames:
            ds = trainer.task.dataset(split)
            _, preds = trainer.valid_step(ds)
            if trainer.world.is_main:
                written = (step.write_split(trainer, best, ds, preds, results_path, split) for step in steps)
                metrics[split] = next((m for m in written if m is not None), None) or \
                    write_split(best, ds, preds, trainer.task.prompts, results_path, split)
                logger.info("checkpoint_best on %s: %s", split, summary_line(metrics[split]))
                for w in warnings_of(metrics[split]):
                    logger.warning("checkpoint_best on %s: %s", split, w)
    return metrics


def write_split(best: Path, ds, preds01, table, results_path: Path, split: str) -> dict:
    """One split's result files (:func:`scorelib.results.write_dataset_results`); returns its metrics."""
    return write_dataset_results(ds, preds01, table, results_path, best.name, split)[1]
