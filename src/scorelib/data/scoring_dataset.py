"""The notes' ``dataset.py``: ``ScoringDataset.__getitem__``, ``collater`` and ``batch_by_size``.

Mirrors fairseq's ``fairseq/data/fairseq_dataset.py`` (``__getitem__``, ``collater``,
``num_tokens``, ``ordered_indices``) and ``fairseq/data/data_utils.py`` (``batch_by_size``),
plus the epoch's batch order of ``fairseq/data/iterators.py`` (``EpochBatchIterator``).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from scorelib.data.scores import notes_shape
from scorelib.errors import InputError, OptionError

logger = logging.getLogger(__name__)
# --long-text: the first tokens (this module's ScoringDataset), or scorelib.data.long_text's head and tail, or windows
LONG_TEXT_MODES = ("truncate", "head-tail", "chunks")
TOKEN_FIELDS = ("input_ids", "attention_mask", "token_type_ids")  # what a tokenizer gives that the model reads


class ScoringDataset(torch.utils.data.Dataset):
    """Scored texts, tokenized (text, and context as a pair), padded only when batched.

    Texts longer than ``max_length`` keep their first tokens (the notes' ``truncation=True``); the other
    ``--long-text`` modes are subclasses that tokenize another way (:mod:`scorelib.data.long_text`).

    Args:
        frame (pd.DataFrame): columns ``key, prompt, text, context, score`` (see :func:`scorelib.data.tables.normalize`).
        tokenizer: a Hugging Face tokenizer.
        table (PromptTable): prompt ids, ranges and contexts; scores are scaled to [0, 1] with it.
        max_length (int): the encoder's window in tokens (the notes' ``max_length=512``).
    """

    long_text = "truncate"  # the --long-text mode of this class
    chunk_stride = None

    def __init__(self, frame, tokenizer, table, max_length: int = 512):
        self.frame = frame.reset_index(drop=True)
        self.tokenizer = tokenizer
        self.table = table
        self.max_length = max_length
        self.keys = self.frame["key"].astype(str).tolist()
        self.prompts = self.frame["prompt"].astype(str).tolist()  # each row's prompt id
        self.texts = self.frame["text"].astype(str).tolist()
        self.contexts = resolve_contexts(self.frame, table)
        self.prompt_ids = np.array([table.index(p) for p in self.prompts], dtype=np.int64)
        # gold exactly as read (NaN: unlabeled) and targets in [0, 1], float64: (N,) for one score, (N, K) for K
        self.scores = notes_shape(table.scores.matrix(self.frame))
        self.targets = table.scale(self.scores, self.prompts)
        self.encode()

    def encode(self) -> None:
        """Tokenize every row into ``self.encodings`` (``{name: [ids per row]}``) and ``self.sizes`` (tokens per row),
        counting the texts longer than the window (``num_long``) and those that lost tokens (``num_truncated``)."""
        self.encodings = tokenize(self.tokenizer, self.texts, self.contexts, self.max_length)
        self.sizes = np.array([len(ids) for ids in self.encodings["input_ids"]], dtype=np.int64)
        self.num_truncated = count_truncated(self.tokenizer, self.texts, self.contexts, self.sizes, self.max_length)
        self.num_long = self.num_truncated
        self.num_windows = len(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict:
        """One row: ids and masks as 1-D tensors (no padding), with its key, prompt and target."""
        item = self.row(index)
        for name, values in self.encodings.items():
            item[name] = torch.tensor(values[index], dtype=torch.long)
        return item

    def row(self, index: int) -> dict:
        """Everything of one row but its tokens: id, key, prompt, text, prompt id, gold score and target."""
        return {"id": index, "key": self.keys[index], "prompt": self.prompts[index], "text": self.texts[index],
                "prompt_id": int(self.prompt_ids[index]), "score": self.scores[index].tolist(),
                "target": self.targets[index].tolist()}  # a float, or a list of K with traits

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def ordered_indices(self, seed: int | None = None) -> np.ndarray:
        """Indices sorted by length; ties broken by a seeded shuffle (as fairseq does per epoch)."""
        order = np.arange(len(self)) if seed is None else np.random.default_rng(seed).permutation(len(self))
        return order[np.argsort(self.sizes[order], kind="stable")]

    def collater(self, samples: list[dict]) -> dict:
        """Pad a list of items into a batch.

        Returns:
            dict: ``id`` (B,), ``key``/``prompt``/``text`` (lists), ``nsentences``, ``ntokens`` (non-pad tokens),
            ``net_input`` with ``input_ids``/``attention_mask`` (B, T), ``prompt_ids`` (B,) and
            ``token_type_ids`` (B, T) where the tokenizer gives them, ``score`` (B,) float64, the gold scores
            exactly as read (for result files), and ``target`` (B,) float32, those scaled to [0, 1] (for the loss);
            both are (B, K) with K traits.
        """
        return collate(samples, pad_id=self.tokenizer.pad_token_id or 0)


def resolve_contexts(frame, table) -> list[str] | None:
    """Each row's context: its own cell, else the context stored with its prompt (None without contexts)."""
    if not table.uses_context:
        return None
    if "context" in frame and frame["context"].notna().all():
        return frame["context"].astype(str).tolist()
    out = []
    for p in frame["prompt"].astype(str):
        ctx = table.contexts.get(p)
        if ctx is None:
            raise InputError(f"prompt {p!r}: the model was trained on (text, context) pairs and this prompt has no "
                             f"stored context; pass a context for each text (--context TEXT, or a context column)")
        out.append(ctx)
    return out


