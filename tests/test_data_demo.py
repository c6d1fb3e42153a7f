"""Tests for the embedded demo data set (scorelib.data.demo)."""
import pandas as pd
import pytest

from scorelib.data import demo
from scorelib.data.demo import (DATA_CARD, DEMO_QUESTIONS, DEMO_RANGES, generate, load_bank, load_demo,
                           rubric_score, split_phrases, write_demo)

from scorelib.data.tables import COLUMNS  # the demo uses the same columns as every table


@pytest.fixture(scope="module")
def splits():
    return load_demo()


def test_deterministic():
    demo._generate.cache_clear()
    first = load_demo()
    demo._generate.cache_clear()
    second = load_demo()
    for split in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(first[split], second[split])
    assert not load_demo("train", seed=1).equals(first["train"])


def test_sizes_and_columns(splits):
    assert set(splits) == {"train", "valid", "test"}
    total = sum(len(f) for f in splits.values())
    assert total >= 1500
    assert len(splits["train"]) / total == pytest.approx(0.7, abs=0.05)
    for frame in splits.values():
        assert list(frame.columns) == COLUMNS
        assert set(frame.prompt) == set(DEMO_RANGES) and len(DEMO_RANGES) >= 3


def test_scores_are_integers_in_range_and_spread(splits):
    frame = pd.concat(splits.values())
    for prompt, (lo, hi) in DEMO_RANGES.items():
        scores = frame.score[frame.prompt == prompt]
        assert (scores == scores.round()).all()
        assert scores.between(lo, hi).all()
        assert set(scores) == set(range(int(lo), int(hi) + 1))  # every level is used
        assert scores.value_counts(normalize=True).max() < 0.4


def test_keys_unique_and_context_is_question(splits):
    frame = pd.concat(splits.values())
    assert frame.key.is_unique
    assert (frame.context == frame.prompt.map(DEMO_QUESTIONS)).all()


def test_answers_are_short(splits):
    words = pd.concat(splits.values()).text.str.split().str.len()
    assert words.min() >= 5
    assert words.between(10, 60).mean() > 0.85


def _all_lists(spec):
    for name, idea in spec["ideas"].items():
        yield name, idea["phrases"]
        yield f"not-{name}", idea["negations"]
    for name, mis in spec["misconceptions"].items():
        yield name, mis["phrases"]


def test_held_out_phrases_only_in_test(splits):
    train_valid = " ".join(pd.concat([splits["train"], splits["valid"]]).text)
    test = " ".join(splits["test"].text)
    for prompt, spec in load_bank().items():
        for name, phrases in _all_lists(spec):
            seen, held = split_phrases(phrases)
            assert held and len(seen) >= 2 * len(held) - 1
            assert not any(h in train_valid for h in held), (prompt, name)
        for name, idea in spec["ideas"].items():
            assert 6 <= len(idea["phrases"]) <= 12
            _, held = split_phrases(idea["phrases"])
            assert any(h in test for h in held), (prompt, name)


def test_rubric_matches_gold_and_text():
    bank = load_bank()
    for row in generate():
        assert rubric_score(row["prompt"], row["ideas"], row["misconceptions"]) == row["score"]
        lists = dict(_all_lists(bank[row["prompt"]]))
        stated = {name for name, phrases in lists.items() if any(p in row["text"] for p in phrases)}
        assert stated == set(row["ideas"]) | set(row["misconceptions"]), row["key"]


def test_rubric_examples():
    assert rubric_score("q1", ["tilt", "direct"], []) == 2.0
    assert rubric_score("q1", ["tilt"], ["distance", "not-daylength"]) == 0.0
    assert rubric_score("q2", 0, 0) == 1.0 and rubric_score("q2", 5, 0) == 6.0
    assert rubric_score("q3", 5, 1) == 9.0 and rubric_score("q3", 3, 0) == 6.0


def test_load_demo_rejects_unknown_split():
    with pytest.raises(ValueError):
        load_demo("dev")


def test_write_demo_round_trip(tmp_path, splits):
    paths = write_demo(tmp_path / "demo")
    assert set(paths) == {"train", "valid", "test", "ranges"}
    for split in ("train", "valid", "test"):
        back = pd.read_csv(paths[split], encoding="utf-8")
        pd.testing.assert_frame_equal(back, splits[split])
    ranges = pd.read_csv(paths["ranges"])
    assert list(ranges.columns) == ["prompt", "min", "max"]
    assert {r.prompt: (r.min, r.max) for r in ranges.itertuples()} == DEMO_RANGES


def test_data_card_says_synthetic():
    assert "SYNTHETIC" in DATA_CARD
    for name in ("ASAP", "Mohler", "CLEAR", *DEMO_QUESTIONS.values()):
        assert name in DATA_CARD
