"""Agreement between gold and predicted scores: QWK, Pearson, Spearman, RMSE, on arrays.

fairseq's counterpart is a criterion's ``reduce_metrics`` plus ``fairseq/logging/metrics.py``;
here the metrics are pure functions of numpy arrays, computed with scikit-learn and SciPy,
so that a test can check each against those libraries on the exact values.
"""
from __future__ import annotations

import numpy as np

METRICS = ("qwk", "pearson", "spearman", "rmse")
MAXIMIZE = {"qwk": True, "pearson": True, "spearman": True, "rmse": False, "mcrmse": False, "loss": False}


def _is_constant(x: np.ndarray) -> bool:
    """True when ``x`` has no spread (up to float noise), where correlations are undefined."""
    return float(np.ptp(x)) <= 1e-9 * max(1.0, float(np.max(np.abs(x))))


def qwk_labels(gold, rounded, step: float, ends) -> dict:
    """Integer QWK labels ``round(score / step)`` and the label range spanning ``ends`` and the data."""
    g, r = (np.round(np.nan_to_num(np.asarray(x) / step, posinf=0, neginf=0)).astype(np.int64) for x in (gold, rounded))
    span = np.concatenate([np.round(np.asarray(ends, dtype=np.float64) / step).astype(np.int64), g, r])
    return {"gold_labels": g, "pred_labels": r, "label_range": (int(span.min()), int(span.max()))}


def pair_metrics(gold, pred, gold_labels=None, pred_labels=None, label_range=None, step=None):
    """QWK / Pearson / Spearman / RMSE of one group of labeled rows, with reasons for undefined ones.

    Returns:
        tuple[dict, dict]: ``{metric: value or None}`` and ``{metric: why it is undefined}``.
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import cohen_kappa_score
    out, why = dict.fromkeys(METRICS), {}
    n = len(gold)
    if n == 0:
        return out, {m: "no labeled rows" for m in METRICS}
    if not np.all(np.isfinite(pred)):
        return out, {m: "predictions contain NaN or inf" for m in METRICS}
    out["rmse"] = float(np.sqrt(np.mean((pred - gold) ** 2)))
    if n < 2:
        why.update(pearson="fewer than 2 labeled rows", spearman="fewer than 2 labeled rows")
    elif _is_constant(gold):
        why.update(pearson="a single gold value", spearman="a single gold value")
    elif _is_constant(pred):
        why.update(pearson="constant predictions", spearman="constant predictions")
    else:
        out["pearson"] = float(pearsonr(gold, pred).statistic)
        out["spearman"] = float(spearmanr(gold, pred).statistic)  # average ranks for ties
    if step is None:
        why["qwk"] = "continuous target (step is None)"
    elif n < 2:
        why["qwk"] = "fewer than 2 labeled rows"
    elif len(np.unique(gold_labels)) < 2:
        why["qwk"] = "a single gold value"  # kappa is 0 (or 0/0) whatever the predictions
    else:  # constant predictions give a defined kappa of 0, which is kept
        # sklearn weights by *position* among the labels it sees ({0, 1, 5}: 1 -> 5 is one
        # step), so pass the whole range to make the quadratic weights real score distances
        labels = np.arange(label_range[0], label_range[1] + 1)
        out["qwk"] = float(cohen_kappa_score(gold_labels, pred_labels, weights="quadratic", labels=labels))
    return out, why


def score_metrics(prompts, gold, pred, rounded, table) -> dict:
    """Per-prompt and overall agreement of one score (a single-score table, e.g. a :attr:`PromptTable.views` entry).

    QWK (only when ``table.step`` is set) uses integer labels ``round((score - min) / step)``
    per prompt and ``round(score / step)`` when pooled, from ``gold`` and ``rounded``;
    Pearson, Spearman and RMSE use the unrounded ``pred`` on the prompts' own scales.
    Rows with NaN gold are left out and counted in ``n_unlabeled``. A metric that is
    undefined is ``None`` with its reason under ``"undefined"`` and is left out of means.
    Constant predictions with varied gold give QWK 0 (defined), not ``None``.

    Args:
        prompts (Sequence[str]): prompt id per row, length N.
        gold, pred, rounded (array-like, shape (N,)): on the prompts' own scales.
        table (PromptTable): ranges and step.

    Returns:
        dict: JSON-serialisable ``{"n", "n_unlabeled", "n_rows", "step", "overall": {...},
        "per_prompt": {pid: {...}}, "undefined": {metric: reason}}``. With fitted cut-points
        (``table.cutpoints``), ``qwk`` uses them and ``qwk_nearest`` / ``qwk_pooled_nearest`` (overall and
        per prompt) round to the nearest point; ``"cutpoints"`` lists them.
    """
    step = None if table.step is None else float(table.step)
    prompts = np.asarray([str(p) for p in prompts], dtype=object)
    gold, pred, rounded = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (gold, pred, rounded))
    labeled = np.isfinite(gold)
    per_prompt = {}
    for pid in (p for p in table.ids if p in set(prompts)):
        rows = labeled & (prompts == pid)
        lo, hi = table.ranges[pid]
        kw = {} if step is None else qwk_labels(gold[rows] - lo, rounded[rows] - lo, step, [0.0, hi - lo])
        vals, why = pair_metrics(gold[rows], pred[rows], step=step, **kw)
        per_prompt[pid] = {"n": int(rows.sum()), "n_unlabeled": int((prompts == pid).sum() - rows.sum()),
                           **vals, "undefined": why}
    ends = [v for p in per_prompt for v in table.ranges[p]]
    kw = {} if step is None else qwk_labels(gold[labeled], rounded[labeled], step, ends)
    pooled, why = pair_metrics(gold[labeled], pred[labeled], step=step, **kw)
    qwks = [m["qwk"] for m in per_prompt.values() if m["qwk"] is not None]
    overall = {"qwk": float(np.mean(qwks)) if qwks else None, "qwk_pooled": pooled["qwk"],
               "pearson": pooled["pearson"], "spearman": pooled["spearman"], "rmse": pooled["rmse"],
               "n_qwk_prompts": len(qwks)}
    undefined = {("qwk_pooled" if m == "qwk" else m): r for m, r in why.items()}
    if not qwks:
        undefined["qwk"] = "continuous target (step is None)" if step is None else "QWK undefined for every prompt"
    out = {"n": int(labeled.sum()), "n_unlabeled": int((~labeled).sum()), "n_rows": int(len(gold)),
           "step": step, "overall": overall, "per_prompt": per_prompt, "undefined": undefined}
    if table.cutpoints:  # fitted cut-points: also report QWK with nearest rounding
        plain = table.without_cutpoints()
        near = score_metrics(prompts, gold, pred, plain.round(pred, prompts), plain)
        for pid, m in per_prompt.items():
            m["qwk_nearest"] = near["per_prompt"][pid]["qwk"]
        overall["qwk_nearest"] = near["overall"]["qwk"]
        overall["qwk_pooled_nearest"] = near["overall"]["qwk_pooled"]
        out["cutpoints"] = {p: table.cutpoints[p] for p in per_prompt if p in table.cutpoints}
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def compute_metrics(prompts, gold, pred, rounded, table) -> dict:
    """Agreement between gold and predicted scores: :func:`score_metrics` of each score on its own ranges and step.

    Args:
        prompts (Sequence[str]): prompt id per row, length N.
        gold, pred, rounded (array-like, shape (N,) or (N, K)): on the prompts' own scales; column k is score k
            of ``table.views`` (a single score column: one column).
        table (PromptTable): ranges and step per prompt (per trait).

    Returns:
        dict: for one score column, :func:`score_metrics`'s dict. For K traits, ``{"n" (rows labeled in every
        trait), "n_rows", "traits": {trait: score_metrics dict}, "mcrmse", "overall": {"mcrmse", and the means over
        traits of "qwk", "pearson", "spearman"}}``; ``mcrmse`` is None where a trait's RMSE is undefined.
    """
    k = table.num_traits
    gold, pred, rounded = (np.asarray(x, dtype=np.float64).reshape(-1, k) for x in (gold, pred, rounded))
    per = [score_metrics(prompts, gold[:, i], pred[:, i], rounded[:, i], view)
           for i, view in enumerate(table.views.values())]
    return table.scores.pack(per, lambda each: trait_summary(each, gold))  # one score column: its metrics as they are


def trait_summary(per: dict, gold: np.ndarray) -> dict:
    """K traits' metrics (``{trait: score_metrics dict}``) with MCRMSE and the means over traits."""
    rmses = [m["overall"]["rmse"] for m in per.values()]
    mcrmse = float(np.mean(rmses)) if None not in rmses else None
    overall = {"mcrmse": mcrmse, **{m: _mean(v["overall"][m] for v in per.values())
                                    for m in ("qwk", "pearson", "spearman")}}
    return {"n": int(np.isfinite(gold).all(axis=1).sum()), "n_rows": int(len(gold)), "mcrmse": mcrmse,
            "overall": overall, "traits": per}


