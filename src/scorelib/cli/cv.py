"""``scorelib-cv [DATA] --folds K --save-dir DIR [scorelib-train flags]``: k-fold cross-validation.

No fairseq counterpart (fairseq trains one split). The driver, as ``fairseq_cli/train.py``'s ``main`` is
fairseq-train's: it draws the folds (:mod:`scorelib.cv.folds`), trains one run per fold with :func:`scorelib.train`
(each a normal save dir ``DIR/fold{i}/``, resumable as any run), predicts each fold's held-out rows with that fold's
model, and writes the out-of-fold table and its metrics (:mod:`scorelib.cv.out_of_fold`). A fold's ``oof.csv``,
written atomically at its end, marks it finished, and its ``checkpoint_last.pt`` is then deleted (only resuming
needed it). With ``--fit-cutpoints`` the reported ``qwk`` rounds each fold by thresholds fitted on the other folds
(cross-fitted); ``qwk_insample``, by thresholds fitted on the same rows, is optimistic.
"""
from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib import checkpoint_utils, locks
from scorelib.cli.options import parse_cv_args
from scorelib.cli.train import train
from scorelib.cutpoints.thresholds import check_can_fit, cutpoint_warnings
from scorelib.cv.folds import assign_folds, given_folds
from scorelib.cv.out_of_fold import (cv_metrics, drop_resume_state, fit_oof_cutpoints, fold_args, pooled_rows,
                                     summarize, warn_unranked, write_fold_data, write_ranges)
from scorelib.data.long_text import build_dataset
from scorelib.data.prompts import PromptTable
from scorelib.data.tables import split_frame
from scorelib.errors import OptionError
from scorelib.hub.scorer import load
from scorelib.logging.console import run, setup_logging
from scorelib.metrics import warnings_of
from scorelib.models.scoring_model import check_encoder
from scorelib.results import results_frame, write_results
from scorelib.stack.tfidf import add_parts, cv_blend
from scorelib.writers import atomic_write, check_inputs_kept, check_writable, write_json, write_table

logger = logging.getLogger(__name__)
CV_FILES = ("folds.csv", "ranges.csv", "cv.json", "prompts.json", "fold*", "stack", "results")  # what it writes


def cli_main(argv=None) -> int:
    """``scorelib-cv [DATA] --folds K --save-dir DIR [scorelib-train flags]``: k-fold cross-validation."""
    setup_logging()
    return run("scorelib-cv", lambda: cross_validate(parse_cv_args(argv)))


def run_fold(args, i: int, frame: pd.DataFrame, folds: np.ndarray, table: PromptTable, save_dir: Path) -> pd.DataFrame:
    """Train fold ``i`` (or resume it) and predict its held-out rows; returns its out-of-fold rows."""
    fold_dir = save_dir / f"fold{i}"
    marker = fold_dir / "oof.csv"
    if marker.is_file():
        logger.info("fold %d: finished before (%s); not trained again", i, marker)
        return pd.read_csv(marker, dtype={"key": str, "prompt": str, "text": str}, keep_default_na=False)
    rest = frame[folds != i].reset_index(drop=True)
    split = split_frame(rest, args.valid_fraction, 0.0, args.split_seed + i)
    if "valid" not in split:
        why = "is 0" if not args.valid_fraction else \
            f"leaves no valid row (it is rounded per prompt, and fold {i}'s prompts have at most " \
            f"{rest.groupby('prompt').size().max()} rows to train on)"
        raise OptionError(f"--valid-fraction {args.valid_fraction} {why}: each fold needs a valid part (taken from "
                          f"the other folds) to pick its checkpoint_best")
    if not (fold_dir / "data" / "train.csv").is_file():
        write_fold_data(fold_dir / "data", split["train"], split["valid"], table)
    logger.info("fold %d: train %d rows, valid %d rows (from the other folds), predicts %d held-out rows",
                i, len(split["train"]), len(split["valid"]), int((folds == i).sum()))
    warn_unranked(i, split["valid"], train(fold_args(args, fold_dir, save_dir / "ranges.csv", table)), args)
    held = frame[folds == i]
    scorer = load(fold_dir, device="cpu" if args.cpu else None)
    scorer.table = table
    parts = {k: v.mean(axis=0) for k, v in scorer.models_parts01(build_dataset(
        held.reset_index(drop=True), scorer.tokenizer, table, scorer.max_length, long_text=scorer.long_text,
        chunk_stride=scorer.chunk_stride)).items()}
    pred01 = parts.get("blend", parts["encoder"])  # --stack tfidf: also each part, for the out-of-fold weight
    out = results_frame(held["key"], held["prompt"], table.scores.matrix(held), pred01, held["text"], table)
    out.insert(2, "fold", i)
    for part, values in (("", pred01), *((f"_{p}", parts[p]) for p in ("encoder", "stack") if "blend" in parts)):
        for name, column in zip(table.scores.suffixed(f"pred01{part}"), np.reshape(values, (len(held), -1)).T):
            out[name] = column
    write_table(out, marker)
    drop_resume_state(fold_dir)
    return out


