"""The evaluation report as one self-contained HTML file: tables and inline PNG plots, no script, no network.

fairseq has no counterpart; the layout follows RSMTool's ``rsmeval`` report (flags first, then agreement,
consistency with a second rater, evaluation by group and fairness). Plots are drawn on matplotlib's
``Figure`` (no pyplot state) and embedded as base64 ``data:`` URIs.
"""
from __future__ import annotations

import base64
import logging
from html import escape

import numpy as np

from scorelib.plots import png_bytes

CSS = """body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","PingFang SC",sans-serif;margin:2em;
max-width:1100px;color:#222}table{border-collapse:collapse;margin:.6em 0 1.2em}td,th{border:1px solid #bbb;
padding:3px 8px;text-align:right}th{background:#f0f0f0}td.l,th.l{text-align:left}#flags td{text-align:left}
#flags{border:2px solid #b00}#warnings td{text-align:left}.warn{color:#a50}.ok{color:#060}.small{color:#555;font-size:90%}img{max-width:100%}"""
METRIC_NAMES = {"exact_pct": "exact agreement %", "adjacent_pct": "adjacent agreement %", "qwk": "QWK",
                "qwk_nearest": "QWK (nearest rounding)", "pearson": "Pearson r", "rmse": "RMSE", "r2": "R²",
                "smd": "SMD"}


def _f(v, digits: int = 3) -> str:
    """A number for a table cell; "–" for missing or NaN."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else escape(str(v))


def _p(p) -> str:
    """A p-value: four decimals, or two significant digits below 0.001."""
    return _f(p, 4) if p is None or not np.isfinite(p) or p >= 1e-3 else f"{p:.1e}"


def _table(header, rows, left: int = 1, attrs: str = "") -> str:
    head = "".join(f"<th{' class=l' if i < left else ''}>{escape(str(h))}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{' class=l' if i < left else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table{attrs}><tr>{head}</tr>{body}</table>"


def _img(fig) -> str:
    """An ``<img>`` of the figure's PNG (:func:`scorelib.plots.png_bytes`) as a base64 ``data:`` URI; a figure that
    fails to draw is one warning and a line in its place, never the report."""
    try:
        png = png_bytes(fig)
    except Exception as e:
        logging.getLogger(__name__).warning("a report figure was not drawn (%s: %s)", type(e).__name__,
                                            " ".join(str(e).split())[:200])
        return "<p>(figure not drawn: see the log)</p>"
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def distribution_plot(dist: dict, title: str) -> str:
    """Side-by-side bars of human and machine score distributions (percent of rows per point)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 2.8))
    ax = fig.subplots()
    x = np.arange(len(dist["points"]))
    ax.bar(x - 0.2, dist["human_pct"], 0.4, label="human", color="#4477aa")
    ax.bar(x + 0.2, dist["machine_pct"], 0.4, label="machine", color="#ee7733")
    ax.set_xticks(x, [f"{p:g}" for p in dist["points"]])
    ax.set_xlabel("score")
    ax.set_ylabel("% of rows")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _img(fig)


def dsm_plot(levels: dict, column: str, threshold: float) -> str:
    """Horizontal bars of each group's DSM with the ±threshold lines."""
    from matplotlib.figure import Figure

    names = list(levels)
    fig = Figure(figsize=(5.5, 0.45 * len(names) + 1.0))
    ax = fig.subplots()
    vals = [levels[n]["dsm"] if levels[n]["dsm"] is not None and not levels[n].get("too_few") else np.nan
            for n in names]
    ax.barh(names, vals, color=["#cc3311" if abs(v) > threshold else "#999999" for v in np.nan_to_num(vals)])
    for t in (-threshold, threshold):
        ax.axvline(t, color="#cc3311", ls="--", lw=1)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"DSM by {column}")
    return _img(fig)


def flags_table(flags: list[dict]) -> str:
    if not flags:
        return '<p id="flags-none" class="ok">No threshold crossed. 未超过任何阈值。</p>'
    rows = [[escape(str(f["trait"])), escape(f["scope"]), escape(f["en"]), escape(f["zh"])] for f in flags]
    return _table(["trait", "where", "flag", "提示"], rows, left=4, attrs=' id="flags"')


