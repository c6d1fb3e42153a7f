"""Evaluate a checkpoint: rescale predictions per prompt, score them, write tables and a plot.

This mirrors the seed's ``evaluate(self, result_triples, ckpt_name)`` from the user's
``task.py`` (see SEED_NOTES.md). fairseq has no such file; the closest is ``validate`` in
``fairseq_cli/train.py``. The seed's bugs are fixed here: predictions are rescaled as arrays
(not ``list * float``), with each prompt's own min/max (not one global range), and the
table has one header per column.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.prompts import PromptTable

COLUMNS = ["key", "prompt", "gold", "pred", "pred_rounded", "text"]
TEXT_COLUMNS = ("key", "prompt", "text")
METRICS = ("qwk", "pearson", "spearman", "rmse")
XLSX_MAX_CHARS = 32767  # Excel's limit for one cell
# characters XML 1.0 cannot carry (openpyxl refuses them): C0 controls but tab/LF/CR,
# lone surrogates and the two non-characters U+FFFE / U+FFFF
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def results_frame(keys, prompts, gold01, pred01, texts, table: PromptTable) -> pd.DataFrame:
    """One row per scored text, with gold and predicted scores on the prompt's own scale.

    Args:
        keys (Sequence[str]): row keys, length N.
        prompts (Sequence[str]): prompt id per row, length N; each must be in ``table``.
        gold01 (array-like, shape (N,)): gold scores in [0, 1]; NaN for unlabeled rows.
        pred01 (array-like, shape (N,)): model outputs (``encoder_out``) in [0, 1].
        texts (Sequence[str]): the scored texts, length N.
        table (PromptTable): ranges and rounding step per prompt.

    Returns:
        pd.DataFrame: columns ``key, prompt, gold, pred, pred_rounded, text`` in input
        order; ``gold``/``pred`` are ``x * (max - min) + min`` per prompt and
        ``pred_rounded`` is ``pred`` rounded to ``table.step`` and clipped to the range.
    """
    keys, prompts, texts = ([str(v) for v in col] for col in (keys, prompts, texts))
    gold01, pred01 = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (gold01, pred01))
    sizes = [len(keys), len(prompts), len(gold01), len(pred01), len(texts)]
    if len(set(sizes)) != 1:
        raise ValueError(f"keys, prompts, gold01, pred01, texts must have one length, got {sizes}")
    unknown = sorted(set(prompts) - set(table.ids))
    if unknown:
        raise KeyError(f"prompts not in the prompt table: {', '.join(unknown[:10])}; known: {', '.join(table.ids)}")
    pred = table.unscale(pred01, prompts)
    return pd.DataFrame({
        "key": pd.Series(keys, dtype=object), "prompt": pd.Series(prompts, dtype=object),
        # gold went through [0, 1] and back: drop the last bits of float error (4.000000000000001 -> 4.0)
        "gold": np.round(table.unscale(gold01, prompts), 10), "pred": pred,
        "pred_rounded": table.round(pred, prompts), "text": pd.Series(texts, dtype=object),
    }, columns=COLUMNS)


def _is_constant(x: np.ndarray) -> bool:
    """True when ``x`` has no spread (up to float noise), where correlations are undefined."""
    return float(np.ptp(x)) <= 1e-9 * max(1.0, float(np.max(np.abs(x))))


def _labels(gold, rounded, step: float, ends) -> dict:
    """Integer QWK labels ``round(score / step)`` and the label range spanning ``ends`` and the data."""
    g, r = (np.round(np.nan_to_num(np.asarray(x) / step, posinf=0, neginf=0)).astype(np.int64) for x in (gold, rounded))
    span = np.concatenate([np.round(np.asarray(ends, dtype=np.float64) / step).astype(np.int64), g, r])
    return {"gold_labels": g, "pred_labels": r, "label_range": (int(span.min()), int(span.max()))}


def _pair_metrics(gold, pred, gold_labels=None, pred_labels=None, label_range=None, step=None):
    """QWK / Pearson / Spearman / RMSE of one group of labeled rows, with reasons for undefined ones."""
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
        out["spearman"] = float(spearmanr(gold, pred).statistic)
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


def compute_metrics(frame: pd.DataFrame, table: PromptTable) -> dict:
    """Per-prompt and overall agreement between gold and predicted scores.

    QWK (only when ``table.step`` is set) uses integer labels ``round((score - min) / step)``
    per prompt and ``round(score / step)`` when pooled, from ``gold`` and ``pred_rounded``;
    Pearson, Spearman and RMSE use the unrounded ``pred`` on the prompts' own scales.
    Rows with NaN gold are left out and counted in ``n_unlabeled``. A metric that is
    undefined is ``None`` with its reason under ``"undefined"`` and is left out of means.
    Constant predictions with varied gold give QWK 0 (defined), not ``None``.

    Args:
        frame (pd.DataFrame): the output of :func:`results_frame`.
        table (PromptTable): ranges and step.

    Returns:
        dict: JSON-serialisable ``{"n", "n_unlabeled", "n_rows", "step", "overall": {...},
        "per_prompt": {pid: {...}}, "undefined": {metric: reason}}``.
    """
    step = None if table.step is None else float(table.step)
    gold_all = frame["gold"].to_numpy(dtype=np.float64)
    labeled = frame[np.isfinite(gold_all)]
    gold = labeled["gold"].to_numpy(dtype=np.float64)
    pred = labeled["pred"].to_numpy(dtype=np.float64)
    rounded = labeled["pred_rounded"].to_numpy(dtype=np.float64)
    present = set(frame["prompt"])
    per_prompt = {}
    for pid in (p for p in table.ids if p in present):
        rows = (labeled["prompt"] == pid).to_numpy()
        lo, hi = table.ranges[pid]
        kw = {} if step is None else _labels(gold[rows] - lo, rounded[rows] - lo, step, [0.0, hi - lo])
        vals, why = _pair_metrics(gold[rows], pred[rows], step=step, **kw)
        per_prompt[pid] = {"n": int(rows.sum()), "n_unlabeled": int((frame["prompt"] == pid).sum() - rows.sum()),
                           **vals, "undefined": why}
    ends = [v for p in per_prompt for v in table.ranges[p]]
    kw = {} if step is None else _labels(gold, rounded, step, ends)
    pooled, why = _pair_metrics(gold, pred, step=step, **kw)
    qwks = [m["qwk"] for m in per_prompt.values() if m["qwk"] is not None]
    overall = {"qwk": float(np.mean(qwks)) if qwks else None, "qwk_pooled": pooled["qwk"],
               "pearson": pooled["pearson"], "spearman": pooled["spearman"], "rmse": pooled["rmse"],
               "n_qwk_prompts": len(qwks)}
    undefined = {("qwk_pooled" if m == "qwk" else m): r for m, r in why.items()}
    if not qwks:
        undefined["qwk"] = ("continuous target (step is None)" if step is None
                            else "QWK undefined for every prompt")
    return {"n": int(len(labeled)), "n_unlabeled": int(len(frame) - len(labeled)), "n_rows": int(len(frame)),
            "step": step, "overall": overall, "per_prompt": per_prompt, "undefined": undefined}


def flat_metrics(metrics: dict) -> dict:
    """The scalar view the trainer reads for ``--best-checkpoint-metric``.

    Args:
        metrics (dict): the output of :func:`compute_metrics`.

    Returns:
        dict[str, float | None]: ``qwk, qwk_pooled, pearson, spearman, rmse, n``.
    """
    o = metrics["overall"]
    return {"qwk": o["qwk"], "qwk_pooled": o["qwk_pooled"], "pearson": o["pearson"],
            "spearman": o["spearman"], "rmse": o["rmse"], "n": metrics["n"]}


def plot_gold_vs_pred(frame, metrics, table, ax=None, title=None):
    """Scatter gold (x) against predicted (y) scores, one colour per prompt, with y = x.

    Args:
        frame (pd.DataFrame): the output of :func:`results_frame`; unlabeled rows are skipped.
        metrics (dict): the output of :func:`compute_metrics`, shown in the title.
        table (PromptTable): ranges for the axis limits.
        ax (matplotlib.axes.Axes, optional): draw here; a new Figure is made if ``None``.
        title (str, optional): text before the metrics in the title.

    Returns:
        matplotlib.figure.Figure: the figure holding the plot (not registered with pyplot).
    """
    import matplotlib
    from matplotlib.figure import Figure
    if ax is None:
        ax = Figure(figsize=(6, 6)).add_subplot()
    pids = [p for p in table.ids if p in set(frame["prompt"])]
    cmap = matplotlib.colormaps["tab10" if len(pids) <= 10 else "tab20"]
    colours = [cmap(i % cmap.N) for i in range(len(pids))]
    for pid, colour in zip(pids, colours):
        rows = frame[frame["prompt"] == pid]
        ax.scatter(rows["gold"], rows["pred"], s=14, alpha=0.6, color=colour, label=pid)
    ranges = [table.ranges[p] for p in pids] or list(table.ranges.values())
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    pad = 0.05 * (hi - lo)
    ax.plot([lo, hi], [lo, hi], color="0.4", linestyle="--", linewidth=1, label="y = x")
    ax.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad), aspect="equal",
           xlabel="gold score", ylabel="predicted score")
    if len(pids) <= 20:
        ax.legend(title="prompt", fontsize="small", loc="upper left")
    else:  # a legend with dozens of prompts would cover the plot
        ax.text(0.02, 0.98, f"{len(pids)} prompts", transform=ax.transAxes, va="top")
    o = metrics["overall"]
    parts = [f"{name} {o[k]:.3f}" for name, k in (("QWK", "qwk"), ("Pearson", "pearson"), ("RMSE", "rmse"))
             if o[k] is not None]
    head = f"{title}\n" if title else ""
    ax.set_title(head + (" · ".join(parts) or "metrics undefined") + f"  (n={metrics['n']})", fontsize="medium")
    return ax.figure


def _jsonable(obj):
    """Numpy scalars -> Python numbers, NaN/inf -> None, recursively."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then ``os.replace`` it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_xlsx(frame: pd.DataFrame, tmp: str) -> tuple[int, int]:
    """Write ``frame`` with text cells typed as strings; returns (replaced chars, truncated cells)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    wb = Workbook()
    ws = wb.active
    ws.title = "results"
    ws.append(list(frame.columns))
    for cell, name in zip(ws[1], frame.columns):
        cell.font = Font(bold=True)
        ws.column_dimensions[cell.column_letter].width = {"text": 80, "key": 18, "prompt": 14}.get(name, 12)
    ws.freeze_panes = "A2"
    replaced = truncated = 0
    for r, row in enumerate(frame.itertuples(index=False, name=None), start=2):
        for c, (name, value) in enumerate(zip(frame.columns, row), start=1):
            cell = ws.cell(row=r, column=c)
            if name in TEXT_COLUMNS:
                value, k = _ILLEGAL_XML.subn("\ufffd", str(value))
                replaced += k
                if len(value) > XLSX_MAX_CHARS:
                    value, truncated = value[:XLSX_MAX_CHARS], truncated + 1
                cell.value = value
                cell.data_type = "s"  # '=1+1' stays text: openpyxl would otherwise mark it a formula
            else:
                cell.value = float(value) if math.isfinite(value) else None
                cell.number_format = "0.00"
    wb.save(tmp)
    return replaced, truncated


def write_results(frame, metrics, table, results_path, ckpt_name, split) -> dict:
    """Write the result table (xlsx and csv), the metrics (json) and the plot (png).

    Files are ``result-{ckpt}-{split}.xlsx|.csv``, ``metrics-{ckpt}-{split}.json`` and
    ``plot-{ckpt}-{split}.png``, each written atomically. The CSV keeps texts verbatim;
    the xlsx stores key/prompt/text as string cells (never formulas), replaces characters
    XML cannot carry by U+FFFD and cuts texts at Excel's 32,767 characters; the counts are
    set in ``metrics`` as ``xlsx_replaced_control_chars`` / ``xlsx_truncated_texts``.

    Args:
        frame (pd.DataFrame): the output of :func:`results_frame`.
        metrics (dict): the output of :func:`compute_metrics` (updated with the counts above).
        table (PromptTable): ranges, for the plot.
        results_path (str | os.PathLike): output folder, created if missing.
        ckpt_name (str): e.g. ``"checkpoint_best.pt"``; folders and ``.pt`` are stripped.
        split (str): e.g. ``"valid"``.

    Returns:
        dict[str, pathlib.Path]: paths under keys ``xlsx, csv, metrics, plot``.
    """
    out = Path(results_path)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"results_path {str(out)!r} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Path(str(ckpt_name)).name
    ckpt = ckpt[:-3] if ckpt.endswith(".pt") else ckpt
    if not ckpt or not split or any(s in str(split) for s in ("/", "\\")):
        raise ValueError(f"bad checkpoint name {ckpt_name!r} or split {split!r} for a file name")
    tag = f"{ckpt}-{split}"
    paths = {"xlsx": out / f"result-{tag}.xlsx", "csv": out / f"result-{tag}.csv",
             "metrics": out / f"metrics-{tag}.json", "plot": out / f"plot-{tag}.png"}
    counts = {}

    _atomic_write(paths["xlsx"], lambda tmp: counts.update(zip(
        ("xlsx_replaced_control_chars", "xlsx_truncated_texts"), _write_xlsx(frame, tmp))))
    metrics.update(counts)
    _atomic_write(paths["csv"], lambda tmp: frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n"))
    text = json.dumps(_jsonable(metrics), indent=2, allow_nan=False, ensure_ascii=False)
    _atomic_write(paths["metrics"], lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
    fig = plot_gold_vs_pred(frame, metrics, table, title=f"{ckpt} · {split}")
    _atomic_write(paths["plot"], lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    return paths


def _list(x) -> list:
    """A list, a tuple or a tensor/array of ids -> a Python list (tensors via ``tolist``)."""
    return x.tolist() if hasattr(x, "tolist") else list(x)


def _numpy(x) -> np.ndarray:
    """A tensor (any device/dtype) or array-like -> float64 numpy vector."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def evaluate(result_triples, ckpt_name, table, results_path, split) -> tuple[pd.DataFrame, dict]:
    """The seed's ``evaluate(result_triples, ckpt_name)``, corrected.

    Args:
        result_triples (Iterable[tuple]): ``(loss, sample, result)`` per batch; ``sample``
            has ``key``, ``prompt``, ``text`` (lists of B str; ``text`` optional) and
            ``target`` (float tensor (B,) in [0, 1], NaN if unlabeled); ``result`` has
            ``encoder_out`` (float tensor (B,) or (B, 1) in [0, 1]).
        ckpt_name (str): checkpoint file name, e.g. ``"checkpoint_best.pt"``.
        table (PromptTable): ranges and step per prompt.
        results_path (str | os.PathLike): output folder.
        split (str): split name, used in file names.

    Returns:
        tuple[pd.DataFrame, dict]: the :func:`results_frame` and the :func:`compute_metrics` dict.
    """
    keys, prompts, texts, gold, pred = [], [], [], [np.zeros(0)], [np.zeros(0)]
    for _, sample, result in result_triples:
        b_keys = _list(sample["key"] if "key" in sample else sample["id"])
        b_texts = _list(sample["text"]) if sample.get("text") is not None else [""] * len(b_keys)
        batch = [b_keys, _list(sample["prompt"]), _numpy(sample["target"]), _numpy(result["encoder_out"]), b_texts]
        if len({len(x) for x in batch}) != 1:
            raise ValueError(f"batch sizes disagree (key, prompt, target, encoder_out, text): {[len(x) for x in batch]}")
        keys += b_keys
        prompts += batch[1]
        texts += b_texts
        gold.append(batch[2])
        pred.append(batch[3])
    frame = results_frame(keys, prompts, np.concatenate(gold), np.concatenate(pred), texts, table)
    metrics = compute_metrics(frame, table)
    write_results(frame, metrics, table, results_path, ckpt_name, split)
    return frame, metrics
