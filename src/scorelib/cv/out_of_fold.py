"""The pieces of k-fold cross-validation: each fold's data and options, the out-of-fold table and its metrics.

No fairseq counterpart (fairseq trains one split); the field's standard evaluation for
scored texts. Every row of the pooled data is predicted once, by the model that did not see
it: fold ``i`` trains on the other folds (less a valid part taken from them) with
:func:`scorelib.train`, picks ``checkpoint_best`` on that valid part and predicts fold
``i``; the driver is ``scorelib-cv`` (:func:`scorelib.cli.cv.cross_validate`). Each fold is a normal save dir
``DIR/fold{i}/``, resumable as any run; its
``oof.csv``, written atomically at the end, marks it finished, and its ``checkpoint_last.pt`` is then
deleted (only resuming needed it). The folds are drawn in :mod:`scorelib.cv.folds`. With ``--fit-cutpoints`` the
reported ``qwk`` rounds each fold by thresholds fitted on the other folds (cross-fitted); ``qwk_insample``,
by thresholds fitted on the same rows, is optimistic.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.cutpoints.thresholds import cross_fit_round, fit_all_cutpoints
from scorelib.data.prompts import PromptTable
from scorelib.data.tables import Columns, Tables, read_splits
from scorelib.results import frame_metrics
from scorelib.writers import write_table

logger = logging.getLogger(__name__)
MEAN_SD = ("qwk", "qwk_insample", "qwk_nearest", "pearson", "spearman", "rmse", "mcrmse")


def pooled_rows(args) -> tuple[pd.DataFrame, Tables]:
    """Every row of DATA in one frame (a folder's train/valid/test pooled; no DATA: the demo data pooled)."""
    tables = read_splits(args.data, Columns.from_args(args), layout=args.layout, encoding=args.encoding,
                           keep_prompts=args.prompts, ranges_file=args.score_ranges,
                           whole_file_as=None if args.data is None else "train", sheet=args.sheet)
    frame = pd.concat([f for f in tables.frames.values()], ignore_index=True)
    return frame, dataclasses.replace(tables, frames={"train": frame})


def write_fold_data(folder: Path, train: pd.DataFrame, valid: pd.DataFrame, table: PromptTable) -> None:
    """The fold's train and valid tables in scorelib's own columns (scores written exactly; a column per trait,
    named by the trait)."""
    folder.mkdir(parents=True, exist_ok=True)
    scores = table.scores.frame_columns
    cols = ["key", "prompt", "text", *scores] + (["context"] if train["context"].notna().all() else [])
    names = dict(zip(scores, table.scores.user_columns()))
    for name, frame in (("train", train), ("valid", valid)):
        write_table(frame[cols].rename(columns=names), folder / f"{name}.csv")  # texts with \r or \n: quoted


def write_ranges(path: Path, table: PromptTable) -> None:
    """Every prompt's range (with traits: every trait's range and step per prompt), shared by all folds."""
    rows = [(t, p, *v.ranges[p], "" if v.step is None else v.step) for t, v in table.views.items() for p in table.ids]
    frame = pd.DataFrame(rows, columns=["trait", "prompt", "min", "max", "step"])
    if not table.traits:  # one score: the plain ranges file, its step given by --score-step
        frame = frame[["prompt", "min", "max"]]
    write_table(frame, path)


def fold_args(args, fold_dir: Path, ranges_file: Path, table: PromptTable):
    """Options of fold ``i``'s run: its own data folder and save dir, the shared ranges and step."""
    a = copy.copy(args)
    a.data, a.save_dir, a.results_path = str(fold_dir / "data"), str(fold_dir), None
    a.layout, a.encoding, a.prompts, a.score_range = "table", None, None, None
    a.key_column = a.prompt_column = a.text_column = a.context_column = None
    a.score_column = ",".join(table.traits) or None  # the fold tables name each trait's column by the trait
    a.score_ranges, a.score_step, a.test_fraction, a.fit_cutpoints = str(ranges_file), table.step, 0.0, False
    a.no_epoch_checkpoints = not getattr(args, "keep_epoch_checkpoints", False)  # epoch files per fold: GBs, unused
    if args.tensorboard_logdir:  # DIR/{cv save dir's name}/fold{i}: one run per fold, grouped by the CV run
        a.tensorboard_logdir = str(Path(args.tensorboard_logdir) / Path(args.save_dir).name)
    return a


def warn_unranked(i: int, valid: pd.DataFrame, result: dict, args) -> None:
    """Warn where fold ``i``'s valid part could not rank its epochs: its metric undefined, or the same, every epoch."""
    values = [row.get(f"valid_{result['metric']}") for row in result["history"]]
    if not values or (len(values) < 2 and values[0] is not None) or len(set(values)) > 1:
        return
    sizes = ", ".join(f"{p} {n}" for p, n in valid.groupby("prompt").size().items())
    logger.warning("fold %d: its valid part (%d rows: %s) gave valid_%s %s in every epoch, so it could not rank "
                   "them and checkpoint_best is not the best epoch but an arbitrary one; raise --valid-fraction "
                   "(now %g) or use fewer --folds", i, len(valid), sizes, result["metric"], values[0],
                   args.valid_fraction)


def drop_resume_state(fold_dir: Path) -> None:
    """Delete a finished fold's ``checkpoint_last.pt``: weights plus AdamW moments, 3x the size of
    ``checkpoint_best.pt`` (275 MB against 91 MB for the default encoder), needed only to resume the
    fold, which its ``oof.csv`` now marks finished. The ensemble and ``scorelib-score`` load
    ``checkpoint_best.pt``; without one (no valid metric ever improved) the last one is kept."""
    last = fold_dir / "checkpoint_last.pt"
    if (fold_dir / "checkpoint_best.pt").is_file() and last.is_file():
        last.unlink()
        logger.info("%s: finished; deleted checkpoint_last.pt (only resuming needed it; the ensemble loads "
                    "checkpoint_best.pt)", fold_dir.name)


def fit_oof_cutpoints(table: PromptTable, oof: pd.DataFrame) -> pd.DataFrame:
    """``--fit-cutpoints`` on the out-of-fold predictions (each trait's own thresholds), cross-fitted for the figures.

    ``oof``'s ``pred_rounded`` becomes each fold's predictions rounded by thresholds fitted on the other folds
    (:func:`~scorelib.cutpoints.thresholds.cross_fit_round`: the ``qwk`` reported). ``table`` then gets thresholds fitted
    on every row, which the fold ensemble uses on new texts.

    Returns:
        pd.DataFrame: a copy of ``oof`` rounded by those all-rows thresholds (its QWK, ``qwk_insample``, is optimistic).
    """
    gold, pred = (oof[table.scores.suffixed(n)].to_numpy(np.float64) for n in ("gold", "pred"))
    names = table.scores.suffixed("pred_rounded")
    oof[names] = cross_fit_round(table, oof["prompt"], gold, pred, oof["fold"].to_numpy())
    fit_all_cutpoints(table, oof["prompt"], gold, pred)
    return oof.assign(**dict(zip(names, table.round(pred, oof["prompt"]).T)))


def cv_metrics(frame: pd.DataFrame, table: PromptTable, insample: pd.DataFrame | None) -> dict:
    """:func:`~scorelib.results.frame_metrics`, plus ``qwk_insample`` (QWK of ``insample``'s rows) where fitted."""
    metrics = frame_metrics(frame, table)
    if insample is None:
        return metrics
    other = frame_metrics(insample.loc[frame.index], table)
    for mine, theirs in zip(*(list(m.get("traits", {"": m}).values()) for m in (metrics, other))):
        mine["overall"]["qwk_insample"] = theirs["overall"]["qwk"]
        for pid, m in mine["per_prompt"].items():
            m["qwk_insample"] = theirs["per_prompt"][pid]["qwk"]
    metrics["overall"]["qwk_insample"] = other["overall"]["qwk"]
    return metrics


def summarize(per_fold: list[dict], pooled: dict) -> dict:
    """Per prompt and overall: each metric's mean and sd (``ddof=1``) across folds, and its pooled value."""
    def stats(get, name, pooled_value):
        values = [v for v in (get(m) for m in per_fold) if v is not None]
        return {"mean": float(np.mean(values)) if values else None,
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                "pooled": pooled_value, "n_folds": len(values)}

    overall = {name: stats(lambda m, n=name: m["overall"].get(n), name, pooled["overall"].get(name))
               for name in MEAN_SD if name in pooled["overall"]}
    if "traits" in pooled:  # several traits: mean and sd of each trait's overall metrics
        per_trait = {t: summarize([m["traits"][t] for m in per_fold], pooled["traits"][t])["overall"]
                     for t in pooled["traits"]}
        return {"overall": overall, "traits": per_trait}
    per_prompt = {pid: {name: stats(lambda m, p=pid, n=name: m["per_prompt"].get(p, {}).get(n), name,
                                    pooled["per_prompt"][pid].get(name))
                        for name in MEAN_SD if name in pooled["per_prompt"][pid]}
                  for pid in pooled["per_prompt"]}
    return {"overall": overall, "per_prompt": per_prompt}


