"""Training throughput: scorelib's trainer vs ``transformers.Trainer``, and scorelib's distance to a bare loop.

Configurations (same encoder, same texts, same epochs, float32, same CPU threads, fused AdamW on both sides,
at most 16 texts per batch on both sides), each run in its own process so that its peak RSS is its own,
``--repeats`` times with the configuration order rotated each repeat; figures are medians:

* ``scorelib``: one epoch through ``scorelib.training.train_epoch`` (the loop ``scorelib-train`` runs) with the
  batches of ``scorelib.data.scoring_dataset.epoch_batches`` (length-sorted, ``--batch-size 16`` like HF, ``--max-tokens``
  the smallest multiple of 64 at which the mean batch size is within 10% of 16).
* ``scorelib_compile``: the same with ``--compile`` (``torch.compile`` of the encoder, dynamic shapes). Its first
  step compiles, so before the timed epoch it warms up: forward + backward (no optimizer step, so the weights
  do not change) on the epoch's first ``--warmup-batches`` (2) batches, twice; the compile time is the first pass
  minus the second. The timed epoch is then the same epoch 1 as eager ``scorelib``'s. Each run compiles cold
  (a fresh ``TORCHINDUCTOR_CACHE_DIR``), and the number of graphs compiled during the timed epoch is recorded
  (0 expected: a recompile there would be counted as training time). ``ratio_compile_vs_eager`` =
  ``scorelib_compile`` / ``scorelib`` non-pad tokens/s (medians).
* ``hf_default``: ``AutoModelForSequenceClassification(num_labels=1)`` + ``DataCollatorWithPadding``,
  batch size 16, random batches padded to the longest, ``optim="adamw_torch_fused"``.
* ``hf_group_by_length``: the same with length grouping (transformers 5: ``train_sampling_strategy=
  "group_by_length"``; 4.x: ``group_by_length=True``).

Time is the training loop only (scorelib: the epoch's ``seconds`` in its history row, training only; HF:
``on_epoch_begin`` to ``on_epoch_end``): model loading, tokenization, validation and checkpoint writing are
left out of both. Each child records the torch threads it really used (``torch.get_num_threads()``) and the
optimizer it really built (fused or not).

``overhead``: scorelib's epoch vs a bare forward + backward + AdamW step of the same model on pre-built
tensors of the same batches, alternating in one process.

    python bench/bench_train.py [--texts 256] [--epochs 1] [--repeats 3] [--threads N] [--configs a,b] [--no-save]
    python bench/bench_train.py --quick       # smoke run: 32 texts, 1 repeat, nothing saved (~7 min: one cold compile)
"""
from __future__ import annotations

import argparse
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
CONFIGS = ["scorelib", "scorelib_compile", "hf_default", "hf_group_by_length"]
SEED = 1
LR = 8e-5
os.environ["SCORELIB_FAST"] = "0"  # a SCORELIB_FAST=1 left in the shell would cut the rows: never in a benchmark


# ---------------------------------------------------------------------------- shared by parent and children
def write_data(folder: Path, texts, targets) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"key": [f"t{i}" for i in range(len(texts))], "text": texts, "score": targets}).to_csv(
        folder / "train.csv", index=False)
    return folder


def scorelib_args(data: Path, save_dir: Path, max_tokens: int, epochs: int, compile: bool = False, extra=()):
    from scorelib.options import parse_args

    return parse_args([*(["--compile"] if compile else []), *extra, str(data), "--save-dir", str(save_dir), "--cpu",
                       "--max-epoch", str(epochs),
                       "--max-tokens", str(max_tokens), "--batch-size", str(HF_BATCH), "--score-range", "0", "1",
                       "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "1000000",
                       "--seed", str(SEED), "--lr", str(LR)])


def setup_task(args):
    """The task with its train split loaded, as ``scorelib.training.train`` sets it up."""
    from scorelib.registry import TASK_REGISTRY, lookup

    task = lookup(TASK_REGISTRY, "task", args.task).setup_task(args)
    task.load_dataset("train")
    return task


