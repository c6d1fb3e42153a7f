"""Agreement between human and machine scores, as ETS's RSMTool defines it, on numpy arrays.

fairseq has no counterpart (its nearest is ``fairseq/logging/metrics.py``); the definitions follow
RSMTool 12 (``rsmtool/utils/metrics.py``, ``prmse.py``, ``fairness_utils.py``, ``analyzer.py``) and
Williamson, Xi and Breyer (2012), written here with numpy and SciPy only. Every pair metric works
along the last axis, so one call scores all bootstrap resamples at once: ``h`` and ``m`` of shape
(..., N) give values of shape (...). Undefined values (a constant column) are NaN. The pair metrics themselves
(QWK, r, RMSE, R2, SMD, exact and adjacent agreement) are the core's :func:`scorelib.metrics.pair_metrics`.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def _moments(x: np.ndarray):
    return x.mean(-1), x.std(-1, ddof=1) if x.shape[-1] > 1 else np.full(x.shape[:-1], np.nan)


def describe(x) -> dict:
    """``{"mean", "sd"}`` of a 1-D array (SD with ddof 1, as RSMTool's tables)."""
    x = np.asarray(x, np.float64)
    mean, sd = _moments(x) if len(x) else (np.nan, np.nan)
    return {"mean": float(mean), "sd": float(sd)}


def dsm(h, m, h_mean: float, h_sd: float, m_mean: float, m_sd: float) -> float:
    """Difference of standardized means of one group: ``mean(z_m) - mean(z_h)`` where each score is standardized
    by the mean and SD (ddof 1) of *all* rows, RSMTool's ``difference_of_standardized_means``.

    Args:
        h, m (np.ndarray, shape (N_g,)): the group's human and machine scores.
        h_mean, h_sd, m_mean, m_sd (float): of every row's human and machine scores.

    Returns:
        float: DSM; NaN where a population SD is 0.
    """
    if np.isclose(h_sd, 0, atol=1e-7) or np.isclose(m_sd, 0, atol=1e-7) or len(h) == 0:
        return float("nan")
    return float(np.mean((np.asarray(m) - m_mean) / m_sd - (np.asarray(h) - h_mean) / h_sd))


def disattenuated(r_hm: float, r_hh: float) -> float:
    """Human-machine r corrected for human unreliability: ``r_hm / sqrt(r_hh)`` (NaN where ``r_hh <= 0``)."""
    return float(r_hm / np.sqrt(r_hh)) if r_hh > 0 else float("nan")


def prmse(system, humans) -> dict:
    """Proportional reduction in mean squared error for predicting the true score (Loukina et al. 2020), with
    the human error variance estimated from the double-scored rows, as RSMTool's ``prmse_true``.

    With ``k_i`` ratings of row i (mean ``hbar_i``), ``M = sum k_i`` and ``mu`` the mean of all ratings:
    ``V_e`` = the average over rows with ``k_i > 1`` of the ratings' variance (ddof 1), weighted by ``k_i - 1``;
    ``V_T = (sum k_i (hbar_i - mu)^2 - (N - 1) V_e) / (M - sum k_i^2 / M)``;
    ``MSE = (sum k_i (hbar_i - s_i)^2 - N V_e) / M``; ``PRMSE = 1 - MSE / V_T``.

    Args:
        system (np.ndarray, shape (N,)): machine scores.
        humans (np.ndarray, shape (N, R)): human ratings, NaN where a row has fewer than R.

    Returns:
        dict: ``n, n_double, var_errors, var_true, mse_true, prmse`` (NaN where no row has two ratings).
    """
    system, humans = np.asarray(system, np.float64), np.asarray(humans, np.float64).reshape(len(system), -1)
    k = np.isfinite(humans).sum(1)
    multi = k > 1
    out = {"n": int(len(system)), "n_double": int(multi.sum())}
    if not multi.any():
        return {**out, "var_errors": np.nan, "var_true": np.nan, "mse_true": np.nan, "prmse": np.nan}
    var_err = float(np.average(np.nanvar(humans[multi], ddof=1, axis=1), weights=k[multi] - 1))
    means = np.nanmean(humans, axis=1)
    total = k.sum()
    var_true = ((k * (means - np.nanmean(humans)) ** 2).sum() - (len(k) - 1) * var_err) / (total - (k ** 2).sum() / total)
    mse = ((k * (means - system) ** 2).sum() - len(k) * var_err) / total
    return {**out, "var_errors": var_err, "var_true": float(var_true), "mse_true": float(mse),
            "prmse": float(1 - mse / var_true) if var_true > 0 else np.nan}


def bootstrap_indices(strata, n_boot: int, seed) -> np.ndarray:
    """Row indices of ``n_boot`` resamples drawn with replacement within each stratum (prompt).

    Args:
        strata (Sequence, length N): the stratum of each row.
        n_boot (int): number of resamples B.
        seed (int | Sequence[int]): for ``numpy.random.default_rng``.

    Returns:
        np.ndarray, shape (B, N): each resample keeps every stratum's size.
    """
    rng = np.random.default_rng(seed)
    _, codes = np.unique(np.asarray(strata, dtype=str), return_inverse=True)
    idx = np.empty((n_boot, len(codes)), dtype=np.int64)
    for c in np.unique(codes):
        rows = np.flatnonzero(codes == c)
        idx[:, rows] = rows[rng.integers(0, len(rows), size=(n_boot, len(rows)))]
    return idx


def percentile_interval(samples, level: float = 0.95) -> list:
    """The percentile bootstrap interval ``[lo, hi]`` of one metric's resampled values (NaNs left out)."""
    samples = np.asarray(samples, np.float64)
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return [np.nan, np.nan]
    a = (1 - level) / 2 * 100
    return [float(v) for v in np.percentile(samples, [a, 100 - a])]


def distribution(h, m, points) -> dict:
    """Percent of rows at each score point for human and (rounded) machine scores, and their difference.

    Args:
        h, m (np.ndarray, shape (N,)): human and rounded machine scores; each is matched to its nearest point.
        points (Sequence[float]): the rubric points, increasing.

    Returns:
        dict: ``points``, ``human_pct``, ``machine_pct``, ``difference`` (machine - human, percentage points).
    """
    points = np.asarray(points, np.float64)
    pct = [np.bincount(_nearest(x, points), minlength=len(points)) / max(len(x), 1) * 100 for x in (h, m)]
    return {"points": points.tolist(), "human_pct": pct[0].tolist(), "machine_pct": pct[1].tolist(),
            "difference": (pct[1] - pct[0]).tolist()}


def confusion(h, m, points) -> list:
    """Counts of (human point, machine point): ``out[i][j]`` rows scored ``points[i]`` by humans and ``points[j]``."""
    points = np.asarray(points, np.float64)
    out = np.zeros((len(points), len(points)), dtype=np.int64)
    np.add.at(out, (_nearest(h, points), _nearest(m, points)), 1)
    return out.tolist()


def _nearest(x, points) -> np.ndarray:
    return np.abs(np.asarray(x, np.float64)[:, None] - points[None, :]).argmin(1)


def _ols(y, x) -> dict:
    """Least squares of ``y`` on ``[1, x]``: SSR, residual df, R2, adjusted R2 and the F test's p-value."""
    design = np.column_stack([np.ones(len(y)), x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    ssr = float(((y - design @ beta) ** 2).sum())
    sst = float(((y - y.mean()) ** 2).sum())
    rank = int(np.linalg.matrix_rank(design))
    df_model, df_resid = rank - 1, len(y) - rank
    r2 = 1 - ssr / sst if sst > 0 else np.nan
    f = ((sst - ssr) / df_model) / (ssr / df_resid) if df_model > 0 and df_resid > 0 and ssr > 0 else np.nan
    return {"ssr": ssr, "df_resid": df_resid, "r2": r2,
            "r2_adj": 1 - (len(y) - 1) / df_resid * (1 - r2) if df_resid > 0 else np.nan,
            "p": float(stats.f.sf(f, df_model, df_resid)) if np.isfinite(f) else np.nan}


def dummies(values) -> tuple[np.ndarray, str]:
    """Treatment-coded indicator columns of a categorical, with the largest level (ties: the first by name)
    as the base, as RSMTool's ``convert_to_ordered_category``. Returns ``(array (N, L-1), base level)``."""
    values = np.asarray([str(v) for v in values], dtype=object)
    levels, counts = np.unique(values, return_counts=True)
    order = sorted(range(len(levels)), key=lambda i: (-counts[i], levels[i]))
    base = levels[order[0]]
    return np.column_stack([values == levels[i] for i in order[1:]] or [np.zeros((len(values), 0))]).astype(float), base


def fairness(h, m, groups) -> dict:
    """RSMTool's three fairness analyses (Loukina, Madnani and Zechner 2019) by OLS on group indicators.

    OSA (overall score accuracy): squared error ``(m - h)^2 ~ group``; OSD (overall score difference):
    error ``m - h ~ group``; CSD (conditional score difference): ``error ~ group + human score`` against
    ``error ~ human score`` (the human score as a categorical). R2 is adjusted R2 (for CSD, the full model's
    minus the null model's); p is the F test's (for CSD, of the nested comparison).

    Args:
        h, m (np.ndarray, shape (N,)): human and machine scores.
        groups (Sequence[str], length N): the group of each row.

    Returns:
        dict: ``{"osa": {"r2", "p"}, "osd": {...}, "csd": {...}, "base_group"}``.
    """
    h, m = np.asarray(h, np.float64), np.asarray(m, np.float64)
    err = m - h
    g, base = dummies(groups)
    c, _ = dummies([repr(float(v)) for v in h])
    osa, osd = _ols(err ** 2, g), _ols(err, g)
    null, full = _ols(err, c), _ols(err, np.column_stack([g, c]))
    ddf = null["df_resid"] - full["df_resid"]
    f = ((null["ssr"] - full["ssr"]) / ddf) / (full["ssr"] / full["df_resid"]) \
        if ddf > 0 and full["df_resid"] > 0 and full["ssr"] > 0 else np.nan
    csd_p = float(stats.f.sf(f, ddf, full["df_resid"])) if np.isfinite(f) else np.nan
    return {"osa": {"r2": osa["r2_adj"], "p": osa["p"]}, "osd": {"r2": osd["r2_adj"], "p": osd["p"]},
            "csd": {"r2": full["r2_adj"] - null["r2_adj"], "p": csd_p}, "base_group": str(base)}