def tokenize(tokenizer, texts, contexts, max_length) -> dict[str, list[list[int]]]:
    """Tokenize texts (with contexts as the second segment) with truncation and no padding."""
    enc = tokenizer(texts, contexts, truncation=True, max_length=max_length, padding=False, verbose=False)
    return {k: list(v) for k, v in enc.items() if k in TOKEN_FIELDS}


def count_truncated(tokenizer, texts, contexts, sizes, max_length) -> int:
    """How many texts lost tokens to ``max_length`` (only those that reach it are tokenized again)."""
    full = [i for i in np.flatnonzero(sizes >= max_length)]
    if not full:
        return 0
    sub_t = [texts[i] for i in full]
    sub_c = [contexts[i] for i in full] if contexts is not None else None
    lengths = [len(x) for x in tokenizer(sub_t, sub_c, truncation=False, verbose=False)["input_ids"]]
    return int(sum(n > max_length for n in lengths))


def collate(samples: list[dict], pad_id: int = 0) -> dict:
    """Pad items to the longest in the batch (dynamic padding); see :meth:`ScoringDataset.collater`."""
    if not samples:
        return {}
    return batch_of(samples, pad_rows(samples, pad_id))


def batch_of(samples: list[dict], net_input: dict) -> dict:
    """The batch dict of ``samples`` around their padded ``net_input`` (the token tensors)."""
    net_input["prompt_ids"] = torch.tensor([s["prompt_id"] for s in samples], dtype=torch.long)
    return {
        "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
        "key": [s["key"] for s in samples],
        "prompt": [s["prompt"] for s in samples],
        "text": [s["text"] for s in samples],
        "nsentences": len(samples),
        "ntokens": int(net_input["attention_mask"].sum()),
        "net_input": net_input,
        "score": torch.tensor([s["score"] for s in samples], dtype=torch.float64),
        "target": torch.tensor([s["target"] for s in samples], dtype=torch.float32),
    }


