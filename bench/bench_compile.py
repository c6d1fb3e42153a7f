"""Where the time of a training step goes: eager vs ``--compile``, with and without dropout (issue 14).

``bench_train.py`` gives ``--compile``'s ratio over eager on a whole epoch; this benchmark explains it. Each
variant runs in its own process (a cold inductor cache each) on the same batches: epoch 1's first ``--batches``
batches of ``bench_train.py``'s 256 texts, with its ``--max-tokens`` and ``--batch-size 16``. One untimed pass
over them (it compiles, for the compiled variants: every shape is seen once), then ``--passes`` timed passes of
``Trainer.train_step`` (forward, loss, backward, clipping, fused AdamW step); the figure is the fastest pass, as
non-pad tokens per second (on a shared machine noise only adds time: passes of the same variant differed by up to
35% in a run here), with the median pass beside it. Variants:

* ``eager``: scorelib's defaults (encoder dropout 0.1 on hidden states and attention probabilities).
* ``compile``: ``--compile`` as it is (``torch.compile`` of the encoder, dynamic shapes, dropout drawn by torch's
  own random kernels: inductor's ``fallback_random``).
* ``compile_inductor_rng``: the same with inductor's generated random kernels (its default; ``--compile``
  before this benchmark).
* ``eager_no_attention_dropout``: attention-probability dropout off, hidden-state dropout on.
* ``eager_no_dropout`` / ``compile_no_dropout``: ``--encoder-dropout 0``.

    python bench/bench_compile.py                    # ~11 min on 2 CPU cores; the result goes to results.json
    python bench/bench_compile.py --variants eager,compile --passes 2 --no-save
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402  (the texts, options and trainer of the training benchmark)
import common  # noqa: E402

VARIANTS = {  # name: (extra scorelib-train flags, inductor's own random kernels, attention dropout off)
    "eager": ([], False, False),
    "compile": (["--compile"], False, False),
    "compile_inductor_rng": (["--compile"], True, False),
    "eager_no_attention_dropout": ([], False, True),
    "eager_no_dropout": (["--encoder-dropout", "0"], False, False),
    "compile_no_dropout": (["--compile", "--encoder-dropout", "0"], False, False),
}


def child(opts) -> dict:
    import torch

    torch.set_num_threads(opts.threads)
    flags, inductor_rng, no_attention_dropout = VARIANTS[opts.child]
    compiled = "--compile" in flags
    save_dir = Path(tempfile.mkdtemp(prefix="scorelib-bench-compile-"))
    try:
        trainer = bench_train.build_trainer(bench_train.scorelib_args(Path(opts.data), save_dir, opts.max_tokens, 1,
                                                                      extra=flags))
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)  # nothing is saved: the step is all that is measured
    if compiled and not trainer.compiled:
        raise RuntimeError("torch.compile is not available here")
    if inductor_rng:
        import torch._inductor.config as inductor_config

        inductor_config.fallback_random = False  # read when the first step compiles, so this still applies
    switched = 0
    if no_attention_dropout:
        for name, m in trainer.model.named_modules():
            if isinstance(m, torch.nn.Dropout) and "attention.self" in name:  # BERT-family naming
                m.p, switched = 0.0, switched + 1
        if not switched:
            raise RuntimeError("no attention dropout module found (not a BERT-family encoder?)")
    samples = bench_train.first_samples(trainer, opts.batches)
    tokens = sum(int(s["net_input"]["attention_mask"].sum()) for s in samples)
    padded = sum(s["net_input"]["input_ids"].numel() for s in samples)

    def one_pass() -> float:
        t0 = time.perf_counter()
        for s in samples:
            trainer.train_step([s])
        return time.perf_counter() - t0

    first = one_pass()
    graphs = bench_train.dynamo_graphs()
    passes = [one_pass() for _ in range(opts.passes)]
    best, mid = min(passes), statistics.median(passes)
    return {"variant": opts.child, "flags": flags, "compiled": bool(trainer.compiled),
            "fallback_random": compiled and not inductor_rng, "attention_dropout_modules_off": switched,
            "batches": len(samples), "shapes": [list(s["net_input"]["input_ids"].shape) for s in samples],
            "tokens": tokens, "padded_tokens": padded, "first_pass_s": round(first, 2),
            "pass_s": [round(p, 2) for p in passes], "tokens_per_s": tokens / best, "padded_tokens_per_s": padded / best,
            "tokens_per_s_median_pass": tokens / mid,
            "graphs_in_timed_passes": bench_train.dynamo_graphs() - graphs, "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    p.add_argument("--batches", type=int, default=8, help="epoch 1's first N batches (default 8)")
    p.add_argument("--passes", type=int, default=5, help="timed passes over them (the fastest is the figure)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-save", action="store_true", help="print only; leave bench/results.json alone")
    p.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--max-tokens", type=int, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.child:
        common.emit(child(opts))
        return 0
    variants = [v.strip() for v in opts.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        p.error(f"--variants: unknown {unknown} (choose from {', '.join(VARIANTS)})")
    work = Path(tempfile.mkdtemp(prefix="scorelib-bench-compile-"))
    try:
        command = "python bench/bench_compile.py " + " ".join(argv if argv is not None else sys.argv[1:])
        return measure(opts, variants, work, command)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(opts, variants, work: Path, command: str) -> int:
    texts, targets, source = common.skewed_texts(256, seed=0)
    data = bench_train.write_data(work / "data", texts, targets)
    dataset = bench_train.setup_task(bench_train.scorelib_args(data, work / "unused", 2048, 1)).dataset("train")
    max_tokens, _, _ = bench_train.choose_max_tokens(dataset)
    print(f"texts: {source}; --max-tokens {max_tokens} --batch-size {bench_train.HF_BATCH}; epoch 1's first "
          f"{opts.batches} batches; {opts.passes} timed passes; {opts.threads} threads; load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    rows = {}
    with common.LoadSampler() as load:
        for v in variants:
            cache = str(work / f"inductor-{v}")  # cold: nothing compiled by an earlier run
            r = common.child_result(["bench/bench_compile.py", "--child", v, "--data", str(data), "--max-tokens",
                                     str(max_tokens), "--batches", str(opts.batches), "--passes", str(opts.passes),
                                     "--threads", str(opts.threads)],
                                    common.ROOT / "bench" / "out" / "compile_children.log",
                                    env={"TORCHINDUCTOR_CACHE_DIR": cache})
            r["load_1m_after"] = round(os.getloadavg()[0], 2)
            rows[v] = r
            print(f"{v:28s} {r['tokens_per_s']:7.0f} non-pad tokens/s ({r['padded_tokens_per_s']:.0f} padded); "
                  f"passes {r['pass_s']} s; first pass {r['first_pass_s']} s; graphs in timed passes "
                  f"{r['graphs_in_timed_passes']}; load {r['load_1m_after']}", flush=True)
    ratios = {}
    for v, r in rows.items():
        ref = "eager_no_dropout" if v == "compile_no_dropout" else "eager"
        if ref in rows and v != ref:
            ratios[f"{v}_vs_{ref}"] = r["tokens_per_s"] / rows[ref]["tokens_per_s"]
    for k, x in ratios.items():
        print(f"{k}: {x:.2f}x")
    result = {"method": common.METHOD, "texts": source, "max_tokens": max_tokens, "batch_size": bench_train.HF_BATCH,
              "batches": opts.batches, "passes": opts.passes, "threads": opts.threads, "variants": rows,
              "ratios": ratios, "load_1m": load.summary(), "machine": common.machine(),
              "command": command}
    if not opts.no_save:
        common.save_result("compile", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
