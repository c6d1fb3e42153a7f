"""Training throughput: scorelib's trainer vs ``transformers.Trainer``, and scorelib's distance to a bare loop.

Configurations (same encoder, same texts, same epochs, float32, same CPU threads), each run in its own
process so that its peak RSS is its own, alternating ``--repeats`` times; figures are medians:

* ``scorelib``: ``Trainer.train()`` with length-sorted ``batch_by_size`` batches; ``--max-tokens`` is chosen
  so that the mean batch size is within 10% of 16 (HF's batch size).
* ``hf_default``: ``AutoModelForSequenceClassification(num_labels=1)`` + ``DataCollatorWithPadding``,
  batch size 16, random batches padded to the longest.
* ``hf_group_by_length``: the same with length grouping (transformers 5: ``train_sampling_strategy=
  "group_by_length"``; 4.x: ``group_by_length=True``).

Time is the training loop only (scorelib: the epoch loop that ``history.csv`` times; HF: ``on_epoch_begin``
to ``on_epoch_end``): model loading, tokenization, validation and checkpoint writing are left out of both.

``overhead``: scorelib's epoch vs a bare forward + backward + AdamW step of the same model on pre-built
tensors of the same batches, alternating in one process.

    python bench/bench_train.py [--texts 256] [--epochs 1] [--repeats 3] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

HF_BATCH = 16
CONFIGS = ["scorelib", "hf_default", "hf_group_by_length"]
SEED = 1


# ---------------------------------------------------------------------------- shared by parent and children
def tokenizer():
    from scorelib.tasks import load_tokenizer

    return load_tokenizer(None)


def lengths_of(texts) -> np.ndarray:
    enc = tokenizer()(texts, truncation=True, max_length=512)
    return np.array([len(x) for x in enc["input_ids"]])


def scorelib_batches(sizes: np.ndarray, max_tokens: int, epoch: int = 1) -> list[list[int]]:
    """The batches scorelib's trainer forms in ``epoch`` (same seeding as ``Trainer.epoch_batches``)."""
    from scorelib.data import batch_by_size

    order = np.random.default_rng(SEED + epoch).permutation(len(sizes))
    order = order[np.argsort(sizes[order], kind="stable")]
    return batch_by_size(order, sizes.__getitem__, max_tokens, 100_000)


def choose_max_tokens(sizes: np.ndarray, target: float = HF_BATCH) -> tuple[int, float]:
    """The ``--max-tokens`` (multiple of 64) whose mean batch size is closest to ``target``."""
    best = None
    for mt in range(int(sizes.max()), 20_000, 64):
        mean = len(sizes) / len(scorelib_batches(sizes, mt))
        if best is None or abs(mean - target) < abs(best[1] - target):
            best = (mt, mean)
    return best


def write_data(folder: Path, texts, targets) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"key": [f"t{i}" for i in range(len(texts))], "text": texts, "score": targets}).to_csv(
        folder / "train.csv", index=False)
    return folder


def scorelib_args(data: Path, save_dir: Path, max_tokens: int, epochs: int):
    from scorelib.options import parse_args

    return parse_args([str(data), "--save-dir", str(save_dir), "--cpu", "--max-epoch", str(epochs),
                       "--max-tokens", str(max_tokens), "--batch-size", "100000", "--score-range", "0", "1",
                       "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "1000000",
                       "--seed", str(SEED), "--lr", "8e-5"])


def build_trainer(args):
    from scorelib.cli import set_seed
    from scorelib.registry import TASK_REGISTRY, lookup
    from scorelib.trainer import Trainer

    set_seed(args.seed)
    task = lookup(TASK_REGISTRY, "task", args.task).setup_task(args)
    task.load_dataset("train")
    return Trainer(args, task, task.build_model(args), task.build_criterion(args))


def efficiency(batches, sizes) -> float:
    real = sum(int(sizes[b].sum()) for b in map(np.asarray, batches))
    padded = sum(len(b) * int(sizes[np.asarray(b)].max()) for b in batches)
    return real / padded


# ---------------------------------------------------------------------------- children
def child_scorelib(opts) -> dict:
    import torch

    torch.set_num_threads(opts.threads)
    save_dir = Path(tempfile.mkdtemp(prefix="scorelib-bench-ckpt-"))
    try:
        trainer = build_trainer(scorelib_args(Path(opts.data), save_dir, opts.max_tokens, opts.epochs))
        history = trainer.train()
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)
    sizes = trainer.train_data.sizes
    batches = [b for e in range(1, opts.epochs + 1) for b in trainer.epoch_batches(e)]
    seconds = sum(r["seconds"] for r in history)
    return {"seconds": seconds, "samples": len(sizes) * opts.epochs, "tokens": int(sizes.sum()) * opts.epochs,
            "padding_efficiency": efficiency(batches, sizes), "mean_batch_size": len(batches) and
            len(sizes) * opts.epochs / len(batches), "batches": len(batches)}


