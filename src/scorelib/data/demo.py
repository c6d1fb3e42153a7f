"""The embedded demo data set: synthetic short answers with rubric-derived scores.

No fairseq file corresponds to this module: it stands in for the user's own data files,
the train/valid/test tables that fairseq's ``load_dataset(split)`` would read from disk.
Answers are assembled at call time from a phrase bank (``data/demo_bank.json``)
with a fixed ``random.Random``, so they are the same on every machine, need no network
and take milliseconds to build. :func:`write_demo` writes them as CSV files in the
format a user's own data would take.
"""
from __future__ import annotations

import functools
import importlib.resources
import json
import random
from pathlib import Path

import pandas as pd

from scorelib.data.readers import COLUMNS
from scorelib.writers import write_table

DEMO_RANGES: dict[str, tuple[float, float]] = {"q1": (0.0, 3.0), "q2": (1.0, 6.0), "q3": (0.0, 10.0)}
DEMO_STEP: float = 1.0
SPLIT_SIZES = {"train": 420, "valid": 90, "test": 90}  # answers per prompt
HELD_OUT_RATE = 0.6  # in test, the chance that a phrase is drawn from its held-out third


@functools.lru_cache(maxsize=None)
def load_bank() -> dict:
    """Read the phrase bank: per prompt its question, rubric weights, ideas
    (paraphrases and negations), misconceptions and neutral filler sentences."""
    path = importlib.resources.files("scorelib.data") / "demo_bank.json"
    return json.loads(path.read_text(encoding="utf-8"))["prompts"]


def split_phrases(phrases: list[str]) -> tuple[list[str], list[str]]:
    """Split a paraphrase list into (seen, held_out): the last ``len // 3`` phrases are
    held out, i.e. they occur only in the test split."""
    cut = len(phrases) - len(phrases) // 3
    return phrases[:cut], phrases[cut:]


def rubric_score(prompt: str, ideas, misconceptions) -> float:
    """Score an answer by the written rubric of ``prompt``.

    Args:
        prompt (str): prompt id, a key of :data:`DEMO_RANGES`.
        ideas (int | Iterable[str]): the key ideas the answer states (or their count).
        misconceptions (int | Iterable[str]): the misconceptions it states, negated key
            ideas included (or their count).

    Returns:
        float: ``min + clip(idea_points * ideas - penalty * misconceptions, 0, max - min)``.
    """
    n_ideas = ideas if isinstance(ideas, int) else len(set(ideas))
    n_wrong = misconceptions if isinstance(misconceptions, int) else len(set(misconceptions))
    rule = load_bank()[prompt]["rubric"]
    lo, hi = DEMO_RANGES[prompt]
    points = rule["idea_points"] * n_ideas - rule["penalty"] * n_wrong
    return float(lo + min(max(points, 0), hi - lo))


def _pick(rng: random.Random, phrases: list[str], test: bool) -> str:
    seen, held = split_phrases(phrases)
    if test and held and rng.random() < HELD_OUT_RATE:
        return rng.choice(held)
    return rng.choice(seen)


def _answer(rng: random.Random, spec: dict, test: bool) -> tuple[str, list[str], list[str]]:
    """Draw one answer: some key ideas, 0-2 misconceptions or negated ideas, some filler."""
    names = list(spec["ideas"])
    ideas = rng.sample(names, rng.randint(0, len(names)))
    wrong_pool = [(f"not-{n}", spec["ideas"][n]["negations"]) for n in names if n not in ideas]
    wrong_pool += [(m, v["phrases"]) for m, v in spec["misconceptions"].items()]
    n_wrong = rng.choices((0, 1, 2), weights=(0.5, 0.35, 0.15))[0]
    wrong = rng.sample(wrong_pool, n_wrong)
    sentences = [_pick(rng, spec["ideas"][n]["phrases"], test) for n in ideas]
    sentences += [_pick(rng, phrases, test) for _, phrases in wrong]
    n_filler = max(0, 2 - len(sentences)) + rng.choice((0, 1, 1, 2))
    sentences += rng.sample(spec["filler"], n_filler)
    rng.shuffle(sentences)
    return " ".join(sentences), sorted(ideas), sorted(m for m, _ in wrong)


