"""QWK cut-points: per prompt, the thresholds between rubric points that maximise QWK.

No fairseq counterpart; the field's usual last step for ordinal scores (e.g. the thresholds
fitted on out-of-fold predictions in Kaggle's essay-scoring work). Rounding to the nearest
point puts the thresholds at the midpoints; :func:`fit_cutpoints` starts there and moves one
threshold at a time to the candidate value (between neighbouring predictions) that raises QWK,
keeping the thresholds strictly increasing, at least :data:`MIN_GAP` steps apart, so every rubric point
keeps a band of its own. It only ever accepts a change that raises QWK, so the fitted thresholds never
score lower than nearest rounding on the data they were fitted on; that figure is in-sample, so
:func:`cross_fit_round` rounds each fold by thresholds fitted on the other folds (the honest figure of a
cross-validation). Fit on the valid split or on out-of-fold predictions, never on test.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from scorelib import checkpoint_utils
from scorelib.errors import OptionError
from scorelib.metrics import qwk
from scorelib.training import AfterTraining
from scorelib.writers import atomic_write

logger = logging.getLogger(__name__)
MAX_CANDIDATES = 200  # per threshold and pass: quantiles of the predictions between its neighbours
MIN_GAP = 0.01  # in rubric steps: the least distance between two thresholds (a point's band never vanishes)
FLAT_SD_RATIO = 0.5  # machine SD / human SD below this: a machine whose scores barely vary
FLAT_QWK_GAIN = 0.1  # cut-points raising QWK by more than this over nearest rounding, on such a machine: warned


def labels_by(cuts: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Label of each prediction: how many thresholds lie at or below it."""
    return np.searchsorted(cuts, pred, side="right")


def order_breaks(m, rounded, strata, slack: float = 0.0) -> int:
    """Rows whose mark is more than ``slack`` below the mark of a lower machine score of the same prompt (stratum).

    One set of increasing thresholds never does this; predictions rounded by several sets (cross-fitted
    cut-points, each fold its own) can, and then a higher score gets a lower mark. Near a threshold, folds whose
    thresholds differ a little swap neighbours one step apart; ``slack`` (one step, where callers check) counts
    only the larger breaks (5.25 rounded to 3.5 while 5.1 gets 5).
    """
    m, rounded, strata = np.asarray(m, np.float64), np.asarray(rounded, np.float64), np.asarray(strata, dtype=str)
    breaks = 0
    for s in np.unique(strata):
        rows = strata == s
        values, inverse = np.unique(m[rows], return_inverse=True)
        top = np.full(len(values), -np.inf)
        np.maximum.at(top, inverse, rounded[rows])
        below = np.concatenate([[-np.inf], np.maximum.accumulate(top)[:-1]])  # best mark of a strictly lower score
        breaks += int((rounded[rows] < below[inverse] - slack - 1e-9).sum())
    return breaks


