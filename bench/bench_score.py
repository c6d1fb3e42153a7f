"""Scoring speed: ``scorelib.load(save_dir).score`` vs a bare model forward on pre-tokenized input, then the
runtimes side by side: PyTorch fp32, ONNX fp32 and ONNX int8 (``scorelib-export [--quantize int8]``).

* one short text: latency p50/p95 over ``--calls`` calls after warm-up, scorer and bare calls interleaved;
* 1,000 texts (real Mohler SAG answers; demo answers where ../shared/data is absent): ``score(texts)`` vs
  bare forwards of the same length-sorted batches, pre-tokenized and pre-padded; medians of 3 runs, the one timed
  first alternating between repeats.
* runtimes: each in a child process of its own (the ONNX ones import no torch): one short text's p50/p95, texts/s
  on the 1,000 Mohler answers and on ``--essays`` 200 Feedback Prize ELL essays read at 512 tokens (medians of
  ``--repeats``), the child's peak memory (``ru_maxrss``), and the installed size of each runtime's packages.

The save dir comes from ``--save-dir`` or from a tiny training run on the demo data (``SCORELIB_FAST=1``,
1 epoch, ``--max-length 512``); the model size is the default encoder's either way.

    python bench/bench_score.py [--save-dir DIR] [--calls 200] [--texts 1000] [--essays 200] [--repeats 3]
    python bench/bench_score.py --quick            # a smoke run of every part (fewer calls, texts and essays)
"""
from __future__ import annotations

import argparse
import importlib.util
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
           "--max-eval-rows", "24", "--max-length", "512", "--no-epoch-checkpoints", "--log-format", "simple"]
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
    from scorelib.hub.scorer import batch_tokens

    texts, prompt, contexts = scorer.check(texts, prompt, None)
    ds = scorer.dataset(texts, prompt, contexts)
    batches = batch_by_size(ds.ordered_indices(), ds.num_tokens, batch_tokens(scorer.device.type), 256)  # score's
    return [ds.collater([ds[i] for i in b])["net_input"] for b in batches], int(ds.sizes.sum())


RUNTIMES = {  # name: (what scorelib.load reads, scorelib-export's --quantize, the packages that score)
    "pytorch fp32": ("save_dir", None, ("torch", "transformers", "tokenizers", "safetensors")),
    "onnx fp32": ("fp32", None, ("onnxruntime", "tokenizers")),
    "onnx int8": ("int8", "int8", ("onnxruntime", "tokenizers")),
}


def essays(n: int) -> tuple[list[str], str]:
    if common.have_shared_data():
        return common.load_ell()["text"].astype(str).head(n).tolist(), f"{n} Feedback Prize ELL essays"
    from scorelib.data import demo

    texts = [" ".join(demo.load_demo()["test"]["text"].tolist()[i:i + 25]) for i in range(0, 25 * n, 25)]
    return texts[:n], f"{n} essays of 25 demo answers each (fallback)"


def installed_mb(packages) -> float:
    """Disk size of the packages' folders (site-packages/<name>, and the CUDA wheels torch pulls where present)."""
    folders = []
    for name in packages:
        spec = importlib.util.find_spec(name)
        folders += list(spec.submodule_search_locations or []) if spec is not None else []
    if "torch" in packages:
        site = Path(folders[0]).parent if folders else None
        folders += [str(p) for p in site.glob("nvidia*")] + [str(p) for p in site.glob("triton")] if site else []
    total = sum(f.stat().st_size for folder in folders for f in Path(folder).rglob("*") if f.is_file())
    return total / 2**20


def runtime_child(opts) -> None:
    """One runtime in this process: ``scorelib.load(opts.child_path).score`` timed; emits a BENCH_RESULT line."""
    import scorelib

    scorer = scorelib.load(opts.child_path, device="cpu")
    prompt = scorer.table.ids[0]
    calls = []
    for i in range(opts.warmup + opts.calls):
        t0 = time.perf_counter()
        scorer.score(SHORT_TEXT, prompt=prompt)
        if i >= opts.warmup:
            calls.append((time.perf_counter() - t0) * 1e3)
    out = {"p50_ms": float(np.percentile(calls, 50)), "p95_ms": float(np.percentile(calls, 95))}
    for key, (texts, source) in (("short", batch_texts(opts.texts)), ("essays", essays(opts.essays))):
        scorer.score(texts[:8], prompt=prompt)  # warm-up
        runs = []
        for _ in range(opts.repeats):
            t0 = time.perf_counter()
            scorer.score(texts, prompt=prompt)
            runs.append(time.perf_counter() - t0)
        out[f"{key}_texts_per_s"], out[f"{key}_runs_s"], out[f"{key}_source"] = \
            len(texts) / common.median(runs), runs, source
    out.update(peak_rss_mb=common.peak_rss_mb(), torch_imported="torch" in sys.modules,
               max_length=scorer.max_length)
    common.emit(out)