def cross_validate(args) -> dict:
    """The whole job of ``scorelib-cv``: folds, one training run per fold, out-of-fold table and metrics.

    Args:
        args (argparse.Namespace): from :func:`parse_cv_args`.

    Returns:
        dict: ``oof`` (the out-of-fold frame), ``metrics`` (metrics-cv.json's content), ``save_dir``, ``results_path``.

    Raises:
        FolderInUseError: another run holds the CV dir (locked from its first write to the end; each fold's run
            locks its own ``fold{i}/`` as any training run does).
    """
    with ExitStack() as held:
        return cross_validate_locked(args, held)


def cross_validate_locked(args, held: ExitStack) -> dict:
    """:func:`cross_validate`'s body; the CV dir's lock is released by ``held``."""
    from tqdm.auto import tqdm

    check_writable(args.save_dir, f"--save-dir {args.save_dir}", "; choose a folder you can write to")
    if args.test_fraction is not None:
        raise OptionError("--test-fraction does not apply to scorelib-cv: every row is predicted out of fold; "
                          "keep a held-out table apart and score it with scorelib-eval DIR --split test DATA")
    frame, tables = pooled_rows(args)
    check_inputs_kept([*frame["_file"].unique(), args.score_ranges or ""], [(args.save_dir, CV_FILES)],
                      f"--save-dir {args.save_dir}")
    check_encoder(args.model_name_or_path, args.max_length)  # before any file of the run is written
    table = PromptTable.from_tables(tables, score_range=args.score_range, step=args.score_step)
    if args.fit_cutpoints:
        check_can_fit(table)
    folds = given_folds(frame, args) if args.fold_column else assign_folds(frame, table, args.folds or 5,
                                                                           args.split_seed)
    k = int(folds.max()) + 1
    save_dir = checkpoint_utils.prepare_save_dir(args.save_dir, lock=f"--save-dir {args.save_dir}")
    held.callback(locks.release, save_dir)
    assignment = pd.DataFrame({"key": frame["key"], "fold": folds})
    if (save_dir / "folds.csv").is_file():
        before = pd.read_csv(save_dir / "folds.csv", dtype={"key": str}, keep_default_na=False)
        if not before.equals(assignment):
            raise OptionError(f"--save-dir {save_dir}: holds a cross-validation of other rows or folds; use another "
                              f"--save-dir (or the same DATA, --folds and --split-seed to resume)")
    write_table(assignment, save_dir / "folds.csv")
    write_ranges(save_dir / "ranges.csv", table)
    info = {"folds": k, "args": checkpoint_utils.plain(vars(args))}
    write_json(info, save_dir / "cv.json")
    parts = [run_fold(args, i, frame, folds, table, save_dir)
             for i in tqdm(range(k), desc="folds", disable=args.log_format != "tqdm")]
    rows = pd.concat(parts).set_index("key").reindex(frame["key"])
    pred01, blend = rows[table.scores.suffixed("pred01")].to_numpy(np.float64), None
    if args.stack:
        blend = cv_blend(save_dir, rows, table.scores.matrix(frame), frame["prompt"].tolist(), table)
        pred01 = blend["blend"]
    oof = results_frame(frame["key"], frame["prompt"], table.scores.matrix(frame), pred01, frame["text"], table)
    oof.insert(2, "fold", folds)
    insample = fit_oof_cutpoints(table, oof) if args.fit_cutpoints else None
    atomic_write(save_dir / "prompts.json", table.save)
    per_fold = [cv_metrics(f, table, insample) for _, f in oof.groupby("fold", sort=True)]
    pooled = cv_metrics(oof, table, insample)
    results_path = save_dir / "results"
    if blend is not None:
        add_parts(oof, pooled, blend, table, blend["weight"])
    write_results(oof, pooled, table, results_path, "cv", "oof")
    metrics = {"folds": k, "n": pooled["n"], **summarize(per_fold, pooled), "pooled": pooled,
               "per_fold": [{"fold": i, **m["overall"], "n": m["n"]} for i, m in enumerate(per_fold)]}
    if insample is not None:
        metrics["cutpoint_warnings"] = cutpoint_warnings(table, oof, pooled)
    for w in warnings_of(pooled):
        logger.warning("out-of-fold rows: %s", w)
    o = metrics["overall"]
    metrics["kinds"] = {"mean": "mean over folds", "sd": "SD over folds",
                        "pooled": "on all out-of-fold rows at once (the folds pooled; qwk is still the mean of "
                                  "per-prompt QWK, qwk_pooled pooled over prompts)"}
    print("cross-validation, " + " | ".join(f"{n} {v['mean']:.4f} ± {v['sd'] or 0:.4f} over folds "
                                             f"(all out-of-fold rows {v['pooled']:.4f})"
                                             for n, v in o.items() if v["mean"] is not None and v["pooled"] is not None),
          flush=True)
    write_json(metrics, results_path / "metrics-cv.json")
    if insample is not None:
        print("qwk: each fold rounded by cut-points fitted on the other folds (cross-fitted); qwk_insample: by "
              "cut-points fitted on the same rows (optimistic); prompts.json keeps those fitted on every row")
    return {"oof": oof, "metrics": metrics, "save_dir": save_dir, "results_path": results_path}


if __name__ == "__main__":
    sys.exit(cli_main())
