"""Texts longer than the encoder's window: truncate, keep head and tail, or split into windows.

Mirrors fairseq's ``fairseq/data/truncate_dataset.py`` (cut each item to a length) and
``fairseq/data/token_block_dataset.py`` (cut a long stream into blocks), for the three
``--long-text`` modes:

- ``truncate``: the first ``--max-length`` tokens (the notes' ``truncation=True``);
- ``head-tail``: the first quarter of the window from the start of the text and the rest from
  its end (Sun et al. 2019, "How to fine-tune BERT for text classification": 128 + 382 of 512);
- ``chunks``: windows of ``--max-length`` tokens overlapping by ``--chunk-stride``; a context
  pair is repeated in every window and only the text is split. The model pools the windows'
  features into one per text (:class:`scorelib.models.scoring_model.ScoringModel`), so nothing is cut.

The notes' dataset (:class:`~scorelib.data.scoring_dataset.ScoringDataset`) truncates; the two other modes are
datasets of their own here (:class:`HeadTailDataset`, :class:`ChunkedDataset`), which change how rows are tokenized
(and, for windows, how items are batched) and nothing else. :func:`build_dataset` picks one by ``--long-text``.
"""
from __future__ import annotations

import numpy as np
import torch

from scorelib.data.scoring_dataset import LONG_TEXT_MODES, TOKEN_FIELDS, ScoringDataset, batch_of, pad_rows
from scorelib.errors import InputError, OptionError

NAMES = TOKEN_FIELDS  # the fields a window keeps


def resolve_stride(max_length: int, stride: int | None) -> int:
    """``--chunk-stride`` (default: a quarter of the window), refused unless ``0 <= stride < max_length``."""
    stride = max_length // 4 if stride is None else int(stride)
    if not 0 <= stride < max_length:
        raise OptionError(f"--chunk-stride {stride}: the windows' overlap must be at least 0 and smaller than the "
                          f"window (--max-length {max_length})")
    return stride


def check_options(mode: str, max_length: int, stride: int | None) -> None:
    """Refuse an unknown ``--long-text`` mode, a window too small to hold text, or a bad ``--chunk-stride``."""
    if mode not in LONG_TEXT_MODES:
        raise OptionError(f"--long-text {mode!r}: choose one of {', '.join(LONG_TEXT_MODES)}")
    if max_length < 8:
        raise OptionError(f"--max-length {max_length}: too small a window (at least 8 tokens)")
    if mode == "chunks" or stride is not None:
        resolve_stride(max_length, stride)


def head_size(max_length: int) -> int:
    """Text tokens kept from the start under ``head-tail``: a quarter of the window (128 of 512)."""
    return max_length // 4


def _select(enc, i: int, keep) -> dict[str, list[int]]:
    return {k: [enc[k][i][j] for j in keep] for k in NAMES if k in enc}


def encode(tokenizer, texts, contexts, max_length: int, mode: str, stride: int | None = None):
    """Tokenize texts (contexts as the second segment) for a ``--long-text`` mode other than ``truncate``.

    Args:
        tokenizer: a fast Hugging Face tokenizer.
        texts (list[str]), contexts (list[str] | None): the rows.
        max_length (int): the encoder's window, special tokens counted.
        mode (str): ``"head-tail"`` or ``"chunks"``.
        stride (int | None): overlap of the windows (``chunks``).

    Returns:
        tuple: ``(encodings, num_long)``. ``head-tail``: ``{name: [ids per text]}`` as :func:`scorelib.data.scoring_dataset.tokenize`.
        ``chunks``: ``{name: [[ids per window] per text]}``. ``num_long``: texts longer than ``max_length``.
    """
    if mode not in LONG_TEXT_MODES[1:]:
        raise OptionError(f"--long-text {mode!r}: choose one of {', '.join(LONG_TEXT_MODES)}")
    full = tokenizer(texts, contexts, truncation=False, padding=False, verbose=False)
    lengths = [len(ids) for ids in full["input_ids"]]
    long_rows = [i for i, n in enumerate(lengths) if n > max_length]
    if mode == "head-tail":
        out = {k: [list(v) for v in full[k]] for k in NAMES if k in full}
        for i in long_rows:
            seq = full.sequence_ids(i)
            text_pos = [j for j, s in enumerate(seq) if s == 0]
            budget = len(text_pos) - (lengths[i] - max_length)  # text tokens that fit beside specials and context
            if budget < 1:
                raise InputError(f"text {i} of this split: its context alone fills the {max_length}-token window; "
                                 f"shorten the context or raise --max-length")
            head = min(head_size(max_length), budget)
            drop = set(text_pos[head:len(text_pos) - (budget - head)])
            sel = _select(full, i, [j for j in range(lengths[i]) if j not in drop])
            for k, v in sel.items():
                out[k][i] = v
        return out, len(long_rows)
    if mode != "chunks":
        raise OptionError(f"--long-text {mode!r}: choose one of {', '.join(LONG_TEXT_MODES)}")
    stride = resolve_stride(max_length, stride)
    out = {k: [[list(v)] for v in full[k]] for k in NAMES if k in full}
    if long_rows:
        sub_c = [contexts[i] for i in long_rows] if contexts is not None else None
        for i, c in zip(long_rows, sub_c or [None] * len(long_rows)):
            room = max_length - tokenizer.num_special_tokens_to_add(c is not None) \
                - (len(tokenizer(c, add_special_tokens=False)["input_ids"]) if c is not None else 0)
            if room <= stride:
                raise OptionError(f"--chunk-stride {stride}: the context of text {i} of this split leaves "
                                  f"{max(room, 0)} text tokens per window beside its context and special tokens; the overlap must be smaller than that "
                                  f"(lower --chunk-stride, shorten the context or raise --max-length)")
        enc = tokenizer([texts[i] for i in long_rows], sub_c, truncation="only_first", max_length=max_length,
                        stride=stride, return_overflowing_tokens=True, padding=False, verbose=False)
        windows = {i: {k: [] for k in out} for i in long_rows}
        for w, row in enumerate(enc["overflow_to_sample_mapping"]):
            for k in out:
                windows[long_rows[row]][k].append(list(enc[k][w]))
        for i, per_name in windows.items():
            for k, v in per_name.items():
                out[k][i] = v
    return out, len(long_rows)


