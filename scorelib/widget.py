"""Paste a text, get a score: the course's last step, as plain functions plus a small widget.

No fairseq counterpart (fairseq stops at ``fairseq-validate`` / ``hub_utils.predict``); the
checks and the plot live in :func:`check_and_score` and :func:`plot_with_score`, so they can
be called and tested without a browser, and :class:`ScoringWidget` only wires them to
ipywidgets. Used at the end of ``notebooks/04_train_eval.ipynb``.
"""
from __future__ import annotations

import io
import os
import unicodedata

import numpy as np
import pandas as pd

from .scorer import MAX_CHARS

NON_LATIN_SHARE = 0.5  # above this share of non-Latin letters, the score gets a warning


class ScoreInputError(ValueError):
    """A pasted text or prompt the scorer cannot take; the message is meant for the user."""


def _num(x) -> str:
    """A range end or a rounded score without trailing zeros: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{float(x):g}"


def prompt_label(scorer, prompt) -> str:
    """``"q2 (1–6)"``: a prompt id with its score range, for menus and messages."""
    info = scorer.prompts[prompt]
    return f"{prompt} ({_num(info['min'])}–{_num(info['max'])})"


def non_latin_share(text: str) -> float:
    """Share of the letters in ``text`` that are not Latin script (0.0 when it has no letters)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    latin = sum(unicodedata.name(ch, "").startswith("LATIN") for ch in letters)
    return 1.0 - latin / len(letters)


def check_and_score(scorer, prompt, text) -> dict:
    """Validate and score one pasted text.

    Args:
        scorer (scorelib.scorer.Scorer): from :func:`scorelib.load`.
        prompt (str): a prompt id the model was trained on (``scorer.prompts``).
        text (str): the pasted text.

    Returns:
        dict: ``{"prompt", "score" (unrounded, on the prompt's scale), "rounded", "min", "max",
        "step", "warnings" (list[str])}``.

    Raises:
        ScoreInputError: empty text, a text over ``scorelib.scorer.MAX_CHARS`` characters, an
            unknown prompt; the message says what to change.
    """
    known = list(scorer.prompts)
    prompt = None if prompt is None else str(prompt)
    if prompt not in known:
        raise ScoreInputError(f"Unknown prompt {prompt!r}: this model knows "
                              f"{', '.join(prompt_label(scorer, p) for p in known)}.")
    if not isinstance(text, str):
        raise ScoreInputError(f"Expected a text (str), got {type(text).__name__}.")
    if not text.strip():
        raise ScoreInputError("The text is empty: paste an answer to score.")
    if len(text) > MAX_CHARS:
        raise ScoreInputError(f"The text has {len(text):,} characters; the limit is {MAX_CHARS:,}. "
                              f"Paste a shorter text (the model reads only its first {scorer.max_length} tokens).")
    warnings = []
    share = non_latin_share(text)
    if share > NON_LATIN_SHARE:
        warnings.append(f"{share:.0%} of the letters are not Latin script: the encoder was trained on English, "
                        f"so this score is unreliable.")
    context = scorer.table.contexts.get(prompt) if scorer.table.uses_context else None
    n_tokens = len(scorer.tokenizer(text, context, truncation=False, verbose=False)["input_ids"])
    if n_tokens > scorer.max_length:
        warnings.append(f"The text has {n_tokens:,} tokens; only the first {scorer.max_length} were read "
                        f"(the rest did not count towards the score).")
    try:
        score = float(scorer.score(text, prompt=prompt))
    except (ValueError, KeyError, TypeError) as e:  # e.g. a pair model without a stored context
        raise ScoreInputError(str(e).strip("\"'")) from None
    info = scorer.prompts[prompt]
    return {"prompt": prompt, "score": score, "rounded": float(scorer.round(score, prompt)[0]),
            "min": float(info["min"]), "max": float(info["max"]), "step": info["step"], "warnings": warnings}


def describe(result: dict) -> str:
    """One line for a :func:`check_and_score` result: ``"3.7 on q2's 1–6 scale (rounded: 4)"``."""
    digits = 1 if result["max"] - result["min"] >= 2 else 2
    line = f"{result['score']:.{digits}f} on {result['prompt']}'s {_num(result['min'])}–{_num(result['max'])} scale"
    if result["step"] is not None:
        line += f" (rounded: {_num(result['rounded'])})"
    return line


