"""The paste-a-text scorer: checks, messages, the plot and the widget (no browser; see test_browser.py)."""
from __future__ import annotations

import pytest

import scorelib
from scorelib.hub.scorer import MAX_CHARS
from scorelib.hub.widget import ScoreInputError, ScoringWidget, check_and_score, plot_with_score

# every test here reads conftest.py's trained_dir: a real training run (once per session)
pytestmark = pytest.mark.slow

ANSWER = "A stack is last in, first out: push adds an item on top and pop removes the top item."
CHINESE = "栈是一种后进先出的数据结构，压栈把元素放在顶部，出栈取走顶部的元素。"


@pytest.fixture(scope="module")
def scorer(trained_dir):
    return scorelib.load(trained_dir, device="cpu")


@pytest.fixture(scope="module")
def results(trained_dir):
    import pandas as pd

    path = next((trained_dir / "results").glob("result-checkpoint_best-*.csv"))
    return pd.read_csv(path)


def _text(output) -> str:
    return "".join(o.get("text", "") for o in output.outputs)


def test_score_within_each_prompts_range(scorer):
    for prompt, info in scorer.prompts.items():
        r = check_and_score(scorer, prompt, ANSWER)
        assert info["min"] <= r["score"] <= info["max"], (prompt, r)
        assert (r["prompt"], r["min"], r["max"], r["step"]) == (prompt, info["min"], info["max"], info["step"])
        assert r["score_rounded"] == float(scorer.round(r["score"], prompt)[0])
        assert r["warnings"] == []
        assert r["score"] == pytest.approx(scorer.score(ANSWER, prompt=prompt))


@pytest.mark.parametrize("text, pattern", [
    ("", "^the text box is empty: paste a text to score$"),
    ("   \n\t ", "^the text box is empty"),
    ("word " * 20_000, f"100,000 characters; the scorer takes at most {MAX_CHARS:,}"),
])
def test_bad_text_is_refused_with_a_clear_message(scorer, text, pattern):
    with pytest.raises(ScoreInputError, match=pattern):
        check_and_score(scorer, scorer.table.ids[0], text)


def test_unknown_prompt_lists_the_known_ones(scorer):
    with pytest.raises(ScoreInputError) as info:
        check_and_score(scorer, "no-such-prompt", ANSWER)
    message = str(info.value)
    assert "'no-such-prompt'" in message
    assert all(p in message for p in scorer.prompts)
    assert isinstance(info.value, ValueError)


def test_chinese_text_is_scored_with_a_warning(scorer):
    prompt = scorer.table.ids[0]
    r = check_and_score(scorer, prompt, CHINESE)
    assert r["min"] <= r["score"] <= r["max"]
    assert len(r["warnings"]) == 1 and "English" in r["warnings"][0] and "unreliable" in r["warnings"][0]


def test_long_text_warns_that_it_was_cut(scorer):
    text = "The stack grows and shrinks at its top. " * 400  # about 16,000 characters, over max_length tokens
    assert len(text) < MAX_CHARS
    r = check_and_score(scorer, scorer.table.ids[0], text)
    assert any(f"only the first {scorer.max_length}" in w for w in r["warnings"]), r["warnings"]


def test_plot_with_score_marks_the_new_score(results, scorer):
    prompt = str(results["prompt"].iloc[0])
    fig = plot_with_score(results, scorer.table, prompt, 2.5)
    ax = fig.axes[0]
    assert any(list(line.get_ydata()) == [2.5, 2.5] for line in ax.get_lines())  # the horizontal line
    assert any("new text: 2.50" in t.get_text() for t in ax.get_legend().get_texts())
    assert len(ax.collections) == 1  # only this prompt's rows
    assert len(ax.collections[0].get_offsets()) == int((results["prompt"].astype(str) == prompt).sum())


def test_widget_shows_the_score_and_the_plot(scorer, results):
    w = ScoringWidget(scorer, results=results)
    assert [v for _, v in w.prompt.options] == list(scorer.prompts)
    lo, hi = scorer.prompts[w.prompt.value]["min"], scorer.prompts[w.prompt.value]["max"]
    assert w.prompt.options[0][0] == f"{w.prompt.value} ({lo:g}–{hi:g})"
    assert w.last is None and w.button.description == "Score"
    w.text.value = ANSWER
    w.button.click()
    assert lo <= w.last["score"] <= hi
    shown = _text(w.output)
    assert f"on {w.prompt.value}'s {lo:g}–{hi:g} scale" in shown and "rounded" in shown
    assert any("image/png" in o.get("data", {}) for o in w.output.outputs)


def test_widget_shows_errors_without_a_traceback(scorer):
    w = ScoringWidget(scorer)
    for bad in ("", "x" * 100_000):
        w.text.value = bad
        w.button.click()
        assert "error" in w.last and "score" not in w.last
        shown = _text(w.output)
        assert w.last["error"] in shown and "Traceback" not in shown
        assert all(o["output_type"] == "stream" for o in w.output.outputs)
    w.text.value = CHINESE
    w.button.click()
    assert "score" in w.last and "Warning:" in _text(w.output)


def test_widget_turns_unexpected_errors_into_a_message_and_logs_them(scorer, monkeypatch, caplog):
    w = ScoringWidget(scorer)
    monkeypatch.setattr(scorer, "score", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    w.text.value = ANSWER
    with caplog.at_level("INFO", logger="scorelib"):
        w.on_click()
    assert w.last == {"error": "Could not score this text (RuntimeError: boom)."}
    assert "Traceback" not in _text(w.output)
    logged = [r for r in caplog.records if r.name == "scorelib.hub.widget"]
    assert len(logged) == 1 and logged[0].exc_info[0] is RuntimeError  # the log keeps the traceback
    w.text.value = ""
    with caplog.at_level("INFO", logger="scorelib"):
        w.on_click()
    assert any("refused the input" in r.getMessage() for r in caplog.records if r.name == "scorelib.hub.widget")