def pad_rows(rows: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """``input_ids`` / ``attention_mask`` / ``token_type_ids`` of ``rows`` padded to the longest: (len(rows), T)."""
    width = max(len(r["input_ids"]) for r in rows)
    out = {}
    for name, pad in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if name not in rows[0]:
            continue
        t = torch.full((len(rows), width), pad, dtype=torch.long)
        for i, r in enumerate(rows):
            t[i, : len(r[name])] = r[name]
        out[name] = t
    return out


def batch_by_size(indices, num_tokens_fn, max_tokens: int | None = None, max_sentences: int | None = None):
    """Group indices (in the given order) into batches whose padded size stays within ``max_tokens``.

    A batch's padded size is ``len(batch) * longest item``. Pass length-sorted indices
    (:meth:`ScoringDataset.ordered_indices`) so that items of like length share a batch.
    An item longer than ``max_tokens`` becomes a batch of its own, with a warning.

    Args:
        indices (sequence[int]): dataset indices, in batching order.
        num_tokens_fn (callable): index -> number of tokens.
        max_tokens (int | None): budget of padded tokens per batch.
        max_sentences (int | None): most items per batch.

    Returns:
        list[list[int]]: the batches, covering every index exactly once.
    """
    if max_tokens is None and max_sentences is None:
        raise OptionError("batch_by_size needs --max-tokens or --batch-size")
    if max_tokens is not None and max_tokens <= 0 or max_sentences is not None and max_sentences <= 0:
        raise OptionError(f"--max-tokens and --batch-size must be positive (got {max_tokens}, {max_sentences})")
    batches, batch, longest, oversize = [], [], 0, 0
    for idx in indices:
        n = num_tokens_fn(idx)
        if max_tokens is not None and n > max_tokens:
            oversize += 1
            if batch:
                batches.append(batch)
            batches.append([int(idx)])
            batch, longest = [], 0
            continue
        new_longest = max(longest, n)
        too_many = max_sentences is not None and len(batch) + 1 > max_sentences
        too_long = max_tokens is not None and new_longest * (len(batch) + 1) > max_tokens
        if batch and (too_many or too_long):
            batches.append(batch)
            batch, new_longest = [], n
        batch.append(int(idx))
        longest = new_longest
    if batch:
        batches.append(batch)
    if oversize:
        logger.warning("%d item(s) longer than --max-tokens %d were put in batches of their own", oversize, max_tokens)
    return batches


def epoch_batches(dataset: ScoringDataset, epoch: int, seed: int, max_tokens, max_sentences) -> list[list[int]]:
    """The training batches of one epoch: length-sorted (ties shuffled), then the batches in a seeded order.

    The same ``(seed, epoch)`` gives the same batches, so a resumed epoch continues where it stopped.
    """
    batches = batch_by_size(dataset.ordered_indices(seed=seed + epoch), dataset.num_tokens, max_tokens, max_sentences)
    order = np.random.default_rng(seed + epoch).permutation(len(batches))
    return [batches[i] for i in order]


def batch_iterator(dataset, batches, num_workers: int = 0):
    """The collated batches of ``batches`` (lists of indices), in order, as fairseq's ``EpochBatchIterator`` loads them.

    A ``torch.utils.data.DataLoader`` with ``batch_sampler=`` the given batches, ``collate_fn=dataset.collater`` and
    ``num_workers`` (``--num-workers``; 0 loads in this process, exactly as ``collater([dataset[i] for i in b])``).
    A ``None`` entry (a dummy batch of :func:`scorelib.distributed.utils.shard`) comes through as ``None``, in place.
    The loader draws its workers' base seed from a generator of its own, not from torch's global one, so the
    training's random stream (dropout) is the same as without a loader, whatever ``num_workers``.

    Yields:
        dict | None: one collated batch (see :meth:`ScoringDataset.collater`) per entry of ``batches``.
    """
    batches = list(batches)
    real = [b for b in batches if b is not None]
    if not real:
        yield from batches
        return
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=real, collate_fn=dataset.collater,
                                         num_workers=num_workers, generator=torch.Generator())
    it = iter(loader)
    try:
        for b in batches:
            yield None if b is None else next(it)
    finally:
        del it  # stopped early (--max-update): the workers shut down now, not at garbage collection


def padding_efficiency(batches, sizes) -> float:
    """Non-pad tokens / all tokens (padded) over a list of batches."""
    real = sum(int(sum(sizes[i] for i in b)) for b in batches)
    padded = sum(len(b) * int(max(sizes[i] for i in b)) for b in batches)
    return real / padded if padded else 1.0
