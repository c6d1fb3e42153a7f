"""``TextScoringTask``: builds the data, the prompt table, the model and the criterion.

Mirrors fairseq's ``fairseq/tasks/fairseq_task.py`` and ``sentence_prediction.py``:
``add_args``, ``setup_task(cls, args)``, ``load_dataset(split)``, ``build_model``,
``build_criterion``, ``train_step``, ``valid_step``. This is the one module that wires
tables, dataset, model and criterion together.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from scorelib.data.prompts import PromptTable
from scorelib.data.scores import notes_shape
from scorelib.data.scoring_dataset import LONG_TEXT_MODES, ScoringDataset
from scorelib.data.tables import Columns, Tables, natural_key, read_splits
from scorelib.errors import DataError
from scorelib.models.scoring_model import load_tokenizer
from scorelib.registry import CRITERION_REGISTRY, MODEL_REGISTRY, lookup, register_task

logger = logging.getLogger(__name__)


def subset(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A seeded subset of ``n`` rows, balanced over prompts (``--max-train-rows``, fast mode)."""
    if n is None or n >= len(frame):
        return frame
    logger.info("using a seeded subset of %d of %d rows (--max-train-rows/--max-eval-rows, which SCORELIB_FAST=1 "
                "sets where they are not given); the other rows are left out of this run", n, len(frame))
    shuffled = frame.iloc[np.random.default_rng(seed).permutation(len(frame))]
    rank = shuffled.groupby("prompt").cumcount().to_numpy()
    return shuffled.iloc[np.argsort(rank, kind="stable")[:n]].sort_index()


def read_tables(args, whole_file_as: str | None = None) -> Tables:
    """:func:`scorelib.data.tables.read_splits` with the task's options."""
    return read_splits(args.data, Columns.from_args(args), layout=args.layout, encoding=args.encoding,
                         valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
                         split_seed=args.split_seed, keep_prompts=args.prompts, ranges_file=args.score_ranges,
                         whole_file_as=whole_file_as, sheet=args.sheet)


