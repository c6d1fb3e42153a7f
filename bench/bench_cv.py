"""Cross-validation (issue 11): ``scorelib-cv`` fold by fold against TF-IDF + ridge on the same folds, and what
the fold ensemble and the fitted cut-points add on rows no fold model saw.

For each data set the seeded 20% test part of ``bench_quality.py``'s split is held out first; ``scorelib-cv``
runs K folds (``--split-seed 1``) on the other 80% (the pool):

* per fold: the fold model's metrics on its held-out fold (from ``metrics-cv.json``), its wall time, and
  TF-IDF + ridge fitted on exactly that fold's train table, alpha picked on that fold's valid table;
* fold mean +- sd (``ddof=1``) and the pooled out-of-fold value, for both;
* on the held-out test part: each fold model alone and the ensemble (the mean of the K models' outputs in [0, 1]).
  The ensemble's gain is measured here and not on the pooled out-of-fold rows: every out-of-fold row was a
  training row of the other K-1 models, so an ensemble scored there would have seen it.
* ``demo`` (the embedded data; CV on its train + valid, its test split held out): QWK with nearest rounding
  against the cut-points ``--fit-cutpoints`` fitted on the out-of-fold predictions, on the held-out test split
  (the out-of-fold QWK, where the cut-points were fitted, is reported too and labelled in-sample).

Wall time per fold is the time between the finish markers (``fold{i}/oof.csv``) of consecutive folds, so it holds
the fold's training, per-epoch validation and prediction; only folds trained by the invocation that stores the
result are timed. The save dirs live under ``bench/out/cv-<name>/`` so a stopped run resumes where it stopped.

    python bench/bench_cv.py --only mohler_sag          # ~30 min on 2 idle cores
    python bench/bench_cv.py --only clear_readability   # ~40 min (1 epoch per fold; see EPOCH_BUDGET)
    python bench/bench_cv.py --only demo                # ~8 min
    python bench/bench_cv.py --only mohler_sag --stack  # with --stack tfidf: stored as cv_mohler_sag_stack, the
                                                        # encoder's and the stack's own figures beside the blend's
    python bench/bench_cv.py --quick --only demo        # smoke run: 3 folds, few rows, nothing saved
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality as Q  # noqa: E402
import common  # noqa: E402

SEED = 1
# Epochs per fold. clear_readability's single split needs ~9 min per epoch here; 5 folds x 3 epochs (the single
# split's budget) would take ~2 h 15 min, so its folds train 1 epoch (the figure says so).
EPOCH_BUDGET = {"mohler_sag": 6, "clear_readability": 1, "demo": 3}
DATASETS = ("mohler_sag", "clear_readability", "demo")


def prepare(name: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str], Path | None]:
    """(pool, test, scorelib flags, ranges table or None) for a data set."""
    if name == "demo":
        from scorelib.data.demo import DEMO_RANGES, load_demo

        demo = load_demo()
        pool = pd.concat([demo["train"], demo["valid"]], ignore_index=True)[["key", "prompt", "text", "score"]]
        ranges = pd.DataFrame([(p, lo, hi) for p, (lo, hi) in DEMO_RANGES.items()], columns=["prompt", "min", "max"])
        flags = ["--prompt-column", "prompt", "--key-column", "key", "--score-step", "1", "--fit-cutpoints",
                 "--best-checkpoint-metric", "qwk"]
        return pool, demo["test"][["key", "prompt", "text", "score"]].reset_index(drop=True), flags, ranges
    frame, flags = Q.prepare(name)
    parts = Q.split(frame, SEED)
    pool = pd.concat([parts["train"], parts["valid"]]).sort_values("key", kind="stable").reset_index(drop=True)
    return pool, parts["test"], flags, None


def run_cv(name: str, pool: pd.DataFrame, flags: list[str], ranges, workdir: Path, folds: int,
           extra: list[str]) -> dict:
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    pool.to_csv(data / "pool.csv", index=False)
    if ranges is not None:
        ranges.to_csv(data / "ranges.csv", index=False)
        flags = [*flags, "--score-ranges", str(data / "ranges.csv")]
    exe = shutil.which("scorelib-cv") or str(Path(sys.executable).with_name("scorelib-cv"))
    cmd = [exe, str(data / "pool.csv"), *Q.merge_flags(
        ["--save-dir", str(workdir / "cv"), "--folds", str(folds), "--split-seed", str(SEED), "--seed", str(SEED),
         "--cpu", "--no-epoch-checkpoints", "--no-save-optimizer-state", "--log-format", "simple",
         "--log-interval", "50", "--max-epoch", str(EPOCH_BUDGET[name])], flags, extra)]
    print("$", " ".join(cmd), flush=True)
    done_before = {i for i in range(folds) if (workdir / "cv" / f"fold{i}" / "oof.csv").is_file()}
    env = {**os.environ, "SCORELIB_FAST": "0"}
    threads = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                                 capture_output=True, text=True, check=True).stdout)
    start, t0 = time.time(), time.perf_counter()
    common.run_child(cmd, workdir / "cv.log", env=env, append=True)  # appended: a resumed run adds to the log
    seconds, load = time.perf_counter() - t0, round(os.getloadavg()[0], 2)
    wall, previous = {}, start
    for i in range(folds):
        stamp = (workdir / "cv" / f"fold{i}" / "oof.csv").stat().st_mtime
        if i not in done_before:
            wall[i] = round(stamp - previous, 1)
        previous = max(previous, stamp)
    command = " ".join(["scorelib-cv", "<work>/data/pool.csv", *cmd[2:]]).replace(str(workdir), "<work>")
    return {"wall_s": round(seconds, 1), "fold_wall_s": wall, "torch_threads": threads, "command": command,
            "loadavg_1m_end": load,
            "resumed_folds": sorted(done_before)}


def fold_baseline(workdir: Path, pool: pd.DataFrame, folds: int, metric: str) -> dict:
    """TF-IDF + ridge on each fold's own train / valid tables, scored on its held-out fold."""
    assignment = pd.read_csv(workdir / "cv" / "folds.csv", dtype={"key": str}, keep_default_na=False)
    fold_of = dict(zip(assignment["key"], assignment["fold"]))
    pool = pool.assign(key=pool["key"].astype(str))
    per_fold, oof = [], pd.Series(np.nan, index=pool["key"])
    for i in range(folds):
        read = lambda s: pd.read_csv(workdir / "cv" / f"fold{i}" / "data" / f"{s}.csv", dtype={"key": str},  # noqa
                                     keep_default_na=False)
        held = pool[pool["key"].map(fold_of) == i]
        r = Q.tfidf_ridge({"train": read("train"), "valid": read("valid"), "test": held}, metric, return_pred=True)
        oof[held["key"].to_numpy()] = r.pop("pred")
        per_fold.append({"fold": i, **{k: r[k] for k in ("pearson", "rmse", "alpha")}})
    gold = pool["score"].to_numpy(np.float64)
    pred = oof.reindex(pool["key"]).to_numpy()
    return {"per_fold": per_fold, **mean_sd(per_fold), "pooled": {"pearson": Q.metric_value("pearson", gold, pred),
                                                                  "rmse": Q.metric_value("rmse", gold, pred)}}


