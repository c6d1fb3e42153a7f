"""The evaluation report's figures: sections of human and machine scores, with intervals and flags.

fairseq has no counterpart; this is RSMTool's ``rsmeval`` analyses (``evaluation``, ``consistency``,
``evaluation_by_group``, ``fairness_analyses``, ``true_score_evaluation``) for one trait of scorelib's
result rows, built on :mod:`scorelib.report.agreement`. It reads no files: :mod:`scorelib.report.builder` does.
"""
from __future__ import annotations

import zlib

import numpy as np

from scorelib import metrics
from scorelib.report import agreement

THRESHOLDS = {"smd": 0.15, "dsm": 0.1, "degradation": -0.10, "distribution_pct": 5.0}
BOOT_CHUNK = 200  # resamples scored at once (memory: BOOT_CHUNK x N per array)


def rubric_points(ranges, step) -> list[float]:
    """Every rubric point of the given ``(min, max)`` ranges with ``step``, sorted (union over prompts)."""
    points = {round(lo + i * step, 9) for lo, hi in ranges for i in range(int(round((hi - lo) / step)) + 1)}
    return sorted(points)


def section(h, m, rounded, strata, points=None, step=None, nearest=None, h2=None, groups=None,
            n_boot: int = 1000, seed=(1,)) -> dict:
    """Every figure of one set of labeled rows (a prompt, or all prompts pooled).

    Args:
        h (np.ndarray, shape (N,)): human (gold) scores.
        m (np.ndarray, shape (N,)): machine scores, unrounded.
        rounded (np.ndarray, shape (N,)): machine scores rounded to the rubric points (as the result file's
            ``pred_rounded``); ignored when ``step`` is None.
        strata (np.ndarray, shape (N,)): prompt of each row; bootstrap resamples rows within each.
        points (list[float] | None): rubric points for distributions and confusion matrices.
        step (float | None): the score step (adjacent agreement's tolerance); None: a continuous target.
        nearest (np.ndarray | None, shape (N,)): rounded to the nearest point where cut-points round ``rounded``.
        h2 (np.ndarray | None, shape (N,)): a second human score, NaN where a row has none.
        groups (dict[str, np.ndarray] | None): per group column, each row's group ("" leaves a row out).
        n_boot (int): bootstrap resamples (0: no intervals).
        seed (int | tuple): seeds the resamples.

    Returns:
        dict: ``n``, ``human``/``machine`` (mean, sd), ``metrics`` ({name: {"value", "ci"}}), ``distribution``
        and ``confusion`` (with a step), ``human_human`` (with ``h2``), ``groups`` (with ``groups``).
    """
    h, m = np.asarray(h, np.float64), np.asarray(m, np.float64)
    kw = {} if step is None else {"rounded": np.asarray(rounded, np.float64), "tolerance": step,
                                  "nearest": None if nearest is None else np.asarray(nearest, np.float64)}
    values = metrics.pair_metrics(h, m, **kw)
    cis = _bootstrap(h, m, kw, strata, n_boot, seed) if n_boot and len(h) else {}
    out = {"n": int(len(h)), "human": agreement.describe(h), "machine": agreement.describe(m),
           "metrics": {k: {"value": float(v), "ci": cis.get(k, [np.nan, np.nan])} for k, v in values.items()}}
    if step is not None and points:
        out["distribution"] = agreement.distribution(h, kw["rounded"], points)
        out["confusion"] = {"points": list(points), "matrix": agreement.confusion(h, kw["rounded"], points)}
    if h2 is not None:
        out["human_human"] = human_human(h, m, np.asarray(h2, np.float64), values, step, points)
    if groups:
        out["groups"] = {col: by_group(h, m, kw.get("rounded"), np.asarray(g, dtype=object))
                         for col, g in groups.items()}
    return out