@register_task("text_scoring")
class TextScoringTask:
    """Score texts on per-prompt scales with a fine-tuned encoder.

    Args:
        args: options from :func:`scorelib.options.get_training_parser`.
        tokenizer: a Hugging Face tokenizer.
        frames (dict[str, pd.DataFrame]): checked tables per split (:func:`scorelib.data.tables.normalize`).
        prompts (PromptTable): prompt ids, ranges, step, contexts.
    """

    def __init__(self, args, tokenizer, frames, prompts: PromptTable):
        self.args = args
        self.tokenizer = tokenizer
        self.frames = frames
        self.prompts = prompts
        self.datasets: dict[str, ScoringDataset] = {}

    @staticmethod
    def add_args(parser):
        """The task's own options (the notes' "--task中自定义的参数")."""
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
        g.add_argument("--score-column", metavar="NAME[,NAME...]",
                       help="the human score (default: 'score'); a comma list trains one model with one output per "
                            "trait, e.g. cohesion,syntax,vocabulary")
        g.add_argument("--prompts", metavar="ID,ID", help="keep only these prompts")
        g.add_argument("--score-range", nargs=2, type=float, metavar=("MIN", "MAX"), help="one range for all prompts")
        g.add_argument("--score-ranges", metavar="FILE",
                       help="table with columns prompt, min, max; with traits, a trait column (and optional step "
                            "column; prompt then optional) sets each trait's range")
        g.add_argument("--score-step", type=float, metavar="STEP",
                       help="rounding step of the scores, e.g. 1 or 0.5 (none: continuous target, no QWK)")
        g.add_argument("--max-length", type=int, default=512, help="the encoder's window, in tokens")
        g.add_argument("--long-text", choices=LONG_TEXT_MODES, default="truncate",
                       help="texts longer than --max-length: truncate (keep the start), head-tail (the first quarter "
                            "of the window from the start, the rest from the end), or chunks (overlapping windows, "
                            "their features pooled per text; nothing is cut)")
        g.add_argument("--chunk-stride", type=int, default=None, metavar="N",
                       help="tokens shared by consecutive windows under --long-text chunks (default: a quarter of "
                            "--max-length; must be smaller than it)")
        g.add_argument("--encoding", help="text encoding of the tables (default: UTF-8, BOM allowed)")
        g.add_argument("--sheet", metavar="NAME", help="the sheet to read of .xlsx workbooks of several sheets")
        g.add_argument("--valid-fraction", type=float, default=0.1, help="share of a single table used for valid")
        g.add_argument("--test-fraction", type=float, default=0.1, help="share of a single table used for test")
        g.add_argument("--split-seed", type=int, default=1, help="seed of the split of a single table")
        g.add_argument("--max-train-rows", type=int, metavar="N", help="train on a seeded, prompt-balanced subset")
        g.add_argument("--max-eval-rows", type=int, metavar="N", help="validate and test on subsets of N rows")

    # ------------------------------------------------------------------ setup
    @classmethod
    def setup_task(cls, args, tokenizer=None, **kwargs):
        """Read and check the tables, build the prompt table (the notes' ``set_up_task``).

        Every check runs here, before anything is written, so bad data leaves no save dir behind.
        """
        tables = read_tables(args)
        prompts = PromptTable.from_tables(tables, score_range=args.score_range, step=args.score_step)
        if tokenizer is None:
            tokenizer = load_tokenizer(args.model_name_or_path)
        frames = dict(tables.frames)
        frames["train"] = subset(frames["train"], args.max_train_rows, args.seed)
        for split in ("valid", "test"):
            if split in frames:
                frames[split] = subset(frames[split], args.max_eval_rows, args.seed)
        return cls(args, tokenizer, frames, prompts)

    @classmethod
    def setup_eval_task(cls, args, tokenizer, prompts: PromptTable, split: str):
        """Read data to evaluate a trained model on: the prompt table comes from the checkpoint.

        A folder gives its ``{split}`` table; a single file is read whole as ``split``.
        """
        tables = read_tables(args, whole_file_as=split)
        if split not in tables.frames:
            raise DataError(f"{args.data}: no {split} table to evaluate on (have: {', '.join(tables.frames)})")
        frame = tables.frames[split]
        unknown = sorted(set(frame["prompt"]) - set(prompts.ids), key=natural_key)
        if unknown:
            raise DataError(f"{split}: prompt(s) {', '.join(map(repr, unknown))} are unknown to this model; "
                            f"it knows {', '.join(prompts.ids)}")
        if tables.scores.names != prompts.scores.names:
            raise DataError(f"{split}: the data's score column(s) {tables.score_column!r} differ from the model's "
                            f"traits {','.join(prompts.traits) or '(one score)'}; pass --score-column to match")
        prompts.check_scores(frame, split, tables.score_column, strict=False)
        return cls(args, tokenizer, {split: subset(frame, args.max_eval_rows, args.seed)}, prompts)

    def load_dataset(self, split: str, **kwargs) -> ScoringDataset:
        """Tokenize one split into ``self.datasets[split]`` and log its rows per prompt."""
        if split not in self.frames:
            raise DataError(f"no {split!r} split in the data (have: {', '.join(self.frames)})")
        args = self.args
        if args.long_text == "truncate":  # the notes' dataset
            ds = ScoringDataset(self.frames[split], self.tokenizer, self.prompts, args.max_length)
            long = f"{ds.num_long} text(s) truncated at --max-length {args.max_length}"
        else:  # head and tail, or windows: a dataset of scorelib.data.long_text
            from scorelib.data import long_text

            ds = long_text.build_dataset(self.frames[split], self.tokenizer, self.prompts, args.max_length,
                                         long_text=args.long_text, chunk_stride=args.chunk_stride)
            long = long_text.describe(args.long_text, args.max_length, args.chunk_stride, ds.num_long, ds.num_windows)
        self.datasets[split] = ds
        counts = pd.Series(ds.prompts).value_counts()
        per_prompt = "" if self.prompts.implicit_prompt else \
            f" ({', '.join(f'{p}: {counts[p]}' for p in sorted(counts.index, key=natural_key))})"
        logger.info("%s: %d rows%s; %s", split, len(ds), per_prompt, long)
        return ds

    def dataset(self, split: str) -> ScoringDataset:
        return self.datasets[split] if split in self.datasets else self.load_dataset(split)

    def mean_train_target(self):
        """The mean scaled training score: a float for one score, (K,) for K traits (as ``sample["target"]``)."""
        frame = self.frames["train"]
        means = np.mean(self.prompts.scale(self.prompts.scores.matrix(frame), frame["prompt"]), axis=0)  # (K,)
        return notes_shape(means[None])[0]

    def build_model(self, args):
        return lookup(MODEL_REGISTRY, "model", args.arch).build_model(args, self)

    def build_criterion(self, args):
        return lookup(CRITERION_REGISTRY, "criterion", args.criterion).build_criterion(args, self)

    # ------------------------------------------------------------------ steps
    def train_step(self, sample, model, criterion, optimizer, update_num: int, ignore_grad: bool = False):
        """Forward and backward one batch (gradients accumulate until the trainer steps).

        ``optimizer.backward(loss)`` where the optimizer has one (scorelib's, which checks the loss and
        scales it under fp16, as fairseq's ``FairseqOptimizer.backward``), else ``loss.backward()``.

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
