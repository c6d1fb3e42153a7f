"""The evaluation report's figures: sections of human and machine scores, with intervals and flags.

fairseq has no counterpart; this is RSMTool's ``rsmeval`` analyses (``evaluation``, ``consistency``,
``evaluation_by_group``, ``fairness_analyses``, ``true_score_evaluation``) for one trait of scorelib's
result rows, built on :mod:`scorelib.report.agreement`. It reads no files: :mod:`scorelib.report.builder` does.
"""
from __future__ import annotations

import zlib

import numpy as np

from scorelib import metrics
from scorelib.cutpoints.thresholds import FLAT_QWK_GAIN, FLAT_SD_RATIO, order_breaks
from scorelib.report import agreement

THRESHOLDS = {"smd": 0.15, "dsm": 0.1, "degradation": -0.10, "distribution_pct": 5.0, "sd_ratio": FLAT_SD_RATIO,
              "cutpoint_gain": FLAT_QWK_GAIN}
MIN_ROWS = 30  # a section of fewer labeled rows: its figures and intervals carry a warning
MIN_N_PER_GROUP = 30  # RSMTool's min_n_per_group: a smaller group gets no DSM, QWK or r and no fairness model
BOOT_CHUNK = 200  # resamples scored at once (memory: BOOT_CHUNK x N per array)


def rubric_points(ranges, step) -> list[float]:
    """Every rubric point of the given ``(min, max)`` ranges with ``step``, sorted (union over prompts)."""
    points = {round(lo + i * step, 9) for lo, hi in ranges for i in range(int(round((hi - lo) / step)) + 1)}
    return sorted(points)


