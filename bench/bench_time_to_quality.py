"""Time to quality on mohler_sag: scorelib (its defaults) vs ``transformers.Trainer`` (its recommended settings).

Question: how long does each take, training + per-epoch validation, to reach the same valid Pearson?

* Data: mohler_sag prepared exactly as ``bench_quality.py`` does (prompt = question id, text = student answer,
  context = question + reference answer as the second segment, scores 0..5) and the same seeded split; only
  train and valid are used (test is never written, so never read).
* scorelib: ``scorelib-train`` with its defaults (``--max-tokens 2048 --batch-size 16``, linear decay after a 6%
  warm-up, weight decay 0.01, clipping 1.0, fused AdamW, max length 512) plus the data set's flags
  (``--score-range 0 5 --score-step 0.25 --best-checkpoint-metric pearson``) and the grid's ``--lr`` and
  ``--max-epoch``. It validates after every epoch; the time is the epochs' ``seconds`` (training) +
  ``valid_seconds`` from ``history.csv`` (model loading, tokenization and checkpoint writing are not in it).
* HF: ``AutoModelForSequenceClassification(scorelib.default_model_path(), num_labels=1)`` (same encoder), the
  same text pairs tokenized at max length 512 (longest-first truncation, as scorelib), labels = score / 5 (the
  [0, 1] target scorelib trains on), ``DataCollatorWithPadding``, batch size 16 (train and eval), group_by_length,
  ``optim="adamw_torch_fused"``, 6% warm-up, linear decay, weight decay 0.01, ``eval_strategy="epoch"`` with
  Pearson in ``compute_metrics``, no checkpoints. The time is ``on_epoch_begin`` to ``on_epoch_end`` (training)
  + the wall time of each ``Trainer.evaluate`` call (validation); model loading and tokenization are not in it.
* Tuning (valid only): for each side, every ``--lrs`` value (default 3e-5, 8e-5 and 1.5e-4) is run with a
  ``--epochs``-epoch schedule (default 4), recording valid Pearson and the cumulative time after each epoch.
  The target is the lower of the two sides' best valid Pearsons (over all lrs and epochs), unless ``--target``
  fixes it. A side's time to target is the smallest cumulative time, over its lrs, at the first epoch whose
  valid Pearson reaches the target; the lr and epoch that gave it are recorded. (So "epochs tuned" means: the
  epoch of a fixed-length schedule at which the target is first reached.)
* Ratio: ``time_to_quality.ratio_scorelib_vs_hf`` = scorelib's time / HF's (goal <= 0.5, issue 20; 0.6 before).

Resumable: each (side, lr) run is stored in ``bench/out/time_to_quality/`` as it finishes, with the settings it
ran under, and is skipped on the next call with the same settings (``--force`` reruns it). ``--only scorelib`` or
``--only hf`` runs one side; the result goes to ``bench/results.json`` once both sides' runs are all there.

    python bench/bench_time_to_quality.py [--only scorelib|hf] [--lrs 3e-5,8e-5,1.5e-4] [--epochs 4] [--target 0.80]
                                          [--threads N] [--force] [--no-save]
    python bench/bench_time_to_quality.py --quick   # smoke run: 48 train / 32 valid rows, 2 epochs, nothing saved

A full run is 6 trainings of 4 epochs on 1,636 train rows (and 182 valid rows): about 30 min on 2 cores
(~4 min for a scorelib run, ~4.5 min for an HF one, measured), longer under load.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality  # noqa: E402  (the data preparation and split of the quality benchmark)
import common  # noqa: E402

NAME = "mohler_sag"
SEED = bench_quality.SEED
HF_BATCH = 16
MAX_LENGTH = 512
SCORE_MIN, SCORE_MAX = 0.0, 5.0
GOAL_RATIO = 0.5  # issue 20 (0.6 before it)
QUICK_ROWS = {"train": 48, "valid": 32}
SIDES = ("scorelib", "hf")
os.environ["SCORELIB_FAST"] = "0"  # a SCORELIB_FAST=1 left in the shell would cut the rows: never in a benchmark


# ---------------------------------------------------------------------------- data
def write_data(folder: Path, quick: bool) -> tuple[Path, list[str], dict]:
    """train.csv and valid.csv of the quality benchmark's mohler_sag split (no test); scorelib-train's flags."""
    frame, flags = bench_quality.prepare(NAME)
    parts = bench_quality.split(frame)
    parts = {k: parts[k] for k in ("train", "valid")}
    if quick:
        from scorelib.tasks.text_scoring import subset

        train = subset(parts["train"], QUICK_ROWS["train"], SEED).reset_index(drop=True)
        valid = parts["valid"][parts["valid"]["prompt"].isin(set(train["prompt"]))]  # only prompts seen in train
        parts = {"train": train, "valid": subset(valid, QUICK_ROWS["valid"], SEED).reset_index(drop=True)}
    folder.mkdir(parents=True, exist_ok=True)
    for k, v in parts.items():
        v.to_csv(folder / f"{k}.csv", index=False)
    return folder, flags, {k: len(v) for k, v in parts.items()}


# ---------------------------------------------------------------------------- scorelib side
def run_scorelib(data: Path, flags: list[str], lr: float, epochs: int, env: dict, work: Path) -> dict:
    exe = shutil.which("scorelib-train") or str(Path(sys.executable).with_name("scorelib-train"))
    save = work / f"ckpt-scorelib-{lr:g}"
    cmd = [exe, str(data), *bench_quality.merge_flags(
        ["--save-dir", str(save), "--cpu", "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval",
         "50", "--seed", str(SEED)], flags, ["--lr", str(lr), "--max-epoch", str(epochs)])]
    print("$", " ".join(cmd), flush=True)
    threads = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                                 capture_output=True, text=True, check=True).stdout)
    log = work / f"scorelib-{lr:g}.log"
    t0 = time.perf_counter()
    common.run_child(cmd, log, env=env)
    wall = time.perf_counter() - t0
    history = pd.read_csv(save / "history.csv")
    rows = [{"epoch": int(h["epoch"]), "train_s": float(h["seconds"]), "valid_s": float(h["valid_seconds"]),
             "valid_pearson": float(h["valid_pearson"]), "tokens_per_s": float(h["tokens_per_s"])}
            for _, h in history.iterrows()]
    shutil.rmtree(save, ignore_errors=True)
    return {"epochs": rows, "threads": threads, "process_wall_s": wall,
            "command": " ".join(["scorelib-train", "<tmp>/data", *cmd[2:]]).replace(str(work), "<tmp>")}


# ---------------------------------------------------------------------------- HF side (a child process)
def child_hf(opts) -> dict:
    import inspect

    import torch
    import transformers
    from scipy.stats import pearsonr
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments)

    from scorelib import default_model_path
    from scorelib.models.scoring_model import load_tokenizer

    if opts.threads:
        torch.set_num_threads(opts.threads)
    transformers.logging.set_verbosity_error()
    tok = load_tokenizer(None)

    def rows(split: str) -> list[dict]:
        frame = pd.read_csv(Path(opts.data) / f"{split}.csv", dtype={"key": str, "prompt": str, "text": str,
                                                                   "context": str}, keep_default_na=False)
        enc = tok(frame["text"].tolist(), frame["context"].tolist(), truncation=True, max_length=MAX_LENGTH)
        labels = (frame["score"].to_numpy(dtype=float) - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)
        return [{**{k: enc[k][i] for k in enc.keys()}, "labels": float(labels[i])} for i in range(len(frame))]

    train, valid = rows("train"), rows("valid")
    transformers.set_seed(SEED)
    model = AutoModelForSequenceClassification.from_pretrained(default_model_path(), num_labels=1)

    clock, evals = [], []

    class Clock(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kw):
            clock.append([time.perf_counter(), None])

        def on_epoch_end(self, args, state, control, **kw):
            clock[-1][1] = time.perf_counter()

    class TimedTrainer(Trainer):
        def evaluate(self, *a, **kw):  # eval_strategy="epoch" calls this after each epoch
            t0 = time.perf_counter()
            out = super().evaluate(*a, **kw)
            evals.append((time.perf_counter() - t0, out.get("eval_pearson")))
            return out

    def compute_metrics(p):
        pred = np.asarray(p.predictions, dtype=float).reshape(-1)
        gold = np.asarray(p.label_ids, dtype=float).reshape(-1)
        return {"pearson": float(pearsonr(gold, pred)[0]) if np.ptp(pred) > 0 else float("nan")}

    out = tempfile.mkdtemp(prefix="scorelib-bench-ttq-hf-")
    params = inspect.signature(TrainingArguments).parameters
    kw = dict(output_dir=out, per_device_train_batch_size=HF_BATCH, per_device_eval_batch_size=HF_BATCH,
              num_train_epochs=opts.epochs, learning_rate=opts.lr, weight_decay=0.01, max_grad_norm=1.0,
              lr_scheduler_type="linear", optim="adamw_torch_fused", save_strategy="no", eval_strategy="epoch",
              logging_strategy="no", report_to=[], use_cpu=True, seed=SEED, dataloader_num_workers=0,
              disable_tqdm=True)
    kw.update({"warmup_ratio": 0.06} if "warmup_ratio" in params else {"warmup_steps": 0.06})
    kw.update({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in params
              else {"group_by_length": True})
    try:
        trainer = TimedTrainer(model=model, args=TrainingArguments(**kw), train_dataset=train, eval_dataset=valid,
                               data_collator=DataCollatorWithPadding(tok), compute_metrics=compute_metrics,
                               callbacks=[Clock()])
        trainer.train()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if len(evals) != len(clock):
        raise RuntimeError(f"{len(clock)} epochs but {len(evals)} evaluations")
    opt = trainer.optimizer
    while hasattr(opt, "optimizer"):
        opt = opt.optimizer
    return {"epochs": [{"epoch": i + 1, "train_s": b - a, "valid_s": e[0], "valid_pearson": e[1]}
                       for i, ((a, b), e) in enumerate(zip(clock, evals))],
            "threads": torch.get_num_threads(), "optimizer": f"{type(opt).__name__}(fused={opt.defaults.get('fused')})",
            "updates": trainer.state.global_step}


def run_hf(data: Path, lr: float, epochs: int, env: dict, work: Path, threads) -> dict:
    args = ["bench/bench_time_to_quality.py", "--child", "hf", "--data", str(data), "--lr", repr(lr),
            "--epochs", str(epochs), *(["--threads", str(threads)] if threads else [])]
    print("$ python", " ".join(args), flush=True)
    t0 = time.perf_counter()
    r = common.child_result(args, work / "hf.log", env=env)
    r["process_wall_s"] = time.perf_counter() - t0
    return r


# ---------------------------------------------------------------------------- combining
def with_cumulative(run: dict) -> list[dict]:
    total, out = 0.0, []
    for e in run["epochs"]:
        total += e["train_s"] + e["valid_s"]
        out.append({**e, "cumulative_s": total})
    return out


def time_to_target(runs: dict[str, dict], target: float) -> dict | None:
    """The fastest (lr, epoch) of one side whose valid Pearson reaches ``target``; None if none does."""
    best = None
    for lr, run in runs.items():
        for e in with_cumulative(run):
            p = e["valid_pearson"]
            if p is not None and not np.isnan(p) and p >= target - 1e-12:
                if best is None or e["cumulative_s"] < best["seconds"]:
                    best = {"seconds": e["cumulative_s"], "lr": float(lr), "epoch": e["epoch"], "valid_pearson": p}
                break  # later epochs of this lr only take longer
    return best


def best_pearson(runs: dict[str, dict]) -> float:
    vals = [e["valid_pearson"] for r in runs.values() for e in r["epochs"]
            if e["valid_pearson"] is not None and not np.isnan(e["valid_pearson"])]
    return max(vals) if vals else float("nan")


def combine(state: dict[str, dict[str, dict]], target_flag: float | None) -> dict:
    bests = {side: best_pearson(state[side]) for side in SIDES}
    target = target_flag if target_flag is not None else min(bests.values())
    how = "fixed (--target)" if target_flag is not None else "the lower of the two sides' best valid Pearsons"
    reached = {side: time_to_target(state[side], target) for side in SIDES}
    result = {"target_valid_pearson": target, "target_is": how, "best_valid_pearson": bests}
    for side in SIDES:
        result[side] = {"time_to_target_s": reached[side]["seconds"] if reached[side] else None,
                        "reached": reached[side],
                        "curves": {lr: [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items()}
                                        for e in with_cumulative(run)] for lr, run in state[side].items()},
                        "threads": sorted({r["threads"] for r in state[side].values()})}
    for side, key in (("scorelib", "command"), ("hf", "optimizer")):
        result[side][key] = sorted({r.get(key) for r in state[side].values()})
    if all(reached.values()):
        result["ratio_scorelib_vs_hf"] = reached["scorelib"]["seconds"] / reached["hf"]["seconds"]
        result[f"goal_ratio_le_{GOAL_RATIO}"] = result["ratio_scorelib_vs_hf"] <= GOAL_RATIO
    else:
        result["ratio_scorelib_vs_hf"] = None
        result[f"goal_ratio_le_{GOAL_RATIO}"] = False
    return result


# ---------------------------------------------------------------------------- parent
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=SIDES, help="run one side's grid (the other side's stored runs are reused)")
    p.add_argument("--lrs", default="3e-5,8e-5,1.5e-4", help="the learning-rate grid (comma-separated), both sides")
    p.add_argument("--epochs", type=int, default=4, help="epochs of each run's schedule (valid after each)")
    p.add_argument("--target", type=float, help="a fixed target valid Pearson (default: the lower of the two bests)")
    p.add_argument("--threads", type=int, help="torch threads of every run (default: torch's default)")
    p.add_argument("--force", action="store_true", help="rerun (side, lr) runs already stored")
    p.add_argument("--no-save", action="store_true", help="leave bench/results.json alone")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK_ROWS['train']} train / {QUICK_ROWS['valid']} valid rows, 2 epochs, "
                        f"stored apart from the real runs, nothing saved to results.json")
    p.add_argument("--child", choices=["hf"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--lr", type=float, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.child:
        common.emit({**child_hf(opts), "peak_rss_mb": common.peak_rss_mb()})
        return 0
    if not common.have_shared_data():
        print(f"SKIP time-to-quality benchmark: real data not found at {common.SHARED_DATA}")
        return 0
    if opts.quick:
        opts.epochs, opts.no_save = 2, True
    lrs = [float(x) for x in opts.lrs.split(",") if x.strip()]
    env = {**os.environ, "SCORELIB_FAST": "0"}
    if opts.threads:
        env["OMP_NUM_THREADS"] = str(opts.threads)
    state_dir = common.ROOT / "bench" / "out" / ("time_to_quality_quick" if opts.quick else "time_to_quality")
    state_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scorelib-bench-ttq-"))
    try:
        data, flags, n_rows = write_data(work / "data", opts.quick)
        settings = {"method": common.METHOD, "rows": n_rows, "epochs": opts.epochs, "threads": opts.threads,
                    "quick": opts.quick}
        print(f"{NAME}: train/valid rows {n_rows['train']}/{n_rows['valid']}; lrs {lrs}; {opts.epochs} epochs; "
              f"runs stored in {state_dir}; load {os.getloadavg()[0]:.2f}", flush=True)
        for side in ([opts.only] if opts.only else SIDES):
            for lr in lrs:
                path = state_dir / f"{side}_lr{lr:g}.json"
                if path.is_file() and not opts.force and json.loads(path.read_text()).get("settings") == settings:
                    print(f"{side} lr {lr:g}: stored run reused ({path.name}; --force reruns it)", flush=True)
                    continue
                load_before = os.getloadavg()[0]
                run = (run_scorelib(data, flags, lr, opts.epochs, env, work) if side == "scorelib"
                       else run_hf(data, lr, opts.epochs, env, work, opts.threads))
                run.update(settings=settings, side=side, lr=lr, load_1m_before=round(load_before, 2),
                           load_1m_after=round(os.getloadavg()[0], 2), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
                path.write_text(json.dumps(run, indent=1) + "\n")
                curve = ", ".join(f"{e['epoch']}: {e['valid_pearson']:.3f} @ {e['cumulative_s']:.0f}s"
                                  for e in with_cumulative(run))
                print(f"{side} lr {lr:g}: valid Pearson @ cumulative train + valid time: {curve} "
                      f"(load {run['load_1m_before']} -> {run['load_1m_after']})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    state, missing = {side: {} for side in SIDES}, []
    for side in SIDES:
        for lr in lrs:
            path = state_dir / f"{side}_lr{lr:g}.json"
            run = json.loads(path.read_text()) if path.is_file() else None
            if run is None or run.get("settings") != settings:
                missing.append(f"{side} lr {lr:g}")
            else:
                state[side][f"{lr:g}"] = run
    if missing:
        print(f"not combined yet: no stored run (with these settings) for {', '.join(missing)}; run the other side "
              f"(--only ...) with the same flags")
        return 0
    result = {"method": common.METHOD, "data": NAME,
              "split": f"bench_quality.py's seeded split (seed {SEED}); train/valid rows "
                       f"{n_rows['train']}/{n_rows['valid']}; test not used",
              "lrs": lrs, "epochs": opts.epochs, **combine(state, opts.target),
              "loadavg_1m_runs": [r["load_1m_after"] for s in SIDES for r in state[s].values()],
              "machine": common.machine(),
              "command": "python bench/bench_time_to_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    rows = [{"side": s, "time_to_target_s": result[s]["time_to_target_s"] or float("nan"),
             "lr": f"{result[s]['reached']['lr']:g}" if result[s]["reached"] else "", "epoch": (result[s]["reached"] or {}).get("epoch", ""),
             "valid_pearson": (result[s]["reached"] or {}).get("valid_pearson", float("nan")),
             "best_valid_pearson": result["best_valid_pearson"][s]} for s in SIDES]
    common.print_table(rows, ["side", "time_to_target_s", "lr", "epoch", "valid_pearson", "best_valid_pearson"],
                       f"time to valid Pearson {result['target_valid_pearson']:.4f} ({result['target_is']})")
    ratio = result["ratio_scorelib_vs_hf"]
    print(f"scorelib / HF time to target: {'n/a' if ratio is None else f'{ratio:.2f}'} (goal <= {GOAL_RATIO}: "
          f"{'reached' if result[f'goal_ratio_le_{GOAL_RATIO}'] else 'not reached'})")
    if opts.quick or opts.no_save:
        print("(not saved: --quick / --no-save)")
    else:
        common.save_result("time_to_quality", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
