"""Paste a text, get a score: the course's last step, as plain functions plus a small widget.

No fairseq counterpart (fairseq stops at ``fairseq-validate`` / ``hub_utils.predict``). The
input check is the scorer's own (:meth:`scorelib.hub.scorer.Scorer.check`), the plot is the result
files' (:func:`scorelib.plots.plot_gold_vs_pred`); :func:`check_and_score` adds the warnings a
reader of one pasted text needs, and :class:`ScoringWidget` only wires them to ipywidgets.
"""
from __future__ import annotations

import logging
import os
import unicodedata

import pandas as pd

from scorelib.data import long_text as windows
from scorelib.errors import InputError, ScorelibError
from scorelib.hub.scorer import describe, fmt_num
from scorelib.plots import plot_gold_vs_pred, png_bytes

logger = logging.getLogger(__name__)
NON_LATIN_SHARE = 0.5  # above this share of non-Latin letters, the score gets a warning
ScoreInputError = InputError  # the name the widget's callers know


def prompt_label(scorer, prompt) -> str:
    """``"q2 (1–6)"``: a prompt id with its score range, for menus and messages."""
    lo, hi = scorer.table.ranges[prompt]
    return f"{prompt} ({fmt_num(lo)}–{fmt_num(hi)})"


def non_latin_share(text: str) -> float:
    """Share of the letters in ``text`` that are not Latin script (0.0 when it has no letters)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    latin = sum(unicodedata.name(ch, "").startswith("LATIN") for ch in letters)
    return 1.0 - latin / len(letters)


def check_and_score(scorer, prompt, text) -> dict:
    """Check and score one pasted text.

    Args:
        scorer (scorelib.hub.scorer.Scorer): from :func:`scorelib.load`.
        prompt (str): a prompt id the model was trained on (``scorer.prompts``).
        text (str): the pasted text.

    Returns:
        dict: :meth:`Scorer.record` (``prompt, score, score_rounded, min, max``; and ``spread`` for a fold
        ensemble; ``prompt, traits`` for a model of several traits, see :meth:`Scorer.record`) plus ``step`` and
        ``warnings`` (list[str]: non-English text, a text longer than the model reads).

    Raises:
        InputError: empty text, a text over ``scorelib.hub.scorer.MAX_CHARS`` characters, an unknown prompt;
            the message says what to change.
    """
    if isinstance(text, str) and not text.strip():  # the widget has one box: "text 0" would mean nothing here
        raise InputError("the text box is empty: paste a text to score")
    texts, prompt, contexts = scorer.check([text], prompt, None)
    warnings = []
    share = non_latin_share(text)
    if share > NON_LATIN_SHARE:
        warnings.append(f"{share:.0%} of the letters are not Latin script: the encoder was trained on English, "
                        f"so this score is unreliable.")
    n_tokens = len(scorer.tokenizer(text, contexts[0] if contexts else None, truncation=False,
                                    verbose=False)["input_ids"])
    note = windows.note(scorer.long_text, scorer.max_length, scorer.chunk_stride, n_tokens)
    if note is not None:
        warnings.append(note)
    score, spread = scorer.score(text, prompt=prompt, contexts=contexts, return_spread=True)  # {trait: score} for traits
    return {**scorer.record(score, prompt, spread=spread), "step": scorer.table.step, "warnings": warnings}


def plot_with_score(results, table, prompt, score, ax=None, trait=None):
    """Gold vs predicted scores of one prompt's rows, the diagonal, and a new score as a horizontal line.

    Args:
        results (pd.DataFrame | str | os.PathLike): a results frame, or a ``result-*.csv`` file.
        table (PromptTable): the scorer's prompt table (``scorer.table``).
        prompt (str): the prompt whose rows are drawn.
        score (float): the new text's score, on that prompt's scale.
        ax (matplotlib.axes.Axes, optional): draw here.
        trait (str, optional): with traits, the trait drawn (``score`` is then on its scale; default: the first).

    Returns:
        matplotlib.figure.Figure: the figure.
    """
    frame = pd.read_csv(results, dtype={"key": str, "prompt": str}) if isinstance(results, (str, os.PathLike)) \
        else results
    return plot_gold_vs_pred(frame, table, ax=ax, title=f"prompt {prompt}: gold vs predicted", prompts=[str(prompt)],
                             new_score=score, trait=trait)


class ScoringWidget:
    """A prompt menu, a text box and a Score button over :func:`check_and_score` (and a trait menu for the plot,
    for a model of several traits).

    Args:
        scorer (scorelib.hub.scorer.Scorer): from :func:`scorelib.load`.
        results (pd.DataFrame | str | os.PathLike, optional): a results frame (or its CSV) to
            plot the new score against; no plot when ``None``.
    """

    def __init__(self, scorer, results=None):
        import ipywidgets as W
        self.scorer = scorer
        self.results = pd.read_csv(results, dtype={"key": str, "prompt": str}) \
            if isinstance(results, (str, os.PathLike)) else results
        self.prompt = W.Dropdown(options=[(prompt_label(scorer, p), p) for p in scorer.prompts], description="Prompt")
        self.text = W.Textarea(placeholder="Paste a text to score", rows=8, layout=W.Layout(width="95%"))
        self.button = W.Button(description="Score", button_style="primary", icon="check")
        self.output = W.Output()
        self.explain = W.ToggleButton(description="Explain", icon="search", tooltip="shade each sentence by its "
                                      "effect on the score (green raises it, red lowers it)")
        self.explained = W.HTML()  # scorelib.explain.explanation.render_html of the last text, while Explain is on
        self.trait = W.Dropdown(options=scorer.traits, description="Plot trait") if scorer.table.num_traits > 1 else None
        if self.trait is not None:
            self.trait.observe(lambda _: self.on_click() if self.last and "error" not in self.last else None, "value")
        menus = [self.prompt] + ([self.trait] if self.trait is not None else [])
        self.widget = W.VBox([*menus, self.text, W.HBox([self.button, self.explain]), self.output, self.explained])
        self.explain.observe(lambda _: self.on_click() if self.last and "error" not in self.last else None, "value")
        self.widget.add_class("scorelib-widget")
        self.button.add_class("scorelib-score")
        self.explain.add_class("scorelib-explain-toggle")
        self.button.on_click(self.on_click)
        self.last = None

    def on_click(self, _=None):
        """Score the text box's text; show the score, warnings and plot, or a clear error message."""
        self.output.outputs, self.explained.value = (), ""
        try:
            result = check_and_score(self.scorer, self.prompt.value, self.text.value)
        except ScorelibError as e:
            logger.info("widget: refused the input: %s", e)
            self._error(str(e))
            return
        except Exception as e:  # never a traceback in the widget; the log keeps it
            logger.exception("widget: scoring failed")
            self._error(f"Could not score this text ({type(e).__name__}: {e}).")
            return
        self.last = result
        self.output.append_stdout(describe(result) + "\n")
        for warning in result["warnings"]:
            self.output.append_stdout(f"Warning: {warning}\n")
        if self.results is not None:
            self._show_plot(result)
        if self.explain.value:
            self._show_explanation(result)

    def _show_explanation(self, result):
        from scorelib.explain.explanation import explain, render_html
        trait = self.trait.value if self.trait is not None else next(iter(self.scorer.table.views))
        try:
            self.explained.value = render_html(explain(self.scorer, self.text.value, prompt=result["prompt"]), trait)
        except Exception as e:  # never a traceback in the widget; the log keeps it
            logger.exception("widget: the explanation failed")
            self.output.append_stdout(f"(explanation not shown: {type(e).__name__}: {e})\n")

    def _show_plot(self, result):
        from IPython.display import Image
        trait = self.trait.value if self.trait is not None else next(iter(self.scorer.table.views))
        score = result.get("traits", {trait: result})[trait]["score"]
        fig = plot_with_score(self.results, self.scorer.table, result["prompt"], score, trait=trait)
        try:
            self.output.append_display_data(Image(data=png_bytes(fig), format="png"))
        except Exception as e:
            logger.exception("widget: the plot failed")
            self.output.append_stdout(f"(plot not shown: {type(e).__name__}: {e})\n")

    def _error(self, message: str):
        self.last = {"error": message}
        self.output.append_stderr(message + "\n")

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)