def child_hf(opts, group: bool) -> dict:
    import inspect

    import torch
    import transformers
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments)

    from scorelib import default_model_path

    torch.set_num_threads(opts.threads)
    transformers.logging.set_verbosity_error()
    frame = pd.read_csv(Path(opts.data) / "train.csv", keep_default_na=False)
    tok = tokenizer()
    enc = tok(frame["text"].tolist(), truncation=True, max_length=512)
    rows = [{**{k: enc[k][i] for k in enc.keys()}, "labels": float(frame["score"][i])} for i in range(len(frame))]
    transformers.set_seed(SEED)
    model = AutoModelForSequenceClassification.from_pretrained(default_model_path(), num_labels=1)

    stats = {"real": 0, "padded": 0, "batches": 0}
    base = DataCollatorWithPadding(tok)

    def collate(features):
        batch = base(features)
        stats["real"] += int(batch["attention_mask"].sum())
        stats["padded"] += batch["input_ids"].numel()
        stats["batches"] += 1
        return batch

    times = []

    class Clock(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kw):
            times.append([time.perf_counter(), None])

        def on_epoch_end(self, args, state, control, **kw):
            times[-1][1] = time.perf_counter()

    out = tempfile.mkdtemp(prefix="scorelib-bench-hf-")
    kw = dict(output_dir=out, per_device_train_batch_size=HF_BATCH, num_train_epochs=opts.epochs, learning_rate=8e-5,
              weight_decay=0.01, warmup_ratio=0.06, max_grad_norm=1.0, lr_scheduler_type="linear",
              save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[], use_cpu=True,
              seed=SEED, dataloader_num_workers=0, disable_tqdm=True)
    params = inspect.signature(TrainingArguments).parameters
    if group:
        kw.update({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in params
                  else {"group_by_length": True})
    if "warmup_ratio" not in params:
        kw.pop("warmup_ratio")
    try:
        trainer = Trainer(model=model, args=TrainingArguments(**kw), train_dataset=rows, data_collator=collate,
                          callbacks=[Clock()])
        trainer.train()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"seconds": sum(b - a for a, b in times), "samples": len(rows) * opts.epochs, "tokens": stats["real"],
            "padding_efficiency": stats["real"] / stats["padded"], "mean_batch_size": len(rows) * opts.epochs /
            stats["batches"], "batches": stats["batches"]}


def child_overhead(opts) -> dict:
    """Alternate scorelib epochs and bare epochs (same model, same batch shapes) in one process."""
    import torch

    torch.set_num_threads(opts.threads)
    save_dir = Path(tempfile.mkdtemp(prefix="scorelib-bench-ckpt-"))
    try:
        trainer = build_trainer(scorelib_args(Path(opts.data), save_dir, opts.max_tokens, 1))
        ds, model = trainer.train_data, trainer.model
        bare_opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
        ours, bare = [], []
        for rep in range(opts.repeats):
            trainer.args.max_epoch = trainer.epoch  # one more epoch
            epoch = trainer.epoch
            trainer.train()
            ours.append(trainer.history[-1]["seconds"])
            batches = trainer.epoch_batches(epoch)
            prebuilt = [ds.collater([ds[i] for i in b]) for b in batches]
            prebuilt = [(s["net_input"], s["target"]) for s in prebuilt]
            model.train()
            t0 = time.perf_counter()
            for net_input, target in prebuilt:
                pred = model(**net_input)["encoder_out"]
                loss = torch.nn.functional.mse_loss(pred, target, reduction="sum") / len(target)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
                bare_opt.step()
                bare_opt.zero_grad(set_to_none=True)
            bare.append(time.perf_counter() - t0)
            print(f"overhead round {rep + 1}: scorelib {ours[-1]:.2f}s, bare {bare[-1]:.2f}s", flush=True)
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)
    tokens = int(ds.sizes.sum())
    return {"scorelib_seconds": ours, "bare_seconds": bare, "tokens": tokens}


