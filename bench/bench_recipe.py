"""The regression recipe study (issue 20): which training settings win on valid, within a wall-time budget.

Per data set x setting, ``scorelib-train`` (the default encoder) trains for as many epochs as the data set's wall-time
budget allows with that setting, and the valid figure of ``checkpoint_best`` is recorded with the wall time. Only
train and valid tables are written (never test): every decision here is made on valid. Results are appended to
``bench/results.json`` (entry ``recipe``) as each run finishes, so an interrupted study resumes where it stopped
(a run already there with the same budget is skipped; ``--redo`` runs it again).

Data sets (read from ``../shared/data``, prepared tables in a temporary folder, never the repo), valid figure:

* ``feedback_prize_ell``: six traits, ``--long-text head-tail``, ``--max-length 512``; valid MCRMSE (lower is better).
* ``mohler_sag``: question + reference answer as context; valid Pearson r (higher).
* ``clear_readability``: BT easiness; valid RMSE (lower).
* ``demo``: the embedded demo data; valid QWK (higher).

Settings (each against ``baseline``, today's defaults): encoder dropout 0 vs the config's (``dropout0``),
``--layer-lr-decay`` (``lld``), ``--head-lr`` (``head_lr``), ``--reinit-layers`` (``reinit``), pooling ``cls`` and
``attention`` (``mean`` is the baseline), and all of the first four together (``recipe``). Every run starts from
:data:`REFERENCE`, the defaults the study started from written out, so a default the study changed does not leak into
later runs. Epochs: a calibration run (``--max-update`` a few updates) measures training tokens/s and validation time;
the study run then takes ``--max-epoch E``, the most epochs of the train split that fit the budget (at least 1, at
most ``--max-epochs``). The baseline and the settings that change a step's cost (:data:`OWN_SPEED`: dropout off)
calibrate themselves, so a faster setting gets more epochs, as it would for a user with that budget; the others take
the epochs of the run they are judged against (:data:`AGAINST`: a later round's setting against the defaults an
earlier round set; else the baseline), whose step costs the same (their own calibration would only add timing noise).

Run it alone: a calibration taken while something else runs gives a setting fewer epochs. A smaller study that
fits one sitting (about 9 minutes a setting, 2 cores):

    python bench/bench_recipe.py --datasets demo,mohler_sag,clear_readability \
        --budget-minutes demo=1.5,mohler_sag=3,clear_readability=5 --train-rows clear_readability=800

    python bench/bench_recipe.py                                   # the whole study (many hours on 2 CPU cores)
    python bench/bench_recipe.py --datasets mohler_sag --settings baseline,dropout0
    python bench/bench_recipe.py --table                           # the table and the wins so far, no training
    nice -n 19 python bench/bench_recipe.py --datasets demo --settings baseline,attention \\
        --budget-minutes demo=1 --max-rows 64 --results /tmp/recipe.json  # smoke test
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_quality import merge_flags, split  # noqa: E402

SEED = 1
NAME = "recipe"
TRAITS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]
DATASETS = ["feedback_prize_ell", "mohler_sag", "clear_readability", "demo"]
# minutes of training + validation per run; ELL's 512-token essays need 21 min an epoch at the defaults
BUDGET_MINUTES = {"feedback_prize_ell": 45, "mohler_sag": 20, "clear_readability": 20, "demo": 10}
FIGURE = {"feedback_prize_ell": ("mcrmse", False), "mohler_sag": ("pearson", True),
          "clear_readability": ("rmse", False), "demo": ("qwk", True)}
SETTINGS = {
    "baseline": [],
    "dropout0": ["--encoder-dropout", "0"],
    "lld": ["--layer-lr-decay", "0.8"],
    "head_lr": ["--head-lr", "5e-4"],
    "reinit": ["--reinit-layers", "1"],
    "cls": ["--pooling", "cls"],
    "attention": ["--pooling", "attention"],
    "recipe": ["--encoder-dropout", "0", "--layer-lr-decay", "0.8", "--head-lr", "5e-4", "--reinit-layers", "1"],
    # the study's second round: a winner on top of the default the first round changed, judged against that default
    "head_lr_dropout0": ["--head-lr", "5e-4", "--encoder-dropout", "0"],
    # the third round: cls pooling (it beat the first round's baseline on demo and CLEAR) on today's defaults
    "head_lr_dropout0_cls": ["--head-lr", "5e-4", "--encoder-dropout", "0", "--pooling", "cls"],
}
# what a setting is judged against (default: ``baseline``): a second-round setting against the first round's winner
AGAINST = {"head_lr_dropout0": "head_lr", "head_lr_dropout0_cls": "head_lr_dropout0"}
# a first-round winner judged again on top of the defaults that round set: the later round decides its default
NEXT_ROUND = {"dropout0": "head_lr_dropout0", "cls": "head_lr_dropout0_cls"}
CALIBRATION_UPDATES = 8
# the study's reference: the defaults it started from, written out, so that a default the study changes (--head-lr
# 5e-4 since this study) does not leak into the runs of later sittings; each setting's flags override these
REFERENCE = ["--head-lr", "8e-5", "--lr", "8e-5", "--layer-lr-decay", "1", "--reinit-layers", "0", "--pooling", "mean"]
# settings that change a step's cost (dropout off is faster) get their own calibration; the others train for the
# epochs that the run they are judged against (:data:`AGAINST`, else the baseline) calibrated (their step costs what
# its does: a calibration of their own would only add timing noise, and at a budget near an epoch boundary that
# noise alone gives one setting an extra epoch)
OWN_SPEED = {"dropout0", "recipe", "head_lr_dropout0"}


def prepare(name: str, folder: Path, max_rows: int | None,
            train_rows: int | None = None) -> tuple[list[str], pd.DataFrame]:
    """Write the data set's train and valid tables (no test) into ``folder``; returns its flags and train frame.

    ``train_rows`` keeps a seeded sample of that many train rows (valid stays whole, the window unchanged): a
    smaller study that still reads what the full one reads."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "demo":
        from scorelib.data.demo import DEMO_RANGES, load_demo

        parts = {k: v for k, v in load_demo().items() if k in ("train", "valid")}
        pd.DataFrame([(p, lo, hi) for p, (lo, hi) in DEMO_RANGES.items()], columns=["prompt", "min", "max"]).to_csv(
            folder / "ranges.csv", index=False)
        flags = ["--score-ranges", str(folder / "ranges.csv"), "--score-step", "1", "--best-checkpoint-metric", "qwk"]
    elif name == "feedback_prize_ell":
        frame = common.load_ell()[["key", "text", *TRAITS]]
        parts = split(frame, SEED)
        flags = ["--score-column", ",".join(TRAITS), "--score-range", "1", "5", "--score-step", "0.5",
                 "--long-text", "head-tail", "--max-length", "512", "--best-checkpoint-metric", "mcrmse"]
    else:
        from bench_quality import prepare as prepare_quality

        frame, flags = prepare_quality(name)
        parts = split(frame, SEED)
    parts = {k: v for k, v in parts.items() if k in ("train", "valid")}  # decisions on valid only: no test table
    if max_rows:
        parts = {k: v.sample(min(len(v), max_rows if k == "train" else max(8, max_rows // 2)), random_state=SEED)
                 for k, v in parts.items()}
    if train_rows and train_rows < len(parts["train"]):
        parts["train"] = parts["train"].sample(train_rows, random_state=SEED)
    for split_name, frame in parts.items():
        frame.to_csv(folder / f"{split_name}.csv", index=False)
    return flags, parts["train"]


def epoch_tokens(train: pd.DataFrame, max_length: int) -> int:
    """Tokens of one epoch of ``train`` (each text, with its context, cut to the window)."""
    from scorelib.models.scoring_model import load_tokenizer

    tok = load_tokenizer(None)
    texts = train["text"].astype(str).tolist()
    pairs = train["context"].astype(str).tolist() if "context" in train else None
    enc = tok(texts, pairs, truncation=True, max_length=max_length)
    return int(sum(len(ids) for ids in enc["input_ids"]))


def train(data: Path, flags: list[str], save_dir: Path) -> tuple[dict, float, dict, str]:
    """One ``scorelib-train`` child (this checkout's package, ``SCORELIB_FAST=0``): (valid metrics, wall s, load, log)."""
    cmd = [sys.executable, "-m", "scorelib.cli", str(data),
           *merge_flags(["--save-dir", str(save_dir), "--no-epoch-checkpoints", "--no-save-optimizer-state",
                         "--log-format", "simple", "--log-interval", "50", "--seed", str(SEED),
                         "--valid-fraction", "0", "--test-fraction", "0", "--cpu"], flags)]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with common.LoadSampler() as load:  # the log beside the save dir, in the setting's temporary folder
        log = common.run_child(cmd, save_dir.with_name(save_dir.name + ".log"), cwd=common.ROOT,
                               env={"SCORELIB_FAST": "0", "PYTHONPATH": str(common.ROOT / "src")})
    wall = time.perf_counter() - t0
    metrics = json.loads((save_dir / "results" / "metrics-checkpoint_best-valid.json").read_text())
    return metrics, wall, load.summary(), log


def run_setting(name: str, setting: str, budget_s: float, max_epochs: int, max_rows: int | None,
                train_rows: int | None = None, reference_run: dict | None = None, same_epochs: bool = False) -> dict:
    """Calibrate the setting's speed (or take ``reference_run``'s, the run it is judged against, where a step costs
    the same), train it for the epochs the budget allows, return its valid figure."""
    metric, maximize = FIGURE[name]
    against = AGAINST.get(setting, "the baseline")
    with tempfile.TemporaryDirectory(prefix=f"bench_recipe_{name}_{setting}_") as tmp:
        tmp = Path(tmp)
        flags, train_frame = prepare(name, tmp / "data", max_rows, train_rows)
        flags = merge_flags(flags, REFERENCE, SETTINGS[setting])
        if max_rows:
            flags = merge_flags(flags, ["--max-length", "128"])
        max_length = int(flags[flags.index("--max-length") + 1]) if "--max-length" in flags else 512
        if (setting in OWN_SPEED and not same_epochs) or reference_run is None:
            _, cal_wall, _, _ = train(tmp / "data", merge_flags(flags, ["--max-update", str(CALIBRATION_UPDATES),
                                                                       "--max-epoch", "1"]), tmp / "calibration")
            row = pd.read_csv(tmp / "calibration" / "history.csv").iloc[-1]
            epoch_s = epoch_tokens(train_frame, max_length) / float(row["tokens_per_s"]) + float(row["valid_seconds"])
            epochs = int(min(max_epochs, max(1, budget_s // epoch_s)))
            print(f"{name} / {setting}: {row['tokens_per_s']:.0f} tokens/s, about {epoch_s:.0f} s an epoch: "
                  f"{epochs} epoch(s) in {budget_s / 60:.0f} min", flush=True)
        else:
            cal_wall, epoch_s, epochs = 0.0, reference_run["estimated_epoch_s"], reference_run["epochs"]
            print(f"{name} / {setting}: {against}'s {epochs} epoch(s) (a step costs what {against}'s does)",
                  flush=True)
        metrics, wall, load, _ = train(tmp / "data", merge_flags(flags, ["--max-epoch", str(epochs)]), tmp / "run")
        history = pd.read_csv(tmp / "run" / "history.csv")
    figure = metrics["overall"][metric]
    curve_col = f"valid_{metric}"
    return {"data_set": name, "setting": setting, "flags": SETTINGS[setting], "reference": REFERENCE,
            "epochs_from": "own calibration" if cal_wall else f"{against}'s calibration",
            "metric": metric,
            "maximize": maximize, "valid": figure, "epochs": epochs, "budget_s": budget_s,
            "estimated_epoch_s": round(epoch_s, 1), "calibration_wall_s": round(cal_wall, 1), "wall_s": round(wall, 1),
            "train_seconds": round(float(history["seconds"].sum()), 1),
            "valid_curve": [round(float(v), 4) for v in history[curve_col]] if curve_col in history else None,
            "loadavg_1m": load, "max_rows": max_rows, "train_rows_cap": train_rows, "train_rows": len(train_frame),
            "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": common.machine()}


def load_results(path: Path) -> dict:
    data = json.loads(path.read_text()) if path.is_file() else {}
    return data.get(NAME, {"method": common.METHOD, "runs": {}})


def store(path: Path, key: str, run: dict) -> None:
    """Add one run to ``path``'s ``recipe`` entry at once (other entries and runs are kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.is_file() else {}
        entry = data.setdefault(NAME, {"method": common.METHOD, "runs": {}})
        entry["runs"][key] = run
        tmp = path.with_suffix(f".json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)


def wins(runs: dict) -> dict[str, list[str]]:
    """Per setting, the data sets where it beats what it is judged against (:data:`AGAINST`, else ``baseline``) on
    valid, at the same budget and rows."""
    out: dict[str, list[str]] = {}
    for run in runs.values():
        against = AGAINST.get(run["setting"], "baseline")
        base = runs.get(f"{run['data_set']}|{against}|{run['budget_s']:.0f}|{run['max_rows']}|{run.get('train_rows_cap')}")
        if run["setting"] == "baseline" or base is None or run["valid"] is None or base["valid"] is None:
            continue
        better = run["valid"] > base["valid"] if run["maximize"] else run["valid"] < base["valid"]
        out.setdefault(run["setting"], [])
        if better:
            out[run["setting"]].append(run["data_set"])
    return out


def table(runs: dict) -> str:
    """A markdown table: data set x setting -> valid figure (epochs, wall time), and the wins."""
    names = sorted({r["data_set"] for r in runs.values()}, key=lambda n: DATASETS.index(n))
    settings = [s for s in SETTINGS if any(r["setting"] == s for r in runs.values())]
    lines = ["| setting | " + " | ".join(f"{n} ({FIGURE[n][0]})" for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for s in settings:
        cells = []
        for n in names:
            r = next((r for r in runs.values() if r["data_set"] == n and r["setting"] == s), None)
            cells.append("" if r is None else f"{r['valid']:.4f} ({r['epochs']} ep, {r['wall_s'] / 60:.1f} min)")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("")
    won = wins(runs)
    for s, where in won.items():
        verdict = ""
        if len(where) >= 3:
            if s == "recipe":
                verdict = "  (a combination, not one option: it changes no default by itself)"
            elif NEXT_ROUND.get(s) in won:
                verdict = f"  -> judged again on top of the newer defaults, as {NEXT_ROUND[s]}, which decides"
            else:
                verdict = "  -> change the default"
        lines.append(f"- {s}: beats {AGAINST.get(s, 'baseline')} on valid on {len(where)} data set(s)"
                     f"{': ' + ', '.join(where) if where else ''}{verdict}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma list of " + ", ".join(DATASETS))
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma list of " + ", ".join(SETTINGS))
    p.add_argument("--budget-minutes", help="NAME=MINUTES,... the wall-time budget of a data set's runs (default: "
                   + ", ".join(f"{k} {v}" for k, v in BUDGET_MINUTES.items()) + ")")
    p.add_argument("--max-epochs", type=int, default=8, help="at most this many epochs, whatever the budget")
    p.add_argument("--max-rows", type=int, help="smoke test: this many train rows (half as many valid), window 128")
    p.add_argument("--train-rows", default="", help="a smaller study: NAME=N,... keeps a seeded sample of N train "
                   "rows of that data set (valid whole, window unchanged), e.g. clear_readability=800")
    p.add_argument("--same-epochs", action="store_true", help="every setting takes the epochs of the run it is "
                   "judged against (AGAINST, else the baseline), the faster ones too (a comparison at equal epochs that any load leaves unchanged; it does not count "
                   "a faster setting's extra epochs)")
    p.add_argument("--results", default=str(common.RESULTS), help="the JSON file runs are appended to")
    p.add_argument("--redo", action="store_true", help="run again what the results file already holds")
    p.add_argument("--table", action="store_true", help="print the table of the runs so far and stop")
    args = p.parse_args(argv)
    results = Path(args.results)
    if args.table:
        print(table(load_results(results)["runs"]))
        return 0
    names, settings = args.datasets.split(","), args.settings.split(",")
    unknown = [n for n in names if n not in DATASETS] + [s for s in settings if s not in SETTINGS]
    if unknown:
        p.error(f"unknown data set(s) or setting(s): {', '.join(unknown)}")
    if any(n != "demo" for n in names) and not (common.have_shared_data() and common.have_ell()):
        p.error(f"the real data sets are not at {common.SHARED_DATA} (set SCORELIB_DATA), or use --datasets demo")
    try:
        train_rows = {k: int(v) for k, v in (x.split("=") for x in args.train_rows.split(",") if x)}
    except ValueError:
        p.error(f"--train-rows: expected NAME=N,... got {args.train_rows!r}")
    budgets = {k: float(v) for k, v in (x.split("=") for x in (args.budget_minutes or "").split(",") if "=" in x)}
    for name in names:
        budget_s = 60 * budgets.get(name, BUDGET_MINUTES[name])
        for setting in settings:
            key = f"{name}|{setting}|{budget_s:.0f}|{args.max_rows}|{train_rows.get(name)}"
            if key in load_results(results)["runs"] and not args.redo:
                print(f"{key}: measured before, skipped", flush=True)
                continue
            # the run this setting is judged against: its epochs, where a step costs the same
            base = load_results(results)["runs"].get(key.replace(f"|{setting}|", f"|{AGAINST.get(setting, 'baseline')}|"))
            run = run_setting(name, setting, budget_s, args.max_epochs, args.max_rows, train_rows.get(name),
                              None if setting == "baseline" else base, args.same_epochs)
            store(results, key, run)
            print(f"{name} / {setting}: valid {run['metric']} {run['valid']:.4f} after {run['epochs']} epoch(s), "
                  f"{run['wall_s']:.0f} s", flush=True)
    print(table(load_results(results)["runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