def warnings_table(warnings: list[dict]) -> str:
    """The sections computed on few rows (and so, with rough intervals), in English and Chinese."""
    if not warnings:
        return ""
    rows = [[escape(str(w["trait"])), escape(w["scope"]), escape(w["en"]), escape(w["zh"])] for w in warnings]
    return "<h2>Warnings 注意</h2>" + _table(["trait", "where", "warning", "注意"], rows, left=4, attrs=' id="warnings"')


def metrics_table(sec: dict) -> str:
    rows = [[METRIC_NAMES.get(k, k), _f(v["value"], d), f"{_f(v['ci'][0], d)} .. {_f(v['ci'][1], d)}"]
            for k, v in sec["metrics"].items() for d in [1 if k.endswith("_pct") else 3]]
    return _table(["metric", "value", "95% interval"], rows)


def section_html(sec: dict, title: str, thresholds: dict) -> str:
    """One section: descriptives, agreement with intervals, distributions, confusion matrix, consistency, groups."""
    parts = [f'<p class="warn">{escape(w["en"])} {escape(w["zh"])}</p>' for w in sec.get("warnings", [])]
    parts += [_table(["", "N", "mean", "SD"], [["human", sec["n"], _f(sec["human"]["mean"]), _f(sec["human"]["sd"])],
                                               ["machine", sec["n"], _f(sec["machine"]["mean"]), _f(sec["machine"]["sd"])]]),
              f'<p class="small">machine SD / human SD: {_f(sec.get("sd_ratio"), 2)} (flagged below '
              f'{thresholds["sd_ratio"]:g})</p>', metrics_table(sec)]
    if "distribution" in sec:
        d = sec["distribution"]
        rows = [[f"{p:g}", _f(h, 1), _f(m, 1), _f(x, 1)] for p, h, m, x in
                zip(d["points"], d["human_pct"], d["machine_pct"], d["difference"])]
        parts += ["<h4>Score distributions</h4>", _table(["score", "human %", "machine %", "difference"], rows),
                  distribution_plot(d, title)]
        parts += ["<h4>Confusion matrix (rows: human, columns: machine)</h4>", _confusion(sec["confusion"])]
    if "human_human" in sec:
        parts.append(consistency_html(sec["human_human"]))
    for col, g in sec.get("groups", {}).items():
        parts.append(group_html(col, g, thresholds))
    return "\n".join(parts)


def _confusion(c: dict) -> str:
    pts = [f"{p:g}" for p in c["points"]]
    return _table([""] + pts, [[p] + list(map(str, row)) for p, row in zip(pts, c["matrix"])])


def consistency_html(hh: dict) -> str:
    m, d, p = hh["metrics"], hh["degradation"], hh["prmse"]
    rows = [[METRIC_NAMES.get(k, k), _f(m.get(k), n), _f(d.get(k), n)]
            for k, n in (("exact_pct", 1), ("adjacent_pct", 1), ("qwk", 3), ("pearson", 3), ("smd", 3)) if k in m]
    return "\n".join([
        f"<h4>Second human rater (N = {hh['n']} double-scored)</h4>",
        _table(["metric", "human–human", "degradation (human–machine minus human–human)"], rows),
        _table(["", "value"], [["disattenuated r (r_hm / √r_hh)", _f(hh["disattenuated_r"])],
                               ["PRMSE (true score)", _f(p["prmse"])], ["variance of human errors", _f(p["var_errors"])],
                               ["true score variance", _f(p["var_true"])], ["MSE (true score)", _f(p["mse_true"])]])])


def group_html(col: str, g: dict, thresholds: dict) -> str:
    few = f"fewer than {g.get('min_n_per_group', '?')} rows"
    rows = [[escape(level), r["n"], _f(r["human"]["mean"]), _f(r["machine"]["mean"]), _f(r["rmse"]), _f(r["qwk"]),
             _f(r["pearson"]), few if r.get("too_few") else _f(r["dsm"]),
             "" if r.get("too_few") else f"{_f(r.get('dsm_ci', [None])[0])} .. {_f(r.get('dsm_ci', [None, None])[1])}"]
            for level, r in g["levels"].items()]
    parts = [f"<h4>By {escape(col)}</h4>",
             _table([col, "N", "human mean", "machine mean", "RMSE", "QWK", "r", "DSM", "DSM 95% interval"], rows)]
    if g.get("note"):
        parts.append(f'<p class="small">{escape(g["note"])}</p>')
    if g["n_missing"]:
        parts.append(f'<p class="small">{g["n_missing"]} row(s) without a value in {escape(col)} are left out.</p>')
    if len(g["levels"]) > 1 and any(not r.get("too_few") for r in g["levels"].values()):
        parts.append(dsm_plot(g["levels"], col, thresholds["dsm"]))
    fair = g.get("fairness")
    if fair:
        names = {"osa": "overall score accuracy (OSA)", "osd": "overall score difference (OSD)",
                 "csd": "conditional score difference (CSD)"}
        parts += [_table(["analysis", "adjusted R²", "p-value"],
                         [[names[k], _f(fair[k]["r2"], 4), _p(fair[k]["p"])] for k in names]),
                  f'<p class="small">Base group: {escape(fair["base_group"])} (the largest).</p>']
    return "\n".join(parts)


