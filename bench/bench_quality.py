"""Quality on real data: ``scorelib-train`` (default encoder, CPU) vs TF-IDF + ridge on the same split.

Data sets (read from ../shared/data, prepared tables written to a temporary folder, never the repo):

* ``mohler_sag``: rows used in the paper; prompt = question id (a string), text = student answer,
  context = question + desired answer (the text pair); scores 0..5 in steps of 0.25.
* ``clear_readability``: text = Excerpt, target = BT_easiness (continuous), one prompt.

Each gets one fixed seeded split: 20% test; of the remaining 80%, 10% is the valid split, 90% train (a 5-fold CV
would not fit this machine's time). Test is read once, at the end, and never to choose anything:

* scorelib trains for an epoch budget (``--max-epoch``: 6 for mohler_sag, 3 for clear_readability) and
  ``checkpoint_best`` - the epoch with the best valid metric (``--best-checkpoint-metric``) - is scored on test;
* TF-IDF + ridge gets the model's inputs (mohler_sag: a TF-IDF block of the student answer and one of the question +
  reference answer, side by side; clear_readability: the excerpt), picks ridge's alpha on valid (same metric),
  fits on train (the model's training rows) and is scored on test.

The recorded command is exactly the ``scorelib-train`` command that ran (defaults merged with overrides, each flag
once); ``make bench`` (this script without arguments) reproduces the stored figures.

    python bench/bench_quality.py [--only mohler_sag|clear_readability] [--quick] [-- scorelib-train flags]
    python bench/bench_quality.py --quick        # smoke run: 64 train rows, 1 epoch, nothing saved
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
import common  # noqa: E402

SEED = 1
ALPHAS = (0.1, 0.3, 1, 3, 10, 30)
MAXIMIZE = {"pearson": True, "qwk": True, "spearman": True, "rmse": False, "loss": False}
# the epoch budget per data set; checkpoint_best (picked on valid) decides which epoch is scored on test
EPOCH_BUDGET = {"mohler_sag": 6, "clear_readability": 3}
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
        frame = common.load_mohler()[["key", "prompt", "text", "context", "score"]]
        flags = ["--context-column", "context", "--prompt-column", "prompt", "--key-column", "key",
                 "--score-range", "0", "5", "--score-step", "0.25", "--best-checkpoint-metric", "pearson"]
    else:
        frame = common.load_clear()[["key", "text", "score"]]
        flags = ["--key-column", "key", "--score-range", "-3.7", "1.8", "--best-checkpoint-metric", "rmse"]
    return frame, flags


def metric_value(metric: str, gold, pred) -> float:
    from scipy.stats import pearsonr

    if metric == "pearson":
        return float(pearsonr(gold, pred)[0])
    if metric == "rmse":
        return float(np.sqrt(np.mean((np.asarray(gold) - np.asarray(pred)) ** 2)))
    raise ValueError(f"no valid metric {metric!r} for TF-IDF + ridge")


def tfidf_ridge(parts: dict[str, pd.DataFrame], metric: str, return_pred: bool = False) -> dict:
    """TF-IDF (word 1-2 grams, sublinear tf, min_df 2) + ridge on the model's inputs (``return_pred``: adds
    ``"pred"``, the test predictions).

    One TF-IDF block per input column (``text``, and ``context`` where the model reads one), side by side; the
    vectorizers and ridge fit on train only, ridge's alpha is picked on valid by ``metric``, test is scored once.
    """
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    columns = [c for c in ("text", "context") if c in parts["train"]]
    vecs = {c: TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(parts["train"][c])
            for c in columns}

    def features(frame):
        return hstack([vecs[c].transform(frame[c]) for c in columns]).tocsr()

    x = {k: features(v) for k, v in parts.items()}
    y = {k: v["score"].to_numpy(dtype=float) for k, v in parts.items()}
    valid = {}
    for alpha in ALPHAS:
        model = Ridge(alpha=alpha).fit(x["train"], y["train"])
        valid[alpha] = metric_value(metric, y["valid"], model.predict(x["valid"]))
    pick = max if MAXIMIZE[metric] else min
    alpha = pick(ALPHAS, key=lambda a: valid[a])
    pred = Ridge(alpha=alpha).fit(x["train"], y["train"]).predict(x["test"])
    gold = y["test"]
    return {"pearson": metric_value("pearson", gold, pred), "rmse": metric_value("rmse", gold, pred),
            "n_test": int(len(gold)), "inputs": " + ".join(columns), "alpha": alpha,
            "alpha_picked_on": f"valid {metric}", "valid_by_alpha": {str(a): round(v, 4) for a, v in valid.items()},
            "fit_on": "train", "features": {c: len(vecs[c].vocabulary_) for c in columns},
            **({"pred": pred} if return_pred else {})}


def merge_flags(*groups: list[str]) -> list[str]:
    """Command-line flags with later groups overriding earlier ones: each ``--flag`` once, at its first place.

    A flag's values are the tokens after it up to the next ``--flag`` (``-3.7`` is a value, not a flag).
    """
    merged: dict[str, list[str]] = {}
    for group in groups:
        flag = None
        for tok in group:
            if tok.startswith("--"):
                flag = tok
                merged[flag] = []  # replaces the earlier values; dict order keeps the first place
            elif flag is None:
                raise ValueError(f"value {tok!r} before any --flag in {group}")
            else:
                merged[flag].append(tok)
    return [tok for flag, values in merged.items() for tok in (flag, *values)]


def flag_value(flags: list[str], name: str) -> str | None:
    return flags[flags.index(name) + 1] if name in flags else None


def run_scorelib(name: str, parts, flags, workdir: Path, extra: list[str]) -> dict:
    data = workdir / "data"
    data.mkdir()
    for split_name, frame in parts.items():
        frame.to_csv(data / f"{split_name}.csv", index=False)
    exe = shutil.which("scorelib-train") or str(Path(sys.executable).with_name("scorelib-train"))
    cmd = [exe, str(data), *merge_flags(["--save-dir", str(workdir / "ckpt"), "--cpu", "--no-epoch-checkpoints",
                                         "--log-format", "simple", "--log-interval", "50", "--seed", str(SEED)],
                                        flags, extra)]
    print("$", " ".join(cmd), flush=True)
    log = workdir / "train.log"
    t0 = time.perf_counter()
    env = {**os.environ, "SCORELIB_FAST": "0"}
    threads = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                                 capture_output=True, text=True, check=True).stdout)
    common.run_child(cmd, log, env=env)
    seconds = time.perf_counter() - t0
    results = workdir / "ckpt" / "results"
    test = json.loads((results / "metrics-checkpoint_best-test.json").read_text())["overall"]
    valid = json.loads((results / "metrics-checkpoint_best-valid.json").read_text())["overall"]
    history = pd.read_csv(workdir / "ckpt" / "history.csv")
    metric = flag_value(cmd, "--best-checkpoint-metric")
    curve = history[f"valid_{metric}"].to_numpy(dtype=float)
    # the epoch checkpoint_best holds: the first strict best on valid, as scorelib.training.Progress.is_better keeps it
    best = int(history["epoch"].iloc[int(np.argmax(curve) if MAXIMIZE[metric] else np.argmin(curve))])
    on_file = json.loads((results / "metrics-checkpoint_best-test.json").read_text())
    parts = {part: {m: on_file[part]["overall"][m] for m in ("pearson", "rmse")}
             for part in ("encoder", "stack") if part in on_file}  # --stack tfidf: the blend's parts on test
    return {"pearson": test["pearson"], "rmse": test["rmse"], "qwk": test.get("qwk"),
            **({"parts": parts, "blend_weight": on_file.get("blend_weight")} if parts else {}),
            "valid_pearson": valid["pearson"], "valid_rmse": valid["rmse"], "wall_s": round(seconds, 1),
            "epoch_budget": int(flag_value(cmd, "--max-epoch")), "epochs": int(history["epoch"].max()),
            "best_epoch": best, "picked_on": f"valid {metric} (checkpoint_best)",
            "valid_curve": {int(e): round(float(v), 4) for e, v in zip(history["epoch"], curve)},
            "train_seconds": float(history["seconds"].sum()),
            "train_tokens_per_s": float(history["tokens_per_s"].median()), "torch_threads": threads,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "default"),
            "command": " ".join(["scorelib-train", "<tmp>/data", *cmd[2:]]).replace(str(workdir), "<tmp>")}


def check_goals(name: str, scores: dict) -> dict:
    out = {}
    for metric, (op, bound) in GOALS[name].items():
        value = scores[metric]
        out[f"goal_{metric}_{op}_{bound}"] = bool(value >= bound if op == ">=" else value <= bound)
    return out


QUICK_ROWS = {"train": 64, "valid": 32, "test": 32}


def quick_cut(parts: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The seeded, prompt-balanced subsets ``--max-train-rows 64 --max-eval-rows 32`` give scorelib (for --quick)."""
    from scorelib.tasks.text_scoring import subset

    return {k: subset(v if "prompt" in v else v.assign(prompt="1"), QUICK_ROWS[k], SEED)[v.columns]
            .reset_index(drop=True) for k, v in parts.items()}


