"""Padding efficiency of scorelib's batches (issue 14): tokenization only, no model, seconds.

Padding efficiency = non-pad tokens / padded tokens (``len(batch) * longest``) over an epoch's batches. For each
text set, the texts are tokenized as ``scorelib-train`` tokenizes them (the default tokenizer, truncation at
``--max-length 512``, one segment) into a ``ScoringDataset``, and batched by:

* ``scorelib``: ``scorelib.data.scoring_dataset.epoch_batches`` (length-sorted ``batch_by_size``, ``--max-tokens 2048
  --batch-size 16``: scorelib-train's defaults), epoch 1, seed 1;
* ``random_16``: random batches of 16 (what ``transformers.Trainer`` forms by default), seed 1;
* ``hf_group_by_length_16``: transformers' ``LengthGroupedSampler`` (batch size 16, seed 1), for reference.

and, as a bound, the best any batching of the sorted lengths into the same number of batches (and into 1, 2 and 4
more) can reach under the same caps (:func:`best_padding`, an exact dynamic program): it says whether a smarter
bucketing could gain anything without adding optimizer steps.

Text sets: the 256-text set of ``bench_train.py`` (128 CLEAR excerpts + 128 Mohler SAG answers, seed 0) and the
3,911 essays of ``../shared/data/feedback_prize_ell`` (``full_text``; 40% are longer than 512 tokens).

    python bench/bench_padding.py [--max-tokens 2048] [--batch-size 16] [--no-save]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SEED = 1
MAX_LENGTH = 512


def dataset_of(texts: list[str], tokenizer):
    """The texts as scorelib's training dataset holds them (one prompt, no context)."""
    from scorelib.data.scoring_dataset import ScoringDataset
    from scorelib.data.prompts import PromptTable

    frame = pd.DataFrame({"key": [str(i) for i in range(len(texts))], "prompt": "1", "text": texts, "score": 0.0})
    return ScoringDataset(frame, tokenizer, PromptTable(ids=["1"], ranges={"1": (0.0, 1.0)}), MAX_LENGTH)


def batchings(ds, max_tokens: int, batch_size: int) -> dict[str, list[list[int]]]:
    from scorelib.data.scoring_dataset import epoch_batches

    n = len(ds)
    out = {"scorelib": epoch_batches(ds, 1, SEED, max_tokens, batch_size)}
    order = np.random.default_rng(SEED).permutation(n)
    out[f"random_{batch_size}"] = [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    try:
        import torch
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = LengthGroupedSampler(batch_size, lengths=ds.sizes.tolist(),
                                       generator=torch.Generator().manual_seed(SEED))
        order = list(sampler)
        out[f"hf_group_by_length_{batch_size}"] = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    except ImportError:
        pass
    return out


def best_padding(sizes, max_tokens: int, batch_size: int, num_batches: int) -> float | None:
    """Highest padding efficiency of any split of the sorted ``sizes`` into at most ``num_batches`` batches.

    ``best[k][j]``: fewest padded tokens for the ``j`` shortest items in ``k`` batches; a batch of the items
    ``i..j-1`` costs ``(j - i) * sizes[j-1]`` and must keep to ``batch_size`` rows and ``max_tokens`` padded tokens.
    Batches of items that are contiguous in sorted order are enough: exchanging two items across batches never
    lowers the padding. ``None`` when no such split exists.
    """
    lengths = np.sort(np.asarray(sizes, dtype=np.int64))
    n = len(lengths)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    found = np.inf
    for _ in range(num_batches):
        nxt = np.full(n + 1, np.inf)
        for d in range(1, min(batch_size, n) + 1):  # d = rows of the last batch, which ends at item j-1
            cost = d * lengths[d - 1:]  # for j = d .. n
            ok = cost <= max_tokens
            nxt[d:] = np.where(ok, np.minimum(nxt[d:], best[:n + 1 - d] + cost), nxt[d:])
        best = nxt
        found = min(found, best[n])
    return None if not np.isfinite(found) else float(lengths.sum() / found)


def measure(name: str, texts: list[str], tokenizer, max_tokens: int, batch_size: int) -> dict:
    from scorelib.data.scoring_dataset import padding_efficiency

    t0 = time.perf_counter()
    ds = dataset_of(texts, tokenizer)
    seconds = time.perf_counter() - t0
    sizes = ds.sizes
    out = {"texts": len(ds), "tokens_total": int(sizes.sum()), "tokens_median": float(np.median(sizes)),
           "tokens_min": int(sizes.min()), "tokens_max": int(sizes.max()),
           "at_max_length": int((sizes >= MAX_LENGTH).sum()), "truncated": int(ds.num_truncated),
           "tokenize_s": round(seconds, 2), "batchings": {}}
    for how, batches in batchings(ds, max_tokens, batch_size).items():
        assert sorted(i for b in batches for i in b) == list(range(len(ds))), how
        out["batchings"][how] = {"padding_efficiency": padding_efficiency(batches, sizes), "batches": len(batches),
                                 "mean_batch_size": len(ds) / len(batches),
                                 "max_batch_size": max(map(len, batches)),
                                 "max_padded_tokens": max(len(b) * int(sizes[b].max()) for b in map(np.asarray, batches))}
    k = out["batchings"]["scorelib"]["batches"]
    out["best_possible"] = {f"{k + extra}_batches": best_padding(sizes, max_tokens, batch_size, k + extra)
                            for extra in (0, 1, 2, 4)}
    rows = [{"batching": how, **{k: v for k, v in r.items()}} for how, r in out["batchings"].items()]
    common.print_table(rows, ["batching", "padding_efficiency", "batches", "mean_batch_size", "max_batch_size",
                              "max_padded_tokens"],
                       f"{name}: {out['texts']} texts, {out['tokens_total']:,} tokens (median {out['tokens_median']:.0f}, "
                       f"max {out['tokens_max']}; {out['truncated']} truncated at {MAX_LENGTH})")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--no-save", action="store_true", help="print only; leave bench/results.json alone")
    opts = p.parse_args(argv)
    from scorelib.models.scoring_model import load_tokenizer

    tok = load_tokenizer(None)
    result = {"method": common.METHOD, "max_tokens": opts.max_tokens, "batch_size": opts.batch_size,
              "max_length": MAX_LENGTH, "seed": SEED, "sets": {}}
    texts, _, source = common.skewed_texts(256, seed=0)
    result["sets"]["bench_train_256"] = {"source": source, **measure("bench_train 256", texts, tok, opts.max_tokens,
                                                                     opts.batch_size)}
    if common.have_ell():
        ell = common.load_ell()
        result["sets"]["feedback_prize_ell"] = {"source": f"feedback_prize_ell full_text ({len(ell)} essays)",
                                                **measure("feedback_prize_ell", ell["text"].tolist(), tok,
                                                          opts.max_tokens, opts.batch_size)}
    else:
        print(f"SKIP feedback_prize_ell: {common.SHARED_DATA / 'feedback_prize_ell'} not found")
    print()
    for name, r in result["sets"].items():
        s = r["batchings"]["scorelib"]
        print(f"{name}: scorelib padding efficiency {100 * s['padding_efficiency']:.1f}% "
              f"(--max-tokens {opts.max_tokens} --batch-size {opts.batch_size}; mean batch {s['mean_batch_size']:.2f}); "
              f"best possible: " + ", ".join(f"{100 * v:.1f}% in {b.replace('_', ' ')}"
                                             for b, v in r["best_possible"].items() if v is not None))
    result["machine"] = common.machine()
    result["command"] = "python bench/bench_padding.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if not opts.no_save:
        common.save_result("padding", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
