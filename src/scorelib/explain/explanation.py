"""What the scorer looks at: the effect of each sentence (occlusion) or token (Integrated Gradients).

No fairseq counterpart. Two views of one text's score, both on the prompt's own scale:

- ``by="sentence"`` (no extra package): leave each sentence out in turn and rescore; a sentence's
  effect is ``score(text) - score(text without it)``, signed (positive: the sentence raises the
  score). The text and all its variants are scored in one call of ``scorer.score``. This is
  occlusion, not causation: a sentence may matter only beside another, and a text with a gap is
  not a text a student wrote.
- ``by="token"`` (needs ``captum``): Integrated Gradients on the encoder's input embeddings
  (:mod:`scorelib.explain.attribute`), from a baseline where every text token is the pad token. The
  attributions add up to ``score(text) - score(baseline)`` up to the convergence delta; another
  baseline gives other attributions.

A text longer than the window is explained as the model read it (``--long-text``): sentences
wholly outside what it read are marked ``read=False`` (their occlusion effect is still measured;
leaving a sentence out can shift the window), and unread tokens have ``read=False`` and no
attribution. With traits, every unit has one effect per trait. :func:`render_text` and
:func:`render_html` show an :class:`Explanation`; ``explanation.to_dict()`` is JSON-serialisable.
"""
from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from scorelib.data import long_text as windows
from scorelib.errors import OptionError
from scorelib.explain.attribute import integrated_gradients, read_tokens, text_positions
from scorelib.inference import move_to

# A sentence: from a non-space character up to a run of . ! ? … (with closing quotes or brackets) followed by
# whitespace or the end, or up to a blank line, or to the end of the text. "3.5" and "e.g.," do not end one;
# "e.g. the" does (a simple splitter, not a parser).
SENTENCE = re.compile(r"\S.*?(?:[.!?…]+[\"'”’)\]]*(?=\s|\Z)|(?=\n[ \t]*\n)|\Z)", re.S)
EMPTY = "."  # what a one-sentence text becomes without its sentence: scorers refuse an empty text


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text`` (see :data:`SENTENCE`), trailing spaces cut."""
    spans = []
    for m in SENTENCE.finditer(text):
        end = m.start() + len(m.group().rstrip())
        if end > m.start():
            spans.append((m.start(), end))
    return spans


def leave_out(text: str, spans: list[tuple[int, int]], i: int) -> str:
    """``text`` without sentence ``i`` and the space after it (before it, for the last sentence)."""
    start, end = spans[i]
    if i + 1 < len(spans):
        return text[:start] + text[spans[i + 1][0]:]
    return text[:start].rstrip() + text[end:]


@dataclass
class Explanation:
    """One text's score and the effect of each of its units (sentences or tokens).

    Args:
        text (str), prompt (str): what was explained.
        by (str): ``"sentence"`` or ``"token"``.
        names (list[str]): the model's traits, or ``["score"]``.
        score (dict): name -> the text's score.
        ranges (dict): name -> ``[min, max]`` of the prompt's scale.
        units (list[dict]): in text order, ``{"text", "start", "end", "read", "effect": {name: float | None}}``.
        baseline (dict | None): token view: name -> score of the all-pad baseline.
        delta (dict | None): token view: name -> convergence delta (sum of attributions - (score - baseline)).
        note (str | None): what the model did with a text longer than its window.
    """

    text: str
    prompt: str
    by: str
    names: list
    score: dict
    ranges: dict
    units: list = field(default_factory=list)
    baseline: dict | None = None
    delta: dict | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def effects(self, name: str | None = None) -> np.ndarray:
        """The units' effects for one name (default: the first), NaN where not read (token view)."""
        name = name or self.names[0]
        return np.array([np.nan if u["effect"][name] is None else u["effect"][name] for u in self.units])

    def __str__(self) -> str:
        return render_text(self)

    def _repr_html_(self) -> str:
        return render_html(self)


