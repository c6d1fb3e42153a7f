"""Reading scored tables, the ``ScoringDataset`` and ``batch_by_size``.

Mirrors fairseq's data layer: ``fairseq/data/fairseq_dataset.py`` (``__getitem__``,
``collater``, ``num_tokens``, ``size``, ``ordered_indices``) and
``fairseq/data/data_utils.py`` (``batch_by_size``).
"""
from __future__ import annotations

import io
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

logger = logging.getLogger(__name__)

COLUMNS = ["key", "prompt", "text", "context", "score"]
SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".xlsx": None}

# Layouts of the public essay-scoring sets: column names, built-in ranges, step, encoding.
LAYOUTS = {
    "asap-aes": {
        "key": "essay_id", "prompt": "essay_set", "text": "essay", "score": "domain1_score", "step": 1.0,
        "ranges": {"1": (2, 12), "2": (1, 6), "3": (0, 3), "4": (0, 3), "5": (0, 4), "6": (0, 4), "7": (0, 30), "8": (0, 60)},
    },
    "asap-sas": {
        "key": "Id", "prompt": "EssaySet", "text": "EssayText", "score": "Score1", "step": 1.0,
        "ranges": {str(i): (0, 3 if i in (1, 2, 5, 6) else 2) for i in range(1, 11)},
    },
}


class DataError(ValueError):
    """Bad input data; the message names the file, row and column."""


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def decode(raw: bytes, path, encoding: str | None = None, fallback: str | None = None) -> str:
    """Decode a text file: ``encoding`` if given, else UTF-8 (BOM allowed), else ``fallback``."""
    if encoding:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}: line {_line_of(raw, e.start)}, byte {e.start}: cannot decode {raw[e.start:e.end]!r} "
                f"as {encoding}"
            ) from None
        except LookupError:
            raise DataError(f"--encoding {encoding!r}: unknown encoding") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if fallback:
            logger.warning("%s: not valid UTF-8 (line %d); reading it as %s", path, _line_of(raw, e.start), fallback)
            return raw.decode(fallback)
        raise DataError(
            f"{path}: line {_line_of(raw, e.start)}, byte {e.start}: {raw[e.start:e.end]!r} is not valid UTF-8; "
            f"pass --encoding (for example --encoding latin-1 or cp1252)"
        ) from None


