"""Robustness probes: each perturbation on small texts, every key once per probe, flags, and scorelib-probe."""
from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from scorelib.errors import OptionError
from scorelib.explain.perturb import (NEUTRAL_PARAGRAPH, PROBES, SHOULD_LOWER, WORD, append_offtopic, drop_half,
                              insert_prompt, perturb, random_words, repeat_text, shuffle_sentences, typos,
                              vocabulary_of)
from scorelib.cli.probe import cli_main as probe_cli
from scorelib.explain.probes import parse_probes, run_probes, summarize
from scorelib.data.prompts import PromptTable

THREE = "The sun is a star. It is very hot! Is it far away? Yes, quite far."
GOOD = {"a": {"light", "water", "sugar", "carbon", "chlorophyll", "glucose", "energy", "leaves"},
        "b": {"stack", "push", "pop", "top", "last", "first", "item", "order"}}


def rng(seed=0):
    return random.Random(seed)


def test_shuffle_sentences_is_a_new_order_of_the_same_sentences():
    out = shuffle_sentences(THREE, rng())
    sentences = ["The sun is a star.", "It is very hot!", "Is it far away?", "Yes, quite far."]
    parts = [s for s in sentences if s in out]
    assert parts == sentences and out != THREE and len(out) == len(THREE)
    assert sorted(out.split(". ")) != out.split(". ") or out != THREE
    assert shuffle_sentences("One sentence only.", rng()) == "One sentence only."
    assert shuffle_sentences(THREE, rng(5)) == shuffle_sentences(THREE, rng(5))  # seeded


def test_repeat_append_and_insert():
    assert repeat_text("A b.") == "A b. A b."
    assert repeat_text("A.\nB.") == "A.\nB.\n\nA.\nB."
    assert append_offtopic("My answer. ", "Other text.") == "My answer. Other text."
    assert insert_prompt("My answer.", " Why is the sky blue? ") == "Why is the sky blue? My answer."


def test_drop_half_keeps_the_first_third_and_fifth_sentences():
    assert drop_half("S1 a. S2 b. S3 c. S4 d. S5 e.") == "S1 a. S3 c. S5 e."
    assert drop_half("one two three four five") == "one two three"  # one sentence: its first half of words


def test_random_words_has_as_many_words_all_from_the_vocabulary():
    vocab = ["alpha", "beta", "gamma"]
    out = random_words("one two three four five six", rng(), vocab)
    assert len(out.split()) == 6 and set(out.split()) <= set(vocab)
    assert vocabulary_of(["The cat, the CAT; 3 dogs."]) == ["cat", "dogs", "the"]


