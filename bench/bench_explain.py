"""Cost of ``scorelib.explain.explanation``: seconds per essay of about 450 word pieces, sentence view and token view.

* sentence view: the essay and its leave-one-out variants (one per sentence) scored in one call;
* token view: Integrated Gradients on the input embeddings, ``--steps`` (default 32) interpolation steps.

Essays: Feedback Prize ELL essays of 430-470 word pieces (from ../shared/data; demo answers joined to that
length where it is absent, said in the output). The save dir comes from ``--save-dir`` or a tiny training
run on the demo data (the model's size is the default encoder's either way). Medians over ``--essays``.

    python bench/bench_explain.py [--save-dir DIR] [--essays 3] [--steps 32] [--threads N] [--no-save]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_score import train_tiny  # noqa: E402


def essays(tokenizer, n: int, lo: int = 430, hi: int = 470) -> tuple[list[str], str]:
    """``n`` texts of ``lo``..``hi`` word pieces (special tokens included) and where they come from."""
    if common.have_ell():
        texts = common.load_ell()["text"].tolist()
        lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
        picked = [t for t, k in zip(texts, lengths) if lo <= k <= hi][:n]
        return picked, f"Feedback Prize ELL essays of {lo}-{hi} word pieces"
    import scorelib.data.demo as demo

    answers, out = demo.load_demo("train")["text"].tolist(), []
    for i in range(n):
        text = ""
        for a in answers[i * 40:]:
            if len(tokenizer(text + " " + a)["input_ids"]) > hi:
                break
            text = (text + " " + a).strip()
        out.append(text)
    print("WARNING: ../shared/data not found: demo answers joined into essays", flush=True)
    return out, f"demo answers joined to {lo}-{hi} word pieces"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--save-dir")
    p.add_argument("--essays", type=int, default=3)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-save", action="store_true", help="do not write bench/results.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import scorelib
    from scorelib.explain.explanation import explain, split_sentences

    with tempfile.TemporaryDirectory() as tmp:
        save_dir = Path(args.save_dir) if args.save_dir else Path(tmp) / "tiny"
        if not args.save_dir:
            train_tiny(save_dir)
        scorer = scorelib.load(save_dir, device="cpu")
        texts, source = essays(scorer.tokenizer, args.essays)
        prompt = scorer.table.ids[0]
        explain(scorer, texts[0][:300], prompt=prompt, by="token", steps=4)  # warm-up
        rows = []
        for text in texts:
            t0 = time.perf_counter()
            explain(scorer, text, prompt=prompt, by="sentence")
            t1 = time.perf_counter()
            e = explain(scorer, text, prompt=prompt, by="token", steps=args.steps)
            t2 = time.perf_counter()
            rows.append({"word_pieces": len(scorer.tokenizer(text, scorer.table.contexts.get(prompt))["input_ids"]),
                         "sentences": len(split_sentences(text)), "sentence_s": t1 - t0, "token_s": t2 - t1,
                         "ig_delta": abs(e.delta["score"])})
    common.print_table([{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
                       list(rows[0]), title=f"explain on {source} ({torch.get_num_threads()} threads)")
    result = {"source": source, "essays": len(rows), "steps": args.steps, "threads": torch.get_num_threads(),
              "median_word_pieces": common.median([r["word_pieces"] for r in rows]),
              "median_sentences": common.median([r["sentences"] for r in rows]),
              "sentence_s_per_essay": common.median([r["sentence_s"] for r in rows]),
              "token_s_per_essay": common.median([r["token_s"] for r in rows]),
              "max_ig_delta": float(np.max([r["ig_delta"] for r in rows])), "machine": common.machine()}
    print(f"sentence view: {result['sentence_s_per_essay']:.2f} s per essay; token view (IG, {args.steps} steps): "
          f"{result['token_s_per_essay']:.2f} s per essay")
    if not args.no_save:
        common.save_result("explain", result)
    return result


if __name__ == "__main__":
    main()