def choose_max_tokens(dataset, target: int = HF_BATCH) -> tuple[int, float, int]:
    """The smallest ``--max-tokens`` (a multiple of 64) at which scorelib's epoch-1 batches, capped at ``target``
    texts (``--batch-size``), have a mean size within 10% of ``target``; returns it, that mean and the batches."""
    from scorelib.data.scoring_dataset import epoch_batches

    first = 64 * -(-int(dataset.sizes.max()) // 64)
    for mt in range(first, 64 * 1024 + 1, 64):
        batches = epoch_batches(dataset, 1, SEED, mt, target)
        mean = len(dataset) / len(batches)
        if mean >= 0.9 * target:
            return mt, mean, len(batches)
    raise RuntimeError("no --max-tokens up to 65,536 gives batches of ~16 texts")


def build_trainer(args):
    """Task, model, criterion and ``Trainer`` as ``scorelib.training.train`` builds them (train split only)."""
    from scorelib import checkpoint_utils as checkpoint
    from scorelib.training import set_seed
    from scorelib.trainer import Trainer

    set_seed(args.seed)
    task = setup_task(args)
    model, criterion = task.build_model(args), task.build_criterion(args)
    checkpoint.prepare_save_dir(args.save_dir)
    return Trainer(args, task, model, criterion)


def describe_optimizer(opt) -> dict:
    """The torch optimizer behind wrappers (HF/accelerate wrap it): class and whether it is fused."""
    while hasattr(opt, "optimizer"):  # scorelib's precision.Optimizer, accelerate's AcceleratedOptimizer
        opt = opt.optimizer
    d = getattr(opt, "defaults", {})
    return {"optimizer": type(opt).__name__, "fused": bool(d.get("fused")), "foreach": d.get("foreach")}


def thread_info() -> dict:
    import torch

    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS")}


# ---------------------------------------------------------------------------- children
def dynamo_graphs() -> int:
    """Graphs torch.compile has built so far in this process (0 where dynamo was never used)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0
    return int(counters["stats"]["unique_graphs"])


def first_samples(trainer, n_batches: int) -> list[dict]:
    """Epoch 1's first ``n_batches`` batches, collated and on the trainer's device."""
    from scorelib.inference import move_to

    ds = trainer.train_data
    return [move_to(ds.collater([ds[i] for i in b]), trainer.device) for b in trainer.epoch_batches(1)[:n_batches]]


def compile_warmup(trainer, n_batches: int) -> dict:
    """Forward + backward (no optimizer step: the weights do not change) on epoch 1's first ``n_batches``
    batches, twice. The first pass compiles; compile time = first pass - second pass."""
    model, samples = trainer.model, first_samples(trainer, n_batches)

    def one_pass() -> float:
        model.train()
        t0 = time.perf_counter()
        for s in samples:
            model(**s["net_input"])["encoder_out"].sum().backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    first, second = one_pass(), one_pass()
    return {"warmup_batches": len(samples), "warmup_first_pass_s": first, "warmup_second_pass_s": second,
            "compile_s": first - second, "graphs_after_warmup": dynamo_graphs()}


def child_scorelib(opts, compile: bool = False) -> dict:
    import torch

    from scorelib.data.scoring_dataset import epoch_batches, padding_efficiency
    from scorelib.training import Progress, train_epoch

    torch.set_num_threads(opts.threads)
    save_dir = Path(tempfile.mkdtemp(prefix="scorelib-bench-ckpt-"))
    extra = {}
    try:
        args = scorelib_args(Path(opts.data), save_dir, opts.max_tokens, opts.epochs, compile=compile)
        t0 = time.perf_counter()
        trainer = build_trainer(args)  # with --compile: includes compile_encoder's probe (a tiny compiled function)
        extra["trainer_build_s"] = time.perf_counter() - t0
        if compile:
            extra["compiled"] = bool(trainer.compiled)
            if trainer.compiled:
                extra.update(compile_warmup(trainer, opts.warmup_batches))
        progress = Progress("loss", maximize=False)  # no valid split: nothing is picked; only the loop matters
        for _ in range(opts.epochs):
            if not train_epoch(args, trainer, progress):
                raise RuntimeError(f"epoch {progress.epoch} did not finish")
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)
    ds = trainer.train_data
    batches = [b for e in range(1, opts.epochs + 1)
               for b in epoch_batches(ds, e, args.seed, args.max_tokens, args.batch_size)]
    seconds = sum(r["seconds"] for r in progress.history)
    return {"seconds": seconds, "samples": len(ds) * opts.epochs, "tokens": int(ds.sizes.sum()) * opts.epochs,
            "padding_efficiency": padding_efficiency(batches, ds.sizes), "mean_batch_size": len(ds) * opts.epochs /
            len(batches), "max_batch_size": max(map(len, batches)), "batches": len(batches),
            "updates": trainer.num_updates, **describe_optimizer(trainer.optimizer), **thread_info(), **extra,
            **({"graphs_during_timed_epochs": dynamo_graphs() - extra["graphs_after_warmup"]}
               if "graphs_after_warmup" in extra else {})}


def child_hf(opts, group: bool) -> dict:
    import inspect

    import torch
    import transformers
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments)

    from scorelib import default_model_path
    from scorelib.models.scoring_model import load_tokenizer

    torch.set_num_threads(opts.threads)
    transformers.logging.set_verbosity_error()
    frame = pd.read_csv(Path(opts.data) / "train.csv", keep_default_na=False)
    tok = load_tokenizer(None)
    enc = tok(frame["text"].tolist(), truncation=True, max_length=512)
    rows = [{**{k: enc[k][i] for k in enc.keys()}, "labels": float(frame["score"][i])} for i in range(len(frame))]
    transformers.set_seed(SEED)
    model = AutoModelForSequenceClassification.from_pretrained(default_model_path(), num_labels=1)

    stats = {"real": 0, "padded": 0, "batches": 0, "max_batch": 0}
    base = DataCollatorWithPadding(tok)

    def collate(features):
        batch = base(features)
        stats["real"] += int(batch["attention_mask"].sum())
        stats["padded"] += batch["input_ids"].numel()
        stats["batches"] += 1
        stats["max_batch"] = max(stats["max_batch"], len(features))
        return batch

    times = []

    class Clock(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kw):
            times.append([time.perf_counter(), None])

        def on_epoch_end(self, args, state, control, **kw):
            times[-1][1] = time.perf_counter()

    out = tempfile.mkdtemp(prefix="scorelib-bench-hf-")
    params = inspect.signature(TrainingArguments).parameters
    kw = dict(output_dir=out, per_device_train_batch_size=HF_BATCH, num_train_epochs=opts.epochs, learning_rate=LR,
              weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear", optim="adamw_torch_fused",
              save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[], use_cpu=True,
              seed=SEED, dataloader_num_workers=0, disable_tqdm=True)
    # 6% linear warm-up, as scorelib's default (transformers 5 takes the ratio as a float warmup_steps)
    kw.update({"warmup_ratio": 0.06} if "warmup_ratio" in params else {"warmup_steps": 0.06})
    if group:
        kw.update({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in params
                  else {"group_by_length": True})
    try:
        trainer = Trainer(model=model, args=TrainingArguments(**kw), train_dataset=rows, data_collator=collate,
                          callbacks=[Clock()])
        trainer.train()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"seconds": sum(b - a for a, b in times), "samples": len(rows) * opts.epochs, "tokens": stats["real"],
            "padding_efficiency": stats["real"] / stats["padded"], "mean_batch_size": len(rows) * opts.epochs /
            stats["batches"], "max_batch_size": stats["max_batch"], "batches": stats["batches"],
            "updates": trainer.state.global_step, **describe_optimizer(trainer.optimizer), **thread_info()}


def child_overhead(opts) -> dict:
    """Alternate scorelib epochs and bare epochs (same model, same batch shapes) in one process."""
    import torch

    from scorelib.data.scoring_dataset import epoch_batches
    from scorelib.training import Progress, train_epoch

    torch.set_num_threads(opts.threads)
    save_dir = Path(tempfile.mkdtemp(prefix="scorelib-bench-ckpt-"))
    try:
        args = scorelib_args(Path(opts.data), save_dir, opts.max_tokens, opts.repeats)  # one epoch per round
        trainer = build_trainer(args)
        progress = Progress("loss", maximize=False)
        ds, model = trainer.train_data, trainer.model
        bare_opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)

        def bare_epoch(prebuilt) -> float:
            model.train()
            t0 = time.perf_counter()
            for net_input, target in prebuilt:
                pred = model(**net_input)["encoder_out"]
                loss = torch.nn.functional.mse_loss(pred, target, reduction="sum") / len(target)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
                bare_opt.step()
                bare_opt.zero_grad(set_to_none=True)
            return time.perf_counter() - t0

        def ours_epoch() -> float:
            train_epoch(args, trainer, progress)
            return progress.history[-1]["seconds"]

        ours, bare = [], []
        for rep in range(opts.repeats):  # who goes first alternates between rounds
            batches = epoch_batches(ds, progress.epoch, args.seed, args.max_tokens, args.batch_size)
            prebuilt = [ds.collater([ds[i] for i in b]) for b in batches]
            prebuilt = [(s["net_input"], s["target"]) for s in prebuilt]
            if rep == 0:  # warm-up (first-call allocations) outside both clocks: one forward + backward, no step
                model.train()
                model(**prebuilt[0][0])["encoder_out"].sum().backward()
                model.zero_grad(set_to_none=True)
            if rep % 2 == 0:
                ours.append(ours_epoch())
                bare.append(bare_epoch(prebuilt))
            else:
                bare.append(bare_epoch(prebuilt))
                ours.append(ours_epoch())
            print(f"overhead round {rep + 1}: scorelib {ours[-1]:.2f}s, bare {bare[-1]:.2f}s", flush=True)
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)
    tokens = int(ds.sizes.sum())
    return {"scorelib_seconds": ours, "bare_seconds": bare, "tokens": tokens,
            **describe_optimizer(trainer.optimizer), **thread_info()}


# ---------------------------------------------------------------------------- parent
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated throughput configurations (default: all of {','.join(CONFIGS)})")
    p.add_argument("--warmup-batches", type=int, default=2,
                   help="scorelib_compile: batches of the untimed compile warm-up (forward + backward, twice)")
    p.add_argument("--only", choices=["throughput", "overhead"], action="append")
    p.add_argument("--no-save", action="store_true", help="print only; leave bench/results.json alone")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: --texts 32 --repeats 1 --no-save (overrides those flags)")
    p.add_argument("--child", choices=CONFIGS + ["overhead"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--max-tokens", type=int, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.texts, opts.repeats, opts.no_save = 32, 1, True
    opts.configs = [c.strip() for c in opts.configs.split(",") if c.strip()]
    unknown = set(opts.configs) - set(CONFIGS)
    if unknown or not opts.configs:
        p.error(f"--configs: unknown {sorted(unknown)} (choose from {', '.join(CONFIGS)})")
    import torch

    opts.threads = opts.threads or torch.get_num_threads()
    if opts.child:
        fn = {"scorelib": child_scorelib, "scorelib_compile": lambda o: child_scorelib(o, compile=True),
              "hf_default": lambda o: child_hf(o, False),
              "hf_group_by_length": lambda o: child_hf(o, True), "overhead": child_overhead}[opts.child]
        result = fn(opts)
        common.emit({**result, "peak_rss_mb": common.peak_rss_mb()})
        return 0

    texts, targets, source = common.skewed_texts(opts.texts, seed=0)
    work = Path(tempfile.mkdtemp(prefix="scorelib-bench-train-"))
    try:
        data = write_data(work / "data", texts, targets)
        # the children's own train split (same table, tokenizer and options): batches are chosen on it
        dataset = setup_task(scorelib_args(data, work / "unused", 2048, opts.epochs)).dataset("train")
        sizes = dataset.sizes
        max_tokens, mean_bs, n_batches = choose_max_tokens(dataset)
        print(f"texts: {source}; tokens per text: median {np.median(sizes):.0f}, min {sizes.min()}, max "
              f"{sizes.max()}, total {sizes.sum():,}; scorelib --batch-size {HF_BATCH} --max-tokens {max_tokens} "
              f"({n_batches} batches, mean batch size {mean_bs:.2f} vs HF {HF_BATCH}); {opts.threads} torch threads "
              f"requested; load {os.getloadavg()[0]:.2f}", flush=True)
        child = ["bench/bench_train.py", "--data", str(data), "--max-tokens", str(max_tokens), "--epochs",
                 str(opts.epochs), "--threads", str(opts.threads), "--repeats", str(opts.repeats),
                 "--warmup-batches", str(opts.warmup_batches)]
        log = common.ROOT / "bench" / "out" / "train_children.log"
        result = {"method": common.METHOD, "texts": source, "n_texts": len(texts), "tokens_total": int(sizes.sum()),
                  "tokens_median": float(np.median(sizes)), "epochs": opts.epochs, "repeats": opts.repeats,
                  "scorelib_max_tokens": max_tokens, "scorelib_batch_size": HF_BATCH, "hf_batch_size": HF_BATCH,
                  "threads_requested": opts.threads, "dtype": "float32", "configs": opts.configs,
                  "compile_timing": f"scorelib_compile: untimed warm-up (forward + backward, no step) on epoch 1's "
                                    f"first {opts.warmup_batches} batches, twice; compile_s = first pass - second "
                                    f"pass; cold inductor cache per run; the timed epoch is epoch 1, as for eager"}
        loads = [os.getloadavg()[0]]
        if not opts.only or "throughput" in opts.only:
            run_throughput(opts, child, log, result, loads)
        if not opts.only or "overhead" in opts.only:
            run_overhead(child, log, result, loads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["threads_used"] = sorted({r["threads"] for r in result.get("runs", [])} |
                                    ({result["overhead"]["threads"]} if "overhead" in result else set()))
    result["loadavg_1m_during"] = [round(x, 2) for x in loads]
    result["machine"] = common.machine()
    result["command"] = "python bench/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"torch threads used by the children: {result['threads_used']}")
    if not opts.no_save:
        common.save_result("train", result)
    return 0


def run_throughput(opts, child, log, result, loads) -> None:
    """Each configuration in its own process, ``--repeats`` times, the order rotated by one each repeat."""
    configs = opts.configs
    runs = {c: [] for c in configs}
    result["runs"] = []
    for rep in range(opts.repeats):
        order = configs[rep % len(configs):] + configs[:rep % len(configs)]
        for pos, cfg in enumerate(order):
            env, cache = None, None
            if cfg == "scorelib_compile":  # a cold compile each run: no kernels cached by an earlier run
                cache = tempfile.mkdtemp(prefix="scorelib-bench-inductor-")
                env = {"TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": str(Path(cache) / "triton")}
            try:
                r = common.child_result([*child, "--child", cfg], log, env=env)
            finally:
                if cache:
                    shutil.rmtree(cache, ignore_errors=True)
            r["tokens_per_s"], r["samples_per_s"] = r["tokens"] / r["seconds"], r["samples"] / r["seconds"]
            runs[cfg].append(r)
            loads.append(os.getloadavg()[0])
            result["runs"].append({"repeat": rep + 1, "position": pos + 1, "config": cfg,
                                   "tokens_per_s": round(r["tokens_per_s"], 1), "seconds": round(r["seconds"], 2),
                                   "threads": r["threads"], "interop_threads": r["interop_threads"],
                                   "optimizer": r["optimizer"], "fused": r["fused"], "batches": r["batches"],
                                   "max_batch_size": r["max_batch_size"], "updates": r["updates"],
                                   "peak_rss_mb": round(r["peak_rss_mb"]), "load_1m_after": round(loads[-1], 2),
                                   **{k: (round(r[k], 2) if isinstance(r[k], float) else r[k])
                                      for k in ("compiled", "compile_s", "trainer_build_s",
                                                "graphs_during_timed_epochs") if k in r}})
            print(f"  repeat {rep + 1} #{pos + 1} {cfg:>20}: {r['tokens_per_s']:8.1f} non-pad tokens/s, "
                  f"{r['samples_per_s']:6.2f} samples/s, {r['seconds']:.1f}s, padding eff "
                  f"{r['padding_efficiency']:.3f}, {r['batches']} batches (mean {r['mean_batch_size']:.2f}, max "
                  f"{r['max_batch_size']}), {r['optimizer']}(fused={r['fused']}), {r['threads']} threads, peak RSS "
                  f"{r['peak_rss_mb']:.0f} MiB (load {loads[-1]:.2f})", flush=True)
            if cfg == "scorelib_compile":
                print(f"      compiled: {r.get('compiled')}; compile {r.get('compile_s', float('nan')):.1f}s (warm-up "
                      f"passes {r.get('warmup_first_pass_s', float('nan')):.1f}s / "
                      f"{r.get('warmup_second_pass_s', float('nan')):.1f}s), trainer build "
                      f"{r['trainer_build_s']:.1f}s, graphs compiled in the timed epoch: "
                      f"{r.get('graphs_during_timed_epochs', 'n/a')}", flush=True)
                if r.get("graphs_during_timed_epochs"):
                    print("      WARNING: torch.compile built graphs during the timed epoch (recompiles); that "
                          "compile time counts as training time here", flush=True)
    rows = []
    for cfg in configs:
        rs = runs[cfg]
        row = {"config": cfg, "samples_per_s": common.median(r["samples_per_s"] for r in rs),
               "tokens_per_s": common.median(r["tokens_per_s"] for r in rs),
               "padding_efficiency": common.median(r["padding_efficiency"] for r in rs),
               "mean_batch_size": common.median(r["mean_batch_size"] for r in rs),
               "max_batch_size": max(r["max_batch_size"] for r in rs),
               "peak_rss_mb": common.median(r["peak_rss_mb"] for r in rs),
               "threads": sorted({r["threads"] for r in rs}),
               "optimizer": sorted({f"{r['optimizer']}(fused={r['fused']})" for r in rs}),
               "tokens_per_s_runs": [round(r["tokens_per_s"], 1) for r in rs]}
        if cfg == "scorelib_compile":
            row["compiled"] = all(r.get("compiled") for r in rs)
            if row["compiled"]:
                row["compile_s"] = common.median(r["compile_s"] for r in rs)
                row["compile_s_runs"] = [round(r["compile_s"], 1) for r in rs]
                row["graphs_during_timed_epochs"] = max(r["graphs_during_timed_epochs"] for r in rs)
            row["trainer_build_s"] = common.median(r["trainer_build_s"] for r in rs)
        elif cfg == "scorelib":
            row["trainer_build_s"] = common.median(r["trainer_build_s"] for r in rs)
        rows.append(row)
        result[cfg] = row
    common.print_table(rows, ["config", "samples_per_s", "tokens_per_s", "padding_efficiency", "mean_batch_size",
                              "max_batch_size", "peak_rss_mb"],
                       f"training throughput (medians of {opts.repeats} runs, order rotated each repeat; non-pad tokens/s)")
    if "scorelib" not in result:
        return
    ours = result["scorelib"]["tokens_per_s"]
    result["goal_padding_efficiency_ge_0.9"] = result["scorelib"]["padding_efficiency"] >= 0.9
    result["mean_batch_within_10pct_of_16"] = abs(result["scorelib"]["mean_batch_size"] / HF_BATCH - 1) <= 0.1
    if "hf_default" in result:
        result["ratio_vs_hf_default"] = ours / result["hf_default"]["tokens_per_s"]
        result["goal_ratio_vs_hf_default_ge_2_3"] = result["ratio_vs_hf_default"] >= 2.3  # issue 14's goal
        print(f"scorelib / HF default: {result['ratio_vs_hf_default']:.2f}x (goal >= 2.3)")
    if "hf_group_by_length" in result:
        result["ratio_vs_hf_group_by_length"] = ours / result["hf_group_by_length"]["tokens_per_s"]
        result["goal_ratio_vs_hf_group_by_length_ge_1.5"] = result["ratio_vs_hf_group_by_length"] >= 1.5
        print(f"scorelib / HF group_by_length: {result['ratio_vs_hf_group_by_length']:.2f}x (goal >= 1.5)")
    if "scorelib_compile" in result:
        c = result["scorelib_compile"]
        result["ratio_compile_vs_eager"] = c["tokens_per_s"] / ours
        print(f"scorelib --compile / eager: {result['ratio_compile_vs_eager']:.2f}x "
              f"({'compiled' if c['compiled'] else 'NOT compiled: eager fallback'}; compile time "
              f"{c.get('compile_s', float('nan')):.1f}s, not in the timed epoch)")


def run_overhead(child, log, result, loads) -> None:
    r = common.child_result([*child, "--child", "overhead"], log)
    loads.append(os.getloadavg()[0])
    ours, bare = common.median(r["scorelib_seconds"]), common.median(r["bare_seconds"])
    ratio = common.median(a / b for a, b in zip(r["scorelib_seconds"], r["bare_seconds"]))
    result["overhead"] = {"scorelib_epoch_s": ours, "bare_epoch_s": bare,
                          "scorelib_tokens_per_s": r["tokens"] / ours, "bare_tokens_per_s": r["tokens"] / bare,
                          "scorelib_seconds_runs": r["scorelib_seconds"], "bare_seconds_runs": r["bare_seconds"],
                          "ratio_scorelib_vs_bare_time": ratio, "overhead_pct": 100 * (ratio - 1),
                          "goal_overhead_lt_10pct": ratio - 1 < 0.10, "threads": r["threads"],
                          "optimizer": f"{r['optimizer']}(fused={r['fused']})",
                          "note": "overhead = median over rounds of (scorelib epoch / bare epoch) - 1"}
    print(f"distance to the limit: scorelib epoch {ours:.2f}s vs bare {bare:.2f}s "
          f"({r['tokens'] / ours:.0f} vs {r['tokens'] / bare:.0f} tokens/s): overhead "
          f"{100 * (ratio - 1):+.1f}% (median of per-round ratios; goal < 10%), {r['threads']} threads")


if __name__ == "__main__":
    sys.exit(main())