def mean_sd(rows: list[dict], names=("pearson", "rmse")) -> dict:
    return {name: {"mean": float(np.mean([r[name] for r in rows])), "sd": float(np.std([r[name] for r in rows],
                                                                                       ddof=1))} for name in names}


def on_test(workdir: Path, test: pd.DataFrame) -> dict:
    """Each fold model and the ensemble on the held-out test rows."""
    import scorelib
    from scorelib.metrics import compute_metrics

    ens = scorelib.load(workdir / "cv", device="cpu")
    table = ens.table
    if "prompt" not in test:  # one prompt (clear_readability): the id scorelib gave it
        test = test.assign(prompt=table.ids[0])
    parts = {}  # "encoder", and with --stack tfidf "stack" and "blend": each (models, rows)
    for pid, rows in test.groupby("prompt", sort=False).indices.items():
        ctx = test["context"].iloc[rows].tolist() if "context" in test else None
        texts, pid, ctx = ens.check(test["text"].iloc[rows].tolist(), pid, ctx)
        for part, values in ens.models_parts01(ens.dataset(texts, pid, ctx)).items():
            parts.setdefault(part, np.empty((ens.num_models, len(test))))[:, rows] = values
    each = parts.get("blend", parts["encoder"])
    prompts, gold = test["prompt"].astype(str).to_numpy(), test["score"].to_numpy(np.float64)

    def metrics(pred01):
        pred = table.unscale(pred01, prompts)
        m = compute_metrics(prompts, gold, pred, table.round(pred, prompts), table)["overall"]
        return {k: m[k] for k in ("pearson", "rmse", "qwk", "qwk_nearest") if m.get(k) is not None}

    folds = [{"fold": i, **metrics(p)} for i, p in enumerate(each)]
    ensemble = metrics(each.mean(axis=0))
    spread = (each.std(axis=0) * (table.unscale(np.ones(len(test)), prompts) - table.unscale(np.zeros(len(test)),
                                                                                           prompts)))
    return {"n": len(test), "folds": folds, "fold_mean": mean_sd(folds, [k for k in folds[0] if k != "fold"]),
            "ensemble": ensemble, **gains(folds, ensemble),
            **({"ensemble_parts": {p: metrics(parts[p].mean(axis=0)) for p in ("encoder", "stack")}}
               if "blend" in parts else {}),
            "spread_median": float(np.median(spread)), "cutpoints": table.cutpoints or None}


def gains(folds: list[dict], ensemble: dict) -> dict:
    """The ensemble against the mean fold model and against the best fold model on each metric (lowest RMSE)."""
    best = {k: (min if k == "rmse" else max)(folds, key=lambda f, k=k: f[k]) for k in ensemble}
    return {"best_fold_on_test": {k: f["fold"] for k, f in best.items()},
            "ensemble_gain_vs_fold_mean": {k: ensemble[k] - float(np.mean([f[k] for f in folds])) for k in ensemble},
            "ensemble_gain_vs_best_fold": {k: ensemble[k] - best[k][k] for k in ensemble}}


