"""Scoring an export of ``scorelib-export`` with onnxruntime, NumPy and ``tokenizers``: no PyTorch, no transformers.

:func:`load_export` checks the folder against its manifest (every file's sha256, and the manifest's own) and
returns the same :class:`~scorelib.hub.scorer.Scorer` API (``score``, ``predict``, ``round``, ``record``,
``output_columns``) with the model's forward replaced by ONNX sessions (:class:`OnnxScoring`). The tokenizer step
is this module's: ``tokenizers.Tokenizer`` of the exported ``tokenizer.json`` with the ``--long-text`` mode of
training (the first tokens; head and tail; overlapping windows, pooled inside the graph), as
:mod:`scorelib.data.long_text` does it with the Hugging Face tokenizer over the same Rust code.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np

from scorelib.data.prompts import PromptTable
from scorelib.errors import CheckpointError, InputError, MissingFileError, OptionError

FORMAT = "scorelib-export"
VERSION = 1
MANIFEST = "manifest.json"
OUTPUT = "scores01"  # the graph's output: sigmoid scores in [0, 1], (B,) or (B, K)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_digest(body: dict) -> str:
    """The sha256 of a manifest's fields but ``"manifest_sha256"`` (sorted JSON): an edit of any field shows."""
    rest = {k: v for k, v in body.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode("utf-8")).hexdigest()


def is_export(path) -> bool:
    """True for a folder holding a ``manifest.json`` (checked in full by :func:`read_manifest`)."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(folder) -> dict:
    """The checked manifest of an export: its own digest, then every file it lists against its sha256; a file in the
    folder that it does not list is refused too (nothing unlisted is loaded or left unexplained)."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a manifest of scorelib-export ({type(e).__name__})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a manifest of scorelib-export (no \"format\": \"{FORMAT}\")")
    if body.get("version") != VERSION:
        raise CheckpointError(f"{path}: export format version {body.get('version')!r}; this scorelib reads "
                              f"version {VERSION} (re-export with scorelib-export)")
    if body.get("manifest_sha256") != manifest_digest(body):
        raise CheckpointError(f"{path}: the manifest was edited after export (its manifest_sha256 does not match "
                              f"its fields); re-export with scorelib-export")
    files = body.get("files")
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{path}: lists no files")
    for name, digest in files.items():
        if not (folder / name).is_file():
            raise MissingFileError(f"{folder / name}: missing; the export's manifest lists it")
        if sha256(folder / name) != digest:
            raise CheckpointError(f"{folder / name}: sha256 mismatch with {MANIFEST}: the file changed after "
                                  f"export; re-export with scorelib-export")
    extra = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST and p.name not in files)
    if extra:
        raise CheckpointError(f"{folder / extra[0]}: not listed in {MANIFEST}; an export holds only the files "
                              f"its manifest lists")
    return body