def test_typos_swap_two_adjacent_letters_in_five_percent_of_words():
    text = " ".join(f"word{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(40))  # 40 distinct words
    words = [w for w in WORD.findall(text)]
    out = typos(text, rng())
    changed = [(a, b) for a, b in zip(text.split(), out.split()) if a != b]
    assert len(changed) == round(0.05 * len(words)) == 2
    for a, b in changed:
        assert sorted(a) == sorted(b) and len(a) == len(b)
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        assert len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
    assert typos("Short answer", rng()) != "Short answer"  # at least one word
    assert typos("aa 11", rng()) == "aa 11"  # nothing to swap


def test_perturb_is_seeded_by_seed_probe_and_key():
    material = {"prompt_text": "Q?", "offtopic": "Off.", "vocabulary": ["x", "y", "z"]}
    a = perturb("random-words", "one two three four", "k1", 7, material)
    assert a == perturb("random-words", "one two three four", "k1", 7, material)
    assert perturb("insert-prompt", "A.", "k1", 7, {**material, "prompt_text": None}) is None
    assert set(SHOULD_LOWER) < set(PROBES) and len(PROBES) == 7


def test_parse_probes_names_the_known_ones():
    assert parse_probes("all") == list(PROBES)
    assert parse_probes("typos, drop-half") == ["typos", "drop-half"]
    with pytest.raises(OptionError, match="--probes .*unknown tpyos.*shuffle-sentences"):
        parse_probes("tpyos")


class FakeScorer:
    """A scorer on a 0-10 scale whose score grows with word count (``length``) or counts distinct on-topic words."""

    def __init__(self, kind, traits=()):
        self.kind, self.traits = kind, list(traits)
        trait_ranges = {t: {"a": (0.0, 10.0), "b": (0.0, 10.0)} for t in traits}
        self.table = PromptTable(["a", "b"], {"a": (0.0, 10.0), "b": (0.0, 10.0)}, 1.0 if not traits else None,
                                 {"a": "Why do plants need light?", "b": None}, False, traits=list(traits),
                                 trait_ranges=trait_ranges, trait_steps={t: 1.0 for t in traits})

    def score(self, texts, prompt=None, contexts=None):
        if self.kind == "length":
            s = np.array([min(10.0, 0.5 * len(t.split())) for t in texts])
        else:
            s = np.array([float(len(GOOD[prompt] & {w.lower().strip(".,") for w in t.split()})) for t in texts])
        return np.column_stack([s, s / 2]) if self.traits else s


@pytest.fixture
def frame():
    texts = {"a": ["Leaves use light and water. They make sugar. Energy is stored as glucose.",
                   "Plants need light for energy. Chlorophyll in leaves absorbs it.",
                   "Light and carbon make sugar. Water comes from the roots. I like plants."],
             "b": ["A stack is last in, first out. Push puts an item on top. Pop takes the top item.",
                   "Push and pop work at the top. The order is reversed.",
                   "The last item pushed comes out first. It is like a pile of plates."]}
    rows = [{"key": f"{p}{i}", "prompt": p, "text": t, "context": None, "score": 3.0,
             "score_content": 3.0, "score_language": 2.0} for p in "ab" for i, t in enumerate(texts[p])]
    return pd.DataFrame(rows)


def test_every_key_is_probed_once_per_probe(frame):
    rows = run_probes(FakeScorer("topic"), frame, list(PROBES), seed=3, vocabulary=["dog", "cat", "light"])
    for probe, group in rows.groupby("probe"):
        keys = frame["key"] if probe != "insert-prompt" else frame["key"][frame["prompt"] == "a"]
        assert sorted(group["key"]) == sorted(keys), probe  # prompt b has no prompt text to insert
    assert np.allclose(rows["delta"], rows["pred_probe"] - rows["pred"])
    again = run_probes(FakeScorer("topic"), frame.iloc[::-1], list(PROBES), seed=3, vocabulary=["dog", "cat", "light"])
    merged = rows.merge(again, on=["key", "probe"])
    assert (merged["text_probe_x"] == merged["text_probe_y"]).all()  # a row's probe does not depend on the order


def test_a_length_rewarding_model_is_flagged_and_a_topic_model_is_not(frame):
    length = summarize(FakeScorer("length"), run_probes(FakeScorer("length"), frame, list(PROBES), seed=1))
    flagged = {f["probe"] for f in length["flags"]}
    assert flagged == {"repeat-text", "append-offtopic"}
    assert length["probes"]["repeat-text"]["overall"]["score"]["share_rising"] == 1.0
    assert length["probes"]["repeat-text"]["flagged"] == ["score"]
    topic = summarize(FakeScorer("topic"), run_probes(FakeScorer("topic"), frame, list(PROBES), seed=1))
    assert topic["flags"] == []
    assert topic["probes"]["random-words"]["overall"]["score"]["mean_delta"] < 0
    json.dumps(length)


def test_traits_get_their_own_columns_and_flags(frame):
    scorer = FakeScorer("length", traits=["content", "language"])
    rows = run_probes(scorer, frame, ["repeat-text", "typos"], seed=1)
    assert {"gold_content", "pred_language", "pred_probe_content", "delta_language"} <= set(rows.columns)
    summary = summarize(scorer, rows)
    assert {(f["probe"], f["name"]) for f in summary["flags"]} == {("repeat-text", "content"),
                                                                    ("repeat-text", "language")}
    assert set(summary["probes"]["typos"]["per_prompt"]["a"]) == {"content", "language"}


@pytest.mark.slow
def test_scorelib_probe_writes_its_files(trained_dir, tmp_path, capsys):
    assert probe_cli([str(trained_dir), "--cpu", "--max-rows", "9", "--probes", "repeat-text,drop-half",
                      "--results-path", str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "probe-checkpoint_best-test.csv")
    assert list(rows.columns[:7]) == ["key", "prompt", "probe", "gold", "pred", "pred_probe", "delta"]
    assert len(rows) == 18 and rows.groupby("probe")["key"].nunique().tolist() == [9, 9]
    summary = json.loads((tmp_path / "probe-checkpoint_best-test.json").read_text())
    assert summary["vocabulary"] == "the demo data's train split" and summary["n_texts"] == 9
    assert (tmp_path / "probe-checkpoint_best-test.png").stat().st_size > 1000
    assert "flags:" in capsys.readouterr().out


@pytest.mark.slow
def test_scorelib_probe_errors_are_one_line(trained_dir, tmp_path, capsys):
    assert probe_cli([str(trained_dir), "--cpu", "--probes", "nope", "--results-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scorelib-probe: error: --probes 'nope'") and "\n" not in err
    assert probe_cli([str(trained_dir), "--cpu", "--split", "dev", "--results-path", str(tmp_path)]) == 2
    assert "--split dev" in capsys.readouterr().err
    assert NEUTRAL_PARAGRAPH.count(".") == 2


def user_table(folder, n=25):
    """A user's table of two prompts with their own column names, as the issue's answers.csv."""
    from scorelib.data.demo import load_demo

    texts = pd.concat(load_demo().values())["text"].drop_duplicates().head(2 * n).tolist()
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(2 * n)], "question": ["q1"] * n + ["q9"] * n,
                          "answer": texts, "mark": [i % 4 for i in range(2 * n)],
                          "text": "a decoy column the model never read"})
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "answers.csv", index=False)
    return folder / "answers.csv", frame


