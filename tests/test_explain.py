"""Sentence occlusion and token Integrated Gradients (scorelib.explain.explanation): the splitter, the real model, long texts."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import scorelib
from scorelib.errors import OptionError
from scorelib.explain.explanation import explain, leave_out, render_html, render_text, split_sentences

TEXT = ("In summer the sunlight hits our hemisphere more directly. The axis is tilted 23.5 degrees! "
        "Seasons feel different in different places.")


def test_split_sentences_keeps_character_offsets():
    spans = split_sentences(TEXT)
    assert [TEXT[s:e] for s, e in spans] == ["In summer the sunlight hits our hemisphere more directly.",
                                             "The axis is tilted 23.5 degrees!",
                                             "Seasons feel different in different places."]
    text = '  He said "stop." Then left\n\nA new paragraph without a stop'
    assert [text[s:e] for s, e in split_sentences(text)] == ['He said "stop."', "Then left",
                                                             "A new paragraph without a stop"]
    assert split_sentences("   ") == []


def test_leave_out_removes_one_sentence_and_its_space():
    spans = split_sentences("A b. C d. E f.")
    assert [leave_out("A b. C d. E f.", spans, i) for i in range(3)] == ["C d. E f.", "A b. E f.", "A b. C d."]


@pytest.fixture(scope="module")
def scorer(trained_dir):
    return scorelib.load(trained_dir, device="cpu")


@pytest.mark.slow
def test_sentence_effect_equals_rescoring_without_it(scorer):
    e = explain(scorer, TEXT, prompt="q1")
    spans = split_sentences(TEXT)
    full = scorer.score(TEXT, prompt="q1")
    assert e.score["score"] == pytest.approx(full, abs=1e-5)
    for i, unit in enumerate(e.units):
        without = scorer.score(leave_out(TEXT, spans, i), prompt="q1")
        assert unit["effect"]["score"] == pytest.approx(full - without, abs=1e-5)
        assert unit["read"] and (unit["start"], unit["end"]) == spans[i]
    json.dumps(e.to_dict())
    lines = render_text(e).splitlines()
    assert lines[0].startswith("prompt q1: score ")
    assert lines[-1].endswith("Seasons feel different in different places.")
    assert lines[2].split()[0][0] in "+-"
    one = explain(scorer, "Only one sentence here.", prompt="q1")  # compared with an answer of no words (".")
    empty = scorer.score(".", prompt="q1")
    assert one.units[0]["effect"]["score"] == pytest.approx(one.score["score"] - empty, abs=1e-5)


@pytest.mark.slow
def test_html_shades_sentences_with_numbers_on_hover_and_a_legend(scorer):
    e = explain(scorer, TEXT, prompt="q2")
    page = render_html(e)
    assert page.count("<span ") == 3 and page.count('title="score: ') == 3
    signs = [u["effect"]["score"] > 0 for u in e.units]
    assert page.count("rgba(0, 160, 60") == sum(signs) and page.count("rgba(220, 30, 30") == 3 - sum(signs)
    assert "Green: raises the score; red: lowers it" in page and "not a cause" in page
    assert e._repr_html_() == page


@pytest.mark.slow
def test_token_attributions_are_deterministic_and_complete(scorer):
    pytest.importorskip("captum")
    a = explain(scorer, TEXT, prompt="q2", by="token")
    b = explain(scorer, TEXT, prompt="q2", by="token")
    assert np.array_equal(a.effects(), b.effects())
    lo, hi = a.ranges["score"]
    # Completeness: the attributions add up to f(text) - f(baseline), up to the convergence delta
    total = np.nansum(a.effects())
    assert total - (a.score["score"] - a.baseline["score"]) == pytest.approx(a.delta["score"], abs=1e-6)
    assert abs(a.delta["score"]) < 0.01 * (hi - lo)
    assert a.score["score"] == pytest.approx(scorer.score(TEXT, prompt="q2"), abs=1e-4)
    assert [u["text"] for u in a.units][:3] == ["In", "summer", "the"]
    assert all(TEXT[u["start"]:u["end"]] == u["text"] for u in a.units)
    assert all(u["read"] for u in a.units)
    assert "Integrated Gradients" in render_text(a)


@pytest.mark.slow
def test_token_view_without_captum_says_how_to_install_it(scorer, monkeypatch):
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # import captum.attr raises ImportError
    with pytest.raises(OptionError, match="pip install captum"):
        explain(scorer, TEXT, prompt="q1", by="token")
    with pytest.raises(OptionError, match="by='word'"):
        explain(scorer, TEXT, by="word")


@pytest.fixture
def windowed(scorer, monkeypatch):
    """The same model reading a 48-token window (head-tail, truncate or chunks)."""
    def set_mode(mode):
        monkeypatch.setattr(scorer, "max_length", 48)
        monkeypatch.setattr(scorer, "long_text", mode)
        monkeypatch.setattr(scorer, "chunk_stride", 8)
        return scorer
    return set_mode


LONG = " ".join(f"Sentence number {i} talks about the tilted axis of the earth." for i in range(12))


@pytest.mark.slow
def test_head_tail_marks_the_unread_middle(windowed):
    scorer = windowed("head-tail")
    e = explain(scorer, LONG, prompt="q1")
    read = [u["read"] for u in e.units]
    assert read[0] and read[-1] and not any(read[3:-3]), read
    assert "only its first 12 and its last tokens" in e.note
    t = explain(scorer, LONG, prompt="q1", by="token", steps=16)
    flags = [u["read"] for u in t.units]
    n_context = len(scorer.tokenizer(scorer.table.contexts["q1"], add_special_tokens=False)["input_ids"])
    assert sum(flags) == 48 - 3 - n_context and flags[0] and flags[-1] and not all(flags)
    assert all(u["effect"]["score"] is None for u in t.units if not u["read"])
    assert abs(t.delta["score"]) < 0.05


@pytest.mark.slow
def test_truncate_reads_the_start_and_chunks_read_everything(windowed):
    t = explain(windowed("truncate"), LONG, prompt="q1", by="token", steps=8)
    flags = [u["read"] for u in t.units]
    assert flags[0] and not flags[-1] and flags == sorted(flags, reverse=True)
    c = explain(windowed("chunks"), LONG, prompt="q1", by="token", steps=8)
    assert all(u["read"] for u in c.units)
    total = np.nansum(c.effects())
    assert total - (c.score["score"] - c.baseline["score"]) == pytest.approx(c.delta["score"], abs=1e-6)
    assert c.score["score"] == pytest.approx(windowed("chunks").score(LONG, prompt="q1"), abs=1e-4)


@pytest.mark.slow
def test_an_ensemble_averages_its_folds(scorer):
    pytest.importorskip("captum")
    ensemble = scorelib.Scorer([scorer.model, scorer.model], scorer.tokenizer, scorer.table, device=scorer.device)
    assert ensemble.num_models == 2
    one, two = (explain(s, TEXT, prompt="q3", by="token", steps=8) for s in (scorer, ensemble))
    assert np.allclose(one.effects(), two.effects(), atol=1e-6)
    s1, s2 = (explain(s, TEXT, prompt="q3") for s in (scorer, ensemble))
    assert np.allclose(s1.effects(), s2.effects(), atol=1e-5)


class TwoTraits:
    """The real scorer seen as a model of two traits: 'content' (its score) and 'double' (twice it)."""

    def __init__(self, scorer):
        self.inner, self.traits = scorer, ["content", "double"]
        table = scorer.table
        self.table = scorelib.PromptTable(table.ids, table.ranges, table.step, table.contexts, table.uses_context,
                                          traits=self.traits, trait_ranges={t: table.ranges for t in self.traits})

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score(self, texts, prompt=None, contexts=None):
        s = np.asarray(self.inner.score(texts, prompt=prompt, contexts=contexts))
        return np.stack([s, 2 * s], axis=-1)


@pytest.mark.slow
def test_traits_get_one_effect_each(scorer):
    e = explain(TwoTraits(scorer), TEXT, prompt="q1")
    assert e.names == ["content", "double"]
    for u in e.units:
        assert u["effect"]["double"] == pytest.approx(2 * u["effect"]["content"], abs=1e-5)
    assert render_text(e).splitlines()[2].split() == ["conten", "double"]
    assert 'title="content: ' in render_html(e, trait="double")


@pytest.mark.slow
def test_scorelib_score_explain_prints_signed_sentences(trained_dir, capsys):
    from scorelib.cli.score import cli_main as score_cli

    assert score_cli([str(trained_dir), "--cpu", "--prompt", "q1", "--explain", TEXT]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "on q1's 0–3 scale" in lines[0] and lines[1].startswith("prompt q1: score ")
    effects = [line.split()[0] for line in lines[3:6]]
    assert all(x[0] in "+-" and float(x) == float(x) for x in effects), lines
    assert lines[5].endswith("Seasons feel different in different places.")
    assert score_cli([str(trained_dir), "--cpu", "--prompt", "q1", "--format", "json", "--explain", "One. Two."]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[1])
    assert record["by"] == "sentence" and [u["text"] for u in record["units"]] == ["One.", "Two."]


@pytest.mark.slow
def test_widget_explain_toggle_shades_sentences(scorer, monkeypatch):
    from scorelib.hub import widget as widget_module

    w = widget_module.ScoringWidget(scorer)
    w.prompt.value, w.text.value = "q2", TEXT
    w.button.click()
    assert w.explained.value == ""
    w.explain.value = True  # toggling re-scores the shown text with its explanation
    assert w.explained.value.count("<span ") == 3 and "Green: raises the score" in w.explained.value
    assert w.last["score"] == pytest.approx(scorer.score(TEXT, prompt="q2"))

    def broken(*args, **kwargs):
        raise RuntimeError("no gradients today")

    monkeypatch.setattr("scorelib.explain.explanation.explain", broken)
    w.button.click()
    shown = "".join(o.get("text", "") for o in w.output.outputs)
    assert "(explanation not shown: RuntimeError: no gradients today)" in shown and "Traceback" not in shown
    assert w.explained.value == ""


@pytest.mark.slow
def test_token_attributions_per_trait(scorer):
    pytest.importorskip("captum")
    import torch

    class TwoOutputs(torch.nn.Module):  # the real model's output, and half of it as a second trait
        def __init__(self, model):
            super().__init__()
            self.inner, self.encoder = model, model.encoder

        def forward(self, *args, **kwargs):
            out = self.inner(*args, **kwargs)["encoder_out"]
            return {"encoder_out": torch.stack([out, out / 2], dim=-1)}

    two = TwoTraits(scorer)
    two.models = [TwoOutputs(scorer.model)]
    e = explain(two, TEXT, prompt="q1", by="token", steps=8)
    lo, hi = scorer.table.ranges["q1"]
    assert e.score["double"] == pytest.approx((e.score["content"] - lo) / 2 + lo, abs=1e-5)
    assert np.allclose(e.effects("double"), e.effects("content") / 2, atol=1e-6)
    assert set(e.delta) == {"content", "double"}
