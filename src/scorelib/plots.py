"""The gold-vs-predicted figure of the result files and the widget: one panel per prompt, on its own range.

No fairseq counterpart (the notes' ``evaluate`` writes a table only). Prompts have their own scales, so a
figure pooled over them misleads (a Pearson over prompts of 0..3 and 1..6 is high even where the model
gives every answer of a prompt the same score): each prompt gets its own panel (facets, up to
:data:`MAX_FACETS`), its own figures in its title, and overall figures are means of the per-prompt ones,
saying so. Rubric scores tie, so the gold axis gets a small seeded jitter and the points are translucent.
Titles are bilingual where matplotlib finds a font with Chinese glyphs (:func:`cjk_font`), English otherwise.
"""
from __future__ import annotations

import functools
import io
import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)
MAX_FACETS = 12  # more prompts than this share one panel
JITTER = 0.15  # of a rubric step, each way, on the gold axis
CJK_NAMES = ("Noto Sans CJK", "Noto Serif CJK", "Source Han Sans", "WenQuanYi", "SimHei", "Microsoft YaHei",
             "PingFang", "Heiti", "AR PL", "Droid Sans Fallback")


@functools.lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of an installed font with Chinese glyphs (``None`` if there is none).

    Looks in matplotlib's font list, then once in the system's font folders (a font installed after
    matplotlib built its cache, e.g. Debian's ``fonts-noto-cjk``), and adds the file it finds.
    """
    from matplotlib import font_manager

    def known():
        names = sorted({f.name for f in font_manager.fontManager.ttflist}, key=lambda n: (not n.endswith(" SC"), n))
        return next((n for want in CJK_NAMES for n in names if n.startswith(want)), None)  # simplified first

    if (name := known()) is None:
        for path in font_manager.findSystemFonts():
            if any(w.replace(" ", "").lower() in path.replace("-", "").replace("_", "").lower()
                   for w in ("NotoSansCJK", "SourceHanSans", "wqy", "SimHei", "msyh", "DroidSansFallback")):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        name = known()
    return name


def save_figure(fig, target, dpi: int) -> None:
    """``fig.savefig`` (PNG, ``bbox_inches="tight"``) with every text drawn as text: a prompt id or group name
    such as ``$\\foo$`` is shown as typed, never parsed as mathtext (which would fail, or change it)."""
    import matplotlib
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
    with matplotlib.rc_context({"text.parse_math": False}):  # and the tick labels made while drawing
        fig.savefig(target, format="png", dpi=dpi, bbox_inches="tight")


def png_bytes(fig, dpi: int = 90) -> bytes:
    """A figure as PNG bytes (:func:`save_figure`), as the widget shows it and the report inlines it; the
    figure is left open (scorelib's figures are not registered with pyplot, so nothing holds them)."""
    buf = io.BytesIO()
    save_figure(fig, buf, dpi)
    return buf.getvalue()


def bilingual(en: str, zh: str) -> str:
    """``"en / zh"`` where a CJK font is installed, else ``en`` alone (no missing-glyph warnings)."""
    return f"{en} / {zh}" if cjk_font() else en


def fonts() -> dict:
    """Text keyword arguments that render Chinese where a CJK font is installed."""
    name = cjk_font()
    return {"fontfamily": ["DejaVu Sans", name]} if name else {}


def score_view(frame: pd.DataFrame, table, name: str) -> pd.DataFrame:
    """One score's columns of a results frame under the single-score names ``gold, pred, pred_rounded``."""
    i = list(table.views).index(name)
    return frame.rename(columns={table.scores.suffixed(c)[i]: c for c in ("gold", "pred", "pred_rounded")})


def figures_line(m: dict | None, n: int | None = None) -> str:
    """``"QWK 0.612 · Pearson 0.803 · RMSE 0.700  (n=40)"`` of one metrics dict (``None`` or missing: left out)."""
    if not m:
        return ""
    parts = [f"{name} {m[k]:.3f}" for name, k in (("QWK", "qwk"), ("Pearson", "pearson"), ("RMSE", "rmse"))
             if m.get(k) is not None]
    return (" · ".join(parts) or "metrics undefined") + (f"  (n={n})" if n is not None else "")


def mean_line(metrics: dict, pids) -> str:
    """The figure's overall line: each metric's mean over the drawn prompts' own figures, saying so."""
    per = [metrics["per_prompt"][p] for p in pids if p in metrics.get("per_prompt", {})]
    names = {"qwk": "QWK", "pearson": "Pearson", "rmse": "RMSE"}
    means = [f"{names[k]} {np.mean(v):.3f}" for k in names if (v := [m[k] for m in per if m.get(k) is not None])]
    if not means:
        return f"metrics undefined (n={metrics['n']})"
    return (bilingual("mean of per-prompt " + ", ".join(means), "各题指标的平均")
            + f"  (n={metrics['n']}, {len(per)} prompts)")


def draw_panel(ax, frame: pd.DataFrame, table, pids, colors, new_score=None) -> None:
    """Scatter ``pids``' labeled rows (gold jittered where ``table.step``) on one axes, with y = x."""
    rng = np.random.default_rng(0)  # the same jitter on every run
    step = table.step
    for pid, color in zip(pids, colors):
        rows = frame[(frame["prompt"].astype(str) == pid) & np.isfinite(frame["gold"].to_numpy(np.float64))]
        gold = rows["gold"].to_numpy(np.float64)
        x = gold + (rng.uniform(-JITTER, JITTER, len(gold)) * step if step else 0.0)
        ax.scatter(x, rows["pred"], s=14, alpha=0.45, color=color, linewidths=0, label=f"{pid} (n={len(rows)})")
    lo, hi = min(table.ranges[p][0] for p in pids), max(table.ranges[p][1] for p in pids)
    pad = 0.05 * (hi - lo) + (JITTER * step if step else 0.0)
    ax.plot([lo, hi], [lo, hi], color="0.4", linestyle="--", linewidth=1, label="y = x")
    if new_score is not None:
        ax.axhline(float(new_score), color="tab:red", linewidth=1.5, label=f"new text: {float(new_score):.2f}")
    jittered = f", jittered ±{JITTER * step:g}" if step else ""
    ax.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad), aspect="equal")
    ax.set_xlabel(bilingual(f"gold score{jittered}", "人工评分"), **fonts())
    ax.set_ylabel(bilingual("predicted score", "预测分数"), **fonts())