def explain(scorer, text: str, prompt=None, by: str = "sentence", contexts=None, steps: int = 32) -> Explanation:
    """Explain one text's score by its sentences (occlusion) or tokens (Integrated Gradients).

    Args:
        scorer (Scorer): from :func:`scorelib.load`; a fold ensemble (several ``scorer.models``) averages its
            models' token attributions.
        text (str): the text.
        prompt (str, optional): a prompt id (needed where the model knows several).
        contexts (str | list[str], optional): the text's second segment, as in ``scorer.score``.
        by (str): ``"sentence"`` or ``"token"``.
        steps (int): Integrated Gradients' steps (token view).

    Returns:
        Explanation: see its fields; ``render_text`` / ``render_html`` show it.
    """
    if by not in ("sentence", "token"):
        raise OptionError(f"explain: by={by!r}; choose 'sentence' or 'token'")
    _, prompt, ctx = scorer.check([text], prompt, contexts)
    context = ctx[0] if ctx else None
    names = list(scorer.table.views)  # the traits, or ["score"]
    ranges = {n: [float(v) for v in view.ranges[prompt]] for n, view in scorer.table.views.items()}
    offsets, read = read_tokens(scorer, text, context)
    n_full = len(scorer.tokenizer(text, context, truncation=False, verbose=False)["input_ids"])
    note = windows.note(scorer.long_text, scorer.max_length, scorer.chunk_stride, n_full)
    out = Explanation(text, prompt, by, names, {}, ranges, note=note)
    if by == "sentence":
        return _by_sentence(scorer, out, context, offsets, read)
    return _by_token(scorer, out, ctx, offsets, read, steps)


def _by_sentence(scorer, out: Explanation, context, offsets, read) -> Explanation:
    spans = split_sentences(out.text)
    variants = [out.text] + [leave_out(out.text, spans, i) or EMPTY for i in range(len(spans))]
    ctx = None if context is None else [context] * len(variants)
    scores = np.reshape(scorer.score(variants, prompt=out.prompt, contexts=ctx), (len(variants), -1))
    out.score = {n: float(v) for n, v in zip(out.names, scores[0])}
    for i, (start, end) in enumerate(spans):
        seen = any(r for (s, e), r in zip(offsets, read) if s < end and e > start)
        effect = {n: float(scores[0, k] - scores[1 + i, k]) for k, n in enumerate(out.names)}
        out.units.append({"text": out.text[start:end], "start": start, "end": end, "read": seen, "effect": effect})
    return out


def _by_token(scorer, out: Explanation, ctx, offsets, read, steps: int) -> Explanation:
    models = scorer.models  # one, or a fold ensemble's K: their attributions are averaged
    ds = scorer.dataset([out.text], out.prompt, ctx)
    batch = move_to(ds.collater([ds[0]]), scorer.device)
    positions = text_positions(scorer, batch, out.text, ctx[0] if ctx else None, offsets, read)
    scale = torch.tensor([[r[0] for r in out.ranges.values()], [r[1] for r in out.ranges.values()]],
                         dtype=torch.float32, device=scorer.device)
    pad = scorer.tokenizer.pad_token_id or 0
    attr = np.zeros((len(out.names), len(offsets)))
    ends = np.zeros((len(out.names), 3))  # score, baseline, delta
    for model in models:
        for k in range(len(out.names)):
            a, f_text, f_base, delta = integrated_gradients(model.eval(), batch, positions, len(offsets), pad, scale,
                                                            k, steps)
            attr[k] += a / len(models)
            ends[k] += np.array([f_text, f_base, delta]) / len(models)
    out.score, out.baseline, out.delta = ({n: float(ends[k, j]) for k, n in enumerate(out.names)} for j in range(3))
    for i, ((start, end), r) in enumerate(zip(offsets, read)):
        effect = {n: float(attr[k, i]) if r else None for k, n in enumerate(out.names)}
        out.units.append({"text": out.text[start:end], "start": start, "end": end, "read": r, "effect": effect})
    return out


def _digits(e: Explanation) -> int:
    """3 decimals where every effect is below 0.05 (a model that barely reacts), else 2."""
    small = np.nanmax(np.abs([e.effects(n) for n in e.names]), initial=0.0) < 0.05 if e.units else False
    return 3 if small else 2


def _signed(v, digits: int = 2) -> str:
    return "  n/a" if v is None else f"{v:+.{digits}f}"