def _bootstrap(h, m, kw, strata, n_boot, seed) -> dict:
    """Percentile 95% intervals of every pair metric over ``n_boot`` resamples of rows within strata."""
    idx = agreement.bootstrap_indices(strata, n_boot, seed)
    parts = []
    for lo in range(0, n_boot, BOOT_CHUNK):
        i = idx[lo:lo + BOOT_CHUNK]
        parts.append(metrics.pair_metrics(h[i], m[i], **{k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}))
    return {k: agreement.percentile_interval(np.concatenate([p[k] for p in parts])) for k in parts[0]}


def human_human(h, m, h2, hm: dict, step, points) -> dict:
    """Human-human agreement on the double-scored rows, the degradation, disattenuated r and PRMSE.

    As RSMTool: human-human figures use only rows with both scores (SMD with the pooled SD); the degradation is
    human-machine (all rows) minus human-human, for QWK (rounded machine scores), r, exact and adjacent
    agreement and SMD; the disattenuated r is ``r_hm / sqrt(r_hh)``; PRMSE uses every row's ratings.
    """
    both = np.isfinite(h2)
    kw = {} if step is None else {"rounded": h2[both], "tolerance": step}
    hh = {k: float(v) for k, v in metrics.pair_metrics(h[both], h2[both], pooled_smd=True, **kw).items()
          if k not in ("rmse", "r2")}
    out = {"n": int(both.sum()), "human2": agreement.describe(h2[both]), "metrics": hh,
           "degradation": {k: float(hm[k]) - hh[k] for k in ("qwk", "pearson", "exact_pct", "adjacent_pct", "smd")
                           if k in hh and k in hm},
           "disattenuated_r": agreement.disattenuated(float(hm["pearson"]), hh["pearson"]) if both.sum() > 1 else np.nan,
           "prmse": agreement.prmse(m, np.column_stack([h, h2]))}
    if step is not None and points and both.any():
        out["confusion"] = {"points": list(points), "matrix": agreement.confusion(h[both], h2[both], points)}
    return out


def by_group(h, m, rounded, groups) -> dict:
    """Per group: N, means and SDs, RMSE, r, QWK, DSM; and RSMTool's OSA/OSD/CSD fairness analyses.

    DSM standardizes by the mean and SD of every row of the section (rows without a group included, as
    RSMTool's population); rows whose group is "" are left out of the groups and of the fairness models.
    """
    pop = agreement.describe(h), agreement.describe(m)
    levels = sorted({str(g) for g in groups if str(g) != ""})
    out = {"levels": {}, "n_missing": int(sum(str(g) == "" for g in groups))}
    for level in levels:
        rows = groups == level
        vals = metrics.pair_metrics(h[rows], m[rows], **({} if rounded is None else {"rounded": rounded[rows]}))
        out["levels"][level] = {
            "n": int(rows.sum()), "human": agreement.describe(h[rows]), "machine": agreement.describe(m[rows]),
            "rmse": float(vals["rmse"]), "pearson": float(vals["pearson"]), "qwk": float(vals.get("qwk", np.nan)),
            "dsm": agreement.dsm(h[rows], m[rows], pop[0]["mean"], pop[0]["sd"], pop[1]["mean"], pop[1]["sd"])}
    kept = groups != ""
    out["fairness"] = agreement.fairness(h[kept], m[kept], groups[kept]) if len(levels) > 1 else None
    return out


def seed_for(seed: int, *scope) -> list[int]:
    """A resample seed per section: the user's ``--seed`` and a checksum of the section's name."""
    return [int(seed), zlib.crc32("/".join(map(str, scope)).encode("utf-8"))]


# ------------------------------------------------------------------ flags
def _signed(v: float, digits: int = 2) -> str:
    """``+0.23`` / ``−0.23`` (a true minus sign); a third digit where two would hide which side of a threshold
    the value lies (−0.152 against −0.15)."""
    text = f"{v:+.{digits}f}"
    if digits == 2 and any(abs(abs(v) - t) < 0.005 and abs(v) != t for t in THRESHOLDS.values()
                           if isinstance(t, float)):
        text = f"{v:+.3f}"
    return text.replace("-", "\u2212")