def bench(name: str, extra: list[str], keep: bool = False, quick: bool = False) -> dict:
    frame, flags = prepare(name)
    parts = split(frame)
    baseline = tfidf_ridge(quick_cut(parts) if quick else parts, flag_value(flags, "--best-checkpoint-metric"))
    workdir = Path(tempfile.mkdtemp(prefix=f"scorelib-bench-{name}-"))
    try:
        ours = run_scorelib(name, parts, flags, workdir, extra)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {"method": common.METHOD,
              "split": f"seeded (seed {SEED}) 80/20 train+valid/test; valid = 10% of the 80% picks checkpoint_best "
                       f"and ridge's alpha; "
                       f"rows train/valid/test = {len(parts['train'])}/{len(parts['valid'])}/{len(parts['test'])}"
                       + (f" (--quick: seeded subsets of {QUICK_ROWS['train']}/{QUICK_ROWS['valid']}/{QUICK_ROWS['test']})"
                          if quick else ""),
              "scorelib": ours, "tfidf_ridge": baseline,
              "pearson_ratio_vs_tfidf": ours["pearson"] / baseline["pearson"],
              "rmse_ratio_vs_tfidf": ours["rmse"] / baseline["rmse"], **check_goals(name, ours),
              "machine": common.machine()}
    common.print_table([{"model": "scorelib", **{k: ours[k] for k in ("pearson", "rmse")}, "wall_s": ours["wall_s"]},
                        *[{"model": f"  its {part} alone", **v} for part, v in ours.get("parts", {}).items()],
                        {"model": "TF-IDF + ridge", **{k: baseline[k] for k in ("pearson", "rmse")}}],
                       ["model", "pearson", "rmse", "wall_s"], f"quality: {name} (test, n={baseline['n_test']})")
    print(f"scorelib: checkpoint_best = epoch {ours['best_epoch']} of {ours['epochs']} (budget "
          f"{ours['epoch_budget']}), picked on {ours['picked_on']}; TF-IDF + ridge: alpha {baseline['alpha']} picked on "
          f"{baseline['alpha_picked_on']} {baseline['valid_by_alpha']}")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["mohler_sag", "clear_readability"], action="append")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (data, checkpoints, log)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few rows, 1 epoch (results not saved)")
    p.add_argument("--stack", action="store_true", help="train with --stack tfidf; stored as quality_{name}_stack, "
                   "with the encoder's and the stack's own test figures beside the blend")
    p.add_argument("--baseline-only", action="store_true",
                   help="only TF-IDF + ridge (seconds); stored with a note that scorelib was not run")
    p.add_argument("extra", nargs="*", help="scorelib-train flags after --, overriding the defaults (e.g. -- "
                   "--max-epoch 4); the result then records that make bench does not reproduce it")
    args = p.parse_args(argv)
    if not common.have_shared_data():
        print(f"SKIP quality benchmarks: real data not found at {common.SHARED_DATA} "
              f"(set SCORELIB_DATA to the folder holding mohler_sag/ and clear_readability/)")
        return 0
    for name in args.only or ["mohler_sag", "clear_readability"]:
        if args.baseline_only:
            frame, flags = prepare(name)
            parts = split(frame)
            base = tfidf_ridge(parts, flag_value(flags, "--best-checkpoint-metric"))
            print(name, "TF-IDF + ridge:", base)
            common.save_result(f"quality_{name}", {
                "method": common.METHOD,
                "split": f"seeded (seed {SEED}) 80/20 train+valid/test; rows train/valid/test = "
                         f"{len(parts['train'])}/{len(parts['valid'])}/{len(parts['test'])}",
                "scorelib": None, "tfidf_ridge": base, "note": "scorelib not run (--baseline-only)",
                "machine": common.machine()})
            continue
        extra = ["--max-epoch", str(EPOCH_BUDGET[name]), *(["--stack", "tfidf"] if args.stack else []),
                 *args.extra]  # merged: a flag given after -- wins
        if args.quick:
            extra += ["--max-train-rows", str(QUICK_ROWS["train"]), "--max-eval-rows", str(QUICK_ROWS["valid"]),
                      "--max-epoch", "1"]
        result = bench(name, extra, keep=args.keep, quick=args.quick)
        result["bench_command"] = "python bench/bench_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
        result["reproduced_by_make_bench"] = not args.extra and not args.quick and not args.stack
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
        if not args.quick:
            common.save_result(f"quality_{name}" + ("_stack" if args.stack else ""), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