def flat_metrics(metrics: dict) -> dict:
    """The scalar view the loop reads for ``--best-checkpoint-metric``.

    Args:
        metrics (dict): the output of :func:`compute_metrics`.

    Returns:
        dict[str, float | None]: ``qwk, qwk_pooled, pearson, spearman, rmse, n`` (and ``qwk_nearest``
        where the table has fitted cut-points). With traits: ``mcrmse``; ``qwk``, ``pearson``, ``spearman``
        and ``rmse`` averaged over the traits (so ``rmse`` equals ``mcrmse``); each trait's ``qwk_{trait}``,
        ``pearson_{trait}``, ``rmse_{trait}``; and ``n``.
    """
    if "traits" in metrics:
        o, per = metrics["overall"], metrics["traits"]
        each = {f"{m}_{t}": per[t]["overall"][m] for t in per for m in ("qwk", "pearson", "rmse")}
        return {"mcrmse": o["mcrmse"], "qwk": o["qwk"], "pearson": o["pearson"], "spearman": o["spearman"],
                "rmse": o["mcrmse"], **each, "n": metrics["n"]}
    o = metrics["overall"]
    near = {"qwk_nearest": o["qwk_nearest"]} if "qwk_nearest" in o else {}
    return {"qwk": o["qwk"], "qwk_pooled": o["qwk_pooled"], **near, "pearson": o["pearson"],
            "spearman": o["spearman"], "rmse": o["rmse"], "n": metrics["n"]}