def plot_with_score(results_frame, prompt, score, ax=None):
    """Gold vs predicted scores of one prompt, the diagonal, and a new score as a horizontal line.

    Args:
        results_frame (pd.DataFrame | str | os.PathLike): columns ``key, prompt, gold, pred, ...``
            (:func:`scorelib.evaluate.results_frame`), or a path to ``result-checkpoint_best-test.csv``.
        prompt (str): the prompt whose rows are drawn.
        score (float): the new text's score, on that prompt's scale.
        ax (matplotlib.axes.Axes, optional): draw here; a new pyplot figure is made if ``None``.

    Returns:
        matplotlib.figure.Figure: the figure (close it with ``plt.close(fig)`` once shown).
    """
    import matplotlib.pyplot as plt
    frame = pd.read_csv(results_frame) if isinstance(results_frame, (str, os.PathLike)) else results_frame
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    rows = frame[frame["prompt"].astype(str) == str(prompt)]
    rows = rows[np.isfinite(rows["gold"].to_numpy(dtype=np.float64))]
    ax.scatter(rows["gold"], rows["pred"], s=16, alpha=0.6, label=f"{prompt}: test rows (n={len(rows)})")
    values = np.concatenate([rows["gold"].to_numpy(dtype=np.float64), rows["pred"].to_numpy(dtype=np.float64),
                             [float(score)]])
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo) or 0.5
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], color="0.4", linestyle="--", linewidth=1, label="y = x")
    ax.axhline(float(score), color="tab:red", linewidth=1.5, label=f"new text: {float(score):.2f}")
    ax.text(lo + 0.02 * (hi - lo), float(score), f" new text: {float(score):.2f}", color="tab:red",
            va="bottom", fontsize="small")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", xlabel="gold score", ylabel="predicted score",
           title=f"prompt {prompt}: gold vs predicted")
    ax.legend(fontsize="small", loc="upper left")
    return ax.figure


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


class ScoringWidget:
    """A prompt menu, a text box and a Score button over :func:`check_and_score`.

    Args:
        scorer (scorelib.scorer.Scorer): from :func:`scorelib.load`.
        results (pd.DataFrame | str | os.PathLike, optional): a results frame (or its CSV) to
            plot the new score against; no plot when ``None``.
    """

    def __init__(self, scorer, results=None):
        import ipywidgets as W
        self.scorer = scorer
        self.results = pd.read_csv(results) if isinstance(results, (str, os.PathLike)) else results
        self.prompt = W.Dropdown(options=[(prompt_label(scorer, p), p) for p in scorer.prompts], description="Prompt")
        self.text = W.Textarea(placeholder="Paste a text to score", rows=8, layout=W.Layout(width="95%"))
        self.button = W.Button(description="Score", button_style="primary", icon="check")
        self.output = W.Output()
        self.widget = W.VBox([self.prompt, self.text, self.button, self.output])
        self.widget.add_class("scorelib-widget")
        self.button.add_class("scorelib-score")
        self.button.on_click(self.on_click)
        self.last = None

    def on_click(self, _=None):
        """Score the text box's text; show the score, warnings and plot, or a clear error message."""
        self.output.outputs = ()
        try:
            result = check_and_score(self.scorer, self.prompt.value, self.text.value)
        except ScoreInputError as e:
            self._error(str(e))
            return
        except Exception as e:  # never a traceback in the widget
            self._error(f"Could not score this text ({type(e).__name__}: {e}).")
            return
        self.last = result
        self.output.append_stdout(describe(result) + "\n")
        for warning in result["warnings"]:
            self.output.append_stdout(f"Warning: {warning}\n")
        if self.results is not None:
            self._show_plot(result)

    def _show_plot(self, result):
        import matplotlib.pyplot as plt
        from IPython.display import Image
        fig = plot_with_score(self.results, result["prompt"], result["score"])
        try:
            self.output.append_display_data(Image(data=_png(fig), format="png"))
        except Exception as e:
            self.output.append_stdout(f"(plot not shown: {type(e).__name__}: {e})\n")
        finally:
            plt.close(fig)

    def _error(self, message: str):
        self.last = {"error": message}
        self.output.append_stderr(message + "\n")

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)
