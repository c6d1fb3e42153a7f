"""The robustness probes' perturbations: pure, seeded functions on one text.

No fairseq counterpart. Each probe is a way automated scorers are known to be gamed (Powers et
al. 2002, "Stumping e-rater"; Ding et al. 2020, "Don't take 'nswvtnvakgxpm' for an answer";
Kabra et al. 2022): a text that is shuffled, repeated, padded with off-topic text or random
words, or cut in half should not score higher. :mod:`scorelib.explain.probes` applies them to a split
and rescores. Sentences are those of :func:`scorelib.explain.explanation.split_sentences`.
"""
from __future__ import annotations

import math
import random
import re

from scorelib.explain.explanation import split_sentences

WORD = re.compile(r"[^\W\d_]{2,}")  # a word for typos and the vocabulary: two or more letters
TYPO_SHARE = 0.05
# The built-in off-topic paragraph, for data with one prompt (otherwise a text of another prompt is used).
NEUTRAL_PARAGRAPH = ("The weather was mild for most of the week, with a light wind from the west. On Saturday the "
                     "market in the town square sold apples, bread and cheese, and a band played near the fountain.")
# Probes that should not raise a score: a mean rise is flagged. typos and insert-prompt are reported only.
SHOULD_LOWER = ("shuffle-sentences", "repeat-text", "append-offtopic", "drop-half", "random-words")


def _join(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def shuffle_sentences(text: str, rng: random.Random) -> str:
    """The sentences in a random order other than the original (unchanged with one sentence)."""
    spans = split_sentences(text)
    sentences = [text[s:e] for s, e in spans]
    if len(sentences) < 2:
        return text
    order = list(range(len(sentences)))
    for _ in range(10):
        rng.shuffle(order)
        if order != sorted(order):
            break
    else:
        order = order[1:] + order[:1]
    return _join([sentences[i] for i in order])


def repeat_text(text: str) -> str:
    """The text twice (a blank line between when the text has line breaks, else a space)."""
    return text + ("\n\n" if "\n" in text else " ") + text


def append_offtopic(text: str, paragraph: str) -> str:
    """The text followed by an off-topic paragraph."""
    return text.rstrip() + ("\n\n" if "\n" in text else " ") + paragraph.strip()


def insert_prompt(text: str, prompt_text: str) -> str:
    """The prompt's own text (the question, the context) copied in front of the text."""
    return prompt_text.strip() + " " + text


def drop_half(text: str) -> str:
    """Every other sentence removed (the 2nd, 4th, ...); a one-sentence text keeps its first half of words."""
    spans = split_sentences(text)
    if len(spans) >= 2:
        return _join([text[s:e] for i, (s, e) in enumerate(spans) if i % 2 == 0])
    words = text.split()
    return " ".join(words[:math.ceil(len(words) / 2)])


def random_words(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    """As many words as the text has (whitespace-separated), drawn at random from ``vocabulary``."""
    return " ".join(rng.choice(vocabulary) for _ in text.split())


def typos(text: str, rng: random.Random, share: float = TYPO_SHARE) -> str:
    """``share`` of the words (at least one) get two adjacent, different letters swapped."""
    words = [m for m in WORD.finditer(text) if len(set(m.group())) > 1]
    if not words:
        return text
    chars = list(text)
    for m in rng.sample(words, max(1, round(share * len(words)))):
        w = m.group()
        j = rng.choice([j for j in range(len(w) - 1) if w[j] != w[j + 1]])
        chars[m.start() + j], chars[m.start() + j + 1] = w[j + 1], w[j]
    return "".join(chars)


def vocabulary_of(texts) -> list[str]:
    """The distinct lower-cased words (:data:`WORD`) of ``texts``, sorted."""
    return sorted({w.lower() for t in texts for w in WORD.findall(str(t))})


# name -> f(text, rng, material) with material {"prompt_text", "offtopic", "vocabulary"}; None: not applicable
PROBES = {
    "shuffle-sentences": lambda t, rng, m: shuffle_sentences(t, rng),
    "repeat-text": lambda t, rng, m: repeat_text(t),
    "append-offtopic": lambda t, rng, m: append_offtopic(t, m["offtopic"]),
    "insert-prompt": lambda t, rng, m: insert_prompt(t, m["prompt_text"]) if m.get("prompt_text") else None,
    "drop-half": lambda t, rng, m: drop_half(t),
    "random-words": lambda t, rng, m: random_words(t, rng, m["vocabulary"]),
    "typos": lambda t, rng, m: typos(t, rng),
}


def perturb(name: str, text: str, key: str, seed: int, material: dict) -> str | None:
    """Probe ``name`` applied to one text, seeded by ``(seed, name, key)`` so that a row's result does not depend
    on the other rows; None where the probe does not apply (``insert-prompt`` without a prompt text)."""
    return PROBES[name](text, random.Random(f"{seed}:{name}:{key}"), material)
