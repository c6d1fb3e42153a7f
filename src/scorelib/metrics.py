"""Agreement between gold and predicted scores: QWK, Pearson, Spearman, RMSE, on arrays.

fairseq's counterpart is a criterion's ``reduce_metrics`` plus ``fairseq/logging/metrics.py``;
here the metrics are pure functions of numpy arrays (QWK in scikit-learn's order of operations, Pearson and
Spearman with SciPy), so that a test can check each against those libraries on the exact values. One copy serves
the result files, the cut-point fit and the report (:func:`qwk`, :func:`pair_metrics`).
"""
from __future__ import annotations

import functools
import math
import warnings

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


FIGURES = ("exact_pct", "adjacent_pct", "qwk", "qwk_nearest", "pearson", "spearman", "rmse", "r2", "smd")
EXACT_TOL = 1e-9  # two scores closer than this agree exactly
MIN_ROWS = 30  # fewer labeled rows (all prompts, or one prompt): the metrics carry a warning
# the two kinds of an overall figure, named so in the metrics JSON, the log, the plots and the report
KINDS = {"qwk": "mean of per-prompt", "qwk_pooled": "pooled over prompts", "pearson": "pooled over prompts",
         "spearman": "pooled over prompts", "rmse": "pooled over prompts"}


def _div(a, b):
    """``a / b`` elementwise, NaN where ``|b| <= 1e-12`` (no warnings)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(b) > 1e-12, a / np.where(b == 0, 1, b), np.nan)


@functools.lru_cache(maxsize=64)
def _squared_distances(k: int) -> np.ndarray:
    """QWK's weights ``(i - j)^2`` of a k x k confusion matrix (read only)."""
    w = np.zeros((k, k)) + np.arange(k)
    w = (w - w.T) ** 2
    w.flags.writeable = False
    return w


def qwk(h, m, label_range=None):
    """Quadratic weighted kappa of gold ``h`` and predicted ``m`` along the last axis.

    ``1 - sum(w O) / sum(w E)``: ``O`` the confusion matrix, ``E`` the outer product of its marginals over N,
    ``w = (i - j)^2`` the squared distance between the two scores. This equals RSMTool's covariance form
    ``2 cov(h, m) / (var h + var m + (mean h - mean m)^2)`` (population moments), which also holds for scores on
    no grid. Two orders of evaluation keep each caller's numbers bit for bit:

    - integer labels (both arrays of an integer dtype): the confusion matrix over ``label_range``, with
      scikit-learn's operations, so the value is exactly ``cohen_kappa_score(h, m, weights="quadratic",
      labels=range(lo, hi + 1))`` (the result files' metrics, the cut-point fit);
    - otherwise (float scores: rubric points, half points, unrounded): the covariance form (the report).

    Args:
        h, m (array-like, shape (..., N)): gold (human) and predicted (machine) labels or scores.
        label_range (tuple[int, int] | None): integer labels only, the lowest and highest label (default: the
            data's); every label must lie in it. The kappa does not depend on it (its last bits do).

    Returns:
        np.ndarray, shape (...) (a NumPy float for 1-D input): the kappa; NaN where it is 0/0 (no rows, or
        ``h`` and ``m`` one same constant). A single gold value with other predictions gives 0, as RSMTool;
        callers that call that undefined (the result files, the cut-point fit) check it first
        (:func:`why_undefined`).
    """
    h, m = np.asarray(h), np.asarray(m)
    if h.dtype.kind in "iu" and m.dtype.kind in "iu":
        if h.shape != m.shape:
            h, m = np.broadcast_arrays(h, m)
        low, high = (int(min(h.min(), m.min())), int(max(h.max(), m.max()))) if h.size else (0, 0)
        lo, hi = (low, high) if label_range is None else (int(label_range[0]), int(label_range[1]))
        if h.size and (low < lo or high > hi):
            raise ValueError(f"qwk: labels {low} .. {high} outside label_range {label_range}")
        k, lead = hi - lo + 1, h.shape[:-1]
        cell = (h - lo) * k + (m - lo)
        if lead:  # one k x k matrix per leading index
            cell = cell + (np.arange(math.prod(lead)) * (k * k)).reshape(lead + (1,))
        observed = np.bincount(cell.ravel(), minlength=math.prod(lead) * k * k).reshape(lead + (k, k))
        observed = observed.astype(np.float64)
        sum0, sum1 = observed.sum(-2), observed.sum(-1)  # as sklearn: E = outer(column sums, row sums) / N
        w = _squared_distances(k)
        with np.errstate(divide="ignore", invalid="ignore"):  # no rows: 0/0
            expected = sum0[..., :, None] * sum1[..., None, :] / sum0.sum(-1)[..., None, None]
            num, den = (w * observed).sum((-2, -1)), (w * expected).sum((-2, -1))
            return np.where(den > 0, 1 - num / den, np.nan)[()]  # den is 0 only where h and m are one constant
    h, m = np.asarray(h, np.float64), np.asarray(m, np.float64)
    if h.shape[-1] == 0:
        return np.full(np.broadcast_shapes(h.shape, m.shape)[:-1], np.nan)[()]
    dh, dm = h - h.mean(-1, keepdims=True), m - m.mean(-1, keepdims=True)
    cov = (dh * dm).mean(-1)
    return _div(2 * cov, (dh ** 2).mean(-1) + (dm ** 2).mean(-1) + (h.mean(-1) - m.mean(-1)) ** 2)[()]