# ---------------------------------------------------------------------------- parent
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--only", choices=["throughput", "overhead"], action="append")
    p.add_argument("--no-save", action="store_true", help="print only; leave bench/results.json alone")
    p.add_argument("--child", choices=CONFIGS + ["overhead"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--max-tokens", type=int, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    import torch

    opts.threads = opts.threads or torch.get_num_threads()
    if opts.child:
        fn = {"scorelib": child_scorelib, "hf_default": lambda o: child_hf(o, False),
              "hf_group_by_length": lambda o: child_hf(o, True), "overhead": child_overhead}[opts.child]
        result = fn(opts)
        common.emit({**result, "peak_rss_mb": common.peak_rss_mb(), "threads": torch.get_num_threads()})
        return 0

    texts, targets, source = common.skewed_texts(opts.texts, seed=0)
    sizes = lengths_of(texts)
    max_tokens, mean_bs = choose_max_tokens(sizes)
    print(f"texts: {source}; tokens per text: median {np.median(sizes):.0f}, min {sizes.min()}, max {sizes.max()}, "
          f"total {sizes.sum():,}; scorelib --max-tokens {max_tokens} (mean batch size {mean_bs:.2f} vs HF {HF_BATCH});"
          f" {opts.threads} torch threads; load {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="scorelib-bench-train-"))
    data = write_data(work / "data", texts, targets)
    child = ["bench/bench_train.py", "--data", str(data), "--max-tokens", str(max_tokens), "--epochs",
             str(opts.epochs), "--threads", str(opts.threads), "--repeats", str(opts.repeats)]
    log = common.ROOT / "bench" / "out" / "train_children.log"
    result = {"texts": source, "n_texts": len(texts), "tokens_total": int(sizes.sum()),
              "tokens_median": float(np.median(sizes)), "epochs": opts.epochs, "repeats": opts.repeats,
              "scorelib_max_tokens": max_tokens, "threads": opts.threads, "dtype": "float32"}
    loads = [os.getloadavg()[0]]
    try:
        if not opts.only or "throughput" in opts.only:
            runs = {c: [] for c in CONFIGS}
            for rep in range(opts.repeats):
                for cfg in CONFIGS:
                    r = common.run_child([*child, "--child", cfg], log=log)
                    r["tokens_per_s"], r["samples_per_s"] = r["tokens"] / r["seconds"], r["samples"] / r["seconds"]
                    runs[cfg].append(r)
                    loads.append(os.getloadavg()[0])
                    print(f"  run {rep + 1} {cfg:>20}: {r['tokens_per_s']:8.1f} non-pad tokens/s, "
                          f"{r['samples_per_s']:6.2f} samples/s, {r['seconds']:.1f}s, padding eff "
                          f"{r['padding_efficiency']:.3f}, mean batch {r['mean_batch_size']:.2f}, peak RSS "
                          f"{r['peak_rss_mb']:.0f} MiB (load {loads[-1]:.2f})", flush=True)
            rows = []
            for cfg in CONFIGS:
                rs = runs[cfg]
                row = {"config": cfg, "samples_per_s": common.median(r["samples_per_s"] for r in rs),
                       "tokens_per_s": common.median(r["tokens_per_s"] for r in rs),
                       "padding_efficiency": common.median(r["padding_efficiency"] for r in rs),
                       "mean_batch_size": common.median(r["mean_batch_size"] for r in rs),
                       "peak_rss_mb": common.median(r["peak_rss_mb"] for r in rs),
                       "tokens_per_s_runs": [round(r["tokens_per_s"], 1) for r in rs]}
                rows.append(row)
                result[cfg] = row
            common.print_table(rows, ["config", "samples_per_s", "tokens_per_s", "padding_efficiency",
                                      "mean_batch_size", "peak_rss_mb"],
                               f"training throughput (medians of {opts.repeats} alternating runs, non-pad tokens/s)")
            ours = result["scorelib"]["tokens_per_s"]
            result["ratio_vs_hf_default"] = ours / result["hf_default"]["tokens_per_s"]
            result["ratio_vs_hf_group_by_length"] = ours / result["hf_group_by_length"]["tokens_per_s"]
            result["goal_ratio_vs_hf_default_ge_3"] = result["ratio_vs_hf_default"] >= 3
            result["goal_ratio_vs_hf_group_by_length_ge_1.5"] = result["ratio_vs_hf_group_by_length"] >= 1.5
            result["goal_padding_efficiency_ge_0.9"] = result["scorelib"]["padding_efficiency"] >= 0.9
            result["mean_batch_within_10pct_of_16"] = abs(result["scorelib"]["mean_batch_size"] / HF_BATCH - 1) <= 0.1
            print(f"scorelib / HF default: {result['ratio_vs_hf_default']:.2f}x (goal >= 3); scorelib / HF "
                  f"group_by_length: {result['ratio_vs_hf_group_by_length']:.2f}x (goal >= 1.5)")
        if not opts.only or "overhead" in opts.only:
            r = common.run_child([*child, "--child", "overhead"], log=log)
            loads.append(os.getloadavg()[0])
            ours, bare = common.median(r["scorelib_seconds"]), common.median(r["bare_seconds"])
            ratio = common.median(a / b for a, b in zip(r["scorelib_seconds"], r["bare_seconds"]))
            result["overhead"] = {"scorelib_epoch_s": ours, "bare_epoch_s": bare,
                                  "scorelib_tokens_per_s": r["tokens"] / ours, "bare_tokens_per_s": r["tokens"] / bare,
                                  "scorelib_seconds_runs": r["scorelib_seconds"], "bare_seconds_runs": r["bare_seconds"],
                                  "ratio_scorelib_vs_bare_time": ratio, "overhead_pct": 100 * (ratio - 1),
                                  "goal_overhead_lt_10pct": ratio - 1 < 0.10,
                                  "note": "overhead = median over rounds of (scorelib epoch / bare epoch) - 1"}
            print(f"distance to the limit: scorelib epoch {ours:.2f}s vs bare {bare:.2f}s "
                  f"({r['tokens'] / ours:.0f} vs {r['tokens'] / bare:.0f} tokens/s): overhead "
                  f"{100 * (ratio - 1):+.1f}% (median of per-round ratios; goal < 10%)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_1m_during"] = [round(x, 2) for x in loads]
    result["machine"] = common.machine()
    result["command"] = "python bench/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if not opts.no_save:
        common.save_result("train", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
