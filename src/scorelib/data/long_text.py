"""Texts longer than the encoder's window: truncate, keep head and tail, or split into windows.

Mirrors fairseq's ``fairseq/data/truncate_dataset.py`` (cut each item to a length) and
``fairseq/data/token_block_dataset.py`` (cut a long stream into blocks), for the three
``--long-text`` modes:

- ``truncate``: the first ``--max-length`` tokens (the seed's ``truncation=True``);
- ``head-tail``: the first quarter of the window from the start of the text and the rest from
  its end (Sun et al. 2019, "How to fine-tune BERT for text classification": 128 + 382 of 512);
- ``chunks``: windows of ``--max-length`` tokens overlapping by ``--chunk-stride``; a context
  pair is repeated in every window and only the text is split. The model pools the windows'
  features into one per text (:class:`scorelib.models.scoring_model.ScoringModel`), so nothing is cut.
"""
from __future__ import annotations

from scorelib.errors import InputError, OptionError

LONG_TEXT_MODES = ("truncate", "head-tail", "chunks")
NAMES = ("input_ids", "attention_mask", "token_type_ids")


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
    """What happened to texts longer than the window, for the log of ``load_dataset``."""
    if mode == "truncate":
        return f"{num_long} text(s) truncated at --max-length {max_length}"  # today's line, word for word
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
