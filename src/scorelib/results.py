"""Result files: the notes' ``result-{ckpt}.xlsx``, a CSV twin, the metrics and a plot.

The notes' ``evaluate(self, result_triples, ckpt_name)`` lives on its task; fairseq's nearest
is ``validate`` in ``fairseq_cli/train.py``. Here the table is built from arrays (gold exactly
as read, predictions rescaled per prompt as ``pred * (max - min) + min``), written atomically,
with texts as text cells; :func:`evaluate` keeps the notes' ``(loss, sample, result)`` form.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.errors import OptionError, ScorelibError
from scorelib.metrics import compute_metrics
from scorelib.plots import plot_results, save_figure
from scorelib.writers import atomic_write, write_json, write_table

logger = logging.getLogger(__name__)

COLUMNS = ["key", "prompt", "gold", "pred", "pred_rounded", "text"]


def results_frame(keys, prompts, gold, pred01, texts, table) -> pd.DataFrame:
    """One row per scored text, with gold and predicted scores on the prompt's own scale.

    Args:
        keys (Sequence[str]): row keys, length N.
        prompts (Sequence[str]): prompt id per row, length N; each must be in ``table``.
        gold (array-like, shape (N,) or (N, K)): gold scores exactly as read (NaN: unlabeled), kept as given.
        pred01 (array-like, shape (N,) or (N, K)): model outputs (``encoder_out``) in [0, 1].
        texts (Sequence[str]): the scored texts, length N.
        table (PromptTable): ranges and rounding step per prompt (and per trait).

    Returns:
        pd.DataFrame: columns ``key, prompt``, then per score ``gold, pred, pred_rounded`` (named
        ``gold_{t}, pred_{t}, pred_rounded_{t}`` for each trait t of a model of several traits), then ``text``,
        in input order; ``pred`` is ``pred01 * (max - min) + min`` per prompt and ``pred_rounded`` is ``pred``
        rounded to the step (or by fitted cut-points) and clipped to the range.
    """
    k = table.num_traits
    keys, prompts, texts = ([str(v) for v in col] for col in (keys, prompts, texts))
    gold, pred01 = (np.asarray(x, dtype=np.float64).reshape(-1, k) for x in (gold, pred01))
    sizes = [len(keys), len(prompts), len(gold), len(pred01), len(texts)]
    if len(set(sizes)) != 1:
        raise ValueError(f"keys, prompts, gold, pred01, texts must have one length, got {sizes}")
    table.bounds(sorted(set(prompts)))  # an unknown prompt: an error listing the known ones
    pred = table.unscale(pred01, prompts)
    rounded = table.round(pred, prompts)
    cols = {"key": pd.Series(keys, dtype=object), "prompt": pd.Series(prompts, dtype=object)}
    for i, names in enumerate(zip(*(table.scores.suffixed(c) for c in ("gold", "pred", "pred_rounded")))):
        cols.update(zip(names, (gold[:, i], pred[:, i], rounded[:, i])))
    return pd.DataFrame({**cols, "text": pd.Series(texts, dtype=object)})


def frame_metrics(frame: pd.DataFrame, table) -> dict:
    """:func:`scorelib.metrics.compute_metrics` of a :func:`results_frame`."""
    gold, pred, rounded = (frame[table.scores.suffixed(c)].to_numpy(np.float64) for c in ("gold", "pred", "pred_rounded"))
    return compute_metrics(frame["prompt"], gold, pred, rounded, table)


def whole_gold(frame: pd.DataFrame, table) -> pd.DataFrame:
    """``frame`` with each gold value written as read: a whole number without ``.0`` (``3``, also in a column that
    holds halves), any other in its shortest exact form (``2.5``); unlabeled rows empty.

    Gold is read as float64, so a CSV would write an input ``3`` as ``3.0`` (the xlsx keeps ``3``).
    """
    def text(v: float) -> str:
        return "" if not np.isfinite(v) else str(int(v)) if v == np.round(v) and abs(v) < 2.0 ** 53 else repr(float(v))

    return frame.assign(**{name: [text(v) for v in frame[name].to_numpy(np.float64)]
                           for name in table.scores.suffixed("gold")})


def write_results(frame, metrics, table, results_path, ckpt_name, split) -> dict:
    """Write the result table (xlsx and csv), the metrics (json) and the plot (png).

    Files are ``result-{ckpt}-{split}.xlsx|.csv``, ``metrics-{ckpt}-{split}.json`` and
    ``plot-{ckpt}-{split}.png``, each written atomically by :mod:`scorelib.writers`. The CSV keeps texts verbatim
    (quoted where they hold a comma, quote or line break) and writes integral
    gold as read (``1``, not ``1.0``: :func:`whole_gold`); the xlsx stores key/prompt/text as string cells (never
    formulas), replaces characters XML cannot carry by U+FFFD and cuts texts at Excel's 32,767 characters; the
    counts are set in ``metrics`` as ``xlsx_replaced_control_chars`` / ``xlsx_truncated_texts``.

    Returns:
        dict[str, pathlib.Path]: paths under keys ``xlsx, csv, metrics, plot``.
    """
    out = Path(results_path)
    if out.exists() and not out.is_dir():
        raise OptionError(f"--results-path {out}: is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Path(str(ckpt_name)).name
    ckpt = ckpt[:-3] if ckpt.endswith(".pt") else ckpt
    if not ckpt or not split or any(s in str(split) for s in ("/", "\\")):
        raise ValueError(f"bad checkpoint name {ckpt_name!r} or split {split!r} for a file name")
    tag = f"{ckpt}-{split}"
    paths = {"xlsx": out / f"result-{tag}.xlsx", "csv": out / f"result-{tag}.csv",
             "metrics": out / f"metrics-{tag}.json", "plot": out / f"plot-{tag}.png"}
    counts = write_table(frame, paths["xlsx"])
    metrics.update({f"xlsx_{k}": v for k, v in counts.items()})
    write_table(whole_gold(frame, table), paths["csv"])
    write_json(metrics, paths["metrics"])
    try:  # the tables are written: a figure that fails costs the figure only
        fig = plot_results(frame, metrics, table, title=f"{ckpt} · {split}")
        atomic_write(paths["plot"], lambda tmp: save_figure(fig, tmp, dpi=110))
    except ScorelibError:  # a full disk: not the figure's fault
        raise
    except Exception as e:
        logger.warning("%s: not drawn (%s: %s); the result tables and metrics are written", paths["plot"],
                       type(e).__name__, " ".join(str(e).split())[:200])
    return paths


def write_dataset_results(dataset, pred01, table, results_path, ckpt_name, split) -> tuple[pd.DataFrame, dict]:
    """Result files of one split: a :class:`ScoringDataset` (gold exactly as read) and its predictions."""
    return write_rows_results(dataset.keys, dataset.prompts, dataset.scores, pred01, dataset.texts, table,
                              results_path, ckpt_name, split)


def write_rows_results(keys, prompts, gold, pred01, texts, table, results_path, ckpt_name, split):
    """:func:`results_frame`, its metrics and :func:`write_results`; returns ``(frame, metrics)``."""
    frame = results_frame(keys, prompts, gold, pred01, texts, table)
    metrics = frame_metrics(frame, table)
    write_results(frame, metrics, table, results_path, ckpt_name, split)
    return frame, metrics


def _list(x) -> list:
    return x.tolist() if hasattr(x, "tolist") else list(x)


def evaluate(result_triples, ckpt_name, table, results_path, split) -> tuple[pd.DataFrame, dict]:
    """The notes' ``evaluate(result_triples, ckpt_name)``, completed.

    Args:
        result_triples (Iterable[tuple]): ``(loss, sample, result)`` per batch; ``sample`` has ``key``,
            ``prompt``, ``text`` (lists of B str; ``text`` optional) and ``score`` (the gold on the prompt's
            scale, as the collater gives it; NaN if unlabeled); ``result`` has ``encoder_out`` (B,) in [0, 1].
        ckpt_name (str): checkpoint file name, e.g. ``"checkpoint_best.pt"``.
        table (PromptTable): ranges and step per prompt.
        results_path (str | os.PathLike): output folder.
        split (str): split name, used in file names.

    Returns:
        tuple[pd.DataFrame, dict]: the :func:`results_frame` and its metrics.
    """
    cols = {"key": [], "prompt": [], "gold": [], "pred01": [], "text": []}
    for _, sample, result in result_triples:
        out = result["encoder_out"].detach().double().cpu()  # (B,), or (B, K) with traits
        batch = {"key": _list(sample["key"]), "prompt": _list(sample["prompt"]), "gold": _list(sample["score"]),
                 "pred01": _list(out.reshape(len(out), -1)),
                 "text": _list(sample["text"]) if sample.get("text") is not None else [""] * len(sample["key"])}
        if len({len(v) for v in batch.values()}) != 1:
            raise ValueError(f"batch sizes disagree: { {k: len(v) for k, v in batch.items()} }")
        for k, v in batch.items():
            cols[k] += v
    return write_rows_results(cols["key"], cols["prompt"], cols["gold"], cols["pred01"], cols["text"], table,
                              results_path, ckpt_name, split)
