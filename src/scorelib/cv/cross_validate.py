"""``scorelib-cv``: k-fold cross-validation, the out-of-fold table and its metrics.

No fairseq counterpart (fairseq trains one split); the field's standard evaluation for
scored texts. Every row of the pooled data is predicted once, by the model that did not see
it: fold ``i`` trains on the other folds (less a valid part taken from them) with
:func:`scorelib.training.train`, picks ``checkpoint_best`` on that valid part and predicts fold
``i``. Each fold is a normal save dir ``DIR/fold{i}/``, resumable as any run; its
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

from scorelib import checkpoint_utils as C
from scorelib import options
from scorelib.data import tables as T
from scorelib.cutpoints.thresholds import check_can_fit, cross_fit_round, fit_all_cutpoints
from scorelib.errors import OptionError
from scorelib.files import atomic_write, check_writable
from scorelib.cv.folds import assign_folds, given_folds
from scorelib.data.prompts import PromptTable
from scorelib.results import frame_metrics, results_frame, write_results
from scorelib.writers import write_json, write_table

logger = logging.getLogger(__name__)
MEAN_SD = ("qwk", "qwk_insample", "qwk_nearest", "pearson", "spearman", "rmse", "mcrmse")


def parse_cv_args(argv=None):
    """``scorelib-train``'s options plus ``--folds`` and ``--fold-column``; ``--test-fraction`` is left unset."""
    parser = options.get_training_parser(argv)
    parser.prog, parser.description = "scorelib-cv", "k-fold cross-validation of a text scorer."
    g = parser.add_argument_group("cross-validation")
    g.add_argument("--folds", type=int, metavar="K", help="number of folds, numbered from 0 (default: 5)")
    g.add_argument("--fold-column", metavar="NAME", help="use this column's folds as given instead of drawing them")
    parser.set_defaults(test_fraction=None)  # every row is predicted out of fold: a test share makes no sense
    return options.check_args(parser, parser.parse_args(argv))


def pooled_rows(args) -> tuple[pd.DataFrame, T.Tables]:
    """Every row of DATA in one frame (a folder's train/valid/test pooled; no DATA: the demo data pooled)."""
    tables = T.read_splits(args.data, T.Columns.from_args(args), layout=args.layout, encoding=args.encoding,
                           keep_prompts=args.prompts, ranges_file=args.score_ranges,
                           whole_file_as=None if args.data is None else "train")
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
    if args.tensorboard_logdir:  # DIR/{cv save dir's name}/fold{i}: one run per fold, grouped by the CV run
        a.tensorboard_logdir = str(Path(args.tensorboard_logdir) / Path(args.save_dir).name)
    return a


def run_fold(args, i: int, frame: pd.DataFrame, folds: np.ndarray, table: PromptTable, save_dir: Path) -> pd.DataFrame:
    """Train fold ``i`` (or resume it) and predict its held-out rows; returns its out-of-fold rows."""
    from scorelib.data.scoring_dataset import ScoringDataset
    from scorelib.hub.scorer import load
    from scorelib.training import train

    fold_dir = save_dir / f"fold{i}"
    marker = fold_dir / "oof.csv"
    if marker.is_file():
        logger.info("fold %d: finished before (%s); not trained again", i, marker)
        return pd.read_csv(marker, dtype={"key": str, "prompt": str, "text": str}, keep_default_na=False)
    rest = frame[folds != i].reset_index(drop=True)
    split = T.split_frame(rest, args.valid_fraction, 0.0, args.split_seed + i)
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
    parts = {k: v.mean(axis=0) for k, v in scorer.models_parts01(ScoringDataset(
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


def cross_validate(args) -> dict:
    """The whole job of ``scorelib-cv``: folds, one training run per fold, out-of-fold table and metrics.

    Args:
        args (argparse.Namespace): from :func:`parse_cv_args`.

    Returns:
        dict: ``oof`` (the out-of-fold frame), ``metrics`` (metrics-cv.json's content), ``save_dir``, ``results_path``.
    """
    from tqdm.auto import tqdm

    from scorelib.models.scoring_model import check_encoder

    check_writable(args.save_dir, f"--save-dir {args.save_dir}", "; choose a folder you can write to")
    if args.test_fraction is not None:
        raise OptionError("--test-fraction does not apply to scorelib-cv: every row is predicted out of fold; "
                          "keep a held-out table apart and score it with scorelib-eval DIR --split test DATA")
    frame, tables = pooled_rows(args)
    check_encoder(args.model_name_or_path, args.max_length)  # before any file of the run is written
    table = PromptTable.from_tables(tables, score_range=args.score_range, step=args.score_step)
    if args.fit_cutpoints:
        check_can_fit(table)
    folds = given_folds(frame, args) if args.fold_column else assign_folds(frame, table, args.folds or 5,
                                                                           args.split_seed)
    k = int(folds.max()) + 1
    save_dir = C.prepare_save_dir(args.save_dir)
    assignment = pd.DataFrame({"key": frame["key"], "fold": folds})
    if (save_dir / "folds.csv").is_file():
        before = pd.read_csv(save_dir / "folds.csv", dtype={"key": str}, keep_default_na=False)
        if not before.equals(assignment):
            raise OptionError(f"--save-dir {save_dir}: holds a cross-validation of other rows or folds; use another "
                              f"--save-dir (or the same DATA, --folds and --split-seed to resume)")
    write_table(assignment, save_dir / "folds.csv")
    write_ranges(save_dir / "ranges.csv", table)
    info = {"folds": k, "args": C.plain(vars(args))}
    write_json(info, save_dir / "cv.json")
    parts = [run_fold(args, i, frame, folds, table, save_dir)
             for i in tqdm(range(k), desc="folds", disable=args.log_format != "tqdm")]
    rows = pd.concat(parts).set_index("key").reindex(frame["key"])
    pred01, blend = rows[table.scores.suffixed("pred01")].to_numpy(np.float64), None
    if args.stack:
        from scorelib.stack.tfidf import cv_blend
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
        from scorelib.stack.tfidf import add_parts
        add_parts(oof, pooled, blend, table, blend["weight"])
    write_results(oof, pooled, table, results_path, "cv", "oof")
    metrics = {"folds": k, "n": pooled["n"], **summarize(per_fold, pooled), "pooled": pooled,
               "per_fold": [{"fold": i, **m["overall"], "n": m["n"]} for i, m in enumerate(per_fold)]}
    write_json(metrics, results_path / "metrics-cv.json")
    o = metrics["overall"]
    print("cross-validation, " + " | ".join(f"{n} {v['mean']:.4f} ± {v['sd'] or 0:.4f} (pooled {v['pooled']:.4f})"
                                             for n, v in o.items() if v["mean"] is not None and v["pooled"] is not None),
          flush=True)
    if insample is not None:
        print("qwk: each fold rounded by cut-points fitted on the other folds (cross-fitted); qwk_insample: by "
              "cut-points fitted on the same rows (optimistic); prompts.json keeps those fitted on every row")
    return {"oof": oof, "metrics": metrics, "save_dir": save_dir, "results_path": results_path}
