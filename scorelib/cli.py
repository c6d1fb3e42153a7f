"""Command-line entry points: ``scorelib-train``, ``scorelib-eval``, ``scorelib-score``.

Mirrors ``fairseq_cli/train.py`` (``main``: setup_task, build model and criterion, load the
last checkpoint or ``--finetune-from-model``, train, save) and ``fairseq_cli/validate.py``.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import checkpoint as C
from . import evaluate as E
from . import options
from .data import DataError, read_table
from .registry import TASK_REGISTRY, lookup
from .trainer import Trainer

logger = logging.getLogger("scorelib")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def results_dir(args, save_dir=None) -> Path:
    """``--results-path``, else ``SAVE_DIR/results``; a clear error where that path is a file."""
    path = Path(args.results_path) if args.results_path else Path(save_dir or args.save_dir) / "results"
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--results-path {path}: is a file, not a folder")
    return path


def evaluate_split(trainer: Trainer, split: str, ckpt_name: str, results_path) -> tuple[pd.DataFrame, dict]:
    """Predict one split with the trainer's model and write the seed's ``result-{ckpt}-{split}`` files."""
    ds = trainer.task.dataset(split)
    loss, preds = trainer.predict(ds)
    if trainer.rank != 0:
        return None, None
    return E.evaluate(result_triples(ds, preds, loss), ckpt_name, trainer.task.prompts, results_path, split)


def result_triples(ds, preds, loss=None) -> list:
    """A whole split as the seed's ``(loss, sample, result)`` triples (one triple, rows in input order)."""
    sample = {"key": ds.keys, "prompt": ds.prompts, "text": ds.texts, "target": torch.from_numpy(ds.targets)}
    return [(loss, sample, {"encoder_out": torch.from_numpy(preds)})]


def train(args) -> dict:
    """The whole job of ``scorelib-train``: set up, resume or fine-tune, train, evaluate ``checkpoint_best``.

    Args:
        args (argparse.Namespace): from :func:`scorelib.options.parse_args`.

    Returns:
        dict: ``history`` (list of per-epoch rows), ``metrics`` per split, ``save_dir``, ``results_path``.
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not torch.distributed.is_initialized():
        use_nccl = torch.cuda.is_available() and not args.cpu
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if use_nccl else "gloo")
    set_seed(args.seed)
    save_dir = C.prepare_save_dir(args.save_dir)
    results_path = results_dir(args)
    task = lookup(TASK_REGISTRY, "task", args.task).setup_task(args)
    task.load_dataset("train")
    if "valid" in task.frames:
        task.load_dataset("valid")
    model = task.build_model(args)
    criterion = task.build_criterion(args)
    restore = Path(args.restore_file)
    restore = restore if restore.parent != Path(".") or restore.is_absolute() else save_dir / restore
    if not restore.is_file() and args.finetune_from_model:
        state = C.load_checkpoint(args.finetune_from_model)
        moved = C.load_finetune_weights(model, state, task.prompts, model.encoder.config, args.finetune_from_model)
        logger.info("fine-tuning from %s: prompts kept %s, new %s", args.finetune_from_model,
                    moved["shared"] or "none", moved["new"] or "none")
    elif restore.is_file() and args.finetune_from_model:
        logger.info("%s exists, so --finetune-from-model is ignored and training resumes", restore)
    trainer = Trainer(args, task, model, criterion)
    if trainer.rank == 0:
        C.save_assets(save_dir, task.tokenizer, model.encoder.config, task.prompts)
    trainer.load_checkpoint(restore)
    history = trainer.train()
    best = save_dir / "checkpoint_best.pt"
    metrics = {}
    if best.is_file():
        trainer.model.load_state_dict(C.load_checkpoint(best)["model"])
        for split in ("valid", "test"):
            if split in task.frames:
                _, metrics[split] = evaluate_split(trainer, split, "checkpoint_best", results_path)
                if trainer.rank == 0:
                    logger.info("checkpoint_best on %s: %s", split, E.flat_metrics(metrics[split]))
    return {"history": history, "metrics": metrics, "save_dir": save_dir, "results_path": results_path}


def setup_logging() -> None:
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _fail(prog: str, error: BaseException) -> int:
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2


KNOWN_ERRORS = (DataError, C.CheckpointError, FileNotFoundError, NotADirectoryError, ValueError, KeyError, OSError,
                FloatingPointError, RuntimeError)


def train_cli(argv=None) -> int:
    """``scorelib-train``: the fairseq-train analog (no arguments: the demo data and default encoder)."""
    setup_logging()
    args = options.parse_args(argv)
    try:
        train(args)
    except KNOWN_ERRORS as e:
        return _fail("scorelib-train", e)
    finally:  # under torchrun: leave the process group cleanly
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


def eval_parser() -> argparse.ArgumentParser:
    from .tasks import TextScoringTask

    p = argparse.ArgumentParser(prog="scorelib-eval", description="Evaluate a checkpoint on a data split.")
    p.add_argument("checkpoint", help="a save dir (uses checkpoint_best.pt) or a .pt file")
    p.add_argument("--split", choices=["valid", "test", "train"], action="append",
                   help="split(s) to evaluate (default: valid and test)")
    p.add_argument("--results-path", help="default: the checkpoint's folder/results")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--bf16", action="store_true")
    TextScoringTask.add_args(p)
    return p


def eval_cli(argv=None) -> int:
    """``scorelib-eval SAVE_DIR_OR_CHECKPOINT [--split S] [data arguments]``."""
    setup_logging()
    parser = eval_parser()
    args = parser.parse_intermixed_args(argv)  # SAVE_DIR --split test DATA
    try:
        evaluate_checkpoint(args, parser)
    except KNOWN_ERRORS as e:
        return _fail("scorelib-eval", e)
    return 0


def evaluate_checkpoint(args, parser) -> dict:
    """Evaluate a saved checkpoint: data arguments not given come from the checkpoint's ``cfg``."""
    from .scorer import load, resolve_checkpoint
    from .tasks import TextScoringTask

    ckpt = resolve_checkpoint(args.checkpoint)
    scorer = load(ckpt, device="cpu" if args.cpu else None)
    cfg = C.load_checkpoint(ckpt)["cfg"]
    given = {k for k, v in vars(args).items() if v != parser.get_default(k)}
    for key, value in cfg.items():
        if hasattr(args, key) and key not in given and key not in ("split", "results_path", "cpu", "bf16"):
            if key.startswith("max_") and key.endswith("_rows") and "data" in given:
                continue
            if key.endswith("_column") and "data" in given and cfg.get("data") is None:
                continue  # column names the demo data set for itself (context) do not apply to the user's table
            setattr(args, key, value)
    args.seed = cfg.get("seed", 1)
    results_path = results_dir(args, save_dir=ckpt.parent)
    out = {}
    for split in args.split or ["valid", "test"]:
        task = TextScoringTask.setup_eval_task(args, scorer.tokenizer, scorer.table, split)
        ds = task.load_dataset(split)
        preds = scorer.score01_dataset(ds, bf16=args.bf16)
        _, metrics = E.evaluate(result_triples(ds, preds), ckpt.name, scorer.table, results_path, split)
        print(f"{ckpt.name} on {split}: {E.flat_metrics(metrics)}")
        out[split] = metrics
    return out