def flags(report: dict) -> list[dict]:
    """Every threshold crossed in a report's traits, in plain English and Chinese.

    Thresholds (:data:`THRESHOLDS`): |SMD| > 0.15; |DSM| > 0.1 for a group; degradation of QWK or r below
    -0.10; a difference of more than 5 percentage points at any score point.

    Returns:
        list[dict]: ``{"trait", "scope", "check", "value", "threshold", "en", "zh"}`` each.
    """
    out = []
    for trait, per in report["traits"].items():
        for scope, sec in [("overall", per["overall"])] + [(f"prompt {p}", s) for p, s in per["per_prompt"].items()]:
            if scope != "overall" and len(per["per_prompt"]) == 1:
                continue  # one prompt: its section is the overall one
            out += [dict(trait=trait, scope=scope, **f) for f in section_flags(sec)]
    return out


def section_flags(sec: dict) -> list[dict]:
    """The flags of one :func:`section` (without trait and scope)."""
    t, out = THRESHOLDS, []
    v = sec["metrics"]["smd"]["value"]
    if np.isfinite(v) and abs(v) > t["smd"]:
        low = v < 0
        out.append({"check": "smd", "value": v, "threshold": t["smd"],
                    "en": f"SMD {_signed(v)} {'<' if low else '>'} {_signed(-t['smd'] if low else t['smd'])}: the machine "
                          f"scores {'lower' if low else 'higher'} than humans on average",
                    "zh": f"标准化均值差 SMD {_signed(v)}：机器评分平均{'低' if low else '高'}于人工评分"})
    for name, label, zh in (("qwk", "QWK", "QWK"), ("pearson", "r", "相关系数 r")):
        d = sec.get("human_human", {}).get("degradation", {}).get(name)
        if d is not None and np.isfinite(d) and d < t["degradation"]:
            out.append({"check": f"degradation_{name}", "value": d, "threshold": t["degradation"],
                        "en": f"{label} degradation {_signed(d)} < {_signed(t['degradation'])}: the machine agrees with "
                              f"humans less well than a second human does",
                        "zh": f"{zh} 退化 {_signed(d)}：机器与人工的一致性明显低于两位人工评分者之间的一致性"})
    dist = sec.get("distribution")
    if dist:
        diff = np.asarray(dist["difference"])
        over = np.flatnonzero(np.abs(diff) > t["distribution_pct"])
        if len(over):
            i = int(over[np.argmax(np.abs(diff[over]))])
            p, d, more = dist["points"][i], float(diff[i]), diff[i] > 0
            others = f" ({len(over)} score points in all)" if len(over) > 1 else ""
            out.append({"check": "distribution", "value": d, "threshold": t["distribution_pct"],
                        "en": f"at score {p:g}, machine {dist['machine_pct'][i]:.1f}% vs human {dist['human_pct'][i]:.1f}% "
                              f"({d:+.1f} points, more than {t['distribution_pct']:g}){others}: the machine gives this "
                              f"score {'more' if more else 'less'} often than humans",
                        "zh": f"分数 {p:g}：机器 {dist['machine_pct'][i]:.1f}%，人工 {dist['human_pct'][i]:.1f}%，"
                              f"相差 {abs(d):.1f} 个百分点（超过 {t['distribution_pct']:g}）：机器给出该分数的比例"
                              f"{'高' if more else '低'}于人工"})
    for col, g in sec.get("groups", {}).items():
        for level, row in g["levels"].items():
            v = row["dsm"]
            if np.isfinite(v) and abs(v) > t["dsm"]:
                high = v > 0
                out.append({"check": "dsm", "group": col, "level": level, "value": v, "threshold": t["dsm"],
                            "en": f"DSM {_signed(v)} for {col} = {level} (|DSM| > {t['dsm']:g}): relative to all writers, "
                                  f"the machine scores this group {'higher' if high else 'lower'} than humans do",
                            "zh": f"{col} = {level} 组的 DSM {_signed(v)}：相对于全体，机器对该组的评分"
                                  f"{'高' if high else '低'}于人工评分"})
    return out