@functools.lru_cache(maxsize=8)
def _generate(seed: int) -> tuple[dict, ...]:
    rows = []
    for prompt, spec in load_bank().items():
        rng = random.Random(f"scorelib-demo:{seed}:{prompt}")
        splits = [s for s, n in SPLIT_SIZES.items() for _ in range(n)]
        rng.shuffle(splits)
        for i, split in enumerate(splits):
            text, ideas, wrong = _answer(rng, spec, test=split == "test")
            rows.append(dict(key=f"{prompt}-{i:04d}", prompt=prompt, context=spec["question"],
                             text=text, score=rubric_score(prompt, ideas, wrong),
                             split=split, ideas=ideas, misconceptions=wrong))
    return tuple(rows)


def generate(seed: int = 0) -> list[dict]:
    """All demo answers with their annotations, for checking the rubric.

    Args:
        seed (int): generator seed; the same seed gives the same answers.

    Returns:
        list[dict]: one dict per answer with the :data:`COLUMNS` plus ``split``,
        ``ideas`` (key ideas stated) and ``misconceptions`` (misconceptions stated;
        a negated idea appears as ``"not-<idea>"``).
    """
    return [dict(r, ideas=list(r["ideas"]), misconceptions=list(r["misconceptions"]))
            for r in _generate(seed)]


def load_demo(split: str | None = None, seed: int = 0):
    """Load the synthetic demo set (three prompts, 1,800 answers).

    Args:
        split (str | None): ``"train"``, ``"valid"`` or ``"test"``; ``None`` for all three.
        seed (int): generator seed (0 is the documented set).

    Returns:
        pandas.DataFrame with columns ``key, prompt, text, context, score``, or for
        ``split=None`` a dict ``{split: DataFrame}``.
    """
    if split is None:
        return {s: load_demo(s, seed) for s in SPLIT_SIZES}
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {list(SPLIT_SIZES)} or None, got {split!r}")
    rows = [{c: r[c] for c in COLUMNS} for r in _generate(seed) if r["split"] == split]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_demo(folder) -> dict[str, Path]:
    """Write the demo set as CSV files, the layout expected for your own data.

    Args:
        folder (str | Path): output folder, created if needed.

    Returns:
        dict[str, Path]: paths of ``train.csv``, ``valid.csv``, ``test.csv`` (columns
        ``key, prompt, text, context, score``) and ``ranges.csv`` (``prompt, min, max``).
    """
    ranges = pd.DataFrame([(p, lo, hi) for p, (lo, hi) in DEMO_RANGES.items()], columns=["prompt", "min", "max"])
    return _write_tables(folder, load_demo(), ranges)