def score_cli(argv=None) -> int:
    """``scorelib-score SAVE_DIR [--prompt ID] [TEXT ...]`` or ``--input TABLE --output TABLE``."""
    from .scorer import load

    p = argparse.ArgumentParser(prog="scorelib-score", description="Score texts with a trained model.")
    p.add_argument("save_dir", help="save dir of scorelib-train (or a checkpoint file)")
    p.add_argument("texts", nargs="*", help="texts to score (default: one per line from stdin)")
    p.add_argument("--prompt", help="prompt id as in the data (default: the first, sorted)")
    p.add_argument("--context", help="second segment for models trained on (text, context) pairs")
    p.add_argument("--input", help="a table (.csv/.tsv/.xlsx) of texts to score, every row")
    p.add_argument("--output", help="where --input's rows go, with pred and pred_rounded columns")
    p.add_argument("--key-column", default="key")
    p.add_argument("--text-column", default="text")
    p.add_argument("--prompt-column", default="prompt")
    p.add_argument("--context-column", default="context")
    p.add_argument("--encoding")
    p.add_argument("--cpu", action="store_true")
    args = p.parse_intermixed_args(argv)  # SAVE_DIR --prompt q2 TEXT TEXT
    if bool(args.input) != bool(args.output):
        p.error("--input and --output go together")
    try:
        scorer = load(args.save_dir, device="cpu" if args.cpu else None)
        if args.prompt is None and not args.input:
            print(f"scorelib-score: no --prompt given; using {scorer.table.ids[0]!r} "
                  f"(known: {', '.join(scorer.table.ids)})", file=sys.stderr)
        if args.input:
            score_table(scorer, args)
            return 0
        texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
        for value in scorer.score(texts, prompt=args.prompt, contexts=args.context):
            print(f"{value:.4f}")
    except KNOWN_ERRORS as e:
        return _fail("scorelib-score", e)
    return 0


def score_table(scorer, args) -> pd.DataFrame:
    """Score every row of ``--input`` into ``--output`` (same rows and order, plus pred columns)."""
    frame = read_table(args.input, args.encoding)
    for name in (args.key_column, args.text_column):
        if name not in frame:
            raise DataError(f"{args.input}: missing column {name!r}; columns found: {list(frame.columns[:-1])}")
    blank = frame[args.text_column].str.strip() == ""
    if blank.any():
        rows = frame["_row"][blank].tolist()
        raise DataError(f"{args.input}: column {args.text_column!r}: empty text at row(s) "
                        f"{', '.join(map(str, rows[:10]))}{' ...' if len(rows) > 10 else ''}; nothing was written")
    prompts = frame[args.prompt_column] if args.prompt_column in frame else None
    if prompts is None:
        prompts = pd.Series([args.prompt or scorer.table.ids[0]] * len(frame))
    contexts = frame[args.context_column] if args.context_column in frame else None
    pred = np.full(len(frame), np.nan)
    for pid in pd.unique(prompts):
        rows = np.flatnonzero((prompts == pid).to_numpy())
        ctx = contexts.iloc[rows].tolist() if contexts is not None else args.context
        try:
            pred[rows] = scorer.score(frame[args.text_column].iloc[rows].tolist(), prompt=pid, contexts=ctx)
        except (ValueError, KeyError) as e:
            raise DataError(f"{args.input}: rows {frame['_row'].iloc[rows[0]]}...: {e}") from None
    out = frame.drop(columns="_row").copy()
    out["pred"] = pred
    out["pred_rounded"] = [float(scorer.round(v, p)[0]) for v, p in zip(pred, prompts)]
    output = Path(args.output)
    if output.suffix.lower() == ".xlsx":
        out.to_excel(output, index=False)
    else:
        out.to_csv(output, index=False, sep="\t" if output.suffix.lower() == ".tsv" else ",")
    print(f"scored {len(out)} rows into {output}", file=sys.stderr)
    return out


if __name__ == "__main__":  # ``torchrun --nproc_per_node=N -m scorelib.cli ...`` runs scorelib-train
    sys.exit(train_cli())
