"""``--long-text``: truncate (unchanged), head-tail (head + tail tokens) and chunks (every window counts)."""
import numpy as np
import pandas as pd
import pytest
import torch

import scorelib
from conftest import train_args
from scorelib.data.scoring_dataset import ScoringDataset, batch_by_size, tokenize
from scorelib.errors import OptionError
from scorelib.inference import predict
from scorelib.models.scoring_model import ScoringModel, default_model_path, load_encoder
from scorelib.data.prompts import PromptTable
from scorelib.data.long_text import build_dataset, head_size

TABLE = PromptTable(ids=["q"], ranges={"q": (0.0, 5.0)})
PAIRS = PromptTable(ids=["q"], ranges={"q": (0.0, 5.0)}, uses_context=True)  # trained on (text, context) pairs
WINDOW, STRIDE = 32, 8


def frame(texts, contexts=None):
    return pd.DataFrame({"key": [f"k{i}" for i in range(len(texts))], "prompt": "q", "text": texts,
                         "context": contexts, "score": 1.0})


def words(n, start=0):
    return " ".join(f"w{i}" for i in range(start, start + n))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ScoringModel(load_encoder(default_model_path()), num_prompts=1, head_dropout=0.0).eval()


def score(model, ds, batches=None):
    batches = batches or [[i] for i in range(len(ds))]
    return predict(lambda s: (0.0, model(**s["net_input"])["encoder_out"]), ds, batches, torch.device("cpu"))[1]


def three_window_text(tokenizer):
    """A text of exactly three windows of WINDOW tokens (stride STRIDE), and its token ids."""
    room = WINDOW - 2
    n = room + 2 * (room - STRIDE)  # three windows, the last one full
    ids = tokenizer("x " * n, add_special_tokens=False)["input_ids"]
    assert len(ids) == n
    return n


def test_truncate_is_todays_tokenization(tokenizer):
    texts = [words(100), "short", words(31)]
    ds = ScoringDataset(frame(texts), tokenizer, TABLE, WINDOW)
    assert ds.encodings == tokenize(tokenizer, texts, None, WINDOW)
    assert ds.sizes.tolist() == [WINDOW, 3, WINDOW] and ds.num_truncated == 2 and ds.num_windows == 3
    batch = ds.collater([ds[0], ds[1]])
    assert "window_to_text" not in batch["net_input"] and batch["net_input"]["input_ids"].shape == (2, WINDOW)


def test_head_tail_keeps_exactly_head_and_tail(tokenizer):
    text = words(600)
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    ds = build_dataset(frame([text, "a short one"]), tokenizer, TABLE, 512, long_text="head-tail")
    ids = ds.encodings["input_ids"][0]
    head, tail = head_size(512), 512 - 2 - head_size(512)
    assert (head, tail) == (128, 382)
    assert ids == [tokenizer.cls_token_id] + full[:head] + full[-tail:] + [tokenizer.sep_token_id]
    assert ds.encodings["input_ids"][1] == tokenizer("a short one")["input_ids"]  # short texts as truncate gives
    assert ds.num_long == 1


def test_head_tail_with_a_context_cuts_only_the_text(tokenizer):
    ds = build_dataset(frame([words(200)], ["the question"]), tokenizer, PAIRS, 64, long_text="head-tail")
    ids, types = ds.encodings["input_ids"][0], ds.encodings["token_type_ids"][0]
    ctx = tokenizer("the question", add_special_tokens=False)["input_ids"]
    assert len(ids) == 64 and ids[-len(ctx) - 1:-1] == ctx and sum(types) == len(ctx) + 1


