"""``TextScoringTask``: reads the data, builds the prompt table, model and criterion.

Mirrors fairseq's ``fairseq/tasks/fairseq_task.py`` and ``sentence_prediction.py``:
``add_args``, ``setup_task(cls, args)``, ``load_dataset(split)``, ``build_model``,
``build_criterion``, ``train_step``, ``valid_step``. This is the one module that wires
data, model and criterion together.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import data as D
from .prompts import PromptTable
from .registry import CRITERION_REGISTRY, MODEL_REGISTRY, lookup, register_task

logger = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


def natural_key(pid: str):
    """Sort prompt ids as numbers where they look like numbers ("2" < "10"), keeping them strings."""
    try:
        return (0, float(pid), pid)
    except ValueError:
        return (1, 0.0, pid)


def _subset(frame, n, seed):
    """A seeded subset of ``n`` rows, balanced over prompts (fast mode)."""
    if n is None or n >= len(frame):
        return frame
    logger.info("using a seeded subset of %d of %d rows (--max-train-rows/--max-eval-rows; SCORELIB_FAST sets "
                "them); the other rows are left out of this run", n, len(frame))
    order = np.random.default_rng(seed).permutation(len(frame))
    shuffled = frame.iloc[order]
    rank = shuffled.groupby("prompt").cumcount().to_numpy()
    return shuffled.iloc[np.argsort(rank, kind="stable")[:n]].sort_index()


@register_task("text_scoring")
class TextScoringTask:
    """Score texts on per-prompt scales with a fine-tuned encoder.

    Args:
        args: options from :func:`scorelib.options.get_training_parser`.
        tokenizer: a Hugging Face tokenizer.
        frames (dict[str, pd.DataFrame]): normalized tables per split.
        prompts (PromptTable): prompt ids, ranges, step, contexts.
    """

    def __init__(self, args, tokenizer, frames, prompts: PromptTable):
        self.args = args
        self.tokenizer = tokenizer
        self.frames = frames
        self.prompts = prompts
        self.datasets: dict[str, D.ScoringDataset] = {}

    @staticmethod
    def add_args(parser):
        """The task's own options (the seed's "--task中自定义的参数")."""
        g = parser.add_argument_group("task: text_scoring")
        g.add_argument("data", nargs="?", default=None,
                       help="a folder with train/valid/test tables (.csv, .tsv or .xlsx), or one table to split; "
                            "default: the embedded demo data")
        g.add_argument("--layout", choices=["table", "asap-aes", "asap-sas"], default="table",
                       help="column names and ranges of a known data set")
        g.add_argument("--key-column", help="unique row id (default: 'key' if present, else file:row)")
        g.add_argument("--prompt-column", help="prompt/question id (default: 'prompt' if present, else one prompt)")
        g.add_argument("--text-column", help="the text to score (default: 'text')")
        g.add_argument("--context-column",
                       help="second segment fed as a text pair, e.g. the question (default: 'context' if present)")
        g.add_argument("--score-column", help="the human score (default: 'score')")
        g.add_argument("--prompts", metavar="ID,ID", help="keep only these prompts")
        g.add_argument("--score-range", nargs=2, type=float, metavar=("MIN", "MAX"), help="one range for all prompts")
        g.add_argument("--score-ranges", metavar="FILE", help="table with columns prompt, min, max")
        g.add_argument("--score-step", type=float, metavar="STEP",
                       help="rounding step of the scores, e.g. 1 or 0.5 (none: continuous target, no QWK)")
        g.add_argument("--max-length", type=int, default=512, help="truncate texts to this many tokens")
        g.add_argument("--encoding", help="text encoding of the tables (default: UTF-8, BOM allowed)")
        g.add_argument("--valid-fraction", type=float, default=0.1, help="share of a single table used for valid")
        g.add_argument("--test-fraction", type=float, default=0.1, help="share of a single table used for test")
        g.add_argument("--split-seed", type=int, default=1, help="seed of the split of a single table")
        g.add_argument("--max-train-rows", type=int, metavar="N", help="train on a seeded, prompt-balanced subset")
        g.add_argument("--max-eval-rows", type=int, metavar="N", help="validate and test on subsets of N rows")

    # ------------------------------------------------------------------ setup
    @classmethod
    def setup_task(cls, args, tokenizer=None, **kwargs):
        """Read the tables, check them and build the prompt table (the seed's ``set_up_task``)."""
        if args.score_range is not None and not args.score_range[0] < args.score_range[1]:
            raise ValueError(f"--score-range {args.score_range[0]:g} {args.score_range[1]:g}: MIN must be below MAX")
        if tokenizer is None:
            tokenizer = load_tokenizer(args.model_name_or_path)
        frames, layout = read_splits(args)
        if args.prompts:
            keep = [p.strip() for p in args.prompts.split(",") if p.strip()]
            for split, frame in frames.items():
                mask = frame["prompt"].isin(keep)
                logger.info("%s: --prompts keeps %d of %d rows (%d rows of other prompts left out)",
                            split, int(mask.sum()), len(frame), int((~mask).sum()))
                frames[split] = frame[mask].reset_index(drop=True)
            unknown = sorted(set(keep) - set(frames["train"]["prompt"]), key=natural_key)
            if unknown:
                raise ValueError(f"--prompts: {', '.join(unknown)} not found in the train data")
        check_unique_keys(frames)
        prompts = build_prompt_table(args, frames, layout)
        for split, frame in frames.items():
            check_ranges(frame, prompts, split, strict=(split == "train"))
        seed = getattr(args, "seed", 1)
        frames["train"] = _subset(frames["train"], args.max_train_rows, seed)
        for split in ("valid", "test"):
            if split in frames:
                frames[split] = _subset(frames[split], args.max_eval_rows, seed)
        return cls(args, tokenizer, frames, prompts)

    @classmethod
    def setup_eval_task(cls, args, tokenizer, prompts: PromptTable, split: str):
        """Read data to evaluate a trained model on: the prompt table comes from the checkpoint.

        A folder gives its ``{split}`` table; a single file is read whole as ``split``.
        """
        frames, _ = read_splits(args, whole_file_as=split)
        if split not in frames:
            raise D.DataError(f"{args.data}: no {split} table to evaluate on (have: {', '.join(frames)})")
        frame = frames[split]
        unknown = sorted(set(frame["prompt"]) - set(prompts.ids), key=natural_key)
        if unknown:
            raise D.DataError(f"{split}: prompt(s) {', '.join(map(repr, unknown))} are unknown to this model; "
                              f"it knows {', '.join(prompts.ids)}")
        check_ranges(frame, prompts, split, strict=False)
        frames = {split: _subset(frame, args.max_eval_rows, getattr(args, "seed", 1))}
        return cls(args, tokenizer, frames, prompts)

    def load_dataset(self, split: str, **kwargs) -> D.ScoringDataset:
        """Tokenize one split into ``self.datasets[split]`` and print its rows per prompt."""
        if split not in self.frames:
            raise KeyError(f"no {split!r} split in the data (have: {', '.join(self.frames)})")
        ds = D.ScoringDataset(self.frames[split], self.tokenizer, self.prompts, self.args.max_length)
        self.datasets[split] = ds
        counts = pd.Series(ds.prompts).value_counts()
        per_prompt = ", ".join(f"{p}: {counts[p]}" for p in sorted(counts.index, key=natural_key))
        logger.info("%s: %d rows (%s); %d text(s) truncated at --max-length %d",
                    split, len(ds), per_prompt, ds.num_truncated, self.args.max_length)
        return ds

    def dataset(self, split: str) -> D.ScoringDataset:
        return self.datasets[split] if split in self.datasets else self.load_dataset(split)

    def mean_train_target(self) -> float:
        frame = self.frames["train"]
        return float(np.mean(self.prompts.scale(frame["score"].to_numpy(float), frame["prompt"])))

    def build_model(self, args):
        return lookup(MODEL_REGISTRY, "model", getattr(args, "arch", "text_scorer")).build_model(args, self)

    def build_criterion(self, args):
        return lookup(CRITERION_REGISTRY, "criterion", getattr(args, "criterion", "score_mse")).build_criterion(args, self)

    # ------------------------------------------------------------------ steps
    def train_step(self, sample, model, criterion, optimizer, update_num: int, ignore_grad: bool = False):
        """Forward and backward one batch (gradients accumulate until the trainer steps).

        Returns:
            tuple: ``(loss, sample_size, logging_output)`` as the criterion gives them.
        """
        model.train()
        loss, sample_size, logging_output = criterion(model, sample)
        if ignore_grad:
            loss = loss * 0
        if hasattr(optimizer, "backward"):
            optimizer.backward(loss)
        else:
            loss.backward()
        return loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        """Loss and predictions of one batch, without gradients.

        Returns:
            tuple: ``(loss, sample_size, logging_output, net_output)``; ``net_output["encoder_out"]`` is (B,).
        """
        model.eval()
        with torch.no_grad():
            net_output = model(**sample["net_input"])
            loss, sample_size, logging_output = criterion.compute_loss(net_output, sample)
        return loss, sample_size, logging_output, net_output


def load_tokenizer(name_or_path):
    from transformers import AutoTokenizer

    from .model import default_model_path

    name = name_or_path or default_model_path()
    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise OSError(f"cannot load the tokenizer of {name!r}: {e}\nOffline, pass a local folder to "
                      f"--model-name-or-path; the default encoder needs no network.") from None


def find_split_files(folder: Path, need_train: bool = True) -> dict[str, Path]:
    found = {}
    for split in SPLITS:
        hits = [folder / f"{split}{s}" for s in D.SUFFIXES if (folder / f"{split}{s}").is_file()]
        if len(hits) > 1:
            raise D.DataError(f"{folder}: several {split} tables ({', '.join(h.name for h in hits)}); keep one")
        if hits:
            found[split] = hits[0]
    if need_train and "train" not in found or not found:
        names = ", ".join(sorted(p.name for p in folder.iterdir())) or "(empty)"
        raise D.DataError(f"{folder}: no train table (train.csv, train.tsv or train.xlsx); the folder holds: {names}")
    return found


def split_frame(frame, valid_fraction, test_fraction, seed):
    """Split one table into train/valid/test, per prompt, with a seeded shuffle."""
    for name, f in (("--valid-fraction", valid_fraction), ("--test-fraction", test_fraction)):
        if not 0 <= f < 1:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    if valid_fraction + test_fraction >= 1:
        raise ValueError("--valid-fraction + --test-fraction must stay below 1")
    rng = np.random.default_rng(seed)
    parts = {s: [] for s in SPLITS}
    for _, group in frame.groupby("prompt", sort=False):
        idx = group.index.to_numpy()[rng.permutation(len(group))]
        n_valid = int(round(len(idx) * valid_fraction))
        n_test = int(round(len(idx) * test_fraction))
        parts["valid"].append(idx[:n_valid])
        parts["test"].append(idx[n_valid:n_valid + n_test])
        parts["train"].append(idx[n_valid + n_test:])
    out = {s: frame.loc[np.sort(np.concatenate(parts[s]))].reset_index(drop=True) for s in SPLITS}
    return {s: f for s, f in out.items() if len(f) or s == "train"}


def read_splits(args, whole_file_as: str | None = None):
    """Read and normalize the data named by ``args.data`` into frames per split.

    A single table is split by ``--valid-fraction``/``--test-fraction``, or, with
    ``whole_file_as``, read whole as that split (for evaluation and scoring).
    """
    if args.data is None:
        from . import demo

        frames = {s: f.assign(_row=np.arange(2, len(f) + 2)) for s, f in demo.load_demo().items()}
        layout = {"ranges": demo.DEMO_RANGES, "step": demo.DEMO_STEP}
        args.context_column = args.context_column or "context"
        return {s: f[D.COLUMNS + ["_row"]] for s, f in frames.items()}, layout
    layout = D.LAYOUTS.get(args.layout, {})
    fallback = "latin-1" if layout else None
    path = Path(args.data)
    if not path.exists():
        raise FileNotFoundError(f"data {args.data}: no such file or folder")
    if path.is_dir():
        files = find_split_files(path, need_train=whole_file_as is None)
    else:
        files = {whole_file_as or "all": path}
    frames = {}
    for split, file in files.items():
        raw = D.read_table(file, args.encoding, fallback)
        cols = dict(
            key_column=args.key_column or layout.get("key") or ("key" if "key" in raw else None),
            prompt_column=args.prompt_column or layout.get("prompt") or ("prompt" if "prompt" in raw else None),
            text_column=args.text_column or layout.get("text") or "text",
            context_column=args.context_column or ("context" if "context" in raw else None),
            score_column=args.score_column or layout.get("score") or "score",
        )
        frames[split] = D.normalize(raw, file, **cols)
        frames[split]["_file"] = str(file)
    if "all" in files:
        frames = split_frame(frames["all"], args.valid_fraction, args.test_fraction, args.split_seed)
    return frames, layout


def check_unique_keys(frames):
    seen = {}
    for split, frame in frames.items():
        where = frame["_file"] if "_file" in frame else [split] * len(frame)  # name the file where there is one
        for key, row, name in zip(frame["key"], frame["_row"], where):
            if key in seen:
                raise D.DataError(f"key {key!r} appears in {seen[key]} and in {name} (row {row}); keys must be unique")
            seen[key] = f"{name} (row {row})"


def build_prompt_table(args, frames, layout) -> PromptTable:
    train = frames["train"]
    ids = sorted(train["prompt"].unique(), key=natural_key)
    for split, frame in frames.items():
        extra = sorted(set(frame["prompt"]) - set(ids), key=natural_key)
        if extra:
            rows = frame.loc[frame["prompt"].isin(extra), "_row"].tolist()[:5]
            raise D.DataError(f"{split}: prompt(s) {', '.join(map(repr, extra))} (rows {rows}...) do not occur in "
                              f"train, so the model cannot learn them; add training rows or leave them out with --prompts")
    declared = dict(layout.get("ranges", {}))
    if args.score_ranges:
        declared.update(D.read_ranges(args.score_ranges))
    if args.score_range is not None:
        declared = {p: tuple(args.score_range) for p in ids}
    ranges = {}
    for pid in ids:
        if pid in declared:
            ranges[pid] = tuple(map(float, declared[pid]))
            continue
        scores = train.loc[train["prompt"] == pid, "score"]
        lo, hi = float(scores.min()), float(scores.max())
        if lo == hi:
            raise D.DataError(f"prompt {pid!r}: every training score is {lo:g}; declare its range with "
                              f"--score-range MIN MAX or --score-ranges FILE")
        logger.warning("prompt %r: no declared range; using the training split's %g .. %g", pid, lo, hi)
        ranges[pid] = (lo, hi)
    step = args.score_step if args.score_step is not None else layout.get("step")
    uses_context = train["context"].notna().all()
    contexts = {}
    if uses_context:
        every = pd.concat([f[["prompt", "context"]] for f in frames.values()])
        for pid, group in every.groupby("prompt"):
            values = group["context"].unique()
            contexts[pid] = str(values[0]) if len(values) == 1 else None
    return PromptTable(ids=ids, ranges=ranges, step=step, contexts=contexts, uses_context=bool(uses_context))


def check_ranges(frame, prompts: PromptTable, split: str, strict: bool):
    lo, hi = prompts.bounds(frame["prompt"])
    score = frame["score"].to_numpy(float)
    outside = (score < lo) | (score > hi)
    if not outside.any():
        return
    i = int(np.flatnonzero(outside)[0])
    where = frame["_file"].iloc[i] if "_file" in frame else split
    msg = (f"{where}: row {frame['_row'].iloc[i]}, column score: {score[i]:g} is outside prompt "
           f"{frame['prompt'].iloc[i]!r}'s range {lo[i]:g} .. {hi[i]:g} ({int(outside.sum())} such rows)")
    if strict:
        raise D.DataError(msg + "; fix the scores or declare a wider range")
    logger.warning("%s: %s; these rows are kept", split, msg)