def _write_tables(folder, frames: dict, ranges: pd.DataFrame) -> dict[str, Path]:
    """``{split}.csv`` for each frame and ``ranges.csv`` in ``folder`` (created if needed); returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, frame in {**frames, "ranges": ranges}.items():
        paths[split] = folder / f"{split}.csv"
        write_table(frame, paths[split])  # atomic; texts with line breaks quoted
    return paths


DEMO_TRAITS: dict[str, tuple[float, float, float]] = {"content": (0.0, 5.0, 1.0), "accuracy": (0.0, 2.0, 1.0)}


def load_demo_traits(split: str | None = None, seed: int = 0):
    """The demo answers with two analytic traits in place of one score (for ``--score-column content,accuracy``).

    ``content`` counts the distinct key ideas an answer states (0-5); ``accuracy`` is 2 minus the
    distinct misconceptions it states (0-2). Both follow from the same annotations as the rubric score.

    Returns:
        pandas.DataFrame with columns ``key, prompt, text, context, content, accuracy``, or for
        ``split=None`` a dict ``{split: DataFrame}``.
    """
    if split is None:
        return {s: load_demo_traits(s, seed) for s in SPLIT_SIZES}
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {list(SPLIT_SIZES)} or None, got {split!r}")
    rows = [{**{c: r[c] for c in COLUMNS[:-1]}, "content": float(len(set(r["ideas"]))),
             "accuracy": float(max(0, 2 - len(set(r["misconceptions"]))))}
            for r in _generate(seed) if r["split"] == split]
    return pd.DataFrame(rows, columns=COLUMNS[:-1] + list(DEMO_TRAITS))


def write_demo_traits(folder) -> dict[str, Path]:
    """Write the two-trait demo as ``train/valid/test.csv`` and ``ranges.csv`` (columns ``trait, min, max, step``).

    Train on it with ``scorelib-train FOLDER --score-column content,accuracy --score-ranges FOLDER/ranges.csv``.
    """
    ranges = pd.DataFrame([(t, *r) for t, r in DEMO_TRAITS.items()], columns=["trait", "min", "max", "step"])
    return _write_tables(folder, load_demo_traits(), ranges)


def _data_card() -> str:
    """Render the data card (markdown) from the phrase bank and the split sizes."""
    n = sum(SPLIT_SIZES.values())
    sizes = ", ".join(f"{s} {k}" for s, k in SPLIT_SIZES.items())
    lines = [
        "# scorelib demo set (SYNTHETIC)",
        "",
        "**These answers were not written by students.** They are assembled from a phrase bank",
        "(`scorelib/data/demo_bank.json`) by a seeded generator, so that the course runs with",
        "no network and no download, gives the same rows on every machine, and has gold scores a",
        "reader can check by hand against the rubric below.",
        "",
        f"Size: {len(DEMO_RANGES)} prompts x {n} answers = {n * len(DEMO_RANGES)}; per prompt {sizes}.",
        "Columns: `key, prompt, context, text, score`; scores are integers (step 1).",
        "",
        "## Rubric",
        "",
        "Each answer states some key ideas, possibly misconceptions, and neutral filler sentences.",
        "A sentence that negates a key idea (\"the tilt does not matter\") earns nothing for that idea",
        "and counts as a misconception. Score = min + clip(idea_points x ideas - penalty x",
        "misconceptions, 0, max - min).",
    ]
    for prompt, spec in load_bank().items():
        lo, hi = DEMO_RANGES[prompt]
        rule = spec["rubric"]
        lines += ["", f"### {prompt}: {spec['question']} (range {lo:g}-{hi:g})", "",
                  f"+{rule['idea_points']} per key idea, -{rule['penalty']} per misconception.", "",
                  "Key ideas:"]
        lines += [f"- `{name}`: {idea['label']}" for name, idea in spec["ideas"].items()]
        lines += ["", "Misconceptions (besides negated key ideas, `not-<idea>`):"]
        lines += [f"- `{name}`: {m['label']}" for name, m in spec["misconceptions"].items()]
    lines += [
        "",
        "## Held-out paraphrases",
        "",
        "The last third of every paraphrase list appears only in the test split (a test sentence",
        f"comes from it {round(HELD_OUT_RATE * 100)}% of the time), and misconceptions reuse the keywords of",
        "the key ideas, so word overlap is a weak cue: a bag-of-words model meets unseen wordings",
        "at test time, while an encoder that knows meaning can carry over. Expect models to",
        "score higher on valid than on test.",
        "",
        "## Known limits",
        "",
        "- Template language: every sentence comes from a small bank; no spelling errors, no",
        "  partial or muddled statements, no real student voice.",
        "- The rubric counts ideas; real graders weigh clarity, order and partial credit.",
        "- Small: 90 test answers per prompt, so QWK moves by a few points between seeds.",
        "",
        "## Real data sets to use next",
        "",
        "- ASAP-AES and ASAP-SAS (Hewlett Foundation, Kaggle): essays and short answers with",
        "  per-prompt score ranges.",
        "- Mohler et al. (2011): short answers to computer-science questions, scores 0-5.",
        "- CLEAR corpus (CommonLit): readability scores of text excerpts.",
    ]
    return "\n".join(lines) + "\n"


DEMO_QUESTIONS: dict[str, str] = {p: spec["question"] for p, spec in load_bank().items()}
DATA_CARD: str = _data_card()