def plot_gold_vs_pred(frame, table, metrics=None, ax=None, title=None, prompts=None, new_score=None, trait=None,
                      figure=None):
    """Gold (x) against predicted (y) scores with y = x: one panel per prompt on its own range.

    With ``ax`` (or one prompt, or more than :data:`MAX_FACETS`) every drawn prompt shares one panel, one
    colour each; otherwise each prompt gets a panel (facets) titled with its own QWK, Pearson and RMSE, and
    the figure's title gives the mean of the per-prompt figures, saying so. Rubric scores are jittered on
    the gold axis (seeded; the axis label says so) and drawn translucent, so tied points show.

    Args:
        frame (pd.DataFrame): a :func:`~scorelib.results.results_frame` (or its CSV read back); unlabeled rows
            are skipped.
        table (PromptTable): ranges (and step) for the axes.
        metrics (dict, optional): a :func:`scorelib.metrics.compute_metrics` dict, for the titles.
        ax (matplotlib.axes.Axes, optional): draw here, in one panel; a new Figure is made if ``None``.
        title (str, optional): the title's first line.
        prompts (list[str], optional): only these prompts (default: all in ``frame``).
        new_score (float, optional): a newly scored text, drawn as a horizontal line.
        trait (str, optional): with traits, the one to draw (default: the first); its name ends the title.
        figure (matplotlib Figure or SubFigure, optional): where to draw the facets (default: a new Figure).

    Returns:
        matplotlib.figure.Figure: the figure holding the plot (not registered with pyplot).
    """
    import matplotlib
    from matplotlib.figure import Figure

    trait = trait or next(iter(table.views))
    frame = score_view(frame, table, trait)
    metrics = None if metrics is None else metrics.get("traits", {trait: metrics})[trait]
    title = " · ".join(t for t in (title, trait if table.traits else None) if t) or None  # a trait's name ends it
    table = table.for_trait(trait)
    present = set(frame["prompt"].astype(str))
    pids = [p for p in table.ids if p in present and (prompts is None or p in prompts)]
    pids = pids or [p for p in (prompts or table.ids) if p in table.ids][:1]
    cmap = matplotlib.colormaps["tab10" if len(pids) <= 10 else "tab20"]
    colors = [cmap(i % cmap.N) for i in range(len(pids))]
    one_panel = ax is not None or len(pids) == 1 or len(pids) > MAX_FACETS
    lines = [title] if title else []
    if one_panel:
        if ax is None:
            ax = (figure or Figure(figsize=(6, 6))).add_subplot()
        draw_panel(ax, frame, table, pids, colors, new_score)
        if len(pids) <= MAX_FACETS:  # a legend of dozens of prompts would cover the points
            ax.legend(title="prompt", fontsize="small", loc="upper left")
        if len(pids) > 1:
            note = f"{len(pids)} prompts in one panel" + (f" (more than {MAX_FACETS}: no facets)"
                                                        if len(pids) > MAX_FACETS else "")
            ax.text(0.98, 0.02, note, transform=ax.transAxes, ha="right", va="bottom", fontsize="small")
        if metrics is not None:
            single = len(pids) == 1 and pids[0] in metrics.get("per_prompt", {})
            lines.append(figures_line(metrics["per_prompt"][pids[0]], metrics["per_prompt"][pids[0]]["n"])
                         if single else mean_line(metrics, pids))
        ax.set_title("\n".join(lines), fontsize="medium", **fonts())
        return ax.figure
    rows, cols = grid(len(pids))
    fig = figure or Figure(figsize=(4.2 * cols, 4.4 * rows + 0.8))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for a, pid, color in zip(axes, pids, colors):
        draw_panel(a, frame, table, [pid], [color], new_score)
        m = (metrics or {}).get("per_prompt", {}).get(pid)
        head = f"{pid} ({table.ranges[pid][0]:g}–{table.ranges[pid][1]:g})" + (f", n={m['n']}" if m else "")
        a.set_title("\n".join(t for t in (head, figures_line(m)) if t), fontsize="small")
    for a in axes[len(pids):]:
        a.set_visible(False)
    if metrics is not None:
        lines.append(mean_line(metrics, pids))
    lines.append(bilingual("gold vs predicted, one panel per prompt", "人工评分与预测分数，每题一图"))
    fig.suptitle("\n".join(lines), fontsize="medium", **fonts())
    return fig if isinstance(fig, Figure) else fig.figure


def grid(n: int) -> tuple[int, int]:
    """Rows and columns of the facets of ``n`` prompts (at most 4 columns; one panel beyond :data:`MAX_FACETS`)."""
    if n <= 1 or n > MAX_FACETS:
        return 1, 1
    cols = min(n, 4)
    return -(-n // cols), cols


def plot_results(frame, metrics, table, title=None):
    """The result files' figure: :func:`plot_gold_vs_pred`'s facets, a row of them per score (trait).

    Returns:
        matplotlib.figure.Figure: not registered with pyplot.
    """
    from matplotlib.figure import Figure

    rows, cols = grid(len(set(frame["prompt"].astype(str))))
    size = (4.2 * cols, 4.4 * rows + 0.9) if rows * cols > 1 else (6.0, 6.6)
    fig = Figure(figsize=(size[0], size[1] * table.num_traits))
    for sub, name in zip(fig.subfigures(table.num_traits, 1, squeeze=False)[:, 0], table.views):
        plot_gold_vs_pred(frame, table, metrics, title=title, trait=name, figure=sub)
    return fig