def probe_args(**kw):
    from types import SimpleNamespace

    base = dict(save_dir="checkpoints/mine", data=None, split="test", key_column=None, prompt_column=None,
                text_column=None, context_column=None, score_column=None, layout="table", encoding=None)
    return SimpleNamespace(**{**base, **kw})


def trained_cfg(path):
    return {"data": str(path), "key_column": "id", "prompt_column": "question", "text_column": "answer",
            "score_column": "mark", "context_column": None, "layout": "table", "valid_fraction": 0.1,
            "test_fraction": 0.2, "split_seed": 3, "prompts": None, "sheet": None, "encoding": None}


def test_probe_defaults_to_the_trained_data_columns_and_held_out_rows(tmp_path, log_of):
    """Without DATA: the table the model was trained on, read with its columns (answer, not text), split as the
    training run split it, so --split test is the rows it never trained on; the same table named as DATA too."""
    from scorelib.data.tables import Columns, read_splits
    from scorelib.explain.probes import rows_to_probe

    path, table = user_table(tmp_path / "mine")
    cfg = trained_cfg(path)
    frame, what, tables = rows_to_probe(probe_args(), cfg, cv=False)
    split = read_splits(str(path), Columns("id", "question", "answer", None, "mark"), valid_fraction=0.1,
                        test_fraction=0.2, split_seed=3)
    assert sorted(frame["key"]) == sorted(split.frames["test"]["key"]) and 0 < len(frame) < 25
    assert not set(frame["key"]) & set(split.frames["train"]["key"])
    assert set(frame["text"]) <= set(table["answer"]) and "as the training run split it" in what
    again, _, _ = rows_to_probe(probe_args(data=str(path.resolve())), cfg, cv=False)
    assert again["key"].tolist() == frame["key"].tolist()
    rows, what, _ = rows_to_probe(probe_args(split="train"), cfg, cv=False)
    assert "rows the model trained on" in what and "the model TRAINED on these rows" in log_of.text


def test_probe_leaves_out_trained_rows_of_another_table_and_never_falls_back_to_the_demo(tmp_path, log_of):
    from scorelib.errors import MissingFileError
    from scorelib.explain.probes import rows_to_probe

    path, table = user_table(tmp_path / "mine")
    cfg = trained_cfg(path)
    _, _, tables = rows_to_probe(probe_args(), cfg, cv=False)
    trained = tables.frames["train"]
    other = pd.concat([table[table["id"].isin(trained["key"].head(5))],  # five rows the model trained on
                       table.head(0)]).assign(id=lambda f: "new-" + f["id"])
    new = pd.DataFrame({"id": ["n1", "n2"], "question": ["q1", "q9"], "answer": ["a fresh answer", "another one"],
                        "mark": [1, 2], "text": "decoy"})
    pd.concat([other, new]).to_csv(tmp_path / "new.csv", index=False)
    frame, what, _ = rows_to_probe(probe_args(data=str(tmp_path / "new.csv")), cfg, cv=False)
    assert frame["key"].tolist() == ["n1", "n2"] and frame["text"].tolist() == ["a fresh answer", "another one"]
    assert "5 of 7 rows" in log_of.text and "less 5 rows the model trained on" in what
    with pytest.raises(OptionError, match="cross-validation dir's folds were trained on every row"):
        rows_to_probe(probe_args(), cfg, cv=True)
    path.unlink()  # the training table is gone: an error naming it, never the demo data
    with pytest.raises(MissingFileError, match="answers.csv: not found .*trained on it.*scorelib-probe"):
        rows_to_probe(probe_args(), cfg, cv=False)