def render_text(e: Explanation, limit: int = 20) -> str:
    """Plain text: the score, then one line per sentence (``+0.42  The sentence.``); tokens: the ``limit``
    largest attributions. Unread units are marked ``(not read)``."""
    digits = _digits(e)
    head = ", ".join(f"{n} {e.score[n]:.{digits}f} ({e.ranges[n][0]:g}–{e.ranges[n][1]:g})" for n in e.names)
    lines = [f"prompt {e.prompt}: {head}"]
    if e.by == "sentence":
        lines.append("effect = score - score without the sentence (occlusion; not a cause)")
        units = e.units
    else:
        lines.append("Integrated Gradients on input embeddings, baseline: pad tokens; "
                     + ", ".join(f"{n}: baseline {e.baseline[n]:.{digits}f}, delta {e.delta[n]:+.3f}" for n in e.names))
        units = sorted(e.units, key=lambda u: -abs(u["effect"][e.names[0]] or 0.0))[:limit]
    if len(e.names) > 1:
        lines.append("  ".join(f"{n[:6]:>6}" for n in e.names))
    for u in units:
        values = "  ".join(f"{_signed(u['effect'][n], digits):>6}" for n in e.names)
        lines.append(f"{values}  {'(not read) ' if not u['read'] else ''}{' '.join(u['text'].split())}")
    if e.note:
        lines.append(e.note)
    return "\n".join(lines)


def _shade(v: float | None, top: float) -> str:
    if v is None or top <= 0:
        return "transparent"
    alpha = 0.1 + 0.6 * min(abs(v) / top, 1.0)
    return f"rgba(0, 160, 60, {alpha:.2f})" if v > 0 else f"rgba(220, 30, 30, {alpha:.2f})" if v < 0 else "transparent"


def render_html(e: Explanation, trait: str | None = None, numbers: bool | None = None) -> str:
    """HTML: the text with each unit shaded by its effect (green raises the score, red lowers it), every
    name's numbers in a ``title=`` (hover) attribute, and a plain-text legend that reads without colours.

    Args:
        e (Explanation): from :func:`explain`.
        trait (str, optional): the name that shades (default: the first).
        numbers (bool, optional): also print each unit's number after it (default: sentences yes, tokens no).
    """
    name = trait or e.names[0]
    numbers = e.by == "sentence" if numbers is None else numbers
    top = float(np.nanmax(np.abs(e.effects(name)), initial=0.0)) if e.units else 0.0
    parts, pos, digits = [], 0, _digits(e)
    for u in e.units:
        parts.append(html.escape(e.text[pos:u["start"]]))
        tip = "; ".join(f"{n}: {_signed(u['effect'][n], 3)}" for n in e.names)
        tip = ("not read by the model; " if not u["read"] else "") + tip
        style = f"background:{_shade(u['effect'][name], top)};border-radius:3px"
        style += "" if u["read"] else ";color:#888;text-decoration:line-through"
        parts.append(f'<span style="{style}" title="{html.escape(tip)}">{html.escape(u["text"])}</span>')
        if numbers:
            parts.append(f'<sup style="color:#555">[{_signed(u["effect"][name], digits)}]</sup>')
        pos = u["end"]
    parts.append(html.escape(e.text[pos:]))
    what = ("effect = score minus the score without the sentence (occlusion: a correlation, not a cause)"
            if e.by == "sentence" else
            f"Integrated Gradients against an all-pad baseline (score {e.baseline[name]:.2f}; "
            f"delta {e.delta[name]:+.3f})")
    legend = (f"{name} {e.score[name]:.2f} on prompt {e.prompt}'s {e.ranges[name][0]:g}–{e.ranges[name][1]:g} scale. "
              f"Green: raises the score; red: lowers it; the number in brackets (or on hover) is the change. "
              f"{'Struck-through grey: not read by the model. ' if not all(u['read'] for u in e.units) else ''}"
              f"{what}.")
    note = f"<p><em>{html.escape(e.note)}</em></p>" if e.note else ""
    return (f'<div class="scorelib-explain"><p style="line-height:1.8">{"".join(parts)}</p>'
            f'<p style="font-size:smaller">{html.escape(legend)}</p>{note}</div>')