def section(h, m, rounded, strata, points=None, step=None, nearest=None, h2=None, groups=None,
            n_boot: int = 1000, seed=(1,), min_n_per_group: int = MIN_N_PER_GROUP) -> dict:
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
        min_n_per_group (int): a group of fewer rows gets N and means only (RSMTool's ``min_n_per_group``).

    Returns:
        dict: ``n``, ``human``/``machine`` (mean, sd), ``sd_ratio`` (machine SD / human SD), ``metrics``
        ({name: {"value", "ci"}}), ``distribution``, ``confusion`` and ``order_breaks`` (with a step),
        ``human_human`` (with ``h2``), ``groups`` (with ``groups``), ``warnings`` (fewer than :data:`MIN_ROWS` rows).
    """
    h, m = np.asarray(h, np.float64), np.asarray(m, np.float64)
    kw = {} if step is None else {"rounded": np.asarray(rounded, np.float64), "tolerance": step,
                                  "nearest": None if nearest is None else np.asarray(nearest, np.float64)}
    values = metrics.pair_metrics(h, m, **kw)
    cis = _bootstrap(h, m, kw, strata, n_boot, seed) if n_boot and len(h) else {}
    human, machine = agreement.describe(h), agreement.describe(m)
    out = {"n": int(len(h)), "human": human, "machine": machine,
           "sd_ratio": machine["sd"] / human["sd"] if human["sd"] > 0 else np.nan,
           "metrics": {k: {"value": float(v), "ci": cis.get(k, [np.nan, np.nan])} for k, v in values.items()}}
    if step is not None and points:
        out["distribution"] = agreement.distribution(h, kw["rounded"], points)
        out["confusion"] = {"points": list(points), "matrix": agreement.confusion(h, kw["rounded"], points)}
    if step is not None:
        out["order_breaks"] = order_breaks(m, kw["rounded"], strata, slack=step)
    if h2 is not None:
        out["human_human"] = human_human(h, m, np.asarray(h2, np.float64), values, step, points)
    if groups:
        idx = agreement.bootstrap_indices(strata, n_boot, seed) if n_boot and len(h) else None
        out["groups"] = {col: by_group(h, m, kw.get("rounded"), np.asarray(g, dtype=object), min_n_per_group, idx)
                         for col, g in groups.items()}
    if len(h) < MIN_ROWS:
        out["warnings"] = [{"check": "few_rows", "n": int(len(h)), "min_rows": MIN_ROWS,
                            "en": f"only {len(h)} rows (fewer than {MIN_ROWS}): every figure and interval here is "
                                  f"rough; a few more or other texts could change it a lot",
                            "zh": f"只有 {len(h)} 行（少于 {MIN_ROWS}）：这里的每个数字和区间都很粗略，多几篇或换几篇文本就可能大变"}]
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


def by_group(h, m, rounded, groups, min_n: int = MIN_N_PER_GROUP, idx=None) -> dict:
    """Per group: N, means and SDs, RMSE, r, QWK, DSM with its interval; and RSMTool's OSA/OSD/CSD fairness analyses.

    DSM standardizes by the mean and SD of every row of the section (rows without a group included, as
    RSMTool's population); rows whose group is "" are left out of the groups and of the fairness models. A group
    of fewer than ``min_n`` rows (RSMTool's ``min_n_per_group``) gets its N and means only (``too_few``) and is
    left out of the fairness models; a column with one group has no DSM (``note``: nothing to compare).

    Args:
        idx (np.ndarray | None, shape (B, N)): bootstrap resamples of the section's rows (``dsm_ci``); None: none.
    """
    pop = agreement.describe(h), agreement.describe(m)
    names = np.asarray([str(g) for g in groups], dtype=object)
    levels = sorted({g for g in names if g != ""})
    out = {"levels": {}, "n_missing": int((names == "").sum()), "min_n_per_group": int(min_n)}
    big = [lv for lv in levels if (names == lv).sum() >= min_n]
    cis = _dsm_intervals(h, m, names, big, idx) if idx is not None and len(levels) > 1 else {}
    for level in levels:
        rows = names == level
        row = {"n": int(rows.sum()), "human": agreement.describe(h[rows]), "machine": agreement.describe(m[rows])}
        if level not in big:
            row.update(rmse=np.nan, pearson=np.nan, qwk=np.nan, dsm=np.nan, dsm_ci=[np.nan, np.nan], too_few=True)
        else:
            vals = metrics.pair_metrics(h[rows], m[rows], **({} if rounded is None else {"rounded": rounded[rows]}))
            dsm = agreement.dsm(h[rows], m[rows], pop[0]["mean"], pop[0]["sd"], pop[1]["mean"], pop[1]["sd"]) \
                if len(levels) > 1 else np.nan
            row.update(rmse=float(vals["rmse"]), pearson=float(vals["pearson"]), qwk=float(vals.get("qwk", np.nan)),
                       dsm=dsm, dsm_ci=cis.get(level, [np.nan, np.nan]), too_few=False)
        out["levels"][level] = row
    if len(levels) == 1:
        out["note"] = (f"one group only ({levels[0]}): DSM compares a group with all writers, so there is nothing to "
                       f"compare")
    elif len(big) < len(levels):
        out["note"] = (f"{len(levels) - len(big)} group(s) of fewer than {min_n} rows (min_n_per_group): N and means "
                       f"only, left out of DSM flags and the fairness analyses")
    kept = np.isin(names, big)
    out["fairness"] = agreement.fairness(h[kept], m[kept], names[kept]) if len(big) > 1 else None
    return out


def _dsm_intervals(h, m, names, levels, idx) -> dict:
    """Percentile 95% interval of each level's DSM over the resamples ``idx`` (population re-standardized in each)."""
    draws = {lv: [] for lv in levels}
    for lo in range(0, len(idx), BOOT_CHUNK):
        i = idx[lo:lo + BOOT_CHUNK]
        hb, mb, gb = h[i], m[i], names[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (mb - mb.mean(1, keepdims=True)) / mb.std(1, ddof=1, keepdims=True) \
                - (hb - hb.mean(1, keepdims=True)) / hb.std(1, ddof=1, keepdims=True)
            for lv in levels:
                mask = gb == lv
                draws[lv].append(np.where(mask, z, 0.0).sum(1) / mask.sum(1))
    return {lv: agreement.percentile_interval(np.concatenate(v)) for lv, v in draws.items()}


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

    Thresholds (:data:`THRESHOLDS`): |SMD| > 0.15; machine SD below 0.5 of the human SD; |DSM| > 0.1 for a group of
    at least ``min_n_per_group`` rows, its whole interval beyond 0.1 (the point value where there is no interval);
    degradation of QWK or r below -0.10; a difference of more than 5 percentage points at any score point;
    cut-points that raise QWK by more than 0.1 over nearest rounding while the machine SD is below that ratio; a
    higher machine score rounded to a lower mark than a lower one (cut-points of several folds).

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


def warnings(report: dict) -> list[dict]:
    """Every section of a report computed on fewer than :data:`MIN_ROWS` rows, and every group table with a note.

    Returns:
        list[dict]: ``{"trait", "scope", "check", "en", "zh"}`` each.
    """
    out = []
    for trait, per in report["traits"].items():
        for scope, sec in [("overall", per["overall"])] + [(f"prompt {p}", s) for p, s in per["per_prompt"].items()]:
            if scope != "overall" and len(per["per_prompt"]) == 1:
                continue
            out += [dict(trait=trait, scope=scope, **w) for w in sec.get("warnings", [])]
    return out


def section_flags(sec: dict) -> list[dict]:
    """The flags of one :func:`section` (without trait and scope)."""
    t, out = THRESHOLDS, []
    ratio = sec.get("sd_ratio", np.nan)
    flat = ratio is not None and np.isfinite(ratio) and ratio < t["sd_ratio"]
    if flat:
        hs, ms = sec["human"]["sd"], sec["machine"]["sd"]
        out.append({"check": "sd_ratio", "value": ratio, "threshold": t["sd_ratio"],
                    "en": f"machine SD {ms:.3g} is {ratio:.2f} of the human SD {hs:.3g} (below {t['sd_ratio']:g}): the "
                          f"machine's scores barely vary, so they say little about which text is better",
                    "zh": f"机器评分的标准差 {ms:.3g} 只有人工评分标准差 {hs:.3g} 的 {ratio:.2f}（低于 {t['sd_ratio']:g}）："
                          f"机器评分几乎不随文本变化，难以区分文本的好坏"})
    q, near = (sec["metrics"].get(k, {}).get("value") for k in ("qwk", "qwk_nearest"))
    if flat and q is not None and near is not None and np.isfinite(q) and np.isfinite(near) \
            and q - near > t["cutpoint_gain"]:
        out.append({"check": "cutpoint_gain", "value": q - near, "threshold": t["cutpoint_gain"],
                    "en": f"cut-points raise QWK from {near:.3f} (nearest rounding) to {q:.3f} on a machine whose scores "
                          f"barely vary: the thresholds are squeezed into a narrow band of predictions, and the gain is "
                          f"theirs, not the model's",
                    "zh": f"切分点把 QWK 从 {near:.3f}（就近取整）提高到 {q:.3f}，而机器评分几乎不变：阈值被挤进很窄的预测区间，"
                          f"提高来自阈值而不是模型"})
    breaks = sec.get("order_breaks", 0)
    if breaks:
        out.append({"check": "order", "value": breaks, "threshold": 0,
                    "en": f"{breaks} row(s) got a mark more than one step below that of a lower machine score of the same "
                          f"prompt (predictions rounded by different cut-points, as cross-fitted folds are): marks do "
                          f"not follow the scores",
                    "zh": f"{breaks} 行的分数档比同一题中机器分更低的文本低一档以上（不同的切分点取整，如交叉拟合的各折）：分数档与机器分的顺序不一致"})
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
            v, ci = row["dsm"], row.get("dsm_ci", [np.nan, np.nan])
            if row.get("too_few") or not np.isfinite(v) or abs(v) <= t["dsm"]:
                continue
            sure = ci[0] is not None and ci[1] is not None and np.isfinite(ci[0]) and np.isfinite(ci[1])
            if sure and not (ci[0] > t["dsm"] or ci[1] < -t["dsm"]):
                continue  # the interval reaches back inside the threshold: no evidence of a difference
            high = v > 0
            where = f"95% interval {ci[0]:+.2f} .. {ci[1]:+.2f}".replace("-", "\u2212") if sure else "no interval"
            out.append({"check": "dsm", "group": col, "level": level, "value": v, "threshold": t["dsm"],
                        "en": f"DSM {_signed(v)} for {col} = {level} (N = {row['n']}, {where}; |DSM| > {t['dsm']:g}): "
                              f"relative to all writers, the machine scores this group {'higher' if high else 'lower'} "
                              f"than humans do",
                        "zh": f"{col} = {level} 组（N = {row['n']}）的 DSM {_signed(v)}：相对于全体，机器对该组的评分"
                              f"{'高' if high else '低'}于人工评分"})
    return out