def compare_runtimes(save_dir: Path, work: Path, opts) -> dict:
    """Export fp32 and int8, then time each runtime in a child process of its own."""
    from scorelib.export.onnx import export

    paths = {"save_dir": save_dir}
    for name, (where, quantize, _) in RUNTIMES.items():
        if where != "save_dir":
            export(save_dir, work / where, quantize=quantize)
            paths[where] = work / where
    args = ["--calls", opts.calls, "--warmup", opts.warmup, "--texts", opts.texts, "--essays", opts.essays,
            "--repeats", opts.repeats]
    rows = {}
    for name, (where, _, packages) in RUNTIMES.items():
        print(f"  runtime {name} ...", flush=True)
        rows[name] = common.child_result([__file__, "--child-path", paths[where], *map(str, args)],
                                         work / "runtimes.log", env={"TOKENIZERS_PARALLELISM": "false"})
        rows[name]["installed_mb"] = installed_mb(packages)
        rows[name]["packages"] = list(packages)
    base = rows["pytorch fp32"]
    for row in rows.values():
        for key in ("short", "essays"):
            row[f"{key}_speedup_vs_pytorch"] = row[f"{key}_texts_per_s"] / base[f"{key}_texts_per_s"]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--save-dir", help="a trained save dir (default: train a tiny one in a temporary folder)")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--essays", type=int, default=200, help="Feedback Prize ELL essays for the runtimes' rows")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's default)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 20 calls, 200 texts, 20 essays, 1 repeat")
    p.add_argument("--no-runtimes", action="store_true", help="skip the ONNX rows")
    p.add_argument("--child-path", help=argparse.SUPPRESS)  # internal: time one runtime in this process
    p.add_argument("--no-save", action="store_true")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.calls, opts.warmup, opts.texts, opts.essays, opts.repeats = 20, 3, 200, 20, 1
    if opts.child_path:
        runtime_child(opts)
        return 0
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
    loads, runtimes = [os.getloadavg()[0]], None
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
        if not opts.no_runtimes:
            work = Path(tempfile.mkdtemp(prefix="scorelib-bench-runtimes-"))
            try:
                runtimes = compare_runtimes(Path(save_dir), work, opts)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            loads.append(os.getloadavg()[0])
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
    if runtimes is not None:
        common.print_table([{"runtime": name, "short texts/s": r["short_texts_per_s"],
                             "x pytorch": r["short_speedup_vs_pytorch"], "essays/s": r["essays_texts_per_s"],
                             "x pytorch ": r["essays_speedup_vs_pytorch"], "p50 ms": r["p50_ms"], "p95 ms": r["p95_ms"],
                             "peak MiB": r["peak_rss_mb"], "installed MiB": r["installed_mb"]}
                            for name, r in runtimes.items()],
                           ["runtime", "short texts/s", "x pytorch", "essays/s", "x pytorch ", "p50 ms", "p95 ms",
                            "peak MiB", "installed MiB"],
                           f"runtimes ({runtimes['onnx fp32']['short_source']}; "
                           f"{runtimes['onnx fp32']['essays_source']} at {runtimes['onnx fp32']['max_length']} tokens)")
        print("torch imported: " + ", ".join(f"{n} {r['torch_imported']}" for n, r in runtimes.items()))
    result = {"method": common.METHOD, "single": single, "batch": batch, "runtimes": runtimes,
              "threads": torch.get_num_threads(),
              "loadavg_1m_during": [round(x, 2) for x in loads], "machine": common.machine(),
              "command": "python bench/bench_score.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if not opts.no_save:
        common.save_result("score", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