def read_table(path, encoding: str | None = None, fallback: str | None = None) -> pd.DataFrame:
    """Read a CSV, TSV or XLSX table with every cell as a string, exactly as written.

    Nothing is parsed as a number or NaN here ("11.10" stays "11.10", "NA" stays "NA").

    Returns:
        pd.DataFrame: string columns, plus ``_row``, the spreadsheet row of each record (header = row 1).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .xlsx")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if suffix == ".xlsx":
        try:
            frame = pd.read_excel(path, dtype=str, keep_default_na=False, na_filter=False, engine="openpyxl")
        except ValueError as e:
            raise DataError(f"{path}: cannot read the spreadsheet ({e})") from None
        if frame.shape[1] == 0:
            raise DataError(f"{path}: the file is empty")
    else:
        raw = path.read_bytes()
        if not raw.strip():
            raise DataError(f"{path}: the file is empty")
        text = decode(raw, path, encoding, fallback)
        try:
            frame = pd.read_csv(io.StringIO(text), sep=SUFFIXES[suffix], dtype=str, keep_default_na=False,
                                na_filter=False, quoting=0 if suffix == ".csv" else 3)
        except pd.errors.ParserError as e:
            raise DataError(f"{path}: cannot parse as {'CSV' if suffix == '.csv' else 'TSV'} ({e})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise DataError(f"{path}: has a header ({', '.join(frame.columns)}) but no rows")
    frame["_row"] = np.arange(2, len(frame) + 2)
    return frame


def _column(frame, name, path, flag):
    if name not in frame.columns:
        found = [c for c in frame.columns if c != "_row"]
        hint = ""
        if len(found) == 1 and any(sep in found[0] for sep in "\t;,|"):
            hint = " (one column holding separators: is the delimiter right for this file's extension?)"
        raise DataError(f"{path}: missing column {name!r} ({flag}); columns found: {found}{hint}")
    return frame[name].astype(str)


def _rows(frame, mask, limit=5) -> str:
    rows = frame["_row"][mask].tolist()
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(map(str, rows[:limit])) + more


def normalize(frame, path, *, key_column=None, prompt_column=None, text_column="text", context_column=None,
              score_column="score", labeled=True) -> pd.DataFrame:
    """Map a raw table onto scorelib's columns and refuse bad rows with a clear error.

    Args:
        frame (pd.DataFrame): from :func:`read_table`.
        path: the file, named in errors.
        key_column, prompt_column, text_column, context_column, score_column (str | None): column names;
            without a key column keys are ``"{file stem}:{row}"``; without a prompt column all rows share prompt "0".
        labeled (bool): whether the score column is required.

    Returns:
        pd.DataFrame: columns ``key, prompt, text, context, score, _row`` (``context`` None without a context
        column, ``score`` NaN for unlabeled tables).
    """
    out = pd.DataFrame({"_row": frame["_row"].to_numpy()})
    if key_column:
        out["key"] = _column(frame, key_column, path, "--key-column").str.strip().to_numpy()
    else:
        out["key"] = [f"{Path(path).stem}:{r}" for r in out["_row"]]
    out["prompt"] = (_column(frame, prompt_column, path, "--prompt-column").str.strip().to_numpy()
                     if prompt_column else "0")
    out["text"] = _column(frame, text_column, path, "--text-column").to_numpy()
    out["context"] = (_column(frame, context_column, path, "--context-column").to_numpy()
                      if context_column else None)
    if labeled:
        raw = _column(frame, score_column, path, "--score-column").str.strip()
        score = pd.to_numeric(raw, errors="coerce").astype(float)
        bad = ~np.isfinite(score.to_numpy())
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: row {out['_row'][i]}, column {score_column!r}: score {raw.iloc[i]!r} is not a finite number"
                f" ({int(bad.sum())} such rows: {_rows(out, bad)})"
            )
        out["score"] = score.to_numpy()
    else:
        out["score"] = np.nan
    for col, flag in (("key", "--key-column"), ("prompt", "--prompt-column")):
        empty = out[col].str.len().to_numpy() == 0
        if empty.any():
            raise DataError(f"{path}: empty {col} in {flag} at row(s) {_rows(out, empty)}")
    blank = out["text"].str.strip().str.len().to_numpy() == 0
    if blank.any():
        raise DataError(f"{path}: column {text_column!r}: empty or whitespace-only text at row(s) {_rows(out, blank)}")
    if context_column:
        blank = out["context"].str.strip().str.len().to_numpy() == 0
        if blank.any():
            raise DataError(f"{path}: column {context_column!r}: empty context at row(s) {_rows(out, blank)}")
    dup = out["key"].duplicated(keep=False).to_numpy()
    if dup.any():
        first = out["key"][dup].iloc[0]
        raise DataError(f"{path}: duplicate key {first!r} at rows {_rows(out, (out['key'] == first).to_numpy())}"
                        f" ({int(dup.sum())} rows share a key; keys must be unique)")
    return out[COLUMNS + ["_row"]]


def read_ranges(path) -> dict[str, tuple[float, float]]:
    """Read ``--score-ranges FILE``: columns prompt, min, max (one row per prompt)."""
    frame = read_table(path)
    ranges = {}
    for name in ("prompt", "min", "max"):
        _column(frame, name, path, "--score-ranges")
    for _, r in frame.iterrows():
        try:
            lo, hi = float(r["min"]), float(r["max"])
        except ValueError:
            raise DataError(f"{path}: row {r['_row']}: min/max {r['min']!r}, {r['max']!r} are not numbers") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise DataError(f"{path}: row {r['_row']}: prompt {r['prompt']!r} needs min < max, got {lo} .. {hi}")
        ranges[str(r["prompt"]).strip()] = (lo, hi)
    return ranges


class ScoringDataset(torch.utils.data.Dataset):
    """Scored texts, tokenized (text, and context as a pair), padded only when batched.

    Args:
        frame (pd.DataFrame): columns ``key, prompt, text, context, score`` (see :func:`normalize`).
        tokenizer: a Hugging Face tokenizer.
        table (PromptTable): prompt ids, ranges and contexts; scores are scaled to [0, 1] with it.
        max_length (int): texts are truncated to this many tokens (the seed's ``max_length=512``).
    """

    def __init__(self, frame, tokenizer, table, max_length: int = 512):
        self.frame = frame.reset_index(drop=True)
        self.tokenizer = tokenizer
        self.table = table
        self.max_length = max_length
        self.keys = self.frame["key"].astype(str).tolist()
        self.prompts = self.frame["prompt"].astype(str).tolist()
        self.texts = self.frame["text"].astype(str).tolist()
        self.contexts = resolve_contexts(self.frame, table)
        self.prompt_ids = np.array([table.index(p) for p in self.prompts], dtype=np.int64)
        self.targets = table.scale(self.frame["score"].to_numpy(dtype=float), self.prompts)  # float64
        self.encodings = tokenize(tokenizer, self.texts, self.contexts, max_length)
        self.sizes = np.array([len(ids) for ids in self.encodings["input_ids"]], dtype=np.int64)
        self.num_truncated = count_truncated(tokenizer, self.texts, self.contexts, self.sizes, max_length)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict:
        """One row: ids and masks as 1-D tensors (no padding), with its key, prompt and target."""
        item = {"id": index, "key": self.keys[index], "prompt": self.prompts[index], "text": self.texts[index],
                "prompt_id": int(self.prompt_ids[index]), "target": float(self.targets[index])}
        for name, values in self.encodings.items():
            item[name] = torch.tensor(values[index], dtype=torch.long)
        return item

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def size(self, index: int) -> int:
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
            ``token_type_ids`` (B, T) where the tokenizer gives them, and ``target`` (B,) in [0, 1].
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
            raise ValueError(f"prompt {p!r}: the model was trained with a context per row; pass contexts")
        out.append(ctx)
    return out


def tokenize(tokenizer, texts, contexts, max_length) -> dict[str, list[list[int]]]:
    """Tokenize texts (with contexts as the second segment) with truncation and no padding."""
    enc = tokenizer(texts, contexts, truncation=True, max_length=max_length, padding=False, verbose=False)
    return {k: list(v) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def count_truncated(tokenizer, texts, contexts, sizes, max_length) -> int:
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
    width = max(len(s["input_ids"]) for s in samples)
    net_input = {}
    for name, pad in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if name not in samples[0]:
            continue
        out = torch.full((len(samples), width), pad, dtype=torch.long)
        for row, s in enumerate(samples):
            out[row, : len(s[name])] = s[name]
        net_input[name] = out
    net_input["prompt_ids"] = torch.tensor([s["prompt_id"] for s in samples], dtype=torch.long)
    return {
        "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
        "key": [s["key"] for s in samples],
        "prompt": [s["prompt"] for s in samples],
        "text": [s["text"] for s in samples],
        "nsentences": len(samples),
        "ntokens": int(net_input["attention_mask"].sum()),
        "net_input": net_input,
        "target": torch.tensor([s["target"] for s in samples], dtype=torch.float32),
    }


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
        raise ValueError("batch_by_size needs --max-tokens or --batch-size")
    if max_tokens is not None and max_tokens <= 0 or max_sentences is not None and max_sentences <= 0:
        raise ValueError(f"--max-tokens and --batch-size must be positive (got {max_tokens}, {max_sentences})")
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


def padding_efficiency(batches, sizes) -> float:
    """Non-pad tokens / all tokens (padded) over a list of batches."""
    real = sum(int(sum(sizes[i] for i in b)) for b in batches)
    padded = sum(len(b) * int(max(sizes[i] for i in b)) for b in batches)
    return real / padded if padded else 1.0