def pearson(h, m):
    """Pearson's r along the last axis, SciPy's ``pearsonr`` (a 1-D value is its own bit for bit).

    Args:
        h, m (array-like, shape (..., N)).

    Returns:
        np.ndarray, shape (...): r; NaN where N < 2 or a column is constant.
    """
    from scipy import stats
    h, m = np.broadcast_arrays(np.asarray(h, np.float64), np.asarray(m, np.float64))
    if h.shape[-1] < 2:
        return np.full(h.shape[:-1], np.nan)[()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # constant columns: NaN
        return np.asarray(stats.pearsonr(h, m, axis=-1).statistic, np.float64)[()]


def spearman(h, m):
    """Spearman's rho along the last axis, SciPy's ``spearmanr`` (average ranks for ties) on each leading index.

    Returns:
        np.ndarray, shape (...): rho; NaN where N < 2 or a column is constant.
    """
    from scipy import stats
    h, m = np.broadcast_arrays(np.asarray(h, np.float64), np.asarray(m, np.float64))
    out = np.full(h.shape[:-1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        for i in np.ndindex(out.shape):
            out[i] = stats.spearmanr(h[i], m[i]).statistic
    return out[()]


def smd(h, m, pooled: bool = False):
    """Standardized mean difference ``(mean m - mean h) / SD`` along the last axis, RSMTool's
    ``standardized_mean_difference``.

    Args:
        h, m (np.ndarray, shape (..., N)): human and machine scores.
        pooled (bool): SD = ``sqrt((SD_h^2 + SD_m^2) / 2)`` (RSMTool's human-human SMD) instead of ``SD_h``;
            SDs use ddof 1.

    Returns:
        np.ndarray, shape (...): NaN where N < 2 or the SD is 0.
    """
    h, m = np.asarray(h, np.float64), np.asarray(m, np.float64)
    if h.shape[-1] < 2:
        return np.full(h.shape[:-1], np.nan)
    sd_h, sd_m = h.std(-1, ddof=1), m.std(-1, ddof=1)
    return _div(m.mean(-1) - h.mean(-1), np.sqrt((sd_h ** 2 + sd_m ** 2) / 2) if pooled else sd_h)


def pair_metrics(h, m, rounded=None, nearest=None, tolerance: float = 1.0, pooled_smd: bool = False, labels=None,
                 figures=None) -> dict:
    """Agreement of machine with gold (human) scores: every figure of one set of rows, or of many at once.

    Works along the last axis: ``h`` and ``m`` of shape (..., N) (e.g. (B, N) bootstrap resamples) give values of
    shape (...). Formulas as RSMTool's ``metrics_helper``; QWK is :func:`qwk`, Pearson :func:`pearson`. A value
    the formula cannot give is NaN; :func:`why_undefined` says why, as the result files need.

    Args:
        h (array-like, shape (..., N)): gold (human) scores.
        m (array-like, shape (..., N)): machine scores, unrounded (Pearson, Spearman, RMSE, R2, SMD use these).
        rounded (array-like | None, shape (..., N)): machine scores rounded to the rubric points (exact and
            adjacent agreement, and QWK unless ``labels``); None for a continuous target.
        nearest (array-like | None): the same rounded to the nearest point, where cut-points round ``rounded``
            (``qwk_nearest``).
        tolerance (float): largest difference counted as adjacent (one score step).
        pooled_smd (bool): SMD with the pooled SD (human-human).
        labels (dict | None): :func:`qwk_labels`'s integer ``gold_labels``, ``pred_labels`` and ``label_range``:
            QWK from these (scikit-learn's value bit for bit) instead of from ``h`` and ``rounded``.
        figures (Iterable[str] | None): which of :data:`FIGURES` to compute; default every one the arguments
            allow except ``spearman`` (a loop over the leading axes: name it to get it).

    Returns:
        dict[str, np.ndarray]: in :data:`FIGURES`' order, of those computed: ``exact_pct, adjacent_pct``
        (percent of rows), ``qwk``, ``qwk_nearest``, ``pearson``, ``spearman``, ``rmse``, ``r2``, ``smd``.
    """
    h, m = np.asarray(h, np.float64), np.asarray(m, np.float64)
    can = {"pearson", "spearman", "rmse", "r2", "smd"} | ({"exact_pct", "adjacent_pct", "qwk"} if rounded is not None
                                                          else set())
    can |= ({"qwk"} if labels is not None else set()) | ({"qwk_nearest"} if nearest is not None else set())
    want = can - {"spearman"} if figures is None else set(figures)
    if want - can:
        raise ValueError(f"pair_metrics: {sorted(want - can)} need rounded, nearest or labels")
    err, out = m - h, {}
    if want & {"exact_pct", "adjacent_pct"}:
        diff = np.abs(np.asarray(rounded, np.float64) - h)
        out["exact_pct"] = (diff <= EXACT_TOL).mean(-1) * 100
        out["adjacent_pct"] = (diff <= tolerance + EXACT_TOL).mean(-1) * 100
    if "qwk" in want:
        out["qwk"] = qwk(h, np.asarray(rounded, np.float64)) if labels is None else \
            qwk(labels["gold_labels"], labels["pred_labels"], labels["label_range"])
    if "qwk_nearest" in want:
        out["qwk_nearest"] = qwk(h, np.asarray(nearest, np.float64))
    if "pearson" in want:
        out["pearson"] = pearson(h, m)
    if "spearman" in want:
        out["spearman"] = spearman(h, m)
    if "rmse" in want:
        out["rmse"] = np.sqrt((err ** 2).mean(-1))
    if "r2" in want:
        out["r2"] = 1 - _div((err ** 2).sum(-1), ((h - h.mean(-1, keepdims=True)) ** 2).sum(-1))
    if "smd" in want:
        out["smd"] = smd(h, m, pooled=pooled_smd)
    return {k: out[k] for k in FIGURES if k in want}


def why_undefined(gold, pred, gold_labels=None, step=None) -> dict:
    """Why each of :data:`METRICS` is undefined for one group of labeled rows (the result files' ``"undefined"``).

    Stricter than the formulas: no rows, or a NaN or inf prediction, leave every figure undefined; Pearson and
    Spearman need 2 rows and spread in both columns (up to float noise); QWK needs a step, 2 rows and 2 gold
    labels (one gold value gives kappa 0, or 0/0, whatever the predictions). Constant predictions with varied
    gold give a defined QWK of 0, which is kept.

    Args:
        gold, pred (np.ndarray, shape (N,)): gold and unrounded predicted scores of the labeled rows.
        gold_labels (np.ndarray | None, shape (N,)): QWK's integer gold labels (:func:`qwk_labels`).
        step (float | None): the rubric step; None: a continuous target (no QWK).

    Returns:
        dict[str, str]: ``{metric: reason}`` for the undefined metrics only.
    """
    n = len(gold)
    if n == 0:
        return {m: "no labeled rows" for m in METRICS}
    if not np.all(np.isfinite(pred)):
        return {m: "predictions contain NaN or inf" for m in METRICS}
    why = {}
    if n < 2:
        why.update(pearson="fewer than 2 labeled rows", spearman="fewer than 2 labeled rows")
    elif _is_constant(gold):
        why.update(pearson="a single gold value", spearman="a single gold value")
    elif _is_constant(pred):
        why.update(pearson="constant predictions", spearman="constant predictions")
    if step is None:
        why["qwk"] = "continuous target (step is None)"
    elif n < 2:
        why["qwk"] = "fewer than 2 labeled rows"
    elif len(np.unique(gold_labels)) < 2:
        why["qwk"] = "a single gold value"
    return why


def labeled_metrics(gold, pred, gold_labels=None, pred_labels=None, label_range=None, step=None):
    """QWK / Pearson / Spearman / RMSE of one group of labeled rows, with reasons for undefined ones.

    :func:`pair_metrics` of the defined figures (QWK on the integer labels of :func:`qwk_labels`), ``None``
    for the others with :func:`why_undefined`'s reason.

    Returns:
        tuple[dict, dict]: ``{metric: value or None}`` and ``{metric: why it is undefined}``.
    """
    why = why_undefined(gold, pred, gold_labels, step)
    labels = None if "qwk" in why else \
        {"gold_labels": gold_labels, "pred_labels": pred_labels, "label_range": label_range}
    values = pair_metrics(gold, pred, labels=labels, figures=[m for m in METRICS if m not in why])
    return {m: None if m in why else float(values[m]) for m in METRICS}, why


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
        vals, why = labeled_metrics(gold[rows], pred[rows], step=step, **kw)
        per_prompt[pid] = {"n": int(rows.sum()), "n_unlabeled": int((prompts == pid).sum() - rows.sum()),
                           **vals, "undefined": why}
    ends = [v for p in per_prompt for v in table.ranges[p]]
    kw = {} if step is None else qwk_labels(gold[labeled], rounded[labeled], step, ends)
    pooled, why = labeled_metrics(gold[labeled], pred[labeled], step=step, **kw)
    qwks = [m["qwk"] for m in per_prompt.values() if m["qwk"] is not None]
    overall = {"qwk": float(np.mean(qwks)) if qwks else None, "qwk_pooled": pooled["qwk"],
               "pearson": pooled["pearson"], "spearman": pooled["spearman"], "rmse": pooled["rmse"],
               "n_qwk_prompts": len(qwks)}
    undefined = {("qwk_pooled" if m == "qwk" else m): r for m, r in why.items()}
    if not qwks:
        undefined["qwk"] = "continuous target (step is None)" if step is None else "QWK undefined for every prompt"
    out = {"n": int(labeled.sum()), "n_unlabeled": int((~labeled).sum()), "n_rows": int(len(gold)),
           "step": step, "overall": overall, "overall_kinds": KINDS, "per_prompt": per_prompt, "undefined": undefined}
    few = [f"prompt {p}: {m['n']}" for p, m in per_prompt.items() if m["n"] < MIN_ROWS] + \
        ([f"all prompts: {out['n']}"] if out["n"] < MIN_ROWS else [])
    if few:
        out["warnings"] = [f"fewer than {MIN_ROWS} labeled rows ({'; '.join(few)}): these figures are rough"]
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


def summary_line(metrics: dict) -> str:
    """``n=270; mean of per-prompt QWK 0.796, Pearson 0.838, RMSE 1.133; pooled over prompts QWK 0.869, ...``:
    each figure under its kind (:data:`KINDS`); with traits, each trait's. Undefined figures are left out."""
    if "traits" in metrics:
        return f"MCRMSE {metrics['mcrmse'] if metrics['mcrmse'] is None else round(metrics['mcrmse'], 4)}; " + \
            "; ".join(f"{t}: {summary_line(m)}" for t, m in metrics["traits"].items())
    names = {"qwk": "QWK", "pearson": "Pearson", "rmse": "RMSE"}
    per = metrics["per_prompt"].values()
    mean = [f"{names[k]} {np.mean(v):.3f}" for k in names if (v := [m[k] for m in per if m.get(k) is not None])]
    o = metrics["overall"]
    pooled = [f"{names[k.split('_')[0]]} {o[k]:.3f}" for k in ("qwk_pooled", "pearson", "rmse") if o.get(k) is not None]
    return f"n={metrics['n']}; mean of per-prompt {', '.join(mean) or '-'}; pooled over prompts {', '.join(pooled) or '-'}"


def warnings_of(metrics: dict) -> list[str]:
    """The metrics' warnings (each trait's, named) of :func:`compute_metrics`."""
    if "traits" in metrics:
        return [f"{t}: {w}" for t, m in metrics["traits"].items() for w in m.get("warnings", [])]
    return list(metrics.get("warnings", []))


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
