"""Property tests (hypothesis) for the collater, ``batch_by_size`` and per-prompt scaling."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scorelib.data.scoring_dataset import batch_by_size, collate
from scorelib.data.prompts import PromptTable

SETTINGS = settings(max_examples=50, deadline=None)
PAD = 7


def item(i, n):
    return {"id": i, "key": f"k{i}", "prompt": "p", "text": "t", "prompt_id": i % 3, "score": 2.5, "target": 0.5,
            "input_ids": torch.arange(100, 100 + n), "attention_mask": torch.ones(n, dtype=torch.long),
            "token_type_ids": torch.zeros(n, dtype=torch.long)}


@SETTINGS
@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20))
def test_collater_pads_any_lengths(lengths):
    batch = collate([item(i, n) for i, n in enumerate(lengths)], pad_id=PAD)
    ids, mask = batch["net_input"]["input_ids"], batch["net_input"]["attention_mask"]
    assert ids.shape == mask.shape == (len(lengths), max(lengths))
    assert mask.sum(1).tolist() == lengths and batch["ntokens"] == sum(lengths)
    for row, n in enumerate(lengths):
        assert ids[row, :n].tolist() == list(range(100, 100 + n))
        assert ids[row, n:].eq(PAD).all() and mask[row, n:].eq(0).all()
        assert mask[row, :n].eq(1).all()
    assert batch["net_input"]["token_type_ids"].eq(0).all()
    assert batch["id"].tolist() == list(range(len(lengths)))
    assert batch["net_input"]["prompt_ids"].tolist() == [i % 3 for i in range(len(lengths))]


@SETTINGS
@given(sizes=st.lists(st.integers(min_value=1, max_value=300), max_size=60),
       max_tokens=st.one_of(st.none(), st.integers(min_value=1, max_value=1000)),
       max_sentences=st.one_of(st.none(), st.integers(min_value=1, max_value=20)),
       sort=st.booleans())
def test_batch_by_size_covers_every_index_within_bounds(sizes, max_tokens, max_sentences, sort):
    if max_tokens is None and max_sentences is None:
        max_sentences = 4
    indices = np.argsort(sizes, kind="stable") if sort else np.arange(len(sizes))
    batches = batch_by_size(indices, sizes.__getitem__, max_tokens, max_sentences)
    flat = [i for b in batches for i in b]
    assert flat == [int(i) for i in indices]  # every index once, order kept
    for b in batches:
        assert b, "no empty batches"
        if max_sentences is not None:
            assert len(b) <= max_sentences
        if max_tokens is not None:
            width = max(sizes[i] for i in b)
            assert len(b) * width <= max_tokens or (len(b) == 1 and width > max_tokens)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def prompt_ranges(draw):
    n = draw(st.integers(min_value=1, max_value=5))
    ranges = {}
    for i in range(n):
        lo = draw(finite)
        width = draw(st.floats(min_value=1e-3, max_value=1e6))
        ranges[f"p{i}"] = (lo, lo + width)
    return ranges


@SETTINGS
@given(ranges=prompt_ranges(), data=st.data())
def test_scaling_round_trips_per_prompt(ranges, data):
    table = PromptTable(ids=list(ranges), ranges=ranges)
    prompts = data.draw(st.lists(st.sampled_from(list(ranges)), min_size=1, max_size=30))
    fractions = np.array(data.draw(st.lists(st.floats(0, 1), min_size=len(prompts), max_size=len(prompts))))
    lo = np.array([ranges[p][0] for p in prompts])
    hi = np.array([ranges[p][1] for p in prompts])
    scores = table.unscale(fractions, prompts)
    assert np.all(scores >= lo - 1e-9 * np.abs(lo) - 1e-9) and np.all(scores <= hi + 1e-9 * np.abs(hi) + 1e-9)
    back = table.scale(scores, prompts)
    scale = np.maximum(np.abs(lo), np.abs(hi)) / (hi - lo)  # relative error grows with |value| / width
    assert np.all(np.abs(back - fractions) <= 1e-9 * (1 + scale))
    again = table.unscale(back, prompts)
    assert np.all(np.abs(again - scores) <= 1e-9 * (1 + np.abs(lo) + np.abs(hi)))
    assert np.allclose(table.scale(lo, prompts), 0) and np.allclose(table.scale(hi, prompts), 1)


@SETTINGS
@given(lo=finite, width=st.floats(min_value=-1e6, max_value=0))
def test_empty_or_reversed_ranges_are_refused(lo, width):
    with pytest.raises(ValueError, match="min < max"):
        PromptTable(ids=["a"], ranges={"a": (lo, lo + width)})


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=2, max_value=7), st.data())
def test_fitted_cutpoints_strictly_increasing_on_tie_heavy_data(k, data):
    """Predictions drawn from a handful of values (many ties): thresholds stay strictly increasing, a band apart."""
    from scorelib.cutpoints.thresholds import MIN_GAP, fit_cutpoints

    n = data.draw(st.integers(min_value=2, max_value=60))
    gold = data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    levels = data.draw(st.lists(st.floats(-0.5, k - 0.5, allow_nan=False), min_size=1, max_size=4))
    pred = data.draw(st.lists(st.sampled_from(levels), min_size=n, max_size=n))
    cuts, fit = fit_cutpoints(gold, pred, lo=0.0, step=1.0, k=k)
    assert len(cuts) == k - 1 and np.all(np.diff(cuts) >= MIN_GAP - 1e-12)
    if fit["qwk"] is not None:
        assert fit["qwk"] >= fit["qwk_nearest"] - 1e-12
        table = PromptTable(["p"], {"p": (0.0, k - 1.0)}, step=1.0, cutpoints={"p": cuts})  # accepted
        assert table.round(np.asarray(pred, dtype=float), ["p"] * n).max() <= k - 1
