"""Scoring speed: ``scorelib.load(save_dir).score`` vs a bare model forward on pre-tokenized input.

* one short text: latency p50/p95 over ``--calls`` calls after warm-up, scorer and bare calls interleaved;
* 1,000 texts (real Mohler SAG answers; demo answers where ../shared/data is absent): ``score(texts)`` vs
  bare forwards of the same length-sorted batches, pre-tokenized and pre-padded; medians of 3 runs, the one timed
  first alternating between repeats.

The save dir comes from ``--save-dir`` or from a tiny training run on the demo data (``SCORELIB_FAST=1``,
1 epoch); the model size is the default encoder's either way.

    python bench/bench_score.py [--save-dir DIR] [--calls 200] [--texts 1000] [--repeats 3] [--threads N]
    python bench/bench_score.py --calls 10 --warmup 2 --texts 64 --repeats 1 --no-save   # smoke run
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SHORT_TEXT = "A prototype lets the users try the design early, so problems are found before the final build."


def train_tiny(save_dir: Path) -> None:
    exe = shutil.which("scorelib-train") or str(Path(sys.executable).with_name("scorelib-train"))
    cmd = [exe, "--save-dir", str(save_dir), "--cpu", "--max-epoch", "1", "--max-train-rows", "48",
           "--max-eval-rows", "24", "--no-epoch-checkpoints", "--log-format", "simple"]
    print("$ SCORELIB_FAST=1 scorelib-train", " ".join(cmd[1:]), flush=True)
    common.run_child(cmd, save_dir.with_name("train.log"), env={"SCORELIB_FAST": "1"})


def batch_texts(n: int) -> tuple[list[str], str]:
    if common.have_shared_data():
        m = common.load_mohler()
        rng = np.random.default_rng(0)
        return m["text"].iloc[rng.permutation(len(m))[:n]].tolist(), f"{n} Mohler SAG answers"
    print(f"WARNING: {common.SHARED_DATA} not found: scoring the embedded demo answers instead", file=sys.stderr)
    from scorelib.data import demo

    texts = demo.load_demo()["test"]["text"].tolist()
    return (texts * (n // len(texts) + 1))[:n], f"{n} demo answers (fallback)"


def bare_batches(scorer, texts, prompt):
    """Pre-tokenized, pre-padded batches exactly as ``Scorer.score`` forms them (its dataset, its batches)."""
    from scorelib.data.scoring_dataset import batch_by_size

    texts, prompt, contexts = scorer.check(texts, prompt, None)
    ds = scorer.dataset(texts, prompt, contexts)
    batches = batch_by_size(ds.ordered_indices(), ds.num_tokens, 8192, 256)  # Scorer.score01_dataset's defaults
    return [ds.collater([ds[i] for i in b])["net_input"] for b in batches], int(ds.sizes.sum())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--save-dir", help="a trained save dir (default: train a tiny one in a temporary folder)")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's default)")
    p.add_argument("--no-save", action="store_true")
    opts = p.parse_args(argv)
    import torch

    import scorelib

    if opts.threads:
        torch.set_num_threads(opts.threads)
    tmp = None
    save_dir = opts.save_dir
    if save_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="scorelib-bench-score-"))
        save_dir = tmp / "ckpt"
        train_tiny(save_dir)
    loads = [os.getloadavg()[0]]
    try:
        scorer = scorelib.load(save_dir, device="cpu")
        model, prompt = scorer.model, scorer.table.ids[0]

        # one short text: interleaved calls
        (one,), _ = bare_batches(scorer, [SHORT_TEXT], prompt)
        ours, bare = [], []
        for i in range(opts.warmup + opts.calls):
            t0 = time.perf_counter()
            scorer.score(SHORT_TEXT, prompt=prompt)
            t1 = time.perf_counter()
            with torch.inference_mode():
                model(**one)["encoder_out"].float().cpu().numpy()
            t2 = time.perf_counter()
            if i >= opts.warmup:
                ours.append(t1 - t0)
                bare.append(t2 - t1)
        ours_ms, bare_ms = np.array(ours) * 1e3, np.array(bare) * 1e3
        single = {"text": SHORT_TEXT, "tokens": int(one["input_ids"].shape[1]), "calls": opts.calls,
                  "scorer_p50_ms": float(np.percentile(ours_ms, 50)), "scorer_p95_ms": float(np.percentile(ours_ms, 95)),
                  "bare_p50_ms": float(np.percentile(bare_ms, 50)), "bare_p95_ms": float(np.percentile(bare_ms, 95))}
        single["overhead_p50_pct"] = 100 * (single["scorer_p50_ms"] / single["bare_p50_ms"] - 1)
        single["ratio_p50_scorer_vs_bare"] = single["scorer_p50_ms"] / single["bare_p50_ms"]
        single["goal_overhead_p50_lt_20pct"] = single["overhead_p50_pct"] < 20
        loads.append(os.getloadavg()[0])

        # many texts: alternating runs
        texts, source = batch_texts(opts.texts)
        batches, tokens = bare_batches(scorer, texts, prompt)
        ours_s, bare_s = [], []
        scorer.score(texts[:64], prompt=prompt)  # warm-up
        def time_scorer():
            t0 = time.perf_counter()
            scorer.score(texts, prompt=prompt)
            ours_s.append(time.perf_counter() - t0)

        def time_bare():
            t0 = time.perf_counter()
            with torch.inference_mode():
                for net_input in batches:
                    model(**net_input)["encoder_out"].float().cpu().numpy()
            bare_s.append(time.perf_counter() - t0)

        for rep in range(opts.repeats):  # who goes first alternates between repeats
            for fn in ((time_scorer, time_bare) if rep % 2 == 0 else (time_bare, time_scorer)):
                fn()
            loads.append(os.getloadavg()[0])
            print(f"  batch run {rep + 1}: scorer {ours_s[-1]:.2f}s, bare {bare_s[-1]:.2f}s", flush=True)
        o, b = common.median(ours_s), common.median(bare_s)
        batch = {"texts": source, "tokens": tokens, "batches": len(batches), "scorer_s": o, "bare_s": b,
                 "scorer_texts_per_s": len(texts) / o, "bare_texts_per_s": len(texts) / b,
                 "scorer_s_runs": ours_s, "bare_s_runs": bare_s, "ratio_throughput_scorer_vs_bare": b / o,
                 "goal_ratio_ge_0.9": b / o >= 0.9}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    common.print_table([
        {"case": "1 short text p50 (ms)", "scorer": single["scorer_p50_ms"], "bare": single["bare_p50_ms"],
         "ratio": single["ratio_p50_scorer_vs_bare"]},
        {"case": "1 short text p95 (ms)", "scorer": single["scorer_p95_ms"], "bare": single["bare_p95_ms"],
         "ratio": single["scorer_p95_ms"] / single["bare_p95_ms"]},
        {"case": f"{len(texts)} texts (texts/s)", "scorer": batch["scorer_texts_per_s"],
         "bare": batch["bare_texts_per_s"], "ratio": batch["ratio_throughput_scorer_vs_bare"]},
    ], ["case", "scorer", "bare", "ratio"], "scoring (scorelib.load(...).score vs bare forward)")
    print(f"single-text overhead p50 {single['overhead_p50_pct']:+.1f}% (goal < 20%); batch throughput "
          f"{100 * batch['ratio_throughput_scorer_vs_bare']:.1f}% of bare (goal >= 90%)")
    result = {"method": common.METHOD, "single": single, "batch": batch, "threads": torch.get_num_threads(),
              "loadavg_1m_during": [round(x, 2) for x in loads], "machine": common.machine(),
              "command": "python bench/bench_score.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if not opts.no_save:
        common.save_result("score", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
