"""Quality on real data: ``scorelib-train`` (default encoder, CPU) vs TF-IDF + ridge on the same split.

Data sets (read from ../shared/data, prepared tables written to a temporary folder, never the repo):

* ``mohler_sag``: rows used in the paper; prompt = question id (a string), text = student answer,
  context = question + desired answer (the text pair); scores 0..5 in steps of 0.25.
* ``clear_readability``: text = Excerpt, target = BT_easiness (continuous), one prompt.

Each gets one fixed seeded split: 20% test; of the remaining 80%, 10% is the valid split that picks
``checkpoint_best``, 90% train (a 5-fold CV would not fit this machine's time). TF-IDF + ridge fits on
train + valid (80%) and both are scored on the same 20% test rows.

    python bench/bench_quality.py [--only mohler_sag|clear_readability] [--max-epoch N] [--quick]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SEED = 1
GOALS = {"mohler_sag": {"pearson": (">=", 0.70), "rmse": ("<=", 0.80)},
         "clear_readability": {"rmse": ("<=", 0.55)}}


def split(frame: pd.DataFrame, seed: int = SEED) -> dict[str, pd.DataFrame]:
    """Seeded 80/20 train+valid/test split; valid = 10% of the 80%."""
    order = np.random.default_rng(seed).permutation(len(frame))
    n_test = int(round(0.2 * len(frame)))
    n_valid = int(round(0.1 * (len(frame) - n_test)))
    parts = {"test": order[:n_test], "valid": order[n_test:n_test + n_valid], "train": order[n_test + n_valid:]}
    return {k: frame.iloc[np.sort(v)].reset_index(drop=True) for k, v in parts.items()}


def prepare(name: str) -> tuple[pd.DataFrame, list[str]]:
    """The data set as a scorelib table (key, prompt, text, context, score) and its scorelib-train flags."""
    if name == "mohler_sag":
        m = common.load_mohler()
        frame = pd.DataFrame({"key": m["id"], "prompt": m["question_id"], "text": m["student_answer"].astype(str),
                              "context": m["question"].astype(str) + " " + m["desired_answer"].astype(str),
                              "score": m["score_avg"]})
        flags = ["--context-column", "context", "--prompt-column", "prompt", "--key-column", "key",
                 "--score-range", "0", "5", "--score-step", "0.25", "--best-checkpoint-metric", "pearson"]
    else:
        c = common.load_clear()
        frame = pd.DataFrame({"key": c["ID"].astype(str), "text": c["Excerpt"].astype(str),
                              "score": c["BT_easiness"]})
        flags = ["--key-column", "key", "--score-range", "-3.7", "1.8", "--best-checkpoint-metric", "rmse"]
    return frame, flags


def tfidf_ridge(parts: dict[str, pd.DataFrame]) -> dict:
    """TF-IDF (word 1-2 grams, sublinear tf) + ridge (alpha 1) on the text; fit on train + valid, score test."""
    from scipy.stats import pearsonr
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    fit = pd.concat([parts["train"], parts["valid"]])
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x = vec.fit_transform(fit["text"])
    model = Ridge(alpha=1.0).fit(x, fit["score"].to_numpy())
    pred = model.predict(vec.transform(parts["test"]["text"]))
    gold = parts["test"]["score"].to_numpy()
    return {"pearson": float(pearsonr(gold, pred)[0]), "rmse": float(np.sqrt(np.mean((gold - pred) ** 2))),
            "n_test": int(len(gold))}


def run_scorelib(name: str, parts, flags, workdir: Path, extra: list[str]) -> dict:
    data = workdir / "data"
    data.mkdir()
    for split_name, frame in parts.items():
        frame.to_csv(data / f"{split_name}.csv", index=False)
    exe = shutil.which("scorelib-train") or str(Path(sys.executable).with_name("scorelib-train"))
    cmd = [exe, str(data), "--save-dir", str(workdir / "ckpt"), "--cpu", "--no-epoch-checkpoints",
           "--log-format", "simple", "--log-interval", "50", "--seed", str(SEED), *flags, *extra]
    print("$", " ".join(cmd), flush=True)
    log = workdir / "train.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**__import__("os").environ,
                                                                          "SCORELIB_FAST": "0"})
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"scorelib-train failed (rc {proc.returncode}); log: {log}\n{log.read_text()[-3000:]}")
    results = workdir / "ckpt" / "results"
    test = json.loads((results / "metrics-checkpoint_best-test.json").read_text())["overall"]
    valid = json.loads((results / "metrics-checkpoint_best-valid.json").read_text())["overall"]
    history = pd.read_csv(workdir / "ckpt" / "history.csv")
    return {"pearson": test["pearson"], "rmse": test["rmse"], "qwk": test.get("qwk"),
            "valid_pearson": valid["pearson"], "valid_rmse": valid["rmse"], "wall_s": round(seconds, 1),
            "epochs": int(history["epoch"].max()), "train_tokens_per_s": float(history["tokens_per_s"].median()),
            "omp_num_threads": __import__("os").environ.get("OMP_NUM_THREADS", "default"),
            "command": " ".join(["scorelib-train", "<tmp>/data", *cmd[2:]]).replace(str(workdir), "<tmp>")}


def check_goals(name: str, scores: dict) -> dict:
    out = {}
    for metric, (op, bound) in GOALS[name].items():
        value = scores[metric]
        out[f"goal_{metric}_{op}_{bound}"] = bool(value >= bound if op == ">=" else value <= bound)
    return out


def bench(name: str, extra: list[str], keep: bool = False) -> dict:
    frame, flags = prepare(name)
    parts = split(frame)
    baseline = tfidf_ridge(parts)
    workdir = Path(tempfile.mkdtemp(prefix=f"scorelib-bench-{name}-"))
    try:
        ours = run_scorelib(name, parts, flags, workdir, extra)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {"split": f"seeded (seed {SEED}) 80/20 train+valid/test; valid = 10% of the 80% picks checkpoint_best; "
                       f"rows train/valid/test = {len(parts['train'])}/{len(parts['valid'])}/{len(parts['test'])}",
              "scorelib": ours, "tfidf_ridge": baseline,
              "pearson_ratio_vs_tfidf": ours["pearson"] / baseline["pearson"],
              "rmse_ratio_vs_tfidf": ours["rmse"] / baseline["rmse"], **check_goals(name, ours),
              "machine": common.machine()}
    common.print_table([{"model": "scorelib", **{k: ours[k] for k in ("pearson", "rmse")}, "wall_s": ours["wall_s"]},
                        {"model": "TF-IDF + ridge", **{k: baseline[k] for k in ("pearson", "rmse")}}],
                       ["model", "pearson", "rmse", "wall_s"], f"quality: {name} (test, n={baseline['n_test']})")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["mohler_sag", "clear_readability"], action="append")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (data, checkpoints, log)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few rows, 1 epoch (results not saved)")
    p.add_argument("--baseline-only", action="store_true",
                   help="only TF-IDF + ridge (seconds); stored with a note that scorelib was not run")
    p.add_argument("extra", nargs="*", help="more scorelib-train flags after --, e.g. -- --max-epoch 3")
    args = p.parse_args(argv)
    if not common.have_shared_data():
        print(f"SKIP quality benchmarks: real data not found at {common.SHARED_DATA} "
              f"(set SCORELIB_SHARED_DATA to the folder holding mohler_sag/ and clear_readability/)")
        return 0
    defaults = {"mohler_sag": ["--max-epoch", "3"], "clear_readability": ["--max-epoch", "2"]}
    for name in args.only or ["mohler_sag", "clear_readability"]:
        if args.baseline_only:
            frame, _ = prepare(name)
            parts = split(frame)
            base = tfidf_ridge(parts)
            print(name, "TF-IDF + ridge:", base)
            common.save_result(f"quality_{name}", {
                "split": f"seeded (seed {SEED}) 80/20 train+valid/test; rows train/valid/test = "
                         f"{len(parts['train'])}/{len(parts['valid'])}/{len(parts['test'])}",
                "scorelib": None, "tfidf_ridge": base, "note": "scorelib not run (--baseline-only)",
                "machine": common.machine()})
            continue
        extra = (defaults[name] if "--max-epoch" not in args.extra else []) + args.extra
        if args.quick:
            extra += ["--max-train-rows", "64", "--max-eval-rows", "32", "--max-epoch", "1"]
        result = bench(name, extra, keep=args.keep)
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
        if not args.quick:
            common.save_result(f"quality_{name}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