def fit_cutpoints(gold, pred, lo: float, step: float, k: int, passes: int = 4) -> tuple[list[float], dict]:
    """Thresholds between the ``k`` rubric points ``lo, lo + step, ...`` that maximise QWK.

    Args:
        gold (array-like, shape (N,)): gold scores on the prompt's scale (NaN rows are left out).
        pred (array-like, shape (N,)): unrounded predictions on the prompt's scale.
        lo (float): the prompt's min; step (float): the rubric step; k (int): number of rubric points.
        passes (int): coordinate-search sweeps over the thresholds.

    Returns:
        tuple[list[float], dict]: ``k - 1`` strictly increasing thresholds, at least ``MIN_GAP * step`` apart
        (the midpoints when QWK is undefined or cannot be raised) and ``{"qwk_nearest", "qwk"}`` on the fitted data.
    """
    gold, pred = np.asarray(gold, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    keep = np.isfinite(gold) & np.isfinite(pred)
    gold, pred = gold[keep], pred[keep]
    g = np.clip(np.round((gold - lo) / step).astype(np.int64), 0, k - 1)
    cuts = lo + (np.arange(1, k) - 0.5) * step
    nearest = np.clip(np.floor((pred - lo) / step + 0.5).astype(np.int64), 0, k - 1)  # PromptTable.round_nearest
    defined = len(g) >= 2 and len(np.unique(g)) >= 2  # as the result files (metrics.why_undefined): else None
    start = float(qwk(g, nearest, (0, k - 1))) if defined else None
    if start is None or k < 2:
        return cuts.tolist(), {"qwk_nearest": start, "qwk": start}
    best, order, gap = start, np.sort(np.unique(pred)), MIN_GAP * step
    for _ in range(passes):
        improved = False
        for j in range(k - 1):  # a candidate within `gap` of a neighbour (equal to it, say) is never tried
            low = cuts[j - 1] + gap if j > 0 else -np.inf
            high = cuts[j + 1] - gap if j < k - 2 else np.inf
            inside = order[(order > low) & (order < high)]
            cands = np.concatenate([(inside[:-1] + inside[1:]) / 2, inside[:1] - 1e-9, inside[-1:] + 1e-9])
            cands = cands[(cands >= low) & (cands <= high)]
            if len(cands) > MAX_CANDIDATES:
                cands = np.quantile(cands, np.linspace(0, 1, MAX_CANDIDATES))
            for c in cands:
                trial = cuts.copy()
                trial[j] = c
                value = float(qwk(g, labels_by(trial, pred), (0, k - 1)))
                if value > best + 1e-12:
                    best, cuts, improved = value, trial, True
        if not improved:
            break
    assert np.all(np.diff(cuts) > 0), cuts
    return cuts.tolist(), {"qwk_nearest": start, "qwk": best}


def fit_table_cutpoints(table, prompts, gold, pred, quiet: bool = False) -> dict:
    """Fit every prompt's thresholds on ``(gold, pred)`` and store them in ``table.cutpoints``.

    Args:
        table (PromptTable): with a ``step``; its ``cutpoints`` are replaced.
        prompts, gold, pred (array-like, shape (N,)): prompt id, gold and unrounded prediction per row.
        quiet (bool): leave out the log line per prompt.

    Returns:
        dict: per prompt ``{"cutpoints", "qwk_nearest", "qwk"}`` (prompts whose QWK is undefined keep
        nearest rounding and are left out of ``table.cutpoints``).
    """
    if table.step is None:
        raise OptionError("--fit-cutpoints needs rubric points: give --score-step (a continuous target has none)")
    prompts = np.asarray([str(p) for p in prompts], dtype=object)
    gold, pred = np.asarray(gold, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    cutpoints, report = {}, {}
    for pid in table.ids:
        rows = prompts == pid
        if not rows.any():
            continue
        cuts, fit = fit_cutpoints(gold[rows], pred[rows], table.ranges[pid][0], table.step, table.num_points(pid))
        report[pid] = {"cutpoints": cuts, **fit}
        if fit["qwk"] is not None:
            cutpoints[pid] = cuts
        if fit["qwk"] is not None and not quiet:
            logger.info("prompt %s: cut-points %s raise QWK from %.4f (nearest) to %.4f on the fitted rows",
                        pid, [float(f"{c:.5g}") for c in cuts], fit["qwk_nearest"], fit["qwk"])
    table.cutpoints = cutpoints
    table.__post_init__()  # checks the thresholds
    return report


def fit_all_cutpoints(table, prompts, gold, pred, quiet: bool = False) -> dict:
    """:func:`fit_table_cutpoints` for each score's own thresholds (one score column: one score).

    Args:
        table (PromptTable): its :attr:`~scorelib.data.prompts.PromptTable.views` get their cut-points.
        prompts (array-like, shape (N,)): prompt id per row.
        gold, pred (array-like, shape (N,) or (N, K)): column k is score k of ``table.views``.

    Returns:
        dict: per score name, :func:`fit_table_cutpoints`'s report.
    """
    k = table.num_traits
    gold, pred = (np.asarray(x, dtype=np.float64).reshape(-1, k) for x in (gold, pred))
    return {name: fit_table_cutpoints(view, prompts, gold[:, i], pred[:, i], quiet)
            for i, (name, view) in enumerate(table.views.items())}


def cross_fit_round(table, prompts, gold, pred, folds) -> np.ndarray:
    """Round each fold's predictions by thresholds fitted on the other folds only (cross-fitted cut-points).

    The QWK of these rounded scores is an honest estimate of what fitted cut-points give on new texts:
    no row is rounded by thresholds that saw its own gold score. ``table`` itself is left as it was.

    Args:
        table (PromptTable): ranges and step (per trait); its cut-points are not used or changed.
        prompts (array-like, shape (N,)): prompt id per row.
        gold, pred (array-like, shape (N,) or (N, K)): gold and unrounded predictions, column k score k.
        folds (array-like, shape (N,)): fold number of each row.

    Returns:
        np.ndarray: the rounded predictions, shape of ``pred``.
    """
    prompts, folds = np.asarray([str(p) for p in prompts], dtype=object), np.asarray(folds)
    gold, pred = np.asarray(gold, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    out = np.full(pred.shape, np.nan)
    for fold in np.unique(folds):
        rest, own = folds != fold, folds == fold
        fitted = table.without_cutpoints()
        fit_all_cutpoints(fitted, prompts[rest], gold[rest], pred[rest], quiet=True)
        out[own] = fitted.round(pred[own], prompts[own])
    return out


def cutpoint_warnings(table, frame, metrics: dict) -> list[dict]:
    """What cross-fitted cut-points did to out-of-fold rows that nearest rounding cannot explain, per prompt (and trait).

    Two checks: a row rounded to a lower mark than a lower prediction of its prompt (each fold has its own
    thresholds, so marks need not follow the predictions across folds: :func:`order_breaks`), and cut-points that
    raise QWK by more than :data:`FLAT_QWK_GAIN` over nearest rounding while the predictions' SD is below
    :data:`FLAT_SD_RATIO` of the gold scores' (thresholds squeezed into a narrow band of a flat model's predictions).
    Each is logged as a warning.

    Args:
        table (PromptTable): ranges and steps. frame (pd.DataFrame): the out-of-fold result rows (``pred_rounded``
            cross-fitted). metrics (dict): their :func:`scorelib.results.frame_metrics` (``qwk``, ``qwk_nearest``).

    Returns:
        list[dict]: ``{"check", "prompt", "trait", "value", "en"}`` each (``check``: ``order`` or ``cutpoint_gain``).
    """
    out = []
    prompts = frame["prompt"].astype(str).to_numpy()
    each = list(metrics["traits"].values()) if "traits" in metrics else [metrics]
    for k, (name, m) in enumerate(zip(table.views, each)):
        gold, pred, rounded = (frame[table.scores.suffixed(c)[k]].to_numpy(np.float64)
                               for c in ("gold", "pred", "pred_rounded"))
        for pid, pm in m["per_prompt"].items():
            rows = (prompts == pid) & np.isfinite(gold)
            where = f"prompt {pid}" + ("" if len(each) == 1 else f", trait {name}")
            step = table.views[name].step or 0.0
            breaks = order_breaks(pred[rows], rounded[rows], prompts[rows], slack=step)
            if breaks:
                out.append({"check": "order", "prompt": pid, "trait": name, "value": breaks,
                            "en": f"{where}: {breaks} out-of-fold row(s) got a mark more than one step ({step:g}) below "
                                  f"that of a lower prediction (each fold's cut-points are its own): the cross-fitted "
                                  f"marks do not follow the scores"})
            sd_h, sd_m = (float(np.std(x[rows], ddof=1)) if rows.sum() > 1 else np.nan for x in (gold, pred))
            ratio = sd_m / sd_h if sd_h > 0 else np.nan
            q, near = pm.get("qwk"), pm.get("qwk_nearest")
            if ratio < FLAT_SD_RATIO and q is not None and near is not None and q - near > FLAT_QWK_GAIN:
                out.append({"check": "cutpoint_gain", "prompt": pid, "trait": name, "value": q - near,
                            "en": f"{where}: cut-points raise QWK from {near:.3f} (nearest rounding) to {q:.3f}, but the "
                                  f"predictions' SD is {ratio:.2f} of the gold scores' (below {FLAT_SD_RATIO:g}): the "
                                  f"model barely varies, and the gain is the thresholds', squeezed into its narrow band"})
    for w in out:
        logger.warning("%s", w["en"])
    return out


def check_can_fit(table, has_valid: bool = True, where: str = "the valid split") -> None:
    """Refuse ``--fit-cutpoints`` on a continuous target (any trait's) or without data to fit on."""
    for name, view in zip([f"trait {t!r}" for t in table.traits] or ["the score"], table.views.values()):
        if view.step is None:
            raise OptionError(f"--fit-cutpoints needs rubric points: {name} is continuous (no --score-step, and no step in --score-ranges); give a step or drop "
                              f"--fit-cutpoints")
    if not has_valid:
        raise OptionError(f"--fit-cutpoints fits on {where}, and the data has none; give a valid table or "
                          f"--valid-fraction above 0")


class CutpointStep(AfterTraining):
    """``scorelib-train --fit-cutpoints``, once the epoch loop has ended: fit each prompt's thresholds (per trait) on
    ``checkpoint_best``'s valid predictions and store them with its prompt table (the checkpoint and
    ``prompts.json``), so that its result files, and every later score, round by them.

    Args:
        blend (StackStep | None): with ``--stack tfidf``, thresholds of the blend (the step that fitted it).
    """

    def __init__(self, blend=None):
        self.blend = blend

    def check(self, task) -> None:
        check_can_fit(task.prompts, "valid" in task.frames and len(task.frames["valid"]) > 0)

    def run(self, trainer, best: Path) -> None:
        if not trainer.world.is_main:
            return
        state = checkpoint_utils.load_checkpoint(best)
        trainer.model.load_state_dict(state["model"])
        ds, table = trainer.task.dataset("valid"), trainer.task.prompts
        _, preds = trainer.valid_step(ds)
        if self.blend is not None:
            preds = self.blend.blend01(best, ds, preds)
        fit_all_cutpoints(table, ds.prompts, ds.scores, table.unscale(preds, ds.prompts))
        state["prompts"] = table.to_dict()
        atomic_write(best, lambda tmp: torch.save(state, tmp))
        atomic_write(best.parent / "prompts.json", table.save)