def bench(name: str, folds: int, extra: list[str], quick: bool, stack: bool = False) -> dict:
    pool, test, flags, ranges = prepare(name)
    if stack:
        extra = [*extra, "--stack", "tfidf"]
    if quick:
        keep = sorted(pool["prompt"].unique())[:4]  # 4 prompts, 15 rows each
        pool = pool[pool["prompt"].isin(keep)].groupby("prompt", group_keys=False).head(15)
        test = test[test["prompt"].isin(keep)].head(24).reset_index(drop=True)
        extra = [*extra, "--max-epoch", "1", "--max-length", "64"]
    workdir = common.ROOT / "bench" / "out" / (f"cv-{name}" + ("-stack" if stack else "") + ("-quick" if quick else ""))
    if quick:
        shutil.rmtree(workdir, ignore_errors=True)
    run = run_cv(name, pool, flags, ranges, workdir, folds, extra)
    cv = json.loads((workdir / "cv" / "results" / "metrics-cv.json").read_text())
    metric = "pearson" if name == "mohler_sag" else "rmse"
    result = {"method": common.METHOD, "folds": folds,
              "split": f"seeded (seed {SEED}) 20% test held out; {folds} folds (scorelib-cv --split-seed {SEED}, "
                       f"stratified by prompt and score) on the other 80%; each fold's valid part (10% of its "
                       f"training folds) picks checkpoint_best and ridge's alpha; rows pool/test = "
                       f"{len(pool)}/{len(test)}",
              "epoch_budget": EPOCH_BUDGET[name] if not quick else 1, **run,
              "scorelib": {"per_fold": cv["per_fold"], "overall": cv["overall"],
                           **({"blend_weight": cv["pooled"].get("blend_weight"),
                               "pooled_parts": {p: {k: cv["pooled"][p]["overall"].get(k) for k in ("pearson", "rmse")}
                                                for p in ("encoder", "stack")}} if stack else {})},
              "test": on_test(workdir, test), "machine": common.machine()}
    if name != "demo":
        result["tfidf_ridge"] = fold_baseline(workdir, pool, folds, metric)
    report(name, result)
    return result


def report(name: str, r: dict) -> None:
    o = r["scorelib"]["overall"]
    rows = [{"model": "scorelib", **{f"{m} mean±sd": f"{o[m]['mean']:.3f} ± {o[m]['sd']:.3f}" for m in ("pearson", "rmse")},
             "pooled pearson": o["pearson"]["pooled"], "pooled rmse": o["rmse"]["pooled"]}]
    rows += [{"model": f"scorelib: {part} alone", "pearson mean±sd": "", "rmse mean±sd": "",
              "pooled pearson": v["pearson"], "pooled rmse": v["rmse"]}
             for part, v in r["scorelib"].get("pooled_parts", {}).items()]
    if "tfidf_ridge" in r:
        b = r["tfidf_ridge"]
        rows.append({"model": "TF-IDF + ridge", **{f"{m} mean±sd": f"{b[m]['mean']:.3f} ± {b[m]['sd']:.3f}"
                                                   for m in ("pearson", "rmse")},
                     "pooled pearson": b["pooled"]["pearson"], "pooled rmse": b["pooled"]["rmse"]})
    common.print_table(rows, list(rows[0]), f"{name}: {r['folds']}-fold out-of-fold")
    t = r["test"]
    rows = [{"model": f"fold {f['fold']}", **{k: v for k, v in f.items() if k != "fold"}} for f in t["folds"]]
    rows.append({"model": "ensemble", **t["ensemble"]})
    rows += [{"model": f"ensemble: {part} alone", **m} for part, m in t.get("ensemble_parts", {}).items()]
    common.print_table(rows, list(rows[-1]), f"{name}: held-out test (n={t['n']})")
    print("fold wall s:", r["fold_wall_s"], "total", r["wall_s"], flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=DATASETS, action="append")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="a smoke run: few rows, 1 epoch, 3 folds (nothing saved)")
    p.add_argument("--stack", action="store_true", help="cross-validate with --stack tfidf; stored as "
                   "cv_{name}_stack, with the encoder's and the stack's own figures beside the blend's")
    p.add_argument("extra", nargs="*", help="scorelib-cv flags after --, overriding the defaults")
    args = p.parse_args(argv)
    names = args.only or list(DATASETS)
    if not common.have_shared_data() and set(names) - {"demo"}:
        print(f"SKIP cross-validation on real data: not found at {common.SHARED_DATA}")
        names = [n for n in names if n == "demo"]
    for name in names:
        result = bench(name, 3 if args.quick else args.folds, args.extra, args.quick, args.stack)
        result["bench_command"] = "python bench/bench_cv.py " + " ".join(argv if argv is not None else sys.argv[1:])
        result["reproduced_by_make_bench"] = not args.extra and not args.quick and not args.stack and args.folds == 5
        if not args.quick:
            common.save_result(f"cv_{name}" + ("_stack" if args.stack else ""), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