def _source(src: dict) -> str:
    """Where the rows came from: the result file, or a frame in memory (``report_of`` without ``source``)."""
    if src.get("results_file"):
        return f"Result file {escape(str(src['results_file']))}"
    return "A result frame in memory"


def render_html(report: dict, title: str) -> str:
    """The whole report: the flags table first, then one part per trait (all prompts pooled, then each prompt).

    Args:
        report (dict): the output of :func:`scorelib.report.builder.make_report` (before JSON conversion) or of
            :func:`scorelib.report.builder.report_of` (a frame in memory: no result file to name).
        title (str): shown at the top.

    Returns:
        str: a complete HTML document (UTF-8), with no script and no external resource.
    """
    t, src = report["thresholds"], report["source"]
    out = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
           f"<style>{CSS}</style></head><body>",
           f"<h1>Evaluation report: {escape(title)}</h1>",
           f'<p class="small">{_source(src)}; {src["bootstrap"]} bootstrap resamples '
           f'(seed {src["seed"]}) within prompts for the 95% intervals.</p>',
           "<h2>Flags 提示</h2>", flags_table(report["flags"]),
           f'<p class="small">Thresholds: |SMD| &gt; {t["smd"]:g}; machine SD below {t["sd_ratio"]:g} of the human SD; '
           f'|DSM| &gt; {t["dsm"]:g} with its whole 95% interval beyond it, for groups of at least '
           f'{src.get("min_n_per_group", "?")} rows (RSMTool\'s min_n_per_group); degradation of QWK or r '
           f'below {t["degradation"]:g}; a score distribution difference of more than {t["distribution_pct"]:g} '
           f'percentage points (Williamson, Xi and Breyer 2012; RSMTool); cut-points that raise QWK by more than '
           f'{t["cutpoint_gain"]:g} over nearest rounding where the machine SD is below that ratio; a higher machine '
           f'score rounded more than one step below a lower one. Fewer than {t.get("min_rows", 30)} rows: a warning.</p>',
           warnings_table(report.get("warnings", []))]
    for trait, per in report["traits"].items():
        out.append(f"<h2>{escape(trait)}</h2>")
        if per["n_unlabeled"]:
            out.append(f'<p class="small">{per["n_unlabeled"]} row(s) without a human score are left out.</p>')
        scaled = per["overall"].get("scale") == "0-1"
        out += ["<h3>All prompts: pooled over prompts" + (", on one 0-1 scale" if scaled else "") + "</h3>",
                f'<p class="small">Pooled on {escape(per.get("pooled_scale", "their own scale"))}.</p>',
                section_html(per["overall"], f"{trait}: all prompts", t)]
        rows = [[escape(p), s["n"], _f(s["human"]["mean"]), _f(s["machine"]["mean"]),
                 _f(s["metrics"].get("qwk", {}).get("value")), _f(s["metrics"]["pearson"]["value"]),
                 _f(s["metrics"]["rmse"]["value"]), _f(s["metrics"]["smd"]["value"])] for p, s in per["per_prompt"].items()]
        out += ["<h3>By prompt</h3>", _table(["prompt", "N", "human mean", "machine mean", "QWK", "r", "RMSE", "SMD"], rows)]
        for p, s in per["per_prompt"].items():
            out += [f"<details><summary>Prompt {escape(p)}</summary>", section_html(s, f"{trait}: prompt {p}", t),
                    "</details>"]
    out.append("</body></html>")
    return "\n".join(out)