def test_chunks_windows_overlap_and_carry_the_context(tokenizer):
    text = words(100)
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    ds = build_dataset(frame([text], ["why"]), tokenizer, PAIRS, WINDOW, long_text="chunks", chunk_stride=STRIDE)
    wins = ds.encodings["input_ids"][0]
    ctx = tokenizer("why", add_special_tokens=False)["input_ids"]
    pieces = [w[1:w.index(tokenizer.sep_token_id)] for w in wins]
    assert all(w[-len(ctx) - 1:-1] == ctx for w in wins) and all(len(w) <= WINDOW for w in wins)
    assert all(a[-STRIDE:] == b[:STRIDE] for a, b in zip(pieces, pieces[1:]))  # consecutive windows overlap
    assert pieces[0] + [t for p in pieces[1:] for t in p[STRIDE:]] == full  # and together hold the whole text
    assert ds.sizes[0] == len(wins) * WINDOW and ds.num_windows == len(wins)


@pytest.mark.parametrize("stride", [WINDOW, WINDOW + 5])
def test_stride_not_smaller_than_the_window_is_refused(tokenizer, stride):
    with pytest.raises(OptionError, match=f"--chunk-stride {stride}.*smaller than the window"):
        build_dataset(frame(["a text"]), tokenizer, TABLE, WINDOW, long_text="chunks", chunk_stride=stride)


def test_all_three_windows_count_under_chunks(tokenizer, model):
    n = three_window_text(tokenizer)
    base = ["x"] * n
    changed = {"first": 3, "middle": n // 2, "last": n - 3}
    texts = [" ".join(base)] + [" ".join(base[:i] + ["dog"] + base[i + 1:]) for i in changed.values()]
    chunks = build_dataset(frame(texts), tokenizer, TABLE, WINDOW, long_text="chunks", chunk_stride=STRIDE)
    assert [len(w) for w in chunks.encodings["input_ids"]] == [3] * 4
    truncate = ScoringDataset(frame(texts), tokenizer, TABLE, WINDOW)
    c, t = score(model, chunks), score(model, truncate)
    for k, where in enumerate(changed, start=1):
        assert abs(c[k] - c[0]) > 1e-6, f"a change in the {where} window left the chunks score unchanged"
    assert abs(t[1] - t[0]) > 1e-6 and t[2] == t[0] and t[3] == t[0]  # truncate reads the first window only


@pytest.mark.slow
def test_windows_stay_with_their_text_in_any_batch_order(tokenizer, model):
    rng = np.random.default_rng(0)
    texts = [words(int(n), start=int(s)) for n, s in zip(rng.integers(3, 90, 9), rng.integers(0, 50, 9))]
    ds = build_dataset(frame(texts), tokenizer, TABLE, WINDOW, long_text="chunks", chunk_stride=STRIDE)
    assert len({len(w) for w in ds.encodings["input_ids"]}) >= 3  # texts of 1, 2, 3+ windows
    alone = score(model, ds)
    for seed in range(4):
        order = np.random.default_rng(seed).permutation(len(ds))
        batches = batch_by_size(order, ds.num_tokens, max_tokens=int(rng.integers(100, 400)), max_sentences=4)
        np.testing.assert_allclose(score(model, ds, batches), alone, atol=2e-6)


@pytest.mark.slow
def test_chunks_train_save_and_load(tmp_path, caplog):
    import logging

    logging.getLogger("scorelib").addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    try:
        out = scorelib.train(train_args(tmp_path / "ckpt", "--long-text", "chunks", "--max-length", "40",
                                        "--max-train-rows", "16", "--max-eval-rows", "8", "--no-epoch-checkpoints"))
    finally:
        logging.getLogger("scorelib").removeHandler(caplog.handler)
    assert "split into overlapping windows" in caplog.text
    scorer = scorelib.load(out["save_dir"], device="cpu")
    assert (scorer.long_text, scorer.chunk_stride, scorer.max_length) == ("chunks", None, 40)
    text = "A stack keeps its items in order: the last one pushed is the first one popped off the top. " * 3
    ds = scorer.dataset([text], scorer.table.ids[0])
    assert len(ds.encodings["input_ids"][0]) > 2
    got = scorer.score([text, "short"], prompt=scorer.table.ids[0])
    lo, hi = scorer.table.ranges[scorer.table.ids[0]]
    assert got.shape == (2,) and np.all((got >= lo) & (got <= hi))