def describe(mode: str, max_length: int, stride: int | None, num_long: int, num_windows: int | None = None) -> str:
    """What happened to texts longer than the window under ``head-tail`` or ``chunks``, for the log of
    ``load_dataset`` (which says itself how many were truncated)."""
    if mode == "head-tail":
        head = head_size(max_length)
        return (f"{num_long} text(s) longer than --max-length {max_length} cut to head + tail (--long-text head-tail: "
                f"the first {head} text tokens and the last ones, {max_length} with special tokens)")
    return (f"{num_long} text(s) longer than --max-length {max_length} split into overlapping windows (--long-text "
            f"chunks, --chunk-stride {resolve_stride(max_length, stride)}): {num_windows} windows in all")


def note(mode: str, max_length: int, stride: int | None, n_tokens: int) -> str | None:
    """A sentence for one scored text of ``n_tokens`` tokens that does not fit the window (None if it fits)."""
    if n_tokens <= max_length:
        return None
    if mode == "head-tail":
        return (f"The text has {n_tokens:,} tokens; only its first {head_size(max_length)} and its last tokens "
                f"({max_length} in all) were read (the middle did not count towards the score).")
    if mode == "chunks":
        return (f"The text has {n_tokens:,} tokens; it was read in overlapping windows of {max_length} "
                f"(stride {resolve_stride(max_length, stride)}), all of which count towards the score.")
    return (f"The text has {n_tokens:,} tokens; only the first {max_length} were read "
            f"(the rest did not count towards the score).")



class HeadTailDataset(ScoringDataset):
    """``--long-text head-tail``: a text longer than the window keeps its first quarter-window of tokens and its last
    ones (:func:`encode`); everything else is :class:`ScoringDataset`'s."""

    long_text = "head-tail"

    def encode(self) -> None:
        self.encodings, self.num_long = encode(self.tokenizer, self.texts, self.contexts, self.max_length, "head-tail")
        self.num_truncated = self.num_long
        self.sizes = np.array([len(ids) for ids in self.encodings["input_ids"]], dtype=np.int64)
        self.num_windows = len(self.keys)


class ChunkedDataset(ScoringDataset):
    """``--long-text chunks``: a text longer than the window is read as overlapping windows (:func:`encode`), all of
    which reach the model; it pools their features into one per text.

    An item holds one 1-D tensor per window; a batch holds the windows of its texts as rows, (W, T), with
    ``net_input["window_to_text"]`` (W,) giving each window's row in the batch. A text's size (for batching) is its
    windows' padded tokens: windows x the longest of them.

    Args:
        chunk_stride (int | None): tokens shared by consecutive windows (default: a quarter of the window).
    """

    long_text = "chunks"

    def __init__(self, frame, tokenizer, table, max_length: int = 512, chunk_stride: int | None = None):
        self.chunk_stride = chunk_stride
        super().__init__(frame, tokenizer, table, max_length)

    def encode(self) -> None:
        self.encodings, self.num_long = encode(self.tokenizer, self.texts, self.contexts, self.max_length, "chunks",
                                               self.chunk_stride)
        self.num_truncated = 0
        self.sizes = np.array([len(ids) * max(map(len, ids)) for ids in self.encodings["input_ids"]], dtype=np.int64)
        self.num_windows = sum(len(w) for w in self.encodings["input_ids"])

    def __getitem__(self, index: int) -> dict:
        item = self.row(index)
        for name, values in self.encodings.items():
            item[name] = [torch.tensor(w, dtype=torch.long) for w in values[index]]
        return item

    def collater(self, samples: list[dict]) -> dict:
        """:meth:`ScoringDataset.collater` over windows: every window a row, remembering its text's batch row."""
        if not samples:
            return {}
        rows = [{k: s[k][w] for k in NAMES if k in s} for s in samples for w in range(len(s["input_ids"]))]
        net_input = pad_rows(rows, self.tokenizer.pad_token_id or 0)
        net_input["window_to_text"] = torch.tensor([b for b, s in enumerate(samples) for _ in s["input_ids"]],
                                                   dtype=torch.long)
        return batch_of(samples, net_input)


def build_dataset(frame, tokenizer, table, max_length: int = 512, long_text: str = "truncate",
                  chunk_stride: int | None = None) -> ScoringDataset:
    """The dataset of a ``--long-text`` mode: :class:`ScoringDataset` (``truncate``), :class:`HeadTailDataset` or
    :class:`ChunkedDataset`, over the same arguments."""
    if long_text == "truncate":
        return ScoringDataset(frame, tokenizer, table, max_length)
    if long_text == "head-tail":
        return HeadTailDataset(frame, tokenizer, table, max_length)
    if long_text == "chunks":
        return ChunkedDataset(frame, tokenizer, table, max_length, chunk_stride)
    raise OptionError(f"--long-text {long_text!r}: choose one of {', '.join(LONG_TEXT_MODES)}")