class Encoder:
    """The export's tokenizer step: ``tokenizer.json`` through ``tokenizers`` with the ``--long-text`` mode of
    training, giving per text one row of ids (``truncate``, ``head-tail``) or its windows (``chunks``).

    Called as a Hugging Face tokenizer for one text (``encoder(text, context)["input_ids"]``, untruncated), as the
    widget counts a text's tokens.
    """

    def __init__(self, path, fields, max_length: int, mode: str, stride: int | None, pad_id: int):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.no_padding()
        self.fields, self.max_length, self.mode, self.stride, self.pad_token_id = \
            list(fields), int(max_length), mode, stride, int(pad_id)

    def __call__(self, text, pair=None, truncation=False, **unused) -> dict:
        if not isinstance(text, str) or truncation or unused.get("return_offsets_mapping"):
            raise OptionError("an ONNX export's tokenizer step only counts a text's tokens; explanations (--explain, "
                              "scorelib.explain) need the save dir the export came from")
        self.tokenizer.no_truncation()
        return self.as_dict(self.tokenizer.encode(text, pair))

    def as_dict(self, enc, keep=None) -> dict[str, list[int]]:
        keep = range(len(enc.ids)) if keep is None else keep
        full = {"input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids}
        return {k: [full[k][j] for j in keep] for k in self.fields}

    def encode(self, texts, contexts) -> list[list[dict]]:
        """Per text, its windows (one but under ``chunks``), each ``{field: ids}``."""
        pairs = list(texts) if contexts is None else list(zip(texts, contexts))
        if self.mode == "truncate":  # what the Hugging Face tokenizer does with truncation=True: longest_first
            self.tokenizer.enable_truncation(self.max_length, strategy="longest_first")
            return [[self.as_dict(e)] for e in self.tokenizer.encode_batch(pairs)]
        self.tokenizer.no_truncation()
        full = self.tokenizer.encode_batch(pairs)
        if self.mode == "head-tail":
            return [[self.as_dict(e, self.head_tail(e, i))] for i, e in enumerate(full)]
        out = []
        for i, e in enumerate(full):
            if len(e.ids) <= self.max_length:
                out.append([self.as_dict(e)])
                continue
            context = contexts[i] if contexts is not None else None
            room = self.max_length - self.tokenizer.num_special_tokens_to_add(context is not None) - \
                (len(self.tokenizer.encode(context, add_special_tokens=False).ids) if context is not None else 0)
            if room <= self.stride:
                raise InputError(f"text {i}: its context leaves {max(room, 0)} text tokens per window, not more than "
                                 f"the windows' overlap ({self.stride}); shorten the context")
            self.tokenizer.enable_truncation(self.max_length, stride=self.stride, strategy="only_first")
            first = self.tokenizer.encode(*pairs[i]) if context is not None else self.tokenizer.encode(pairs[i])
            self.tokenizer.no_truncation()
            out.append([self.as_dict(w) for w in [first, *first.overflowing]])
        return out

    def head_tail(self, enc, i: int):
        """The positions kept of a text longer than the window: its first quarter-window of text tokens and its last
        ones (all of a text that fits)."""
        n = len(enc.ids)
        if n <= self.max_length:
            return None
        text_pos = [j for j, s in enumerate(enc.sequence_ids) if s == 0]
        budget = len(text_pos) - (n - self.max_length)
        if budget < 1:
            raise InputError(f"text {i}: its context alone fills the {self.max_length}-token window; shorten the "
                             f"context")
        head = min(self.max_length // 4, budget)
        drop = set(text_pos[head:len(text_pos) - (budget - head)])
        return [j for j in range(n) if j not in drop]


class Encoded:
    """Checked texts of one prompt, tokenized (:meth:`Encoder.encode`): what :meth:`OnnxScoring.models_parts01`
    runs; ``texts``, ``prompt_ids`` (N,), ``windows`` (per text, its windows) and ``sizes`` (padded tokens)."""

    def __init__(self, texts, prompt_ids, windows):
        self.texts, self.prompt_ids, self.windows = list(texts), np.asarray(prompt_ids, dtype=np.int64), windows
        self.sizes = np.array([len(w) * max(len(x["input_ids"]) for x in w) for w in windows], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.texts)


def batches(sizes: np.ndarray, max_tokens: int, max_rows: int = 256) -> list[list[int]]:
    """Rows sorted by length, cut into batches of at most ``max_rows`` rows and ``max_tokens`` padded tokens (a row
    longer than that alone)."""
    out, batch, longest = [], [], 0
    for i in np.argsort(sizes, kind="stable"):
        n = int(sizes[i])
        if batch and (len(batch) == max_rows or max(longest, n) * (len(batch) + 1) > max_tokens):
            out.append(batch)
            batch, longest = [], 0
        batch.append(int(i))
        longest = max(longest, n)
    return out + ([batch] if batch else [])


class OnnxScoring:
    """What an export's scorer does differently from a PyTorch one: tokenize (:meth:`dataset`) and run the ONNX
    sessions (:meth:`models_parts01`); everything else is :class:`~scorelib.hub.scorer.Scorer`'s (the class
    :func:`load_export` is given), so scores, rounding, spread and records are the same code.

    Args:
        sessions (list[onnxruntime.InferenceSession]): one per model (the folds of a CV dir).
        encoder (Encoder): the tokenizer step; also :attr:`tokenizer`.
        prompts (PromptTable), max_length, long_text, chunk_stride: as the PyTorch scorer's.
        manifest (dict): the export's manifest.
    """

    def __init__(self, sessions, encoder: Encoder, prompts: PromptTable, manifest: dict):
        self.models, self.tokenizer, self.table, self.manifest = list(sessions), encoder, prompts, manifest
        self.max_length, self.long_text, self.chunk_stride = encoder.max_length, encoder.mode, manifest["chunk_stride"]
        self.device, self.stack, self.cfg = "cpu", None, dict(manifest.get("cfg") or {})

    def dataset(self, texts, prompt, contexts=None) -> Encoded:
        """Checked texts of one prompt, tokenized as in training."""
        return Encoded(texts, [self.table.index(prompt)] * len(texts), self.tokenizer.encode(texts, contexts))

    def models_parts01(self, ds, bf16: bool = False, max_tokens: int | None = None) -> dict[str, np.ndarray]:
        """``{"encoder": (M, N) or (M, N, K)}``: each session's scores in [0, 1], rows in input order (``bf16`` is
        the PyTorch scorer's option; an export runs as exported, fp32 or int8); with a ``--stack tfidf`` export also
        ``"stack"`` and ``"blend"``, as the PyTorch scorer gives them."""
        width = self.table.num_traits
        out = np.full((len(self.models), len(ds), width), np.nan)
        for rows in batches(ds.sizes, max_tokens or 2048):  # a CPU's batch (hub.scorer.batch_tokens)
            feed = self.feed(ds, rows)
            for m, session in enumerate(self.models):
                out[m, rows] = np.reshape(session.run([OUTPUT], feed)[0], (len(rows), width))
        encoder = out[..., 0] if width == 1 else out
        return {"encoder": encoder} if self.stack is None else self.stack.parts01(ds.texts, encoder)

    def feed(self, ds: Encoded, rows: list[int]) -> dict[str, np.ndarray]:
        """A batch's inputs: every window a row, padded with the pad id (mask and segment ids with 0)."""
        windows = [w for i in rows for w in ds.windows[i]]
        length = max(len(w["input_ids"]) for w in windows)
        feed = {}
        for name in self.tokenizer.fields:
            pad = self.tokenizer.pad_token_id if name == "input_ids" else 0
            feed[name] = np.array([w[name] + [pad] * (length - len(w[name])) for w in windows], dtype=np.int64)
        feed["prompt_ids"] = ds.prompt_ids[rows]
        if self.long_text == "chunks":
            feed["window_to_text"] = np.array([b for b, i in enumerate(rows) for _ in ds.windows[i]], dtype=np.int64)
        return feed


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_export(path, scorer_class):
    """A scorer of an export folder (``scorelib.load`` calls this with its :class:`~scorelib.hub.scorer.Scorer`).

    Raises:
        CheckpointError: a manifest or file that does not match (edited after export), an unknown format.
    """
    missing = [name for name in ("onnxruntime", "tokenizers") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingFileError(f"{path}: scoring an ONNX export needs {' and '.join(missing)}: "
                               f"pip install \"scorelib[onnx]\"")
    folder = Path(path)
    manifest = read_manifest(folder)
    table = PromptTable.load(folder / "prompts.json")
    encoder = Encoder(folder / "tokenizer.json", manifest["inputs"], manifest["max_length"], manifest["long_text"],
                      manifest["chunk_stride"], manifest["pad_token_id"])
    scorer_type = type("OnnxScorer", (OnnxScoring, scorer_class), {"__module__": __name__})
    scorer = scorer_type([session(folder / name) for name in manifest["models"]], encoder, table, manifest)
    scorer.stack = read_stack(folder, manifest, table.num_traits)
    return scorer


def read_stack(folder: Path, manifest: dict, num_traits: int):
    """An export's ``--stack tfidf`` part (:class:`scorelib.stack.blend.Blend`: NumPy and scikit-learn, no
    PyTorch), each model's pair of files checked as a save dir's are; None for an export without one."""
    entry = manifest.get("stack")
    if entry is None:
        return None
    from scorelib.stack.blend import Blend, TfidfStack

    files, weight = (entry.get("files"), entry.get("weight")) if isinstance(entry, dict) else (None, None)
    if entry.get("kind") != "tfidf" or not isinstance(files, list) or len(files) != len(manifest["models"]) or \
            any(not isinstance(f, list) or len(f) != 2 for f in files) or not isinstance(weight, list) or \
            len(weight) != num_traits or any(type(w) not in (int, float) or not 0 <= w <= 1 for w in weight):
        raise CheckpointError(f"{folder / MANIFEST}: its stack entry does not name a pair of files per model and a "
                              f"blend weight in [0, 1] per score; re-export with scorelib-export")
    return Blend([TfidfStack.read(folder / j, folder / n) for j, n in files], np.asarray(weight, dtype=np.float64))
